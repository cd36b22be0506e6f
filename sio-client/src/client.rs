//! The async, typed client: handles the application holds, and the driver task that runs the
//! [`Manager`](crate::manager::Manager) over a real transport.

#![cfg_attr(not(any(target_arch = "wasm32", feature = "tokio")), allow(dead_code))]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use protocol::{AckResult, ErrorBody, Event, Request};
use serde::Serialize;
use serde_json::Value;

#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
use crate::manager::{AckFailure, Action, EmitOptions, Output, TransportKind};
use crate::manager::{Config, ConnectionState, DisconnectReason, EmitError, Manager};

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
    #[error("the connection was closed before the server answered")]
    Closed,
    #[error(transparent)]
    Emit(#[from] EmitError),
    #[error("the answer has an unexpected shape: {0}")]
    Decode(String),
}

/// Why a [`Socket::request`] failed: no answer, or the server's typed refusal.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Ack(#[from] AckError),
    #[error("{0}")]
    Rejected(ErrorBody),
}

#[derive(Debug)]
struct RawEvent {
    args: Vec<Value>,
}

type AckReply = oneshot::Sender<Result<Vec<Value>, AckError>>;

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
        volatile: bool,
        ack: Option<(Duration, AckReply)>,
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
    config: Config,
}

impl ClientBuilder {
    /// The Socket.IO path on the server, `/socket.io/` by default.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Reconnection and timeout settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The WebSocket URL this builder connects to.
    pub fn websocket_url(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        let base = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_owned()
        };
        let path = self.path.trim_matches('/');
        format!("{base}/{path}/?EIO=4&transport=websocket")
    }

    /// Starts connecting in the background and returns at once.
    #[cfg(any(target_arch = "wasm32", feature = "tokio"))]
    pub fn connect(self) -> Client {
        let (tx, rx) = mpsc::unbounded();
        let state = Arc::new(Mutex::new(ConnectionState::Connecting));
        let driver = Driver {
            url: self.websocket_url(),
            connect_timeout: self.config.connect_timeout,
            manager: Manager::new(self.config, crate::rt::seed()),
            namespaces: HashMap::new(),
            subscriptions: HashMap::new(),
            acks: HashMap::new(),
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
            config: Config::default(),
        }
    }

    /// Opens a namespace on this connection, with an optional `auth` payload for its CONNECT packet.
    pub fn socket(&self, nsp: &str, auth: Option<&impl Serialize>) -> Result<Socket, serde_json::Error> {
        let auth = auth.map(serde_json::to_value).transpose()?;
        self.send(Command::Open {
            nsp: nsp.to_owned(),
            auth,
        });
        Ok(Socket {
            nsp: Arc::from(nsp),
            commands: self.commands.clone(),
        })
    }

    /// The connection state right now.
    pub fn state(&self) -> ConnectionState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or(ConnectionState::Connecting)
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

impl Socket {
    pub fn namespace(&self) -> &str {
        &self.nsp
    }

    /// Emits an event. While the namespace is offline the event is buffered and sent once it reconnects.
    pub fn emit<E: Event>(&self, event: &E) -> Result<(), serde_json::Error> {
        self.emit_with(event, false)
    }

    /// Emits an event that is dropped, not buffered, if the namespace is offline (for typing notices and the like).
    pub fn emit_volatile<E: Event>(&self, event: &E) -> Result<(), serde_json::Error> {
        self.emit_with(event, true)
    }

    fn emit_with<E: Event>(&self, event: &E, volatile: bool) -> Result<(), serde_json::Error> {
        let args = vec![serde_json::to_value(event)?];
        self.send(Command::Emit {
            nsp: self.nsp.to_string(),
            name: E::NAME.to_owned(),
            args,
            volatile,
            ack: None,
        });
        Ok(())
    }

