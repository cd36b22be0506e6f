//! The async, typed client: handles the application holds, and the driver task that runs the
//! [`Manager`](crate::manager::Manager) over a real transport.

#![cfg_attr(not(any(target_arch = "wasm32", feature = "tokio")), allow(dead_code))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use protocol::{AckResult, BinaryRequest, ErrorBody, Event, Request};
use serde::Serialize;
use serde_json::Value;

#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
use crate::manager::{AckFailure, Action, EmitOptions, Output};
use crate::manager::{Config, ConnectionState, DisconnectReason, EmitError, Manager, TransportKind};
use crate::packet::Arg;

/// The driver's small maps (namespaces, the events listened to, acks in flight: a few entries each). Natively,
/// B-trees: an event's lookup in a hash map hashed its namespace and name with SipHash, 1.2% of the load
/// generator's core. In the browser, hash maps: the bundle carries hashbrown's code anyway, and B-trees of these
/// three types added 2.7 KB to it (gzipped), for lookups a page makes a few times a second.
#[cfg(not(target_arch = "wasm32"))]
type SmallMap<K, V> = std::collections::BTreeMap<K, V>;
#[cfg(target_arch = "wasm32")]
type SmallMap<K, V> = std::collections::HashMap<K, V>;

/// Something that happened to one namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketEvent {
    Connected {
        sid: Option<String>,
    },
    /// The server refused the namespace; it is not retried.
    ConnectError {
        message: String,
        data: Value,
    },
    Disconnected {
        reason: DisconnectReason,
    },
}

/// Why an acknowledged emit produced no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AckError {
    #[error("no answer from the server in time")]
    Timeout,
    /// The connection (or the namespace) closed after the emit went out: the server's answer cannot come any
    /// more. An emit made while offline waits for the next connection instead, until its timeout.
    #[error("the connection was closed before the server answered")]
    Closed,
    #[error(transparent)]
    Emit(#[from] EmitError),
    #[error("the answer has an unexpected shape: {0}")]
    Decode(String),
    #[error("the event cannot be encoded: {0}")]
    Encode(String),
}

/// Why a [`Socket::request`] failed: no answer, or the server's typed refusal.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Ack(#[from] AckError),
    #[error("{0}")]
    Rejected(ErrorBody),
}

/// An event or an acknowledgement as it came off the wire: its arguments undecoded (JSON text, see [`Arg`]) and its
/// binary attachments. In a binary packet the binary parts are `{"_placeholder":true,"num":i}` objects, each
/// checked to point at an attachment; in a text packet (no attachments) such an object is plain data: check `num`
/// against `attachments` before indexing.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    pub args: Vec<Arg>,
    pub attachments: Vec<Vec<u8>>,
    /// Set when the server asked for an acknowledgement: answer it with [`Socket::ack_raw`].
    pub ack_id: Option<u64>,
}

type AckReply = oneshot::Sender<Result<RawEvent, AckError>>;

enum Command {
    Open {
        nsp: String,
        auth: Option<Value>,
    },
    WatchNamespace {
        nsp: String,
        tx: mpsc::UnboundedSender<SocketEvent>,
    },
    Subscribe {
        nsp: String,
        event: String,
        tx: mpsc::UnboundedSender<RawEvent>,
    },
    WatchState {
        tx: mpsc::UnboundedSender<ConnectionState>,
    },
    Emit {
        nsp: String,
        name: String,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
        volatile: bool,
        ack: Option<(Duration, AckReply)>,
    },
    Ack {
        nsp: String,
        id: u64,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
    },
    CloseNamespace {
        nsp: String,
    },
    Close,
}

/// How to connect. Start with [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    path: String,
    /// `key=value&…`, escaped, for every request.
    query: String,
    config: Config,
    transports: Vec<TransportKind>,
    upgrade: bool,
    remember_upgrade: bool,
    max_incoming: usize,
}

impl ClientBuilder {
    /// The Socket.IO path on the server, `/socket.io/` by default.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Adds `key=value` to the query of every request (the handshake, each poll, the WebSocket upgrade), as the
    /// JavaScript client's `query` option does: for a load balancer that routes on it, say. Not for secrets: URLs
    /// end up in logs.
    pub fn query(mut self, key: &str, value: &str) -> Self {
        use crate::transport::query_escape;
        if !self.query.is_empty() {
            self.query.push('&');
        }
        self.query.push_str(&format!("{}={}", query_escape(key), query_escape(value)));
        self
    }

    /// Reconnection and timeout settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The transports to use, the first one to connect with. The default, `[Polling, WebSocket]`, connects over
    /// HTTP long-polling (which passes any proxy) and then upgrades to WebSocket; `[WebSocket]` skips polling;
    /// `[Polling]` never upgrades. An empty list keeps the default.
    pub fn transports(mut self, transports: &[TransportKind]) -> Self {
        if !transports.is_empty() {
            self.transports = transports.to_vec();
        }
        self
    }

    /// Whether to upgrade from polling to WebSocket when the server offers it (default: yes).
    pub fn upgrade(mut self, upgrade: bool) -> Self {
        self.upgrade = upgrade;
        self
    }

