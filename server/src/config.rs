//! All of the server's settings, in one place: command-line flags, each with an environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use leptos::config::LeptosOptions;

/// Causerie: real-time chat rooms over Socket.IO.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "causerie", version)]
pub struct Config {
    /// Address to listen on [default: LEPTOS_SITE_ADDR when set, else 127.0.0.1:3000]
    #[arg(long, env = "CAUSERIE_ADDR")]
    pub addr: Option<SocketAddr>,

    /// Directory of the built site: the WASM bundle, CSS and static files [default: LEPTOS_SITE_ROOT when set,
    /// else target/site]
    #[arg(long, env = "CAUSERIE_SITE_ROOT")]
    pub site_root: Option<PathBuf>,
}

impl Config {
    /// Leptos's options: its `LEPTOS_*` environment (set by cargo-leptos) with this config's overrides on top.
    pub fn leptos_options(&self) -> anyhow::Result<LeptosOptions> {
        let mut options = leptos::config::get_configuration(None)
            .context("reading Leptos settings from the LEPTOS_* environment variables")?
            .leptos_options;
        if let Some(addr) = self.addr {
            options.site_addr = addr;
        }
        if let Some(root) = &self.site_root {
            options.site_root = root.to_string_lossy().into_owned().into();
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn flags_override_the_defaults() {
        let config = Config::try_parse_from(["causerie", "--addr", "127.0.0.1:4000", "--site-root", "/srv/site"])
            .expect("valid flags parse");
        let options = config.leptos_options().expect("options build");
        assert_eq!(options.site_addr, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(&*options.site_root, "/srv/site");
    }

    #[test]
    fn a_malformed_address_is_a_clear_error() {
        let err = Config::try_parse_from(["causerie", "--addr", "nowhere"]).unwrap_err();
        assert!(
            err.to_string().contains("invalid value 'nowhere' for '--addr <ADDR>'"),
            "{err}"
        );
    }
}
