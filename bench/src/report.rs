//! `docs/benchmarks.md` and its chart, written from a [`Report`].

use std::fmt::Write as _;

use crate::scenarios::{BROWSER_ACCEPT_ENCODING, FanoutResult};
use crate::target::{Launcher, Target};
use crate::{Report, scenarios};

/// Where the figures come from.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub rustc: String,
    pub node: String,
    pub socket_io: String,
    pub commit: String,
    pub date: String,
    pub server_cpus: Option<String>,
}

fn output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Machine {
    pub fn read(launcher: &Launcher) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let socket_io =
            std::fs::read_to_string(launcher.node_peer.with_file_name("node_modules/socket.io/package.json"))
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|json| json.get("version").and_then(|v| v.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned());
        Machine {
            cpu: field(&cpuinfo, "model name"),
            // The machine's, from /proc: the generator itself runs pinned to some of them, and
            // `available_parallelism` would count only those.
            cores: match cpuinfo.lines().filter(|line| line.starts_with("processor")).count() {
                0 => std::thread::available_parallelism().map_or(0, usize::from),
                counted => counted,
            },
            memory: field(&meminfo, "MemTotal"),
            kernel: output("uname", &["-sr"]),
            rustc: output("rustc", &["--version"]),
            node: output("node", &["--version"]),
            socket_io,
            commit: output("git", &["rev-parse", "--short", "HEAD"]),
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            server_cpus: launcher.server_cpus.clone(),
        }
    }
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}

fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 && ours.is_finite() { format!("{:.2}×", ours / theirs) } else { "n/a".to_owned() }
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "not met" }
}

impl Report {
    fn fanout_of(&self, target: Target) -> Option<&FanoutResult> {
        self.fanout.iter().find(|f| f.target == target)
    }

    fn best(&self, target: Target) -> Option<&scenarios::FanoutStep> {
        self.fanout_of(target).and_then(|f| f.best(self.options.fanout.stop_p99_ms))
    }

    /// The highest send rate every target sustained (every message delivered, p99 within the limit).
    fn common_rate(&self) -> Option<u32> {
        let limit = self.options.fanout.stop_p99_ms;
        let sustained = |f: &FanoutResult| -> Vec<u32> {
            f.steps.iter().filter(|s| s.within(limit)).map(|s| s.sends_per_second).collect()
        };
        let first = sustained(self.fanout.first()?);
        first.into_iter().filter(|rate| self.fanout.iter().all(|f| sustained(f).contains(rate))).max()
    }

    /// A target's p99 at the rate where Node reached its maximum, and Node's p99 there: each the median of the
    /// climb's step at that rate and the repeats after it (see `FanoutConfig::repeats`).
    fn p99_at_node_max(&self, target: Target) -> Option<(f64, f64)> {
        let rate = self.best(Target::Node)?.sends_per_second;
        let ours = self.fanout_of(target)?.median_p99_at(rate)?;
        let theirs = self.fanout_of(Target::Node)?.median_p99_at(rate)?;
        Some((ours, theirs))
    }