    /// Whether a reconnection opens a WebSocket at once, without polling first, once an upgrade has worked on
    /// this client (default: no, as in the JavaScript client's `rememberUpgrade`). It saves the polling handshake
    /// and the upgrade's round trips on every reconnection, which adds up when a restarted server has everyone
    /// coming back at once. If that WebSocket fails before any namespace is answered on it while long-polling
    /// works (a proxy that blocks WebSocket now, say), the client connects over long-polling at once and
    /// forgets: the next reconnections poll first again, until an upgrade works again. A server that is down
    /// fails both, and changes nothing.
    pub fn remember_upgrade(mut self, remember: bool) -> Self {
        self.remember_upgrade = remember;
        self
    }

    /// The most the server may send at once, in bytes: one WebSocket message, or one long-polling response (16 MiB
    /// by default, [`DEFAULT_MAX_INCOMING_BYTES`](crate::DEFAULT_MAX_INCOMING_BYTES)). More fails the
    /// transport, natively before it is read any further, and the client reconnects as after any other transport
    /// failure. Set it above the largest event the server sends, attachments included.
    pub fn max_incoming_bytes(mut self, bytes: usize) -> Self {
        self.max_incoming = bytes;
        self
    }

    /// Starts connecting in the background and returns at once.
    #[cfg(any(target_arch = "wasm32", feature = "tokio"))]
    pub fn connect(self) -> Client {
        let (tx, rx) = mpsc::unbounded();
        let state = Arc::new(Mutex::new(ConnectionState::Connecting));
        let first_transport = self.transports.first().copied().unwrap_or(TransportKind::Polling);
        // An upgrade only ever goes from polling to WebSocket, and only when both are allowed.
        let can_upgrade = self.upgrade
            && first_transport == TransportKind::Polling
            && self.transports.contains(&TransportKind::WebSocket);
        // The transports read the query from the path (see `transport::engine_url`).
        let path = if self.query.is_empty() { self.path } else { format!("{}?{}", self.path, self.query) };
        let driver = Driver {
            base_url: self.base_url,
            path,
            first_transport,
            can_upgrade,
            remember_upgrade: self.remember_upgrade && can_upgrade,
            websocket_worked: false,
            unconfirmed_websocket: false,
            http: crate::transport::Http::new(self.max_incoming),
            max_incoming: self.max_incoming,
            connect_timeout: self.config.connect_timeout,
            manager: Manager::new(self.config, crate::rt::seed()),
            namespaces: SmallMap::new(),
            subscriptions: SmallMap::new(),
            acks: SmallMap::new(),
            timer: crate::rt::Timer::new(),
            state_watchers: Vec::new(),
            state: state.clone(),
            closed: false,
        };
        crate::rt::spawn(driver.run(rx));
        Client { commands: tx, state }
    }
}

/// A connection to a Socket.IO server: one Engine.IO connection that any number of [`Socket`]s (namespaces)
/// share. Cheap to clone; the connection closes when the last handle is dropped or [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    state: Arc<Mutex<ConnectionState>>,
}

impl Client {
    /// `base_url` is the server's origin, such as `http://127.0.0.1:3000` (or `ws://…`).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            path: "/socket.io/".into(),
            query: String::new(),
            config: Config::default(),
            transports: vec![TransportKind::Polling, TransportKind::WebSocket],
            upgrade: true,
            remember_upgrade: false,
            max_incoming: crate::transport::DEFAULT_MAX_INCOMING_BYTES,
        }
    }

    /// Opens a namespace on this connection.
    pub fn socket(&self, nsp: &str) -> Socket {
        self.open(nsp, None)
    }

    /// Opens a namespace with an `auth` payload for its CONNECT packet (it must serialize to a JSON object).
    pub fn socket_with_auth(&self, nsp: &str, auth: &impl Serialize) -> Result<Socket, serde_json::Error> {
        Ok(self.open(nsp, Some(serde_json::to_value(auth)?)))
    }

    fn open(&self, nsp: &str, auth: Option<Value>) -> Socket {
        self.send(Command::Open { nsp: nsp.to_owned(), auth });
        Socket { nsp: Arc::from(nsp), commands: self.commands.clone() }
    }

    /// The connection state right now.
    pub fn state(&self) -> ConnectionState {
        self.state.lock().map(|s| s.clone()).unwrap_or(ConnectionState::Connecting)
    }

    /// Every change of the connection state, starting with the current one.
    pub fn state_changes(&self) -> mpsc::UnboundedReceiver<ConnectionState> {
        let (tx, rx) = mpsc::unbounded();
        self.send(Command::WatchState { tx });
        rx
    }

    /// Disconnects every namespace and closes the connection for good: every stream of this client ends, and
    /// later emits fail.
    pub fn close(&self) {
        self.send(Command::Close);
    }

    fn send(&self, command: Command) {
        // The driver only stops once every handle is gone, so a failed send cannot happen while `self` lives.
        let _ = self.commands.unbounded_send(command);
    }
}

/// One namespace of a [`Client`]. Cheap to clone.
#[derive(Clone)]
pub struct Socket {
    nsp: Arc<str>,
    commands: mpsc::UnboundedSender<Command>,
}

/// An acknowledgement's first argument, decoded as `T`.
fn first_argument<T: serde::de::DeserializeOwned>(answer: RawEvent) -> Result<T, AckError> {
    let Some(first) = answer.args.into_iter().next() else {
        return Err(AckError::Decode("the acknowledgement carries no data".into()));
    };
    first.decode().map_err(|e| AckError::Decode(e.to_string()))
}

impl Socket {
    pub fn namespace(&self) -> &str {
        &self.nsp
    }

