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

/// The nginx configuration that docs/deploy.md gives operators.
pub fn nginx_site() -> PathBuf {
    repository().join("docs/deploy/nginx.conf")
}

/// A running cluster. Dropping it stops everything.
pub struct Cluster {
    pub nodes: Vec<Server>,
    pub nginx: Service,
    pub redis: Service,
    pub postgres: Service,
    /// The flags each node was started with (`--redis-url`, `--database-url`, and the caller's).
    pub node_args: Vec<String>,
}

impl Cluster {
    /// Starts Postgres, Redis, `nodes` Causerie nodes using both, and nginx in front of them with
    /// docs/deploy/nginx.conf. `extra` are more flags for every node.
    pub async fn start(launcher: &Launcher, nodes: usize, extra: &[String]) -> anyhow::Result<Cluster> {
        let postgres = Service::start(vec!["postgres".into()]).await?;
        let redis = Service::start(vec!["redis".into()]).await?;
        let mut node_args = vec![
            "--redis-url".to_owned(),
            format!("redis://127.0.0.1:{}", redis.port),
            "--database-url".to_owned(),
            format!("postgres://causerie@127.0.0.1:{}/postgres", postgres.port),
        ];
        node_args.extend(extra.iter().cloned());
        let mut started = Vec::new();
        for _ in 0..nodes {
            started.push(Server::start_with(launcher, Target::CauserieNode, &node_args).await?);
        }
        let ports: Vec<u16> = started.iter().map(|node| node.port).collect();
        let nginx_port = free_port()?;
        let conf = launcher.work_dir.join(format!("nginx-{nginx_port}.conf"));
        std::fs::write(&conf, nginx_conf(&ports, nginx_port)?).context("writing nginx's configuration")?;
        let nginx = Service::start(vec!["nginx".into(), conf.display().to_string(), nginx_port.to_string()]).await?;
        Ok(Cluster { nodes: started, nginx, redis, postgres, node_args })
    }

    /// Where clients connect: nginx.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.nginx.port)
    }
}

/// nginx's main configuration for the tests, around docs/deploy/nginx.conf with the nodes' ports in it.
pub fn nginx_conf(node_ports: &[u16], listen: u16) -> anyhow::Result<String> {
    let site = std::fs::read_to_string(nginx_site()).context("reading docs/deploy/nginx.conf")?;
    let mut out = String::new();
    let mut servers_written = false;
    for line in site.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("server 127.0.0.1:") {
            if !servers_written {
                for port in node_ports {
                    out.push_str(&format!("    server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;\n"));
                }
                servers_written = true;
            }
        } else if trimmed.starts_with("listen ") {
            out.push_str(&format!("    listen 127.0.0.1:{listen};\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !servers_written {
        bail!("docs/deploy/nginx.conf has no `server 127.0.0.1:…` lines to put the nodes in");
    }
    // Relative paths are under the prefix that scripts/test-service gives nginx (a fresh temporary directory).
    Ok(format!(
        "daemon off;\nworker_processes 1;\npid nginx.pid;\nerror_log error.log warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n    access_log off;\n    client_body_temp_path body;\n    proxy_temp_path proxy;\n    \
         fastcgi_temp_path fastcgi;\n    uwsgi_temp_path uwsgi;\n    scgi_temp_path scgi;\n{out}}}\n"
    ))
}
