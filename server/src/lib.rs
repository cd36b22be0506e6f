//! Causerie's server: configuration, the Socket.IO handlers, and the application that serves them with the
//! Leptos pages. `main.rs` only parses the configuration and runs [`startup::Application`].

pub mod cluster;
pub mod config;
pub mod limits;
pub mod media;
pub mod presence;
pub mod realtime;
pub mod session;
pub mod startup;
pub mod store;

pub use config::Config;
pub use startup::Application;

/// What the `causerie` binary does once its flags are parsed: logs to stderr (`RUST_LOG`, else `info`) and serves
/// until Ctrl-C or SIGTERM. The benchmark runs the server through this too, so that it measures the real thing.
pub async fn run(config: Config) -> anyhow::Result<()> {
    use anyhow::Context as _;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let app = Application::build(&config).await.context("starting Causerie")?;
    tracing::info!("Causerie listening on http://{}", app.local_addr()?);
    app.run().await
}