    /// Emits an event and waits for the server's acknowledgement, decoded as `T`.
    pub async fn emit_with_ack<E: Event, T: serde::de::DeserializeOwned>(
        &self,
        event: &E,
        timeout: Duration,
    ) -> Result<T, AckError> {
        let args = vec![serde_json::to_value(event).map_err(|e| AckError::Decode(e.to_string()))?];
        let (reply_tx, reply_rx) = oneshot::channel();
        self.send(Command::Emit {
            nsp: self.nsp.to_string(),
            name: E::NAME.to_owned(),
            args,
            volatile: false,
            ack: Some((timeout, reply_tx)),
        });
        let mut answer = reply_rx.await.map_err(|_| AckError::Closed)??;
        if answer.is_empty() {
            return Err(AckError::Decode("the acknowledgement carries no data".into()));
        }
        serde_json::from_value(answer.swap_remove(0)).map_err(|e| AckError::Decode(e.to_string()))
    }

    /// Sends a [`Request`] and returns the server's typed answer, or its typed refusal.
    pub async fn request<R: Request>(&self, request: &R, timeout: Duration) -> Result<R::Response, RequestError> {
        let answer: AckResult<R::Response> = self.emit_with_ack(request, timeout).await?;
        answer.into_result().map_err(RequestError::Rejected)
    }

