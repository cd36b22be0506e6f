//! A TCP proxy between the client and a peer, to make the network fail on demand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes flow.
    Open,
    /// Connections stay up, but nothing flows: a server that hangs, or a silent network.
    Frozen,
    /// Every connection is cut, and new ones are closed as soon as they are accepted.
    Down,
}

pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accepted: Arc<AtomicUsize>,
    blocked: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// What the proxy lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Everything,
    /// Cuts every request for the WebSocket transport, as a proxy that does not understand `Upgrade` would.
    NoWebSocket,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(target_port: u16) -> Proxy {
        Self::start_filtered(target_port, Filter::Everything).await
    }

    pub async fn start_filtered(target_port: u16, filter: Filter) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, watcher) = watch::channel(Mode::Open);
        let target: SocketAddr = ([127, 0, 0, 1], target_port).into();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let blocked = Arc::new(AtomicUsize::new(0));
        let blocked_counter = blocked.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                if *watcher.borrow() == Mode::Down {
                    continue;
                }
                tokio::spawn(pipe(inbound, target, watcher.clone(), filter, blocked_counter.clone()));
            }
        });
        Proxy { addr, mode, accepted, blocked, task }
    }

    /// How many WebSocket requests the filter cut.
    pub fn blocked(&self) -> usize {
        self.blocked.load(Ordering::SeqCst)
    }

    /// How many TCP connections clients opened through the proxy.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn pipe(
    mut inbound: TcpStream,
    target: SocketAddr,
    mode: watch::Receiver<Mode>,
    filter: Filter,
    blocked: Arc<AtomicUsize>,
) {
    let mut first = vec![0; 4096];
    let n = match inbound.read(&mut first).await {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    first.truncate(n);
    if filter == Filter::NoWebSocket && String::from_utf8_lossy(&first).contains("transport=websocket") {
        blocked.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
    if outbound.write_all(&first).await.is_err() {
        return;
    }
    let (client_read, client_write) = inbound.into_split();
    let (server_read, server_write) = outbound.into_split();
    // When either direction ends, both sockets drop: the other side sees the connection close.
    tokio::select! {
        () = forward(client_read, server_write, mode.clone()) => {}
        () = forward(server_read, client_write, mode) => {}
    }
}

async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Down => return,
            Mode::Frozen => {
                if mode.changed().await.is_err() {
                    return;
                }
            }
            Mode::Open => {
                tokio::select! {
                    changed = mode.changed() => if changed.is_err() { return },
                    read = from.read(&mut buffer) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => if to.write_all(&buffer[..n]).await.is_err() { return },
                    },
                }
            }
        }
    }
}