    /// Every p99 measured at Node's maximum for `target`, as text ("2.1, 1.8 and 2.4 ms").
    fn p99s_at_node_max(&self, target: Target) -> Option<String> {
        let rate = self.best(Target::Node)?.sends_per_second;
        let p99s: Vec<String> = self.fanout_of(target)?.p99s_at(rate).iter().map(|p| format!("{p:.1}")).collect();
        Some(match p99s.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last} ms", rest.join(", ")),
            _ => format!("{} ms", p99s.join("")),
        })
    }

    /// Every figure as JSON, to compare runs side by side (`jq`, `diff`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "machine": self.machine,
            "fanout": self.fanout,
            "idle": self.idle,
            "storm": self.storm,
            "durable": self.durable,
            "page": self.page,
            "wasm": self.wasm,
        })
    }

    /// The Markdown page; `chart` is the SVG's file name, next to the page.
    pub fn markdown(&self, chart: &str) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let o = &self.options;
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Written by `scripts/bench` (the load generator in `bench/`) on {}, at commit `{}`. Do not edit by hand: \
             run it again. What limits these figures, and what was tuned: [performance.md](performance.md).\n",
            m.date, m.commit
        );
        let _ = writeln!(md, "## Machine\n");
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| CPU | {} ({} cores) |", m.cpu, m.cores);
        let _ = writeln!(md, "| Memory | {} |", m.memory);
        let _ = writeln!(md, "| Kernel | {} |", m.kernel);
        let _ = writeln!(md, "| Rust | {} |", m.rustc);
        let _ = writeln!(md, "| Node.js | {}, Socket.IO {} |", m.node, m.socket_io);
        let pinning = match &m.server_cpus {
            Some(cpus) => format!("server on CPU {cpus}, load generator on the others (`taskset`)"),
            None => "none: server and load generator share every core".to_owned(),
        };
        let _ = writeln!(md, "| Pinning | {pinning} |\n");

        let _ = writeln!(md, "## Targets\n");
        let _ = writeln!(md, "| Goal (issue #6) | Reached | |\n|---|---|---|");
        let causerie = self.best(Target::Causerie);
        let node = self.best(Target::Node);
        if let (Some(ours), Some(theirs)) = (causerie, node) {
            let r = ours.deliveries_per_second / theirs.deliveries_per_second;
            let _ = writeln!(
                md,
                "| ≥ 4× Node's maximum deliveries/s at p99 ≤ {} ms | {:.0} vs {:.0} deliveries/s: {r:.2}× | {} |",
                o.fanout.stop_p99_ms,
                ours.deliveries_per_second,
                theirs.deliveries_per_second,
                met(r >= 4.0)
            );
        }
        if let (Some((ours, theirs)), Some(rate)) =
            (self.p99_at_node_max(Target::Causerie), node.map(|n| n.sends_per_second))
        {
            let _ = writeln!(
                md,
                "| p99 ≤ ¼ of Node's at Node's maximum load | {ours:.1} ms vs {theirs:.1} ms: {} (medians at {rate} \
                 sends/s: Causerie {}, Node {}) | {} |",
                ratio(ours, theirs),
                self.p99s_at_node_max(Target::Causerie).unwrap_or_default(),
                self.p99s_at_node_max(Target::Node).unwrap_or_default(),
                met(ours <= theirs / 4.0)
            );
        }
        for idle in self.idle.iter().filter(|i| i.target != Target::Node) {
            let _ = writeln!(
                md,
                "| ≤ 20 KiB of RSS per idle WebSocket connection ({}, {} connections, {}) | {} | {} |",
                idle.target.label(),
                idle.connections,
                rooms_holding(idle.history),
                kib(idle.bytes_per_connection),
                met(idle.bytes_per_connection <= 20.0 * 1024.0)
            );
        }
        for storm in self.storm.iter().filter(|s| s.target == Target::CauserieSqlite) {
            let ok = storm.back == storm.clients && storm.seconds_all_back <= 5.0 && storm.lost_after == 0;
            let _ = writeln!(
                md,
                "| After a connect storm and a restart, all {} clients back within 5 s, nothing lost ({}) | {}/{} \
                 back in {:.2} s; {} lost; {}/{} acknowledged messages kept | {} |",
                storm.clients,
                storm.target.label(),
                storm.back,
                storm.clients,
                storm.seconds_all_back,
                storm.lost_after,
                storm.kept_after_restart,
                storm.acked_before,
                met(ok)
            );
        }
        if let Some(wasm) = &self.wasm {
            let served = match wasm.brotli_bytes {
                Some(brotli) => format!("; the server sends {brotli} bytes, brotli"),
                None => "; not precompressed, so the server sends it raw".to_owned(),
            };
            let _ = writeln!(
                md,
                "| Release WASM ≤ 300 KB gzipped | {} bytes gzipped ({} raw{served}) | {} |",
                wasm.gzip_bytes,
                wasm.bytes,
                met(wasm.gzip_bytes <= 300_000)
            );
        }
        if let Some(page) = &self.page {
            let _ = writeln!(
                md,
                "| Join page rendered in ≤ 2 ms | p50 {:.2} ms, p99 {:.2} ms (`GET {}`, {} bytes as sent, {}, over \
                 loopback) | {} |",
                page.latency.p50,
                page.latency.p99,
                page.path,
                page.bytes,
                page.encoding,
                met(page.latency.p99 <= 2.0)
            );
        }

        let _ = writeln!(md, "\n## Causerie / Node\n");
        let _ =
            writeln!(md, "| Measure | Causerie, in memory | Causerie, SQLite | Node.js | Ratio (in memory / Node) |");
        let _ = writeln!(md, "|---|---|---|---|---|");
        let by = |target: Target| self.best(target).map(|s| s.deliveries_per_second);
        let cell = |v: Option<f64>, unit: &str| v.map_or("n/a".to_owned(), |v| format!("{v:.1}{unit}"));
        let row = |md: &mut String, name: &str, values: [Option<f64>; 3], unit: &str| {
            let r = match (values[0], values[2]) {
                (Some(ours), Some(theirs)) => ratio(ours, theirs),
                _ => "n/a".to_owned(),
            };
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {r} |",
                cell(values[0], unit),
                cell(values[1], unit),
                cell(values[2], unit)
            );
        };
        let targets = [Target::Causerie, Target::CauserieSqlite, Target::Node];
        row(&mut md, "Maximum deliveries/s at p99 ≤ 100 ms", targets.map(by), "");
        row(
            &mut md,
            "p99 at Node's maximum load, the median of its steps there (ms)",
            targets.map(|t| self.p99_at_node_max(t).map(|(ours, _)| ours)),
            "",
        );
        if let Some(rate) = self.common_rate() {
            let cost = |t: Target| {
                self.fanout_of(t)?.steps.iter().find(|s| s.sends_per_second == rate).map(|s| s.cpu_micros_per_delivery)
            };
            row(&mut md, &format!("Server CPU per delivery at {rate} sends/s (µs)"), targets.map(cost), "");
        }
        // What each server used at its own top step: a server below a full core there was held back by the load
        // generator, not by itself.
        row(
            &mut md,
            "Server CPU at its top step (% of its core)",
            targets.map(|t| self.best(t).map(|s| s.cpu_percent)),
            "",
        );
        row(
            &mut md,
            "Server CPU per delivery at its top step (µs)",
            targets.map(|t| self.best(t).map(|s| s.cpu_micros_per_delivery)),
            "",
        );
        let idle = |t: Target, history: u32| {
            self.idle.iter().find(|i| i.target == t && i.history == history).map(|i| i.bytes_per_connection / 1024.0)
        };
        row(&mut md, "RSS per idle connection (KiB)", targets.map(|t| idle(t, 0)), "");
        if o.idle_history > 0 && self.idle.iter().any(|i| i.history == o.idle_history) {
            let label = format!("RSS per idle connection, {} (KiB)", rooms_holding(o.idle_history));
            row(&mut md, &label, targets.map(|t| idle(t, o.idle_history)), "");
        }
        let storm = |t: Target| self.storm.iter().find(|s| s.target == t);
        row(&mut md, "Connect storm: all joined (s)", targets.map(|t| storm(t).map(|s| s.seconds_all_joined)), "");
        row(&mut md, "After a restart: all back (s)", targets.map(|t| storm(t).map(|s| s.seconds_all_back)), "");
        let durable = |t: Target| self.durable.iter().find(|d| d.target == t);
        row(&mut md, "Send → ack, one user: p50 (ms)", targets.map(|t| durable(t).map(|d| d.single.p50)), "");
        row(
            &mut md,
            &format!("Send → ack, {} users at once: acks/s", self.options.durable_users),
            targets.map(|t| durable(t).map(|d| d.concurrent_per_second)),
            "",
        );

        let _ = writeln!(md, "\n## 1. Fan-out under rising load\n");
        let _ = writeln!(
            md,
            "{} rooms × {} users, all on WebSocket; every message goes to the {} others in its room. Each step \
             sends at a fixed total rate for {:.0} s, each user on its own schedule (not waiting for acks), and \
             stops once p99 passes {} ms or a message goes missing; then {} more steps, each halfway between the \
             highest rate within the limit and the lowest past it, find the limit more closely. Node runs first, \
             and the others' climbs pass through its maximum, where the p99s are compared: after its climb, each \
             target runs that rate {} more times, and the p99 compared is the median of those steps and the \
             climb's (near a limit, one step's p99 is one draw of a figure that jumps between a few milliseconds \
             and a hundred). Latency is from the sender's send to a receiver's decode, for every delivery.\n",
            o.fanout.rooms,
            o.fanout.users_per_room,
            o.fanout.users_per_room.saturating_sub(1),
            o.fanout.step.as_secs_f64(),
            o.fanout.stop_p99_ms,
            o.fanout.refine,
            o.fanout.repeats
        );
        let _ = writeln!(md, "![p99 latency against deliveries per second]({chart})\n");
        for result in &self.fanout {
            let _ = writeln!(
                md,
                "**{}**: {} connections, joined in p50 {:.1} ms / p99 {:.1} ms.\n",
                result.target.label(),
                result.connections,
                result.connect.p50,
                result.connect.p99
            );
            let _ = writeln!(
                md,
                "| sends/s | deliveries/s | p50 | p99 | p99.9 | ack p99 | lost | dup | server CPU | CPU/delivery | server RSS |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
            for s in &result.steps {
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} | {:.0}% | {:.1} µs | {} |",
                    s.sends_per_second,
                    s.deliveries_per_second,
                    s.latency.p50,
                    s.latency.p99,
                    s.latency.p999,
                    s.ack.p99,
                    s.lost,
                    s.duplicates,
                    s.cpu_percent,
                    s.cpu_micros_per_delivery,
                    mib(s.rss_bytes)
                );
            }
            if let Some(first) = result.repeats.first() {
                let p99s: Vec<String> = result.repeats.iter().map(|s| format!("{:.1} ms", s.latency.p99)).collect();
                let _ = writeln!(
                    md,
                    "\nAgain at {} sends/s after the climb, where the p99s are compared: p99 {}.",
                    first.sends_per_second,
                    p99s.join(", ")
                );
            }
            let others: Vec<&FanoutResult> = self.fanout.iter().filter(|f| f.target != result.target).collect();
            match what_stopped(result, o.fanout.stop_p99_ms, m.server_cpus.is_some(), &others) {
                Some(note) => {
                    let _ = writeln!(md, "\n{note}");
                }
                None if !result.steps.is_empty() => {
                    // A ratio of ours to Node's is then understated if the climb was ours, overstated if Node's.
                    let ratios = if result.target == Target::Node { "overstate" } else { "understate" };
                    let _ = writeln!(
                        md,
                        "\nEvery step was within the limit: its maximum is at least the last one, and the ratios \
                         to Node above {ratios} Causerie's lead."
                    );
                }
                None => {}
            }
            let _ = writeln!(md);
        }

        let _ = writeln!(md, "## 2. Idle connections\n");
        let _ = writeln!(
            md,
            "WebSocket clients, each signed in and in a room of 100, then idle (heartbeats only). RSS per connection \
             is the server's growth from one connection to all of them, divided by their number. Each target runs \
             twice: in new rooms, and in rooms that already hold {} messages of 100 characters, whose latest every \
             join's answer then carries, as it does in a room in use (as many as the server puts in one answer: \
             the column \"messages per join\").\n",
            o.idle_history
        );
        let _ = writeln!(
            md,
            "| Target | rooms | messages per join | connections | joins unanswered | RSS before | RSS after | per connection | \
             connecting all | idle CPU |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        for i in &self.idle {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} s | {:.1}% |",
                i.target.label(),
                rooms_holding(i.history),
                i.history_seen,
                i.connections,
                i.failed,
                mib(i.rss_before),
                mib(i.rss_after),
                kib(i.bytes_per_connection),
                i.seconds_to_connect_all,
                i.idle_cpu_percent
            );
        }

        let _ = writeln!(md, "\n## 3. Connect storm and restart\n");
        let _ = writeln!(
            md,
            "{} clients start at once, as browsers do (long-polling, then the upgrade to WebSocket), in rooms of {}. \
             Each room's first user sends one message and gets its ack. The server is then killed (SIGKILL) and \
             started again on the same port; the clients reconnect on their own (sio-client's defaults, as in the \
             app: 1 s backoff, up to 5 s, ±50%), over WebSocket at once since it worked before (`remember_upgrade`, \
             as the app does), and join again; a join left unanswered for 30 s is asked again \
             (counted below). Then each room's first user sends again.\n",
            o.storm_clients, o.storm_per_room
        );
        let _ = writeln!(
            md,
            "| Target | all joined | all back after restart | back | acked before, kept | lost after | joins asked again | \
             server CPU, joining / back |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        for s in &self.storm {
            let _ = writeln!(
                md,
                "| {} | {:.2} s | {:.2} s | {}/{} | {}/{} | {} of {} | {} | {:.2} s / {:.2} s |",
                s.target.label(),
                s.seconds_all_joined,
                s.seconds_all_back,
                s.back,
                s.clients,
                s.kept_after_restart,
                s.acked_before,
                s.lost_after,
                s.expected_after,
                s.join_retries,
                s.server_cpu_seconds_joining,
                s.server_cpu_seconds_back
            );
        }

        let _ = writeln!(md, "\n## 4. Send → ack\n");
        let _ = writeln!(
            md,
            "Each user sends, waits for the ack, and sends again, for {:.0} s: first one user alone, then {} users \
             at once. With SQLite, an ack means the message is committed (`synchronous=FULL`); commits are grouped.\n",
            o.durable_for.as_secs_f64(),
            o.durable_users
        );
        let _ = writeln!(
            md,
            "| Target | one user: p50 | p99 | acks/s | {} users: p50 | p99 | acks/s | failed |",
            o.durable_users
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
        for d in &self.durable {
            let _ = writeln!(
                md,
                "| {} | {:.2} ms | {:.2} ms | {:.0} | {:.2} ms | {:.2} ms | {:.0} | {} |",
                d.target.label(),
                d.single.p50,
                d.single.p99,
                d.single_per_second,
                d.concurrent.p50,
                d.concurrent.p99,
                d.concurrent_per_second,
                d.failed
            );
        }
        if let Some(page) = &self.page {
            let _ = writeln!(md, "\n## 5. The join page\n");
            let _ = writeln!(
                md,
                "`GET {}` {} times in a row over one kept-alive loopback connection, asking as a browser does \
                 (`Accept-Encoding: {BROWSER_ACCEPT_ENCODING}`), timed at the client: p50 {:.2} ms, p99 {:.2} ms, \
                 p99.9 {:.2} ms, {} bytes of HTML as sent ({}).",
                page.path,
                page.latency.count,
                page.latency.p50,
                page.latency.p99,
                page.latency.p999,
                page.bytes,
                page.encoding
            );
        }
        md
    }

    /// p99 latency (log scale) against deliveries per second, one line per target.
    pub fn svg(&self) -> String {
        let (width, height) = (720.0, 420.0);
        let (left, right, top, bottom) = (70.0, 20.0, 30.0, 50.0);
        let max_x =
            self.fanout.iter().flat_map(|f| &f.steps).map(|s| s.deliveries_per_second).fold(1.0_f64, f64::max) * 1.05;
        let (min_y, max_y) = (0.1_f64, 10_000.0_f64);
        let x = |v: f64| left + (v / max_x) * (width - left - right);
        let y = |ms: f64| {
            let ms = ms.clamp(min_y, max_y);
            top + (1.0 - (ms.log10() - min_y.log10()) / (max_y.log10() - min_y.log10())) * (height - top - bottom)
        };
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="18" text-anchor="middle" font-size="14">p99 delivery latency against deliveries per second</text>"#,
            width / 2.0
        );
        for ms in [0.1, 1.0, 10.0, 100.0, 1000.0, 10_000.0] {
            let yy = y(ms);
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{ms} ms</text>"##,
                width - right,
                left - 6.0,
                yy + 4.0
            );
        }
        let limit = y(self.options.fanout.stop_p99_ms);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{limit:.1}" x2="{:.1}" y2="{limit:.1}" stroke="#c00" stroke-dasharray="4 4"/>"##,
            width - right
        );
        for i in 0..=5 {
            let v = max_x * f64::from(i) / 5.0;
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.0}k</text>"#,
                x(v),
                height - bottom + 18.0,
                v / 1000.0
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">deliveries per second</text>"#,
            (left + width - right) / 2.0,
            height - 10.0
        );
        let colours = ["#1f77b4", "#2ca02c", "#d62728"];
        for (n, result) in self.fanout.iter().enumerate() {
            let colour = colours[n % colours.len()];
            let points: Vec<String> = result
                .steps
                .iter()
                .map(|s| format!("{:.1},{:.1}", x(s.deliveries_per_second), y(s.latency.p99)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
            for point in &points {
                let (px, py) = point.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(svg, r#"<circle cx="{px}" cy="{py}" r="3" fill="{colour}"/>"#);
            }
            let ly = top + 16.0 * n as f64 + 10.0;
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="12" height="3" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                left + 12.0,
                ly - 4.0,
                left + 30.0,
                ly,
                result.target.label()
            );
        }
        let _ = writeln!(svg, "</svg>");
        svg
    }
}