    /// Emits an event. While the namespace is offline the event is buffered and sent once it reconnects, in
    /// order, as the JavaScript client does. The buffer has no limit: a program that may stay offline for long
    /// and emit a lot meanwhile should use [`Socket::emit_volatile`], or an ack with a timeout (an emit whose ack
    /// timed out leaves the buffer).
    pub fn emit<E: Event>(&self, event: &E) -> Result<(), serde_json::Error> {
        self.emit_with(event, false)
    }

    /// Emits an event that is dropped, not buffered, if the namespace is offline (for typing notices and the like).
    pub fn emit_volatile<E: Event>(&self, event: &E) -> Result<(), serde_json::Error> {
        self.emit_with(event, true)
    }

    fn emit_with<E: Event>(&self, event: &E, volatile: bool) -> Result<(), serde_json::Error> {
        let args = vec![serde_json::to_value(event)?];
        self.emit_raw(E::NAME, args, Vec::new(), volatile);
        Ok(())
    }

    /// Emits `[name, ...args]` with binary attachments, which `args` refer to with
    /// `{"_placeholder":true,"num":i}`. Buffered while offline unless `volatile`.
    pub fn emit_raw(&self, name: &str, args: Vec<Value>, attachments: Vec<Vec<u8>>, volatile: bool) {
        let nsp = self.nsp.to_string();
        self.send(Command::Emit { nsp, name: name.to_owned(), args, attachments, volatile, ack: None });
    }

    /// [`Socket::emit_raw`], waiting for the acknowledgement.
    pub async fn emit_raw_with_ack(
        &self,
        name: &str,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
        timeout: Duration,
    ) -> Result<RawEvent, AckError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.send(Command::Emit {
            nsp: self.nsp.to_string(),
            name: name.to_owned(),
            args,
            attachments,
            volatile: false,
            ack: Some((timeout, reply_tx)),
        });
        reply_rx.await.map_err(|_| AckError::Closed)?
    }

    /// Answers an event the server sent with an ack id (its `emitWithAck`), with these arguments.
    pub fn ack_raw(&self, id: u64, args: Vec<Value>, attachments: Vec<Vec<u8>>) {
        self.send(Command::Ack { nsp: self.nsp.to_string(), id, args, attachments });
    }

    /// Every `name` event on this namespace, undecoded, with its binary attachments.
    pub fn on_raw(&self, name: &str) -> mpsc::UnboundedReceiver<RawEvent> {
        let (tx, rx) = mpsc::unbounded();
        self.send(Command::Subscribe { nsp: self.nsp.to_string(), event: name.to_owned(), tx });
        rx
    }

    /// Emits an event and waits for the server's acknowledgement, decoded as `T`.
    pub async fn emit_with_ack<E: Event, T: serde::de::DeserializeOwned>(
        &self,
        event: &E,
        timeout: Duration,
    ) -> Result<T, AckError> {
        let args = vec![serde_json::to_value(event).map_err(|e| AckError::Encode(e.to_string()))?];
        let answer = self.emit_raw_with_ack(E::NAME, args, Vec::new(), timeout).await?;
        first_argument(answer)
    }

    /// Sends a [`Request`] and returns the server's typed answer, or its typed refusal.
    pub async fn request<R: Request>(&self, request: &R, timeout: Duration) -> Result<R::Response, RequestError> {
        let answer: AckResult<R::Response> = self.emit_with_ack(request, timeout).await?;
        answer.into_result().map_err(RequestError::Rejected)
    }

    /// Sends a [`BinaryRequest`] with its bytes as a binary attachment (the event's second argument), and returns
    /// the server's typed answer, or its typed refusal.
    pub async fn request_with_binary<R: BinaryRequest>(
        &self,
        request: &R,
        binary: Vec<u8>,
        timeout: Duration,
    ) -> Result<R::Response, RequestError> {
        let payload = serde_json::to_value(request).map_err(|e| AckError::Encode(e.to_string()))?;
        let args = vec![payload, serde_json::json!({ "_placeholder": true, "num": 0 })];
        let answer = self.emit_raw_with_ack(R::NAME, args, vec![binary], timeout).await?;
        let answer: AckResult<R::Response> = first_argument(answer)?;
        answer.into_result().map_err(RequestError::Rejected)
    }

    /// Every `E` the server emits on this namespace, decoded. A payload that does not decode is logged and skipped.
    pub fn on<E: Event>(&self) -> impl futures::Stream<Item = E> + Unpin + use<E> {
        self.on_raw(E::NAME).filter_map(|raw: RawEvent| {
            let decoded = match raw.args.into_iter().next() {
                Some(arg) => arg.decode::<E>().map_err(|e| e.to_string()),
                None => Err("no payload".to_owned()),
            };
            futures::future::ready(match decoded {
                Ok(event) => Some(event),
                Err(error) => {
                    tracing::warn!(event = E::NAME, %error, "ignoring an event whose payload does not decode");
                    None
                }
            })
        })
    }

    /// This namespace's connects, refusals and disconnects from now on. Subscribe right after
    /// [`Client::socket`], before awaiting anything, to be sure to see the first connect: commands reach the
    /// driver in order, before any answer from the server.
    pub fn lifecycle(&self) -> mpsc::UnboundedReceiver<SocketEvent> {
        let (tx, rx) = mpsc::unbounded();
        self.send(Command::WatchNamespace { nsp: self.nsp.to_string(), tx });
        rx
    }

    /// Leaves the namespace: the server is told, and the socket stays closed.
    pub fn disconnect(&self) {
        self.send(Command::CloseNamespace { nsp: self.nsp.to_string() });
    }

    fn send(&self, command: Command) {
        // See `Client::send`: the driver outlives every handle.
        let _ = self.commands.unbounded_send(command);
    }
}