    /// Every `E` the server emits on this namespace, decoded. A payload that does not decode is logged and skipped.
    pub fn on<E: Event>(&self) -> impl futures::Stream<Item = E> + Unpin + use<E> {
        let (tx, rx) = mpsc::unbounded();
        self.send(Command::Subscribe {
            nsp: self.nsp.to_string(),
            event: E::NAME.to_owned(),
            tx,
        });
        rx.filter_map(|raw: RawEvent| {
            let decoded = match raw.args.into_iter().next() {
                Some(value) => serde_json::from_value::<E>(value).map_err(|e| e.to_string()),
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
        self.send(Command::WatchNamespace {
            nsp: self.nsp.to_string(),
            tx,
        });
        rx
    }

    /// Leaves the namespace: the server is told, and the socket stays closed.
    pub fn disconnect(&self) {
        self.send(Command::CloseNamespace {
            nsp: self.nsp.to_string(),
        });
    }

    fn send(&self, command: Command) {
        // See `Client::send`: the driver outlives every handle.
        let _ = self.commands.unbounded_send(command);
    }
}

/// Runs the manager over a transport until every handle is dropped.
struct Driver {
    url: String,
    connect_timeout: Duration,
    manager: Manager,
    namespaces: HashMap<String, Vec<mpsc::UnboundedSender<SocketEvent>>>,
    subscriptions: HashMap<(String, String), Vec<mpsc::UnboundedSender<RawEvent>>>,
    acks: HashMap<u64, AckReply>,
    state_watchers: Vec<mpsc::UnboundedSender<ConnectionState>>,
    state: Arc<Mutex<ConnectionState>>,
    /// [`Client::close`] was called: once the transport is closed, the driver ends, and with it every stream.
    closed: bool,
}

/// What woke the driver up.
enum Wake {
    Command(Option<Command>),
    Frame(Option<Result<crate::Frame, crate::transport::TransportError>>),
    Timer,
}

#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        use futures::FutureExt as _;

        use crate::rt;
        use crate::transport::WsTransport;

        let mut transport: Option<WsTransport> = None;
        let mut handles_alive = true;
        loop {
            // Send before acting on transport actions: a close queues its DISCONNECT packets first, and they must
            // leave before the transport goes.
            if let Some(t) = transport.as_mut() {
                while let Some(packet) = self.manager.poll_transmit() {
                    if let Err(e) = t.send(packet.to_frame()).await {
                        transport = None;
                        self.manager
                            .transport_closed(rt::now(), DisconnectReason::TransportError(e.to_string()));
                        break;
                    }
                }
            }
            if let Some(action) = self.manager.poll_action() {
                match action {
                    Action::OpenTransport => {
                        if let Some(old) = transport.take() {
                            old.close().await;
                        }
                        let attempt = WsTransport::connect(&self.url).fuse();
                        let deadline = rt::sleep(self.connect_timeout).fuse();
                        futures::pin_mut!(attempt, deadline);
                        let result = futures::select_biased! {
                            result = attempt => result.map_err(|e| e.to_string()),
                            () = deadline => Err("timed out opening the connection".to_owned()),
                        };
                        match result {
                            Ok(t) => {
                                transport = Some(t);
                                self.manager.transport_opened(rt::now(), TransportKind::WebSocket);
                            }
                            Err(e) => self
                                .manager
                                .transport_closed(rt::now(), DisconnectReason::TransportError(e)),
                        }
                    }
                    Action::CloseTransport => {
                        if let Some(old) = transport.take() {
                            old.close().await;
                        }
                    }
                }
                self.dispatch_outputs();
                continue;
            }
            self.dispatch_outputs();
            if (!handles_alive || self.closed) && transport.is_none() {
                return;
            }

            let wake = {
                let timer = rt::sleep_until(self.manager.poll_timeout()).fuse();
                let frame = async {
                    match transport.as_mut() {
                        Some(t) => t.recv().await,
                        None => std::future::pending().await,
                    }
                }
                .fuse();
                futures::pin_mut!(timer, frame);
                // Commands first: an emit made before a frame arrived keeps its place in line.
                futures::select_biased! {
                    command = commands.next() => Wake::Command(command),
                    frame = frame => Wake::Frame(frame),
                    () = timer => Wake::Timer,
                }
            };
            match wake {
                Wake::Command(Some(command)) => self.apply(command),
                Wake::Command(None) => {
                    // Every handle is gone: nobody can use the connection any more.
                    handles_alive = false;
                    self.manager.close(rt::now());
                }
                Wake::Frame(Some(Ok(frame))) => self.manager.handle_frame(rt::now(), frame),
                Wake::Frame(Some(Err(e))) => {
                    transport = None;
                    self.manager
                        .transport_closed(rt::now(), DisconnectReason::TransportError(e.to_string()));
                }
                Wake::Frame(None) => {
                    transport = None;
                    self.manager
                        .transport_closed(rt::now(), DisconnectReason::TransportClose);
                }
                Wake::Timer => self.manager.handle_timeout(rt::now()),
            }
        }
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
            Command::Emit {
                nsp,
                name,
                args,
                volatile,
                ack,
            } => {
                let (timeout, reply) = match ack {
                    Some((timeout, reply)) => (Some(timeout), Some(reply)),
                    None => (None, None),
                };
                match self.manager.emit(
                    now,
                    &nsp,
                    &name,
                    args,
                    Vec::new(),
                    EmitOptions { ack: timeout, volatile },
                ) {
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
                    self.state_watchers
                        .retain(|tx| tx.unbounded_send(state.clone()).is_ok());
                }
                Output::Connected { nsp, sid } => self.notify_namespace(&nsp, SocketEvent::Connected { sid }),
                Output::ConnectError { nsp, message, data } => {
                    self.notify_namespace(&nsp, SocketEvent::ConnectError { message, data })
                }
                Output::Disconnected { nsp, reason } => {
                    self.notify_namespace(&nsp, SocketEvent::Disconnected { reason })
                }
                Output::Event { nsp, name, args, .. } => {
                    let key = (nsp, name);
                    match self.subscriptions.get_mut(&key) {
                        Some(subscribers) => {
                            subscribers.retain(|tx| tx.unbounded_send(RawEvent { args: args.clone() }).is_ok());
                        }
                        None => tracing::debug!(nsp = %key.0, event = %key.1, "event without a listener"),
                    }
                }
                Output::Ack { id, args, .. } => {
                    if let Some(reply) = self.acks.remove(&id) {
                        // The caller may have stopped waiting; then nobody needs the answer.
                        let _ = reply.send(Ok(args));
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
            // A dropped stream means nobody wants these events any more.
            watchers.retain(|tx| tx.unbounded_send(event.clone()).is_ok());
        }
    }
}
