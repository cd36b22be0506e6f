//! Causerie's benchmark: one load generator, built on `sio-client`, driving Causerie (in memory and with SQLite)
//! and the reference Node.js Socket.IO server under identical load, one after the other in one run, and writing
//! what it measured to `docs/benchmarks.md`. See `docs/benchmarks.md` for how to run it and what it found.

pub mod attack;
pub mod chaos;
pub mod cluster;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod store;
pub mod target;
pub mod users;

use std::path::PathBuf;
use std::time::Duration;

use scenarios::{DurableResult, FanoutConfig, FanoutResult, IdleResult, PageResult, StormResult, WasmSize};
pub use target::{Launcher, Target};

/// One part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Fanout,
    Idle,
    Storm,
    Durable,
    Page,
}

/// What to run, and how big.
#[derive(Debug, Clone)]
pub struct Options {
    pub targets: Vec<Target>,
    pub scenarios: Vec<Scenario>,
    pub fanout: FanoutConfig,
    pub idle_connections: u32,
    /// The idle scenario runs again with this many messages in every room before anyone joins, as rooms in use
    /// have: each join's answer then carries them (0: not run).
    pub idle_history: u32,
    pub idle_for: Duration,
    pub storm_clients: u32,
    pub storm_per_room: u32,
    pub durable_users: u32,
    pub durable_for: Duration,
    pub page_requests: u32,
    pub wasm: Option<PathBuf>,
}

impl Options {
    /// The full run of issue #6: minutes per target.
    pub fn full() -> Self {
        Self {
            targets: vec![Target::Causerie, Target::CauserieSqlite, Target::Node],
            scenarios: ALL_SCENARIOS.to_vec(),
            fanout: FanoutConfig {
                rooms: 20,
                users_per_room: 10,
                step: Duration::from_secs(5),
                // A thousand apart near where the servers top out (4,000–14,000 on the machines seen so far), so
                // that a maximum is not understated by a whole coarse step; then coarser, up to where no load
                // generator on one core keeps up (on an Intel VM, Causerie in memory was still within the limit at
                // 32,000).
                rates: vec![
                    250, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000, 11_000, 12_000, 14_000,
                    16_000, 24_000, 32_000, 40_000, 48_000, 64_000,
                ],
                stop_p99_ms: 100.0,
                // 125 sends/s apart at the end, from a thousand: three steps of 5 s more per target.
                refine: 3,
                // Three draws of the p99 where it is compared: the climb's and two more, 10 s per target.
                repeats: 2,
                compare_at: None,
            },
            idle_connections: 10_000,
            // What a fresh join is answered with in a room in use: its latest page of messages.
            idle_history: protocol::HistoryPage::SIZE as u32,
            idle_for: Duration::from_secs(5),
            storm_clients: 5_000,
            storm_per_room: 50,
            durable_users: 50,
            durable_for: Duration::from_secs(5),
            page_requests: 1_000,
            wasm: Some(PathBuf::from("target/site/pkg/causerie.wasm")),
        }
    }

    /// Every scenario, tiny: for the test command, so that the benchmark cannot rot. Its figures mean nothing.
    pub fn smoke() -> Self {
        Self {
            targets: vec![Target::Causerie, Target::CauserieSqlite, Target::Node],
            scenarios: ALL_SCENARIOS.to_vec(),
            fanout: FanoutConfig {
                rooms: 2,
                users_per_room: 3,
                step: Duration::from_millis(300),
                rates: vec![20, 40],
                stop_p99_ms: f64::INFINITY,
                refine: 1,
                repeats: 1,
                compare_at: None,
            },
            idle_connections: 20,
            idle_history: 3,
            idle_for: Duration::from_millis(100),
            storm_clients: 12,
            storm_per_room: 4,
            durable_users: 3,
            durable_for: Duration::from_millis(200),
            page_requests: 5,
            wasm: None,
        }
    }
}

const ALL_SCENARIOS: [Scenario; 5] =
    [Scenario::Fanout, Scenario::Idle, Scenario::Storm, Scenario::Durable, Scenario::Page];

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub machine: report::Machine,
    pub options: Options,
    pub fanout: Vec<FanoutResult>,
    pub idle: Vec<IdleResult>,
    pub storm: Vec<StormResult>,
    pub durable: Vec<DurableResult>,
    pub page: Option<PageResult>,
    pub wasm: Option<WasmSize>,
}

/// Runs every scenario against every target, one server at a time.
pub async fn run(launcher: &Launcher, options: &Options) -> anyhow::Result<Report> {
    let mut report = Report {
        machine: report::Machine::read(launcher),
        options: options.clone(),
        fanout: Vec::new(),
        idle: Vec::new(),
        storm: Vec::new(),
        durable: Vec::new(),
        page: None,
        wasm: None,
    };
    let runs = |scenario: Scenario| options.scenarios.contains(&scenario);
    if runs(Scenario::Fanout) {
        // Node first: its maximum is where the issue compares the p99s, so the others' climbs pass through it.
        let mut order: Vec<Target> = options.targets.iter().copied().filter(|&t| t == Target::Node).collect();
        order.extend(options.targets.iter().copied().filter(|&t| t != Target::Node));
        let mut node_max = None;
        for target in order {
            eprintln!("{}: fan-out under rising load", target.label());
            let config = match node_max {
                Some(rate) => options.fanout.through(rate),
                None => options.fanout.clone(),
            };
            let result = scenarios::fanout(launcher, target, &config).await?;
            if target == Target::Node {
                node_max = result.best(options.fanout.stop_p99_ms).map(|s| s.sends_per_second);
            }
            report.fanout.push(result);
        }
        // The report's order is the targets' order.
        report.fanout.sort_by_key(|f| options.targets.iter().position(|&t| t == f.target));
    }
    let histories = if options.idle_history > 0 { vec![0, options.idle_history] } else { vec![0] };
    for &target in options.targets.iter().filter(|_| runs(Scenario::Idle)) {
        for &history in &histories {
            eprintln!("{}: {} idle connections, {history} messages per room", target.label(), options.idle_connections);
            let idle = scenarios::idle(launcher, target, options.idle_connections, history, options.idle_for).await?;
            eprintln!("  {:.0} bytes per connection", idle.bytes_per_connection);
            report.idle.push(idle);
        }
    }
    for &target in options.targets.iter().filter(|_| runs(Scenario::Storm)) {
        eprintln!("{}: a storm of {} clients, and a restart", target.label(), options.storm_clients);
        let storm = scenarios::storm(launcher, target, options.storm_clients, options.storm_per_room).await?;
        eprintln!(
            "  all joined in {:.2} s, all back in {:.2} s (server CPU {:.2} s and {:.2} s)",
            storm.seconds_all_joined,
            storm.seconds_all_back,
            storm.server_cpu_seconds_joining,
            storm.server_cpu_seconds_back
        );
        report.storm.push(storm);
    }
    for &target in options.targets.iter().filter(|_| runs(Scenario::Durable)) {
        eprintln!("{}: send → ack", target.label());
        report.durable.push(scenarios::durable(launcher, target, options.durable_users, options.durable_for).await?);
    }
    if runs(Scenario::Page) && options.targets.iter().any(|t| matches!(t, Target::Causerie | Target::CauserieSqlite)) {
        eprintln!("Causerie: the join page, rendered on the server");
        report.page = Some(scenarios::page(launcher, "/", options.page_requests).await?);
    }
    if let Some(wasm) = &options.wasm {
        report.wasm = Some(scenarios::wasm_size(wasm)?);
    }
    Ok(report)
}