/// Runs the manager over a transport until every handle is dropped or the client is closed.
struct Driver {
    base_url: String,
    path: String,
    first_transport: TransportKind,
    can_upgrade: bool,
    /// See [`ClientBuilder::remember_upgrade`]; only ever set when upgrades are allowed.
    remember_upgrade: bool,
    /// An upgrade to WebSocket has worked on this client, and no remembered WebSocket has failed since.
    websocket_worked: bool,
    /// The transport is a remembered WebSocket on which no namespace has been answered yet: if it fails now,
    /// long-polling is tried at once (see [`ClientBuilder::remember_upgrade`]). An answer, not the Engine.IO
    /// handshake, confirms it: the handshake only shows that the server's frames get through, and a path that
    /// loses the client's frames must count as a WebSocket that does not work.
    unconfirmed_websocket: bool,
    #[cfg(any(target_arch = "wasm32", feature = "tokio"))]
    http: crate::transport::Http,
    /// See [`ClientBuilder::max_incoming_bytes`].
    max_incoming: usize,
    connect_timeout: Duration,
    manager: Manager,
    namespaces: SmallMap<String, Vec<mpsc::UnboundedSender<SocketEvent>>>,
    subscriptions: SmallMap<(String, String), Vec<mpsc::UnboundedSender<RawEvent>>>,
    acks: SmallMap<u64, AckReply>,
    /// What the driver's loop waits on for its next deadline (see [`crate::rt::Timer`]).
    #[cfg(any(target_arch = "wasm32", feature = "tokio"))]
    timer: crate::rt::Timer,
    state_watchers: Vec<mpsc::UnboundedSender<ConnectionState>>,
    state: Arc<Mutex<ConnectionState>>,
    /// [`Client::close`] was called: once the transport is closed, the driver ends, and with it every stream.
    closed: bool,
}

#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
mod io {
    use crate::Millis;
    use crate::engine::EnginePacket;
    use crate::transport::{Polling, Received, WsTransport, batches};

    /// The transport the connection runs over right now.
    pub(super) enum Active {
        WebSocket(WsTransport),
        Polling(Polling),
    }

    impl Active {
        pub(super) async fn recv(&mut self) -> Received {
            match self {
                Active::WebSocket(ws) => ws_recv(ws).await,
                Active::Polling(polling) => polling.recv().await,
            }
        }

        pub(super) async fn send(
            &mut self,
            packets: Vec<EnginePacket>,
            max_payload: u64,
        ) -> Result<(), crate::transport::TransportError> {
            match self {
                Active::WebSocket(ws) => {
                    for packet in packets {
                        ws.send(packet.to_frame()).await?;
                    }
                    Ok(())
                }
                Active::Polling(polling) => {
                    for batch in batches(packets, max_payload) {
                        polling.send(&batch).await?;
                    }
                    Ok(())
                }
            }
        }

        pub(super) async fn close(self) {
            match self {
                Active::WebSocket(ws) => close_websocket(ws).await,
                // A CLOSE packet lets the server drop the session now rather than at its ping timeout. It goes in
                // the background, bounded: a server that stopped answering must not hold up the reconnection,
                // and if it never arrives, the server's own timeout does the same job later.
                Active::Polling(mut polling) => crate::rt::spawn(async move {
                    let close = polling.send(&[EnginePacket::Close]);
                    drop(crate::rt::within(std::time::Duration::from_secs(5), close).await);
                }),
            }
        }
    }

    pub(super) async fn ws_recv(ws: &mut WsTransport) -> Received {
        match ws.recv().await {
            None => Received::Closed,
            Some(Err(e)) => Received::Failed(e),
            Some(Ok(frame)) => match EnginePacket::from_frame(frame) {
                Ok(packet) => Received::Packet(packet),
                Err(e) => Received::Invalid(e),
            },
        }
    }

    /// An upgrade from polling to WebSocket in progress. Opening the WebSocket and sending `2probe` happen in a
    /// task of their own, and the driver only awaits that task's answer inside its `select!`: a WebSocket that a
    /// proxy holds in limbo must not stall the polling connection, and a probe must never be cut half-sent when
    /// another branch of the `select!` wins.
    pub(super) struct Upgrade {
        opening: Option<futures::channel::oneshot::Receiver<Result<WsTransport, crate::transport::TransportError>>>,
        ws: Option<WsTransport>,
        /// `3probe` arrived: polling is paused, and the switch happens once its last `GET` is back.
        pub probed: bool,
        pub deadline: Millis,
    }

