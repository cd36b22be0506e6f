//! All of the server's settings, in one place: command-line flags, each with an environment fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use leptos::config::LeptosOptions;

/// The longest heartbeat settings accepted. Browsers' timers take a signed 32-bit number of milliseconds (about
/// 24.8 days), and a tab that is gone for longer than an hour is not worth waiting for.
const HOUR_MS: u64 = 3_600_000;

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

    /// Socket.IO transports to accept, comma-separated. `polling` alone forces every client onto long-polling, as
    /// behind a proxy that blocks WebSocket
    #[arg(long, env = "CAUSERIE_TRANSPORTS", value_delimiter = ',', default_value = "polling,websocket")]
    pub transports: Vec<Transport>,

    /// How many messages one person (all their tabs together) may send at once, before the sustained rate applies
    #[arg(long, env = "CAUSERIE_MESSAGE_BURST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub message_burst: u32,

    /// How many messages per second one person may send, sustained
    #[arg(long, env = "CAUSERIE_MESSAGES_PER_SECOND", default_value_t = 2.0, value_parser = positive_rate)]
    pub messages_per_second: f64,

    /// How many joins and history pages one person (all their tabs together) may ask for at once, before the
    /// sustained rate applies. Each is a database read of up to 4 KiB of messages
    #[arg(long, env = "CAUSERIE_READ_BURST", default_value_t = crate::realtime::DEFAULT_READS.burst, value_parser = clap::value_parser!(u32).range(1..))]
    pub read_burst: u32,

    /// How many joins and history pages per second one person may ask for, sustained
    #[arg(long, env = "CAUSERIE_READS_PER_SECOND", default_value_t = crate::realtime::DEFAULT_READS.per_second, value_parser = positive_rate)]
    pub reads_per_second: f64,

    /// SQLite database file for the messages; created (with its directory) on first run
    #[arg(long, env = "CAUSERIE_DATABASE", default_value = "causerie.db")]
    pub database: PathBuf,

    /// Keep messages in memory only, not in --database: they are lost when the server stops. For benchmarks and
    /// trials; a chat people rely on should not use it
    #[arg(long, env = "CAUSERIE_IN_MEMORY", conflicts_with = "database_url")]
    pub in_memory: bool,

    /// Store messages in Postgres instead of SQLite (postgres://user:password@host:port/database). Needed when
    /// several nodes serve one chat; the schema is created on first start
    #[arg(long, env = "CAUSERIE_DATABASE_URL", hide_env_values = true, value_parser = postgres_url)]
    pub database_url: Option<String>,

    /// Run as one node of several: share rooms, broadcasts and presence with the other nodes through this Redis
    /// (redis://host:port, Redis 7 or later). Every node needs the same --redis-url and --database-url
    #[arg(long, env = "CAUSERIE_REDIS_URL", hide_env_values = true, value_parser = redis_url, requires = "database_url")]
    pub redis_url: Option<String>,

    /// Token for the admin page (/admin). Without one, the admin namespace refuses everybody
    #[arg(long, env = "CAUSERIE_ADMIN_TOKEN", hide_env_values = true, value_parser = admin_token)]
    pub admin_token: Option<String>,

    /// Milliseconds between heartbeats, at most an hour. A tab that stops answering is dropped after this plus
    /// --ping-timeout
    #[arg(long, env = "CAUSERIE_PING_INTERVAL", default_value_t = 25_000, value_parser = clap::value_parser!(u64).range(100..=HOUR_MS))]
    pub ping_interval: u64,

    /// Milliseconds to wait for a heartbeat's answer, at most an hour
    #[arg(long, env = "CAUSERIE_PING_TIMEOUT", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(100..=HOUR_MS))]
    pub ping_timeout: u64,

    /// Largest packet a client may send, in bytes; a bigger one closes its connection. The default leaves room
    /// for a 2 MiB image sent over long-polling (base64)
    #[arg(long, env = "CAUSERIE_MAX_PAYLOAD", default_value_t = 3_000_000, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_payload: u64,

    /// Mark the session cookie `Secure`: set this when clients reach the server over HTTPS
    #[arg(long, env = "CAUSERIE_SECURE_COOKIES")]
    pub secure_cookies: bool,
}

