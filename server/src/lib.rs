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

/// The Tokio runtime the server runs on: a single thread when this process may use only one CPU (a one-core host,
/// or a server pinned with `taskset`, as the benchmark does), otherwise one worker per CPU. On one CPU a
/// multi-thread runtime has a single worker anyway, and its work-stealing bookkeeping (atomic task states, a shared
/// injection queue) is pure cost: the connect storm of `scripts/bench` took about 20% longer with it.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // Unknown counts as several: the multi-thread runtime is right everywhere, the other only on one CPU.
    let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()
}

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
