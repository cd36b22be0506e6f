//! Several Causerie nodes behind nginx, sharing one Redis and one Postgres, each service on a free loopback port:
//! for the multi-node tests (`bench/tests/cluster.rs`) and the fan-out benchmark on two nodes.
//!
//! The services come from Debian's packages through `scripts/test-service`, which stops each one when its stdin
//! closes: when the [`Service`] is dropped, or when this process ends in any way.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use anyhow::{Context as _, bail};

use crate::target::{Launcher, Server, Target, free_port};

/// A service started by `scripts/test-service`.
pub struct Service {
    pub port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Service {
    /// Starts `scripts/test-service <args>` and waits for its `ready <port>`.
    pub async fn start(args: Vec<String>) -> anyhow::Result<Service> {
        tokio::task::spawn_blocking(move || Self::start_blocking(&args)).await.context("starting a service")?
    }

    fn start_blocking(args: &[String]) -> anyhow::Result<Service> {
        let script = repository().join("scripts/test-service");
        let mut child = Command::new(&script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", script.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the service's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).context("reading the service's first line")?;
        let Some(port) = line.strip_prefix("ready ").and_then(|port| port.trim().parse().ok()) else {
            bail!("`scripts/test-service {}` did not start (see its output above)", args.join(" "));
        };
        Ok(Service { port, child, stdin })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Closing its stdin is the signal to stop; wait until it has, so that ports and files are free after.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The repository's root (this crate is `bench/` in it).
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A running cluster. Dropping it stops everything.
pub struct Cluster {
    pub nodes: Vec<Server>,
    pub nginx: Service,
    /// `None` while stopped by [`Cluster::stop_redis`].
    redis: Option<Service>,
    redis_port: u16,
    pub postgres: Service,
    /// The flags each node was started with (`--redis-url`, `--database-url`, and the caller's).
    pub node_args: Vec<String>,
}

impl Cluster {
    /// Starts Postgres, Redis, `nodes` Causerie nodes using both, and nginx in front of them with
    /// docs/deploy/nginx.conf (scripts/test-service puts the nodes in it). `extra` are more flags for every node.
    pub async fn start(launcher: &Launcher, nodes: usize, extra: &[String]) -> anyhow::Result<Cluster> {
        Self::start_with(launcher, nodes, true, extra).await
    }

    /// As [`Cluster::start`]; without `redis`, the nodes are not told of Redis (for one node on Postgres alone,
    /// the baseline of the benchmark; Redis still runs, unused).
    pub async fn start_with(
        launcher: &Launcher,
        nodes: usize,
        redis: bool,
        extra: &[String],
    ) -> anyhow::Result<Cluster> {
        let postgres = Service::start(vec!["postgres".into()]).await?;
        let redis_service = Service::start(vec!["redis".into()]).await?;
        let mut node_args =
            vec!["--database-url".to_owned(), format!("postgres://causerie@127.0.0.1:{}/postgres", postgres.port)];
        if redis {
            node_args.extend(["--redis-url".to_owned(), format!("redis://127.0.0.1:{}", redis_service.port)]);
        }
        let redis_port = redis_service.port;
        let redis = Some(redis_service);
        node_args.extend(extra.iter().cloned());
        let mut started = Vec::new();
        for _ in 0..nodes {
            started.push(Server::start_with(launcher, Target::CauserieNode, &node_args).await?);
        }
        let mut nginx = vec!["nginx".to_owned(), free_port()?.to_string()];
        nginx.extend(started.iter().map(|node| node.port.to_string()));
        let nginx = Service::start(nginx).await?;
        Ok(Cluster { nodes: started, nginx, redis, redis_port, postgres, node_args })
    }

    /// Stops Redis, as an outage would (the nodes go on without it).
    pub fn stop_redis(&mut self) {
        drop(self.redis.take());
    }

    /// Starts Redis again on the port it had.
    pub async fn start_redis(&mut self) -> anyhow::Result<()> {
        self.redis = Some(Service::start(vec!["redis".into(), self.redis_port.to_string()]).await?);
        Ok(())
    }

    /// Where clients connect: nginx.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.nginx.port)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The fan-out benchmark on one node and on two

/// One setup of the comparison.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Setup {
    pub label: &'static str,
    pub nodes: usize,
    pub redis: bool,
}

/// What the comparison runs: one node on Postgres alone, the same with the Redis adapter, and two nodes.
pub const SETUPS: [Setup; 3] = [
    Setup { label: "1 node, Postgres", nodes: 1, redis: false },
    Setup { label: "1 node, Postgres + Redis", nodes: 1, redis: true },
    Setup { label: "2 nodes, Postgres + Redis", nodes: 2, redis: true },
];

/// The fan-out scenario of docs/benchmarks.md against each [`SETUPS`], the users spread over the nodes (each
/// room has people on every node, so that every message crosses Redis). Clients connect to the nodes directly:
/// nginx would take CPU from the same two cores and measure itself.
pub async fn fanout_comparison(
    launcher: &Launcher,
    config: &crate::scenarios::FanoutConfig,
) -> anyhow::Result<Vec<(Setup, crate::scenarios::FanoutResult)>> {
    let mut results = Vec::new();
    for setup in SETUPS {
        eprintln!("{}: fan-out under rising load", setup.label);
        let cluster = Cluster::start_with(launcher, setup.nodes, setup.redis, &[]).await?;
        let servers: Vec<&Server> = cluster.nodes.iter().collect();
        results.push((setup, crate::scenarios::fanout_on(Target::CauserieNode, &servers, config).await?));
    }
    Ok(results)
}

/// The comparison as Markdown: docs/benchmarks-cluster.md.
pub fn markdown(
    machine: &crate::report::Machine,
    config: &crate::scenarios::FanoutConfig,
    results: &[(Setup, crate::scenarios::FanoutResult)],
) -> String {
    use std::fmt::Write as _;
    let mut md = String::new();
    let _ = writeln!(md, "# Fan-out on two nodes against one\n");
    let _ = writeln!(
        md,
        "Written by `scripts/bench --cluster` (`causerie-bench cluster`) at commit {} on {}. {} rooms × {} users \
         over WebSocket, each step {} s, the rate rising until p99 passes {} ms. Every setup stores in Postgres; \
         the users of each room are spread over the nodes, so that with two nodes every message crosses Redis. \
         CPU is the Causerie nodes' (Redis and Postgres not counted), in µs per delivery.\n",
        machine.commit,
        machine.date,
        config.rooms,
        config.users_per_room,
        config.step.as_secs_f64(),
        config.stop_p99_ms
    );
    let _ = writeln!(md, "Machine: {} ({} cores), {}.\n", machine.cpu, machine.cores, machine.kernel);
    let _ = writeln!(
        md,
        "| Setup | Best deliveries/s at p99 ≤ {} ms | its p99 (ms) | node CPU per delivery |",
        config.stop_p99_ms
    );
    let _ = writeln!(md, "|---|---|---|---|");
    for (setup, result) in results {
        match result.best(config.stop_p99_ms) {
            Some(best) => {
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.1} | {:.1} µs |",
                    setup.label, best.deliveries_per_second, best.latency.p99, best.cpu_micros_per_delivery
                );
            }
            None => {
                let _ = writeln!(md, "| {} | no step within the limit | | |", setup.label);
            }
        }
    }
    let _ = writeln!(md, "\n## Every step\n");
    let mut header = "| Sends/s |".to_owned();
    let mut rule = "|---|".to_owned();
    for (setup, _) in results {
        let _ = write!(header, " {} p99 (ms) | deliveries/s |", setup.label);
        rule.push_str("---|---|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    // Every rate any setup ran, the refinements near each one's limit included.
    let mut rates: Vec<u32> = results.iter().flat_map(|(_, r)| r.steps.iter().map(|s| s.sends_per_second)).collect();
    rates.sort_unstable();
    rates.dedup();
    for rate in rates {
        let mut row = format!("| {rate} |");
        let mut any = false;
        for (_, result) in results {
            match result.steps.iter().find(|step| step.sends_per_second == rate) {
                Some(step) => {
                    any = true;
                    let lost = if step.lost + step.failed > 0 {
                        format!(" ({} lost, {} failed)", step.lost, step.failed)
                    } else {
                        String::new()
                    };
                    let _ = write!(row, " {:.1}{lost} | {:.0} |", step.latency.p99, step.deliveries_per_second);
                }
                None => row.push_str(" | |"),
            }
        }
        if any {
            let _ = writeln!(md, "{row}");
        }
    }
    md
}