fn admin_token(input: &str) -> Result<String, String> {
    if input.chars().count() >= 12 {
        Ok(input.to_owned())
    } else {
        Err("an admin token needs at least 12 characters".to_owned())
    }
}

fn postgres_url(input: &str) -> Result<String, String> {
    if !(input.starts_with("postgres://") || input.starts_with("postgresql://")) {
        return Err("expected a Postgres URL: postgres://user:password@host:port/database".to_owned());
    }
    input.parse::<tokio_postgres::Config>().map_err(|e| format!("invalid Postgres URL: {e}"))?;
    Ok(input.to_owned())
}

/// A Redis URL, with RESP3 asked for: socketioxide's Redis adapter needs it (Redis 7 and later speak it).
fn redis_url(input: &str) -> Result<String, String> {
    if input.starts_with("rediss://") {
        return Err("TLS to Redis (rediss://) is not built in: reach Redis over a private network or a tunnel, \
                    with redis://"
            .to_owned());
    }
    if !input.starts_with("redis://") {
        return Err("expected a Redis URL: redis://host:port".to_owned());
    }
    let url = if input.contains("protocol=") {
        input.to_owned()
    } else if input.contains('?') {
        format!("{input}&protocol=resp3")
    } else {
        format!("{input}?protocol=resp3")
    };
    redis::Client::open(url.as_str()).map_err(|e| format!("invalid Redis URL: {e}"))?;
    Ok(url)
}

fn positive_rate(input: &str) -> Result<f64, String> {
    match input.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("expected a positive number per second, got {input:?}")),
    }
}

impl Config {
    /// The per-person sending limit.
    pub fn rate_limit(&self) -> crate::limits::RateLimit {
        crate::limits::RateLimit { burst: self.message_burst, per_second: self.messages_per_second }
    }

    /// The per-person sending and reading limits.
    pub fn limits(&self) -> crate::realtime::Limits {
        crate::realtime::Limits {
            sending: self.rate_limit(),
            reading: crate::limits::RateLimit { burst: self.read_burst, per_second: self.reads_per_second },
        }
    }
}