    impl Upgrade {
        pub(super) fn start(url: String, max_incoming: usize, deadline: Millis) -> Self {
            let (mut tx, rx) = futures::channel::oneshot::channel();
            crate::rt::spawn(async move {
                use futures::FutureExt as _;

                let opened = async {
                    let mut ws = WsTransport::connect(&url, max_incoming).await?;
                    ws.send(EnginePacket::Ping("probe".into()).to_frame()).await?;
                    Ok(ws)
                }
                .fuse();
                // The driver may give up on this upgrade (its deadline, a reconnection, the client dropped): then
                // the attempt stops with it, however long a proxy holds the handshake, and the WebSocket closes.
                let result = {
                    let given_up = tx.cancellation().fuse();
                    futures::pin_mut!(opened, given_up);
                    futures::select_biased! {
                        result = opened => Some(result),
                        () = given_up => None,
                    }
                };
                if let Some(result) = result {
                    let _ = tx.send(result);
                }
            });
            Self { opening: Some(rx), ws: None, probed: false, deadline }
        }

        /// The WebSocket's next packet, once it is open and probed. Cancel-safe: progress is kept in `self`.
        pub(super) async fn step(&mut self) -> Received {
            if let Some(opening) = self.opening.as_mut() {
                let result = opening.await;
                self.opening = None;
                match result {
                    Ok(Ok(ws)) => self.ws = Some(ws),
                    Ok(Err(e)) => return Received::Failed(e),
                    Err(_) => return Received::Closed,
                }
            }
            match self.ws.as_mut() {
                Some(ws) => ws_recv(ws).await,
                None => Received::Closed,
            }
        }

        pub(super) fn into_websocket(self) -> Option<WsTransport> {
            self.ws
        }

        pub(super) async fn abandon(self) {
            if let Some(ws) = self.ws {
                close_websocket(ws).await;
            }
        }
    }

    /// Closes `ws`, waiting a few seconds at most: on a connection that went silent with its send buffer full,
    /// the close frame would wait for TCP to give up (minutes), and the driver with it.
    async fn close_websocket(ws: WsTransport) {
        let close = async {
            ws.close().await;
            Ok::<(), std::convert::Infallible>(())
        };
        drop(crate::rt::within(std::time::Duration::from_secs(5), close).await);
    }
}

/// The most commands the driver takes in one turn of its loop.
#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
const COMMANDS_PER_BATCH: usize = 256;

/// What woke the driver up.
#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
enum Wake {
    Command(Option<Command>),
    Received(crate::transport::Received),
    Probe(crate::transport::Received),
    Timer,
}

