//! The servers under test, each in a process of its own so that its CPU time and memory can be read from /proc:
//! Causerie (through `causerie-bench serve`, which runs the `causerie` binary's own code) and the reference
//! Node.js Socket.IO peer in `bench/peers/node/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

/// A server the benchmark can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Causerie with `--in-memory`: no persistence, like the Node peer.
    Causerie,
    /// Causerie with its default SQLite store: every message committed before it is acknowledged.
    CauserieSqlite,
    /// The reference: Node.js with Socket.IO 4.x, in memory.
    Node,
    /// One node of several: Causerie with `--redis-url` and `--database-url` (give them as extra flags).
    CauserieNode,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Target::Causerie => "Causerie, in memory",
            Target::CauserieSqlite => "Causerie, SQLite",
            Target::Node => "Node.js Socket.IO, in memory",
            Target::CauserieNode => "Causerie node, Redis + Postgres",
        }
    }

    /// Whether acknowledged messages survive a restart.
    pub fn durable(self) -> bool {
        matches!(self, Target::CauserieSqlite | Target::CauserieNode)
    }
}

/// How to start servers.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// This benchmark's own executable, which runs Causerie with `serve`.
    pub bench_exe: PathBuf,
    /// `bench/peers/node/server.js`.
    pub node_peer: PathBuf,
    /// Databases and server logs go here.
    pub work_dir: PathBuf,
    /// CPUs to pin the servers to (`taskset -c`), so that they do not share a core with the load generator.
    pub server_cpus: Option<String>,
    /// A command each server runs under, such as a profiler; empty for none.
    pub server_wrapper: Vec<String>,
}

impl Launcher {
    /// `bench_exe` is the `causerie-bench` binary (it runs Causerie); the Node peer is the one in this crate.
    pub fn new(bench_exe: PathBuf, work_dir: PathBuf, server_cpus: Option<String>) -> anyhow::Result<Self> {
        let node_peer = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/node/server.js");
        if !node_peer.with_file_name("node_modules").join("socket.io").is_dir() {
            bail!(
                "the Node.js peer is not installed: run `npm ci` in {}",
                node_peer.parent().unwrap_or(&node_peer).display()
            );
        }
        std::fs::create_dir_all(&work_dir).with_context(|| format!("creating {}", work_dir.display()))?;
        Ok(Self { bench_exe, node_peer, work_dir, server_cpus, server_wrapper: Vec::new() })
    }
}

/// A running server.
pub struct Server {
    pub target: Target,
    pub port: u16,
    child: Child,
    launcher: Launcher,
    database: PathBuf,
    /// More flags for Causerie, kept for a restart.
    extra_args: Vec<String>,
}

impl Server {
    /// Starts `target` on a free loopback port, with a new empty database, and waits until it accepts
    /// connections.
    pub async fn start(launcher: &Launcher, target: Target) -> anyhow::Result<Server> {
        Self::start_with(launcher, target, &[]).await
    }

