//! `causerie-bench run` runs the comparison and writes `docs/benchmarks.md`; `causerie-bench serve …` is how it
//! starts Causerie (the `causerie` binary's own code, with the same flags).

use std::path::PathBuf;

use anyhow::Context as _;
use causerie_bench::{Launcher, Options, Target};
use clap::Parser as _;

/// Causerie's benchmark against the reference Node.js Socket.IO server.
#[derive(Debug, clap::Parser)]
#[command(name = "causerie-bench")]
enum Command {
    /// Runs every scenario against every target and writes the report.
    Run(Run),
    /// Runs the chaos tests of issue #7 (jitter, no recovery, a restart) and writes their report.
    Chaos(Chaos),
    /// Runs the fan-out on one node and on two (Redis, Postgres) and writes their comparison.
    Cluster(ClusterRun),
    /// Times appends to the in-memory store as its rooms grow (no server, no sockets), and prints the figures.
    Store(StoreRun),
    /// Runs the Causerie server with `causerie`'s flags (what the benchmark starts for each Causerie target).
    #[command(disable_help_flag = true)]
    Serve {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct Run {
    /// Tiny sizes, to check that every scenario works; the figures mean nothing
    #[arg(long)]
    smoke: bool,
    /// Targets to run, comma-separated [default: all]
    #[arg(long, value_delimiter = ',')]
    targets: Vec<Target>,
    /// Scenarios to run, comma-separated [default: all]
    #[arg(long, value_delimiter = ',')]
    only: Vec<causerie_bench::Scenario>,
    /// Idle connections to hold open
    #[arg(long)]
    idle: Option<u32>,
    /// Clients in the connect storm
    #[arg(long)]
    storm: Option<u32>,
    /// The fan-out's loads, in sends per second, in place of the climb's: `12000,12000,12000` looks at one load
    /// three times, on one server from its start
    #[arg(long, value_delimiter = ',')]
    rates: Vec<u32>,
    /// The release WASM bundle whose size to report
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Pin the servers to these CPUs (`taskset -c`), leaving the others to the load generator
    #[arg(long)]
    server_cpus: Option<String>,
    /// Run each server under this command, split at spaces: a profiler such as
    /// `valgrind --tool=massif --massif-out-file=target/bench/massif.%p`. CPU and memory figures then include it.
    #[arg(long)]
    server_wrapper: Option<String>,
    /// Where to write the report; its chart goes next to it as `<name>-fanout.svg`
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Databases and server logs
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct StoreRun {
    /// Messages to append
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Rooms to spread them over (the fan-out's 20 by default)
    #[arg(long, default_value_t = 20)]
    rooms: usize,
}

#[derive(Debug, clap::Args)]
struct ClusterRun {
    /// Tiny sizes, to check that it works; the figures mean nothing
    #[arg(long)]
    smoke: bool,
    /// Where to write the report; its figures go next to it as JSON
    #[arg(long, default_value = "docs/benchmarks-cluster.md")]
    out: PathBuf,
    /// Databases and server logs
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct Chaos {
    /// Tiny sizes, to check that every run works
    #[arg(long)]
    smoke: bool,
    /// Only the runs whose titles contain this text (for example "restart")
    #[arg(long)]
    only: Option<String>,
    /// Where to write the report; its figures go next to it as JSON
    #[arg(long, default_value = "docs/reliability.md")]
    out: PathBuf,
    /// Databases and server logs
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let command = Command::parse();
    match command {
        Command::Serve { args } => {
            // The server as shipped, on the runtime it picks for itself.
            let config = server::Config::parse_from(std::iter::once("causerie".to_owned()).chain(args));
            server::runtime().context("starting the Tokio runtime")?.block_on(server::run(config))
        }
        Command::Run(run) => load_runtime()?.block_on(run_all(run)),
        Command::Chaos(chaos) => load_runtime()?.block_on(run_chaos(chaos)),
        Command::Cluster(cluster) => load_runtime()?.block_on(run_cluster(cluster)),
        Command::Store(run) => {
            let config = causerie_bench::store::StoreConfig { messages: run.messages, rooms: run.rooms };
            let result = load_runtime()?.block_on(causerie_bench::store::appends(config))?;
            let [over_tenth, over_one, over_ten] = result.slower_than;
            println!(
                "{} appends in {} rooms: {:.2} µs each on average, the slowest {:.0} µs; {over_tenth} over 0.1 ms, \
                 {over_one} over 1 ms, {over_ten} over 10 ms; {:.0} bytes of RSS per message",
                result.appended, run.rooms, result.mean_micros, result.worst_micros, result.rss_bytes_per_message
            );
            Ok(())
        }
    }
}

/// The load generator's runtime: a worker per CPU it is given. (A single-thread runtime on its one CPU, as the
/// server has, made it slower: 65 k deliveries/s with a p99 of half a second where this one reaches 69–71 k.)
fn load_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the Tokio runtime")
}

async fn run_cluster(run: ClusterRun) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the benchmark's own executable")?;
    let launcher = Launcher::new(exe, run.work_dir, None)?;
    let mut options = if run.smoke { Options::smoke() } else { Options::full() };
    // The cluster's report compares maxima only, not p99s at one rate.
    options.fanout.repeats = 0;
    let results = causerie_bench::cluster::fanout_comparison(&launcher, &options.fanout).await?;
    let machine = causerie_bench::report::Machine::read(&launcher);
    if let Some(dir) = run.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let markdown = causerie_bench::cluster::markdown(&machine, &options.fanout, &results);
    std::fs::write(&run.out, markdown).with_context(|| format!("writing {}", run.out.display()))?;
    let json = run.out.with_extension("json");
    let figures: Vec<_> =
        results.iter().map(|(setup, result)| serde_json::json!({ "setup": setup, "fanout": result })).collect();
    std::fs::write(&json, serde_json::to_string_pretty(&figures)?)
        .with_context(|| format!("writing {}", json.display()))?;
    eprintln!("Wrote {} and {}", run.out.display(), json.display());
    Ok(())
}

async fn run_all(run: Run) -> anyhow::Result<()> {
    let mut options = if run.smoke { Options::smoke() } else { Options::full() };
    if !run.targets.is_empty() {
        options.targets = run.targets;
    }
    let partial = !run.only.is_empty();
    if partial {
        options.scenarios = run.only;
    }
    if let Some(idle) = run.idle {
        options.idle_connections = idle;
    }
    if let Some(storm) = run.storm {
        options.storm_clients = storm;
    }
    if !run.rates.is_empty() {
        options.fanout.rates = run.rates;
    }
    if run.wasm.is_some() {
        options.wasm = run.wasm;
    } else if partial && options.wasm.as_ref().is_some_and(|wasm| !wasm.exists()) {
        // A run of some scenarios needs no release site: its report then leaves the bundle's size out.
        options.wasm = None;
    }
    let exe = std::env::current_exe().context("finding the benchmark's own executable")?;
    let mut launcher = Launcher::new(exe, run.work_dir, run.server_cpus)?;
    launcher.server_wrapper = run.server_wrapper.iter().flat_map(|w| w.split_whitespace()).map(str::to_owned).collect();
    let report = causerie_bench::run(&launcher, &options).await?;
    let stem = run.out.file_stem().and_then(|s| s.to_str()).unwrap_or("benchmarks").to_owned();
    let chart = format!("{stem}-fanout.svg");
    if let Some(dir) = run.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&run.out, report.markdown(&chart)).with_context(|| format!("writing {}", run.out.display()))?;
    let svg = run.out.with_file_name(&chart);
    std::fs::write(&svg, report.svg()).with_context(|| format!("writing {}", svg.display()))?;
    let json = run.out.with_extension("json");
    std::fs::write(&json, serde_json::to_string_pretty(&report.json())?)
        .with_context(|| format!("writing {}", json.display()))?;
    eprintln!("Wrote {}, {} and {}", run.out.display(), svg.display(), json.display());
    Ok(())
}

async fn run_chaos(chaos: Chaos) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the benchmark's own executable")?;
    let launcher = Launcher::new(exe, chaos.work_dir, None)?;
    let mut results = Vec::new();
    let wanted = |title: &str| chaos.only.as_deref().is_none_or(|only| title.contains(only));
    for run in causerie_bench::chaos::runs(chaos.smoke).into_iter().filter(|run| wanted(run.title)) {
        eprintln!("{} ({}): {} clients", run.title, run.target.label(), run.config.clients);
        let result = causerie_bench::chaos::chaos(&launcher, run.target, &run.config).await?;
        eprintln!(
            "  {:.2}% delivered ({} of {}), {} duplicates, {} order violations, {} cuts",
            result.delivery_percent,
            result.delivered,
            result.expected,
            result.duplicates,
            result.order_violations,
            result.cuts
        );
        results.push((run, result));
    }
    let attack = if wanted("Attack") {
        eprintln!("Attack, while people chat");
        let attack = causerie_bench::attack::attack(&launcher, &causerie_bench::attack::config(chaos.smoke)).await?;
        eprintln!(
            "  people: {} of {} delivered; RSS {} bytes before, {:?} after each wave; {} panics",
            attack.people_delivered, attack.people_expected, attack.rss_before, attack.rss_after_waves, attack.panics
        );
        Some(attack)
    } else {
        None
    };
    let machine = causerie_bench::report::Machine::read(&launcher);
    if let Some(dir) = chaos.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut markdown = causerie_bench::chaos::markdown(&machine, &results);
    if let Some(attack) = &attack {
        markdown.push('\n');
        markdown.push_str(&causerie_bench::attack::markdown(attack));
    }
    std::fs::write(&chaos.out, markdown).with_context(|| format!("writing {}", chaos.out.display()))?;
    let json = chaos.out.with_extension("json");
    let figures: Vec<_> = results.iter().map(|(_, result)| result).collect();
    let figures = serde_json::json!({ "chaos": figures, "attack": attack });
    std::fs::write(&json, serde_json::to_string_pretty(&figures)?)
        .with_context(|| format!("writing {}", json.display()))?;
    eprintln!("Wrote {} and {}", chaos.out.display(), json.display());
    Ok(())
}