/// A server whose core is this full or more at the first step past the limit is what stopped the climb.
const FULL_CORE_PERCENT: f64 = 90.0;

/// Says what stopped a target's climb at its first step past the limit: messages lost, refused or duplicated;
/// the server's core full; or, with the server pinned to cores of its own and CPU to spare there, the load
/// generator on the others. `None` when no step went past the limit.
fn what_stopped(result: &FanoutResult, stop_p99_ms: f64, pinned: bool, others: &[&FanoutResult]) -> Option<String> {
    let (index, past) = result.steps.iter().enumerate().find(|(_, s)| !s.within(stop_p99_ms))?;
    let (rate, cpu) = (past.sends_per_second, past.cpu_percent);
    let at = if index == 0 {
        format!("No step was within the limit: at the first, {rate} sends/s,")
    } else {
        format!("At {rate} sends/s, past the limit,")
    };
    let wrong = past.lost + past.failed + past.duplicates;
    Some(if wrong > 0 {
        format!(
            "{at} {} messages went missing, {} were refused and {} came twice: that stopped the climb, whatever \
             the latency.",
            past.lost, past.failed, past.duplicates
        )
    } else if cpu >= FULL_CORE_PERCENT {
        format!("{at} the server used {cpu:.0}% of its core: the server was the limit.")
    } else if let Some((other, further)) = others
        .iter()
        .filter_map(|other| Some((other.target, other.best(stop_p99_ms)?.sends_per_second)))
        .filter(|(_, sustained)| *sustained >= rate)
        .max_by_key(|(_, sustained)| *sustained)
    {
        format!(
            "{at} the server used {cpu:.0}% of its core, and the same load generator took {} to {further} sends/s \
             within the limit: the server's latency stopped the climb, not its CPU or the generator.",
            other.label()
        )
    } else if pinned {
        format!(
            "{at} the server used only {cpu:.0}% of its core: what stopped the climb was the load generator, on \
             the other cores, not the server's CPU."
        )
    } else {
        format!(
            "{at} the server used {cpu:.0}% of a core. The server and the load generator shared every core in \
             this run, so which of them stopped the climb is not told apart."
        )
    })
}

