use anyhow::Context as _;
use clap::Parser as _;

fn main() -> anyhow::Result<()> {
    let config = server::Config::parse();
    server::runtime().context("starting the Tokio runtime")?.block_on(server::run(config))
}