/// A Socket.IO transport the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Polling,
    Websocket,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: None,
            site_root: None,
            transports: vec![Transport::Polling, Transport::Websocket],
            message_burst: 10,
            messages_per_second: 2.0,
            read_burst: crate::realtime::DEFAULT_READS.burst,
            reads_per_second: crate::realtime::DEFAULT_READS.per_second,
            database: PathBuf::from("causerie.db"),
            in_memory: false,
            database_url: None,
            redis_url: None,
            admin_token: None,
            ping_interval: 25_000,
            ping_timeout: 20_000,
            max_payload: 3_000_000,
            secure_cookies: false,
        }
    }
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
    fn both_transports_are_accepted_unless_told_otherwise() {
        let config = Config::try_parse_from(["causerie"]).expect("no flags parse");
        assert_eq!(config.transports, vec![Transport::Polling, Transport::Websocket]);
        let config = Config::try_parse_from(["causerie", "--transports", "polling"]).expect("valid flags parse");
        assert_eq!(config.transports, vec![Transport::Polling]);
    }

    #[test]
    fn an_unknown_transport_is_a_clear_error() {
        let err = Config::try_parse_from(["causerie", "--transports", "carrier-pigeon"]).unwrap_err();
        assert!(err.to_string().contains("invalid value 'carrier-pigeon' for '--transports"), "{err}");
    }

    #[test]
    fn the_rate_limit_flags_refuse_nonsense() {
        let err = Config::try_parse_from(["causerie", "--message-burst", "0"]).unwrap_err();
        assert!(err.to_string().contains("invalid value '0' for '--message-burst"), "{err}");
        for bad in ["--messages-per-second=0", "--messages-per-second=-1", "--messages-per-second=fast"] {
            let err = Config::try_parse_from(["causerie", bad]).unwrap_err();
            assert!(err.to_string().contains("expected a positive number per second"), "{bad}: {err}");
        }
        for bad in ["--read-burst=0", "--reads-per-second=0", "--reads-per-second=inf", "--reads-per-second=often"] {
            let err = Config::try_parse_from(["causerie", bad]).unwrap_err();
            let flag = bad.split('=').next().unwrap_or(bad);
            assert!(err.to_string().contains(&format!("for '{flag}")), "{bad}: {err}");
        }
        let config =
            Config::try_parse_from(["causerie", "--message-burst", "3", "--messages-per-second", "0.5"]).unwrap();
        assert_eq!(config.rate_limit(), crate::limits::RateLimit { burst: 3, per_second: 0.5 });
        assert_eq!(Config::default().limits(), Config::try_parse_from(["causerie"]).unwrap().limits());
        let config = Config::try_parse_from(["causerie", "--read-burst", "5", "--reads-per-second", "2"]).unwrap();
        assert_eq!(config.limits().reading, crate::limits::RateLimit { burst: 5, per_second: 2.0 });
        assert_eq!(config.limits().sending, Config::default().rate_limit());
        assert_eq!(Config::default().limits().reading, crate::realtime::DEFAULT_READS);
    }

    #[test]
    fn backend_urls_are_checked_and_redis_is_asked_for_resp3() {
        let config = Config::try_parse_from([
            "causerie",
            "--redis-url",
            "redis://127.0.0.1:6390",
            "--database-url",
            "postgres://causerie@127.0.0.1:5433/chat",
        ])
        .unwrap();
        assert_eq!(config.redis_url.as_deref(), Some("redis://127.0.0.1:6390?protocol=resp3"));
        assert_eq!(config.database_url.as_deref(), Some("postgres://causerie@127.0.0.1:5433/chat"));
        let err = Config::try_parse_from(["causerie", "--redis-url", "redis://h:6379"]).unwrap_err();
        assert!(err.to_string().contains("--database-url"), "nodes need one shared database: {err}");
        let err = Config::try_parse_from(["causerie", "--redis-url", "127.0.0.1:6379"]).unwrap_err();
        assert!(err.to_string().contains("expected a Redis URL: redis://host:port"), "{err}");
        let err = Config::try_parse_from(["causerie", "--redis-url", "rediss://h:6379"]).unwrap_err();
        assert!(err.to_string().contains("TLS to Redis (rediss://) is not built in"), "{err}");
        let err = Config::try_parse_from(["causerie", "--database-url", "mysql://x"]).unwrap_err();
        assert!(err.to_string().contains("expected a Postgres URL"), "{err}");
        let err = Config::try_parse_from(["causerie", "--database-url", "postgres://h:notaport/db"]).unwrap_err();
        assert!(err.to_string().contains("invalid Postgres URL"), "{err}");
        let err = Config::try_parse_from(["causerie", "--in-memory", "--database-url", "postgres://h/db"]).unwrap_err();
        assert!(err.to_string().contains("cannot be used with"), "{err}");
    }

    #[test]
    fn a_heartbeat_is_between_a_tenth_of_a_second_and_an_hour() {
        for (flag, value) in [("--ping-interval", "99"), ("--ping-interval", "3600001"), ("--ping-timeout", "3600001")]
        {
            let err = Config::try_parse_from(["causerie", flag, value]).unwrap_err();
            assert!(err.to_string().contains(&format!("invalid value '{value}' for '{flag}")), "{err}");
        }
        let config = Config::try_parse_from(["causerie", "--ping-interval", "3600000"]).unwrap();
        assert_eq!(config.ping_interval, 3_600_000);
    }

    #[test]
    fn a_malformed_address_is_a_clear_error() {
        let err = Config::try_parse_from(["causerie", "--addr", "nowhere"]).unwrap_err();
        assert!(err.to_string().contains("invalid value 'nowhere' for '--addr <ADDR>'"), "{err}");
    }

    #[test]
    fn a_short_admin_token_is_refused_and_the_defaults_match_clap() {
        let err = Config::try_parse_from(["causerie", "--admin-token", "short"]).unwrap_err();
        assert!(err.to_string().contains("an admin token needs at least 12 characters"), "{err}");
        let parsed = Config::try_parse_from(["causerie"]).unwrap();
        let default = Config::default();
        assert_eq!(
            (parsed.ping_interval, parsed.ping_timeout, parsed.max_payload, parsed.admin_token),
            (default.ping_interval, default.ping_timeout, default.max_payload, default.admin_token)
        );
    }
}