/// How the idle scenario's rooms were filled, in words for a table.
fn rooms_holding(history: u32) -> String {
    match history {
        0 => "new rooms".to_owned(),
        1 => "rooms of 1 message".to_owned(),
        n => format!("rooms of {n} messages"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latency;

    fn step(sends_per_second: u32, p99: f64, cpu_percent: f64) -> scenarios::FanoutStep {
        scenarios::FanoutStep::sample(sends_per_second, p99, cpu_percent)
    }

    fn climb(steps: Vec<scenarios::FanoutStep>) -> FanoutResult {
        FanoutResult { target: Target::Causerie, connections: 200, connect: Latency::default(), steps, repeats: vec![] }
    }

    #[test]
    fn a_climb_stopped_with_the_servers_core_to_spare_is_put_down_to_the_load_generator() {
        let climb = climb(vec![step(1000, 5.0, 40.0), step(2000, 150.0, 54.0)]);
        let note = what_stopped(&climb, 100.0, true, &[]).unwrap();
        assert!(note.starts_with("At 2000 sends/s, past the limit,"), "{note}");
        assert!(note.contains("only 54% of its core") && note.contains("load generator"), "{note}");
        let unpinned = what_stopped(&climb, 100.0, false, &[]).unwrap();
        assert!(unpinned.contains("not told apart") && !unpinned.contains("was the load generator"), "{unpinned}");
    }

    #[test]
    fn a_climb_stopped_with_cpu_to_spare_where_another_server_went_further_is_put_down_to_the_server_latency() {
        let stopped = climb(vec![step(3000, 20.0, 70.0), step(4000, 150.0, 85.0)]);
        let mut further = climb(vec![step(3000, 2.0, 30.0), step(4000, 3.0, 40.0), step(14000, 90.0, 88.0)]);
        further.target = Target::CauserieSqlite;
        let note = what_stopped(&stopped, 100.0, true, &[&further]).unwrap();
        assert!(note.contains("took Causerie, SQLite to 14000 sends/s"), "{note}");
        assert!(note.contains("the server's latency stopped the climb") && !note.contains("was the load generator"));
    }

    #[test]
    fn a_climb_stopped_with_the_servers_core_full_is_put_down_to_the_server() {
        let note =
            what_stopped(&climb(vec![step(1000, 5.0, 60.0), step(2000, 150.0, 97.0)]), 100.0, true, &[]).unwrap();
        assert!(note.contains("97% of its core: the server was the limit"), "{note}");
    }

    #[test]
    fn a_climb_stopped_by_lost_messages_says_so_whatever_the_cpu() {
        let mut lossy = step(2000, 5.0, 30.0);
        lossy.lost = 3;
        let note = what_stopped(&climb(vec![step(1000, 5.0, 20.0), lossy]), 100.0, true, &[]).unwrap();
        assert!(note.contains("3 messages went missing") && !note.contains("generator"), "{note}");
    }

    #[test]
    fn a_climb_whose_first_step_failed_says_no_step_was_within_the_limit() {
        let note = what_stopped(&climb(vec![step(250, 150.0, 97.0)]), 100.0, true, &[]).unwrap();
        assert!(note.starts_with("No step was within the limit: at the first, 250 sends/s,"), "{note}");
    }

    #[test]
    fn a_climb_that_never_passed_the_limit_says_nothing_of_what_stopped_it() {
        assert_eq!(what_stopped(&climb(vec![step(1000, 5.0, 40.0)]), 100.0, true, &[]), None);
        assert_eq!(what_stopped(&climb(vec![]), 100.0, true, &[]), None);
    }
}