    /// As [`Server::start`], with more of `causerie`'s flags (Causerie targets only).
    pub async fn start_with(launcher: &Launcher, target: Target, extra_args: &[String]) -> anyhow::Result<Server> {
        let port = free_port()?;
        let database = launcher.work_dir.join(format!("causerie-{port}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
        }
        let child = spawn(launcher, target, port, &database, extra_args)?;
        let extra_args = extra_args.to_vec();
        let mut server = Server { target, port, child, launcher: launcher.clone(), database, extra_args };
        server.ready().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: no goodbye to anyone, as in a crash.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        // The whole process group: under `--server-wrapper` the child is the wrapper, and the server is its child.
        if let Some(pid) = self.pid() {
            signal_group(pid, "KILL");
        }
        self.child.kill().await.context("killing the server")
    }

    /// Kills the server and starts it again on the same port with the same database; returns when it accepts
    /// connections again, which is when clients can come back.
    pub async fn restart(&mut self) -> anyhow::Result<Instant> {
        self.kill().await?;
        self.child = spawn(&self.launcher, self.target, self.port, &self.database, &self.extra_args)?;
        self.ready().await?;
        Ok(Instant::now())
    }

    /// Waits (a condition, with a deadline) until the port accepts TCP connections.
    async fn ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited with {status} before listening; see {}", self.target.label(), self.log().display());
            }
            if Instant::now() > deadline {
                bail!("{} did not listen on port {} within 30 s", self.target.label(), self.port);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's standard error.
    pub fn log(&self) -> PathBuf {
        log_path(&self.launcher, self.port)
    }

    /// The server's CPU time so far and its resident memory now, from /proc.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        let pid = self.pid().context("the server has exited")?;
        Usage::of(pid)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A profiler writes its output only when the program exits on its own: ask politely (SIGTERM makes
        // Causerie shut down) and wait for it, with a deadline. Without one, SIGKILL. Only the server is asked:
        // a profiler's own helpers in the group (heaptrack's interpreter and its zstd) would die of SIGTERM halfway
        // through writing the profile, which then comes out empty or truncated.
        let Some(pid) = self.pid() else { return };
        let asked = !self.launcher.server_wrapper.is_empty()
            && (signal_named(pid, &process_name(&self.launcher, self.target), "TERM") || signal_group(pid, "TERM"));
        if asked {
            let deadline = Instant::now() + Duration::from_secs(120);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Whatever is left of the group (a wrapper's server outlives its wrapper otherwise).
        signal_group(pid, "KILL");
        let _ = self.child.start_kill();
    }
}

/// Sends `signal` to the process group led by `pid` (each server is started as the leader of its own group); says
/// whether `kill` succeeded. The `kill` command, because the workspace forbids the unsafe code a libc call needs.
fn signal_group(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .args([format!("-{signal}"), "--".to_owned(), format!("-{pid}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Sends `signal` to the processes named `name` in the process group led by `pid`; says whether any got it.
fn signal_named(pid: u32, name: &str, signal: &str) -> bool {
    std::process::Command::new("pkill")
        .args([format!("-{signal}"), "-g".to_owned(), pid.to_string(), "-x".to_owned(), name.to_owned()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The name the kernel gives `target`'s server process (its executable's file name, cut to the 15 bytes Linux
/// keeps), whatever wrapper runs it.
fn process_name(launcher: &Launcher, target: Target) -> String {
    let name = match target {
        Target::Node => "node".to_owned(),
        Target::Causerie | Target::CauserieSqlite | Target::CauserieNode => {
            launcher.bench_exe.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
        }
    };
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

fn log_path(launcher: &Launcher, port: u16) -> PathBuf {
    launcher.work_dir.join(format!("server-{port}.log"))
}

fn spawn(launcher: &Launcher, target: Target, port: u16, database: &Path, extra: &[String]) -> anyhow::Result<Child> {
    let mut argv: Vec<String> = match target {
        Target::Node => vec!["node".into(), launcher.node_peer.display().to_string()],
        Target::Causerie | Target::CauserieSqlite | Target::CauserieNode => {
            let mut argv = vec![
                launcher.bench_exe.display().to_string(),
                "serve".into(),
                "--addr".into(),
                format!("127.0.0.1:{port}"),
                // The load generator's users send far faster than people: no rate limit.
                "--message-burst".into(),
                "1000000".into(),
                "--messages-per-second".into(),
                "1000000".into(),
                "--database".into(),
                database.display().to_string(),
            ];
            if target == Target::Causerie {
                argv.push("--in-memory".into());
            }
            argv.extend(extra.iter().cloned());
            argv
        }
    };
    argv.splice(0..0, launcher.server_wrapper.iter().cloned());
    if let Some(cpus) = &launcher.server_cpus {
        argv.splice(0..0, ["taskset".to_owned(), "-c".to_owned(), cpus.clone()]);
    }
    let log = std::fs::File::create(log_path(launcher, port)).context("creating the server's log file")?;
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        // A backtrace captured with every `anyhow` error would cost the server time the benchmark should not count.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        // Its own process group, so that a wrapper and the server under it stop together.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    command.spawn().with_context(|| format!("starting {}", argv.join(" ")))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A process's CPU time and memory, read from /proc.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub at: Instant,
}

impl Usage {
    pub fn of(pid: u32) -> anyhow::Result<Usage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/<pid>/stat")?;
        // Fields after the command name, which is in parentheses and may contain spaces.
        let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("unexpected /proc/<pid>/stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here (state is field 3, index 0).
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).context("unexpected /proc/<pid>/stat");
        let cpu_seconds = (ticks(11)? + ticks(12)?) as f64 / clock_ticks();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/<pid>/status")?;
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .context("no VmRSS in /proc/<pid>/status")?;
        Ok(Usage { cpu_seconds, rss_bytes: rss_kib * 1024, at: Instant::now() })
    }

    /// The servers' CPU time and memory added up (one server: its own).
    pub fn total(servers: &[&Server]) -> anyhow::Result<Usage> {
        let mut total = Usage { cpu_seconds: 0.0, rss_bytes: 0, at: Instant::now() };
        for server in servers {
            let usage = server.usage()?;
            total.cpu_seconds += usage.cpu_seconds;
            total.rss_bytes += usage.rss_bytes;
        }
        Ok(total)
    }

    /// CPU use between `earlier` and `self`, in percent of one core.
    pub fn cpu_percent_since(&self, earlier: &Usage) -> f64 {
        let wall = self.at.saturating_duration_since(earlier.at).as_secs_f64();
        if wall > 0.0 { 100.0 * (self.cpu_seconds - earlier.cpu_seconds) / wall } else { 0.0 }
    }
}

/// Kernel clock ticks per second (`getconf CLK_TCK`), 100 on every Linux this runs on.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launcher(exe: &str) -> Launcher {
        Launcher {
            bench_exe: PathBuf::from(exe),
            node_peer: PathBuf::from("server.js"),
            work_dir: PathBuf::from("/tmp"),
            server_cpus: None,
            server_wrapper: Vec::new(),
        }
    }

    #[test]
    fn a_server_process_is_named_as_the_kernel_names_it_cut_to_fifteen_bytes() {
        let short = launcher("/work/target/release/causerie-bench");
        assert_eq!(process_name(&short, Target::Causerie), "causerie-bench");
        assert_eq!(process_name(&short, Target::Node), "node");
        let long = launcher("/work/target/release/deps/causerie_bench-0123456789abcdef");
        assert_eq!(process_name(&long, Target::CauserieSqlite), "causerie_bench-");
    }
}
