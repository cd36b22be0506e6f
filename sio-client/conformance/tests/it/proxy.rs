//! A TCP proxy between the client and a peer, to make the network fail on demand.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Bumped to cut every connection open now (see [`Proxy::cut`]).
    cuts: watch::Sender<u64>,
    filter: Arc<Mutex<Filter>>,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Request>>>,
    task: JoinHandle<()>,
}

/// How a TCP connection through the proxy began (later requests on a kept-alive connection are not seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Polling,
    WebSocket,
    /// A WebSocket request that the filter cut.
    BlockedWebSocket,
    /// A WebSocket request that the filter let open, then cut before the server's first frame.
    CutWebSocket,
    Other,
}

/// What the proxy lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Everything,
    /// Cuts every request for the WebSocket transport, as a proxy that does not understand `Upgrade` would.
    NoWebSocket,
    /// Lets a WebSocket that starts a connection (one without a `sid`) open, with the server's `101 Switching
    /// Protocols`, and cuts it before anything else arrives. An upgrade's WebSocket passes.
    NewWebSocketCutWhenOpen,
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
        let (cuts, cut_watcher) = watch::channel(0);
        let target: SocketAddr = ([127, 0, 0, 1], target_port).into();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let filter = Arc::new(Mutex::new(filter));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let current_filter = filter.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                if *watcher.borrow() == Mode::Down {
                    continue;
                }
                let filter = *current_filter.lock().unwrap();
                let watch = Watch { mode: watcher.clone(), cuts: cut_watcher.clone() };
                tokio::spawn(pipe(inbound, target, watch, filter, log.clone()));
            }
        });
        Proxy { addr, mode, cuts, filter, accepted, requests, task }
    }

    /// What connections accepted from now on let through.
    pub fn set_filter(&self, filter: Filter) {
        *self.filter.lock().unwrap() = filter;
    }

    /// How each TCP connection began, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// How many WebSocket requests the filter cut.
    pub fn blocked(&self) -> usize {
        self.requests().iter().filter(|r| **r == Request::BlockedWebSocket).count()
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

    /// Cuts every connection open now, and stays open for new ones: a dropped connection, not a network down.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

/// What a connection through the proxy watches.
#[derive(Clone)]
struct Watch {
    mode: watch::Receiver<Mode>,
    cuts: watch::Receiver<u64>,
}

async fn pipe(
    mut inbound: TcpStream,
    target: SocketAddr,
    mut watch: Watch,
    filter: Filter,
    requests: Arc<Mutex<Vec<Request>>>,
) {
    // Cuts made before this connection was accepted are not for it.
    watch.cuts.mark_unchanged();
    let mut first = vec![0; 4096];
    let n = match inbound.read(&mut first).await {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    first.truncate(n);
    let head = String::from_utf8_lossy(&first);
    let request = match (head.contains("transport=websocket"), head.contains("transport=polling")) {
        (true, _) if filter == Filter::NoWebSocket => Request::BlockedWebSocket,
        (true, _) if filter == Filter::NewWebSocketCutWhenOpen && !head.contains("sid=") => Request::CutWebSocket,
        (true, _) => Request::WebSocket,
        (false, true) => Request::Polling,
        (false, false) => Request::Other,
    };
    requests.lock().unwrap().push(request);
    if request == Request::BlockedWebSocket {
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
    if outbound.write_all(&first).await.is_err() {
        return;
    }
    if request == Request::CutWebSocket {
        return pass_response_head(&mut outbound, &mut inbound).await;
    }
    let (client_read, client_write) = inbound.into_split();
    let (server_read, server_write) = outbound.into_split();
    let mut cuts = watch.cuts.clone();
    // When either direction ends, or at a cut, both sockets drop: the other side sees the connection close.
    tokio::select! {
        () = forward(client_read, server_write, watch.clone()) => {}
        () = forward(server_read, client_write, watch) => {}
        _ = cuts.changed() => {}
    }
}

/// Passes the server's answer up to the end of its HTTP head, and nothing after it.
async fn pass_response_head(server: &mut TcpStream, client: &mut TcpStream) {
    let mut received = Vec::new();
    let mut buffer = vec![0; 4096];
    loop {
        let n = match server.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        received.extend_from_slice(&buffer[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let _ = client.write_all(&received[..end + 4]).await;
            return;
        }
    }
}

async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut watch: Watch) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let current = *watch.mode.borrow_and_update();
        match current {
            Mode::Down => return,
            Mode::Frozen => {
                if watch.mode.changed().await.is_err() {
                    return;
                }
            }
            Mode::Open => {
                tokio::select! {
                    changed = watch.mode.changed() => if changed.is_err() { return },
                    read = from.read(&mut buffer) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => if to.write_all(&buffer[..n]).await.is_err() { return },
                    },
                }
            }
        }
    }
}
