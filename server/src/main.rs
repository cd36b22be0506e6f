use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    server::run(server::Config::parse()).await
}
