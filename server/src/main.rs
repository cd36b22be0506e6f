use anyhow::Context as _;
use clap::Parser as _;
use server::{Application, Config};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let app = Application::build(&config).await.context("starting Causerie")?;
    tracing::info!("Causerie listening on http://{}", app.local_addr()?);
    app.run().await
}