#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        use futures::FutureExt as _;

        use crate::engine::EnginePacket;
        use crate::rt;
        use crate::transport::Received;
        use io::{Active, Upgrade};

        let mut transport: Option<Active> = None;
        let mut upgrade: Option<Upgrade> = None;
        let mut handles_alive = true;
        // Whether the transport goes before commands in the next wait: after a turn that took commands.
        let mut transport_first = false;
        loop {
            // What the last packet produced goes out first: a namespace answered on a remembered WebSocket
            // confirms it (`unconfirmed_websocket`) before a failed send or a transport action below could take
            // that WebSocket for one that never worked, and fall back to polling with the namespace still marked
            // connected.
            self.dispatch_outputs();
            // Send before acting on transport actions: a close queues its DISCONNECT packets first, and they must
            // leave before the transport goes. While an upgrade is switching, packets wait in the manager and
            // leave over the new transport.
            // A close is the exception: its DISCONNECTs go out over polling, which still accepts POSTs.
            let holding = upgrade.as_ref().is_some_and(|u| u.probed) && !self.manager.closing_transport();
            if !holding && let Some(t) = transport.as_mut() {
                let packets: Vec<EnginePacket> = std::iter::from_fn(|| self.manager.poll_transmit()).collect();
                if !packets.is_empty() {
                    tracing::trace!(?packets, "sending");
                    let max_payload = self.manager.open_info().map_or(1_000_000, |info| info.max_payload);
                    // A server that stops reading must not stall the loop (and with it heartbeats and commands).
                    let send_timeout = self.send_timeout();
                    let mut abandoned = false;
                    // A close already under way (its DISCONNECTs are this write) is not a reason to cut it short.
                    let closing_before = self.manager.closing_transport();
                    let sent = {
                        let send = rt::within(send_timeout, t.send(packets, max_payload)).fuse();
                        futures::pin_mut!(send);
                        // Until then the write may wait long (a server that stopped reading, its socket full):
                        // the deadlines are kept meanwhile, so that an ack times out when it is due, not when the
                        // write gives up. (Commands wait for the write: their packets could not leave before.)
                        loop {
                            let timer = rt::sleep_until(self.manager.poll_timeout()).fuse();
                            futures::pin_mut!(timer);
                            futures::select_biased! {
                                sent = send => break sent,
                                () = timer => {}
                            }
                            let now = rt::now();
                            self.manager.handle_timeout(now);
                            self.dispatch_outputs();
                            // The transport is given up on (a missed heartbeat): the write goes with it, below.
                            if !closing_before && self.manager.closing_transport() {
                                abandoned = true;
                                break Ok(());
                            }
                            // A deadline still due once handled would wake this at once, again and again: the
                            // write is awaited alone then.
                            if self.manager.poll_timeout().is_some_and(|at| at <= now) {
                                break send.await;
                            }
                        }
                    };
                    if let Err(e) = sent {
                        let reason = DisconnectReason::TransportError(e.to_string());
                        (transport, upgrade) = self.replace_lost(transport.take(), upgrade.take(), reason).await;
                    }
                    // Dropped, not closed: a close frame would queue behind the write that was given up on, and
                    // wait for its own timeout (5 s) while no timer runs.
                    if abandoned {
                        drop(transport.take());
                    }
                }
            }
            if let Some(action) = self.manager.poll_action() {
                upgrade = None;
                // A remembered WebSocket that never got a namespace answered (the manager timed it out, say):
                // something on the way holds WebSockets, so the next connection polls first. Not when the
                // application closed the client, which says nothing about WebSockets.
                if std::mem::take(&mut self.unconfirmed_websocket) && !self.closed {
                    self.websocket_worked = false;
                }
                if let Some(old) = transport.take() {
                    old.close().await;
                }
                if action == Action::OpenTransport {
                    transport = self.open_transport().await;
                    upgrade = self.upgrade_for(transport.as_ref());
                }
                // What opening produced is handed on at the top of the loop, before anything else.
                continue;
            }
            // The upgrade's last step: polling is paused and idle, so nothing can be lost in the switch.
            if let (Some(Active::Polling(polling)), Some(u)) = (transport.as_ref(), upgrade.as_ref())
                && u.probed
                && polling.is_drained()
                && let Some(u) = upgrade.take()
            {
                let sent = match u.into_websocket() {
                    Some(mut ws) => {
                        let send_timeout = self.send_timeout();
                        rt::within(send_timeout, ws.send(EnginePacket::Upgrade.to_frame())).await.map(|()| ws)
                    }
                    None => Err(crate::transport::TransportError("the upgraded WebSocket is gone".into())),
                };
                match sent {
                    Ok(ws) => {
                        tracing::debug!("upgraded to WebSocket");
                        transport = Some(Active::WebSocket(ws));
                        self.manager.transport_upgraded(TransportKind::WebSocket);
                        self.websocket_worked = true;
                    }
                    Err(e) => {
                        // The polling session is paused for good: start over.
                        tracing::warn!(error = %e, "the upgrade failed after pausing polling; reconnecting");
                        transport = None;
                        self.manager.transport_closed(rt::now(), DisconnectReason::TransportError(e.to_string()));
                    }
                }
                // Packets held back during the switch leave now, at the top of the loop, before any waiting.
                continue;
            }
            self.dispatch_outputs();
            if (!handles_alive || self.closed) && transport.is_none() {
                return;
            }

            let wake = {
                // The probe's deadline only counts until the probe is answered.
                let probe_deadline = upgrade.as_ref().filter(|u| !u.probed).map(|u| u.deadline);
                let deadline = [self.manager.poll_timeout(), probe_deadline].into_iter().flatten().min();
                let timer = self.timer.until(deadline).fuse();
                let received = async {
                    match transport.as_mut() {
                        Some(t) => t.recv().await,
                        None => std::future::pending().await,
                    }
                }
                .fuse();
                let probe = async {
                    match upgrade.as_mut() {
                        Some(u) => u.step().await,
                        None => std::future::pending().await,
                    }
                }
                .fuse();
                futures::pin_mut!(timer, received, probe);
                if transport_first {
                    // The last turn took commands: what the server sent goes first this time (if anything came),
                    // or a program emitting nonstop would starve its pings and its acks. (A select in this order:
                    // a `now_or_never` on `received` before the usual select was tried, and under a flood it read
                    // the answer only after the flood in 3 runs of 3.)
                    futures::select_biased! {
                        received = received => Wake::Received(received),
                        command = commands.next() => Wake::Command(command),
                        probe = probe => Wake::Probe(probe),
                        () = timer => Wake::Timer,
                    }
                } else {
                    // Commands first: an emit made before a packet arrived keeps its place in line.
                    futures::select_biased! {
                        command = commands.next() => Wake::Command(command),
                        received = received => Wake::Received(received),
                        probe = probe => Wake::Probe(probe),
                        () = timer => Wake::Timer,
                    }
                }
            };
            transport_first = false;
            let now = rt::now();
            let timer_woke = matches!(wake, Wake::Timer);
            match wake {
                Wake::Command(Some(command)) => {
                    self.apply(command);
                    // Whatever else is already queued joins this batch (up to a point, so that another thread
                    // emitting nonstop cannot hold the loop): over long-polling one POST carries it all, and the
                    // transport and the timers get their turn before the next command.
                    for _ in 1..COMMANDS_PER_BATCH {
                        match commands.next().now_or_never() {
                            Some(Some(command)) => self.apply(command),
                            // The channel's end is seen once only: act on it here, as below.
                            Some(None) => {
                                handles_alive = false;
                                self.manager.close(now);
                                break;
                            }
                            None => break,
                        }
                    }
                    transport_first = true;
                }
                Wake::Command(None) => {
                    // Every handle is gone: nobody can use the connection any more.
                    handles_alive = false;
                    self.manager.close(now);
                }
                Wake::Received(Received::Packet(packet)) => self.manager.handle_packet(now, packet),
                Wake::Received(Received::Invalid(e)) => {
                    self.manager.handle_invalid(now, e);
                }
                Wake::Received(Received::Failed(e)) => {
                    let reason = DisconnectReason::TransportError(e.to_string());
                    (transport, upgrade) = self.replace_lost(transport.take(), upgrade.take(), reason).await;
                }
                Wake::Received(Received::Closed) => {
                    let reason = DisconnectReason::TransportClose;
                    (transport, upgrade) = self.replace_lost(transport.take(), upgrade.take(), reason).await;
                }
                Wake::Probe(Received::Packet(EnginePacket::Pong(data))) if data == "probe" => {
                    if let (Some(u), Some(Active::Polling(polling))) = (upgrade.as_mut(), transport.as_mut()) {
                        tracing::debug!("WebSocket probe answered; pausing polling");
                        u.probed = true;
                        polling.pause();
                    }
                }
                Wake::Probe(other) => {
                    if let Some(u) = upgrade.take() {
                        let paused = u.probed;
                        u.abandon().await;
                        if paused {
                            // Polling was paused for the switch, and servers do not resume a session mid-upgrade:
                            // start over, rather than sit silent until the heartbeat gives up.
                            tracing::info!(received = ?other, "the WebSocket failed during the switch; reconnecting");
                            transport = None;
                            let reason = DisconnectReason::TransportError("the upgrade failed".into());
                            self.manager.transport_closed(now, reason);
                        } else {
                            // WebSocket is blocked or broken on the way: stay on polling, which works.
                            tracing::info!(received = ?other, "the WebSocket upgrade failed; staying on long-polling");
                        }
                    }
                }
                Wake::Timer => {
                    if upgrade.as_ref().is_some_and(|u| !u.probed && now >= u.deadline)
                        && let Some(u) = upgrade.take()
                    {
                        tracing::info!("no answer to the WebSocket probe; staying on long-polling");
                        u.abandon().await;
                    }
                    self.manager.handle_timeout(now);
                }
            }
            // However busy the loop is, deadlines are kept: a missed heartbeat or an ack's timeout must not wait
            // for a moment when no command or packet is ready (commands win the select above).
            if !timer_woke && self.manager.poll_timeout().is_some_and(|at| at <= now) {
                self.manager.handle_timeout(now);
            }
        }
    }

    /// Opens the transport for a new connection: a WebSocket if one worked before and the client remembers it
    /// (falling back to long-polling at once if it cannot be opened), otherwise the first configured transport.
    async fn open_transport(&mut self) -> Option<io::Active> {
        let remembered = self.remember_upgrade && self.websocket_worked;
        let kind = if remembered { TransportKind::WebSocket } else { self.first_transport };
        match self.open(kind).await {
            Ok(transport) => {
                self.unconfirmed_websocket = remembered;
                Some(transport)
            }
            Err(e) if remembered => self.fall_back_to_polling(DisconnectReason::TransportError(e.to_string())).await,
            Err(e) => {
                self.manager.transport_closed(crate::rt::now(), DisconnectReason::TransportError(e.to_string()));
                None
            }
        }
    }

    /// `lost` failed or closed, for `reason`; returns what replaces it, with its upgrade. A remembered WebSocket
    /// that fails before a namespace was answered on it is retried over long-polling at once (the browser reports
    /// a refused WebSocket this way, not from `connect`); anything else is a lost connection for the manager to
    /// reconnect, and nothing replaces it yet.
    async fn replace_lost(
        &mut self,
        lost: Option<io::Active>,
        lost_upgrade: Option<io::Upgrade>,
        reason: DisconnectReason,
    ) -> (Option<io::Active>, Option<io::Upgrade>) {
        // The dead transport and any upgrade of it go before anything new is opened.
        drop((lost, lost_upgrade));
        if !std::mem::take(&mut self.unconfirmed_websocket) {
            self.manager.transport_closed(crate::rt::now(), reason);
            return (None, None);
        }
        let transport = self.fall_back_to_polling(reason).await;
        let upgrade = self.upgrade_for(transport.as_ref());
        (transport, upgrade)
    }

    /// A remembered WebSocket failed. If long-polling works, WebSockets are blocked on the way now, and the
    /// client forgets that they worked; if it fails too, the server is unreachable, which says nothing about
    /// WebSockets, and the manager reconnects as usual (with the WebSocket first again).
    async fn fall_back_to_polling(&mut self, websocket_failure: DisconnectReason) -> Option<io::Active> {
        if self.closed {
            self.manager.transport_closed(crate::rt::now(), websocket_failure);
            return None;
        }
        match self.open(TransportKind::Polling).await {
            Ok(polling) => {
                tracing::info!(reason = %websocket_failure, "the remembered WebSocket failed; connected over long-polling");
                self.websocket_worked = false;
                Some(polling)
            }
            Err(_) => {
                self.manager.transport_closed(crate::rt::now(), websocket_failure);
                None
            }
        }
    }

    /// Opens a transport of `kind` and tells the manager; for polling, feeds it the handshake too.
    async fn open(&mut self, kind: TransportKind) -> Result<io::Active, crate::transport::TransportError> {
        use crate::rt;
        use crate::transport::{Polling, WsTransport, engine_url};

        let (transport, handshake) = match kind {
            TransportKind::WebSocket => {
                let url = engine_url(&self.base_url, &self.path, TransportKind::WebSocket, None);
                let ws = rt::within(self.connect_timeout, WsTransport::connect(&url, self.max_incoming)).await?;
                (io::Active::WebSocket(ws), Vec::new())
            }
            TransportKind::Polling => {
                let (polling, packets) =
                    rt::within(self.connect_timeout, Polling::open(self.http.clone(), &self.base_url, &self.path))
                        .await?;
                (io::Active::Polling(polling), packets)
            }
        };
        let now = rt::now();
        self.manager.transport_opened(now, kind);
        for packet in handshake {
            self.manager.handle_packet(now, packet);
        }
        Ok(transport)
    }

    /// The upgrade to start on a newly opened transport: only long-polling is upgraded.
    fn upgrade_for(&mut self, transport: Option<&io::Active>) -> Option<io::Upgrade> {
        if self.can_upgrade && matches!(transport, Some(io::Active::Polling(_))) { self.start_upgrade() } else { None }
    }

    /// How long one send may take: the server's ping timeout once known (it would drop us by then anyway).
    fn send_timeout(&self) -> Duration {
        self.manager.open_info().map_or(self.connect_timeout, |info| Duration::from_millis(info.ping_timeout))
    }

    /// Starts upgrading the current polling session to WebSocket, if the server offers it.
    fn start_upgrade(&mut self) -> Option<io::Upgrade> {
        use crate::transport::engine_url;

        let info = self.manager.open_info()?;
        if !info.upgrades.iter().any(|u| u == "websocket") {
            return None;
        }
        let url = engine_url(&self.base_url, &self.path, TransportKind::WebSocket, Some(&info.sid));
        Some(io::Upgrade::start(url, self.max_incoming, crate::rt::now().after(self.connect_timeout)))
    }

    fn apply(&mut self, command: Command) {
        let now = crate::rt::now();
        match command {
            Command::Open { nsp, auth } => self.manager.open_namespace(&nsp, auth),
            Command::WatchNamespace { nsp, tx } => self.namespaces.entry(nsp).or_default().push(tx),
            Command::Subscribe { nsp, event, tx } => self.subscriptions.entry((nsp, event)).or_default().push(tx),
            Command::WatchState { tx } => {
                if tx.unbounded_send(self.manager.state().clone()).is_ok() {
                    self.state_watchers.push(tx);
                }
            }
            Command::Emit { nsp, name, args, attachments, volatile, ack } => {
                let (timeout, reply) = match ack {
                    Some((timeout, reply)) => (Some(timeout), Some(reply)),
                    None => (None, None),
                };
                match self.manager.emit(now, &nsp, &name, args, attachments, EmitOptions { ack: timeout, volatile }) {
                    Ok(Some(id)) => {
                        if let Some(reply) = reply {
                            self.acks.insert(id, reply);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => match reply {
                        // The caller awaits the answer: it hears why there will be none.
                        Some(reply) => drop(reply.send(Err(AckError::Emit(e)))),
                        None => tracing::warn!(error = %e, event = %name, "emit dropped"),
                    },
                }
            }
            Command::Ack { nsp, id, args, attachments } => self.manager.ack(&nsp, id, args, attachments),
            Command::CloseNamespace { nsp } => self.manager.close_namespace(now, &nsp),
            Command::Close => {
                self.closed = true;
                self.manager.close(now);
            }
        }
    }

    fn dispatch_outputs(&mut self) {
        while let Some(output) = self.manager.poll_output() {
            match output {
                Output::State(state) => {
                    if let Ok(mut shared) = self.state.lock() {
                        *shared = state.clone();
                    }
                    fan_out(&mut self.state_watchers, state);
                }
                Output::Connected { nsp, sid } => {
                    // A round trip went through: a remembered WebSocket works (see `unconfirmed_websocket`).
                    self.unconfirmed_websocket = false;
                    self.notify_namespace(&nsp, SocketEvent::Connected { sid })
                }
                Output::ConnectError { nsp, message, data } => {
                    self.unconfirmed_websocket = false;
                    self.notify_namespace(&nsp, SocketEvent::ConnectError { message, data })
                }
                Output::Disconnected { nsp, reason } => {
                    self.notify_namespace(&nsp, SocketEvent::Disconnected { reason })
                }
                Output::Event { nsp, name, args, attachments, ack_id } => {
                    let key = (nsp, name);
                    match self.subscriptions.get_mut(&key) {
                        Some(subscribers) => {
                            fan_out(subscribers, RawEvent { args, attachments, ack_id });
                        }
                        None => tracing::debug!(nsp = %key.0, event = %key.1, "event without a listener"),
                    }
                }
                Output::Ack { id, args, attachments } => {
                    if let Some(reply) = self.acks.remove(&id) {
                        // The caller may have stopped waiting; then nobody needs the answer.
                        let _ = reply.send(Ok(RawEvent { args, attachments, ack_id: None }));
                    }
                }
                Output::AckFailed { id, reason } => {
                    if let Some(reply) = self.acks.remove(&id) {
                        let error = match reason {
                            AckFailure::Timeout => AckError::Timeout,
                            AckFailure::Closed => AckError::Closed,
                        };
                        // As above: a caller that gave up does not need the error.
                        let _ = reply.send(Err(error));
                    }
                }
            }
        }
    }

    fn notify_namespace(&mut self, nsp: &str, event: SocketEvent) {
        if let Some(watchers) = self.namespaces.get_mut(nsp) {
            fan_out(watchers, event);
        }
    }
}

/// Sends `item` to every subscriber still listening; a dropped stream means nobody wants these any more, so its
/// sender goes. The last subscriber gets `item` itself: with one listener (the usual case) nothing is copied.
fn fan_out<T: Clone>(subscribers: &mut Vec<mpsc::UnboundedSender<T>>, item: T) {
    subscribers.retain(|tx| !tx.is_closed());
    if let Some((last, others)) = subscribers.split_last() {
        for tx in others {
            // A receiver dropped since the line above is forgotten on the next item.
            let _ = tx.unbounded_send(item.clone());
        }
        let _ = last.unbounded_send(item);
    }
}
