//! The two servers, as child processes. Each prints `listening <port>` once it accepts connections.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Node,
    Socketioxide,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub transports: &'static str,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self { transports: "polling,websocket", ping_interval_ms: 25_000, ping_timeout_ms: 20_000 }
    }
}

pub struct Peer {
    kind: Kind,
    options: Options,
    pub port: u16,
    child: Child,
}

impl Peer {
    pub async fn start(kind: Kind) -> Peer {
        Self::start_with(kind, Options::default()).await
    }

    pub async fn start_with(kind: Kind, options: Options) -> Peer {
        Self::spawn(kind, options, 0).await
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: the server dies at once, with no goodbye to its clients.
    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// Starts the same server again on the same port.
    pub async fn restart(&mut self) {
        *self = Self::spawn(self.kind, self.options.clone(), self.port).await;
    }

    async fn spawn(kind: Kind, options: Options, port: u16) -> Peer {
        let mut command = match kind {
            Kind::Node => {
                let mut command = Command::new("node");
                command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/peers/node/server.js"));
                command
            }
            Kind::Socketioxide => Command::new(env!("CARGO_BIN_EXE_socketioxide-peer")),
        };
        command
            .env("PORT", port.to_string())
            .env("TRANSPORTS", options.transports)
            .env("PING_INTERVAL", options.ping_interval_ms.to_string())
            .env("PING_TIMEOUT", options.ping_timeout_ms.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start the {kind:?} peer: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the {kind:?} peer did not start within 30 s"))
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "the {kind:?} peer exited before listening (for Node: run `npm ci` in \
                     sio-client/conformance/peers/node; scripts/test does)"
                )
            });
        let port = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the {kind:?} peer: {first:?}"));
        Peer { kind, options, port, child }
    }
}
