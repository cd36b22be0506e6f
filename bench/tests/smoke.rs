//! The benchmark's smoke run: every scenario against every target, tiny, so that the benchmark cannot rot
//! unnoticed. It checks what the run found (every message delivered once, every client back), never how fast.

use std::path::PathBuf;

use causerie_bench::{Launcher, Options, Target};

fn launcher() -> Launcher {
    let work_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-smoke-{}", std::process::id()));
    Launcher::new(PathBuf::from(env!("CARGO_BIN_EXE_causerie-bench")), work_dir, None)
        .expect("the Node.js peer is installed (scripts/test runs `npm ci` in bench/peers/node)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_against_every_target_and_loses_nothing() {
    let options = Options::smoke();
    let report = causerie_bench::run(&launcher(), &options).await.expect("the smoke run completes");

    let targets = [Target::Causerie, Target::CauserieSqlite, Target::Node];
    for target in targets {
        let fanout = report.fanout.iter().find(|f| f.target == target).expect("a fan-out result per target");
        assert_eq!(fanout.steps.len(), options.fanout.rates.len(), "{target:?} ran every step");
        for step in &fanout.steps {
            assert!(step.accepted > 0, "{target:?} accepted messages at {} sends/s", step.sends_per_second);
            assert_eq!((step.lost, step.duplicates, step.failed), (0, 0, 0), "{target:?} at {}", step.sends_per_second);
            assert_eq!(step.latency.count as u64, step.accepted * u64::from(options.fanout.users_per_room - 1));
        }

        for history in [0, options.idle_history] {
            let idle = report.idle.iter().find(|i| i.target == target && i.history == history);
            let idle = idle.unwrap_or_else(|| panic!("{target:?}: an idle result with {history} messages per room"));
            assert_eq!((idle.connections, idle.failed), (options.idle_connections, 0));
            assert_eq!(idle.connect.count, options.idle_connections as usize);
            assert_eq!(idle.history_seen, history as usize, "{target:?}: each join was answered with the history");
            assert!(idle.rss_after > 0);
        }

        let storm = report.storm.iter().find(|s| s.target == target).expect("a storm result per target");
        assert_eq!(storm.back, options.storm_clients, "{target:?}: every client came back after the restart");
        assert_eq!(storm.lost_after, 0, "{target:?}: nothing sent after the restart went missing");
        let rooms = options.storm_clients / options.storm_per_room;
        assert_eq!(storm.acked_before, rooms);
        // Only the SQLite store keeps what it acknowledged across a crash; the in-memory servers forget it all.
        let kept = if target.durable() { rooms } else { 0 };
        assert_eq!(storm.kept_after_restart, kept, "{target:?}: acknowledged messages kept across the restart");

        let durable = report.durable.iter().find(|d| d.target == target).expect("a send → ack result per target");
        assert!(durable.single.count > 0 && durable.concurrent.count > 0);
        assert_eq!(durable.failed, 0);
    }

    let page = report.page.as_ref().expect("the join page was measured");
    assert_eq!(page.latency.count, options.page_requests as usize);
    assert!(page.bytes > 0);
    assert_eq!(page.encoding, "br", "the join page goes out compressed to a browser that accepts brotli");

    let markdown = report.markdown("chart.svg");
    for heading in ["## Machine", "## Targets", "## Causerie / Node", "## 1. Fan-out", "## 2. Idle", "## 3. Connect"] {
        assert!(markdown.contains(heading), "the report has {heading}");
    }
    let svg = report.svg();
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == targets.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovering_clients_get_every_acknowledged_message_once_and_in_order_through_cuts_and_a_restart() {
    let launcher = launcher();
    let mut results = Vec::new();
    for run in causerie_bench::chaos::runs(true) {
        let result = causerie_bench::chaos::chaos(&launcher, run.target, &run.config).await.expect("the run completes");
        assert!(result.cuts > 0, "{}: the network cut connections", run.title);
        assert!(result.acknowledged > 0, "{}: messages were acknowledged", run.title);
        if run.config.recovery {
            assert_eq!(result.abandoned, 0, "{}: a recovering sender gives up on nothing", run.title);
            assert_eq!(result.delivered, result.expected, "{}: everything acknowledged arrived", run.title);
            assert_eq!((result.duplicates, result.order_violations), (0, 0), "{}", run.title);
        }
        results.push((run, result));
    }
    let machine = causerie_bench::report::Machine::read(&launcher);
    let markdown = causerie_bench::chaos::markdown(&machine, &results);
    assert!(markdown.contains("## Jitter chaos") && markdown.matches("| Jitter").count() == results.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_keep_chatting_through_an_attack_and_the_server_never_panics() {
    let config = causerie_bench::attack::config(true);
    let result = causerie_bench::attack::attack(&launcher(), &config).await.expect("the attack run completes");
    assert!(result.people_acknowledged > 0, "the people talked");
    assert_eq!(result.people_delivered, result.people_expected, "every message of theirs arrived");
    assert_eq!(result.panics, 0, "the server never panicked");
    let waves = causerie_bench::attack::WAVES as u64;
    assert_eq!(result.malformed_sent, waves * u64::from(config.malformed_connections * config.malformed_rounds));
    assert_eq!(result.rss_after_waves.len() as u64, waves);
    assert!(result.malformed_cut_off > 0, "malformed packets end their connections");
    assert_eq!(result.handshakes_opened, waves * u64::from(config.abandoned_handshakes));
    assert!(causerie_bench::attack::markdown(&result).contains("## Attack"));
}
