//! The sans-IO connection manager: one Engine.IO connection carrying any number of Socket.IO namespaces.
//!
//! It does no I/O and reads no clock. The driver feeds it what happened (a transport opened or closed, a packet
//! arrived, the time is now `t`) and drains what it wants done: packets to send, transports to open or close,
//! events for the application, and the next instant it needs to be woken at. The unit tests drive it this way with
//! nothing but packets and numbers.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::Value;

use crate::backoff::Backoff;
use crate::engine::{EnginePacket, OpenInfo};
use crate::packet::{Arg, Decoder, Packet, PacketKind};
use crate::{DecodeError, Millis};

/// Reconnection and timeout settings. [`Default`] gives the reference JavaScript client's values.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Reconnect after the transport is lost.
    pub reconnection: bool,
    /// Give up after this many failed attempts in a row; `None` tries forever.
    pub reconnection_attempts: Option<u32>,
    pub reconnection_delay: Duration,
    pub reconnection_delay_max: Duration,
    /// How far, as a fraction, each delay is randomly spread, so that clients do not return all at once.
    pub randomization_factor: f64,
    /// How long opening a transport and receiving the handshake may take.
    pub connect_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            reconnection: true,
            reconnection_attempts: None,
            reconnection_delay: Duration::from_millis(1000),
            reconnection_delay_max: Duration::from_millis(5000),
            randomization_factor: 0.5,
            connect_timeout: Duration::from_millis(20_000),
        }
    }
}

/// The transport an Engine.IO connection runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Polling,
    WebSocket,
}

impl TransportKind {
    /// The name used in URLs and handshakes.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        }
    }
}

/// Why a connection, or a namespace, went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The application closed it.
    ClientClosed,
    /// The server disconnected the socket on purpose; the client does not reconnect.
    ServerDisconnect,
    /// The server closed the connection (a CLOSE packet or a closed transport).
    TransportClose,
    /// The transport failed; the text says how.
    TransportError(String),
    /// No ping arrived within pingInterval + pingTimeout.
    PingTimeout,
    /// The server sent something that is not valid Engine.IO or Socket.IO.
    ParseError(String),
    /// Every reconnection attempt allowed by [`Config::reconnection_attempts`] failed.
    ReconnectFailed,
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::ClientClosed => f.write_str("closed by the client"),
            DisconnectReason::ServerDisconnect => f.write_str("disconnected by the server"),
            DisconnectReason::TransportClose => f.write_str("connection closed"),
            DisconnectReason::TransportError(e) => write!(f, "connection error: {e}"),
            DisconnectReason::PingTimeout => f.write_str("server stopped answering"),
            DisconnectReason::ParseError(e) => write!(f, "invalid data from the server: {e}"),
            DisconnectReason::ReconnectFailed => f.write_str("could not reconnect"),
        }
    }
}

impl DisconnectReason {
    /// Whether the connection may come back on its own.
    pub fn will_reconnect(&self) -> bool {
        !matches!(
            self,
            DisconnectReason::ClientClosed | DisconnectReason::ServerDisconnect | DisconnectReason::ReconnectFailed
        )
    }
}

/// The connection as a user interface would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    Connected { transport: TransportKind },
    Reconnecting { attempt: u32, delay: Duration },
    Disconnected { reason: DisconnectReason },
}

/// Something the driver must do with the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    OpenTransport,
    CloseTransport,
}

/// Something the application should hear about.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    State(ConnectionState),
    Connected {
        nsp: String,
        sid: Option<String>,
    },
    /// The server refused the namespace (CONNECT_ERROR). The namespace is not retried.
    ConnectError {
        nsp: String,
        message: String,
        data: Value,
    },
    Disconnected {
        nsp: String,
        reason: DisconnectReason,
    },
    Event {
        nsp: String,
        name: String,
        args: Vec<Arg>,
        attachments: Vec<Vec<u8>>,
        ack_id: Option<u64>,
    },
    Ack {
        id: u64,
        args: Vec<Arg>,
        attachments: Vec<Vec<u8>>,
    },
    /// An acknowledgement that will never come: its timeout passed, or the client was closed.
    AckFailed {
        id: u64,
        reason: AckFailure,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckFailure {
    Timeout,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NsStatus {
    /// Waiting for the engine, or for the server's CONNECT answer.
    Pending,
    Connected,
    /// Closed for good: refused, disconnected by the server, or by the application.
    Closed,
}

#[derive(Debug)]
struct Namespace {
    auth: Option<Value>,
    status: NsStatus,
    /// Packets emitted while the namespace was not connected, sent in order once it is.
    buffer: VecDeque<Packet>,
    /// The Engine.IO session (see `Manager::session`) on which this namespace's CONNECT went out and has not been
    /// answered yet. Left and opened again before that answer, the namespace waits for it rather than asking
    /// twice: a second CONNECT would have the server open a second socket, left behind in whatever rooms the first
    /// one joins.
    unanswered_connect: Option<u64>,
}

#[derive(Debug, Clone)]
enum Engine {
    /// No transport; a reconnection may be scheduled.
    Closed,
    /// A transport is being opened or waits for the OPEN packet.
    Opening {
        since: Millis,
    },
    Open {
        info: OpenInfo,
        heartbeat_deadline: Millis,
    },
}

#[derive(Debug)]
struct PendingAck {
    deadline: Option<Millis>,
    nsp: String,
    /// Handed to a transport. The server's answer can then only come over that connection: if it closes, the
    /// ack fails at once (the server's socket for it is gone). An ack still buffered goes out after a reconnection.
    sent: bool,
}

/// Options for one emit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmitOptions {
    /// Ask the server to acknowledge, and give up after this long (`Some(Duration::MAX)` waits forever).
    pub ack: Option<Duration>,
    /// Drop the packet rather than buffer it when the namespace is not connected.
    pub volatile: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("namespace {0} was never opened")]
    UnknownNamespace(String),
    #[error("namespace {0} is closed")]
    NamespaceClosed(String),
    #[error("the client is closed")]
    ClientClosed,
}

/// See the [module documentation](self).
#[derive(Debug)]
pub struct Manager {
    config: Config,
    engine: Engine,
    transport: TransportKind,
    decoder: Decoder,
    namespaces: BTreeMap<String, Namespace>,
    acks: BTreeMap<u64, PendingAck>,
    next_ack_id: u64,
    backoff: Backoff,
    reconnect_at: Option<Millis>,
    /// Set once the application closed the client or reconnection gave up: nothing reopens the transport.
    terminated: bool,
    /// Counts the Engine.IO handshakes: an answer can only come on the session its question went out on.
    session: u64,
    rng: u64,
    state: ConnectionState,
    actions: VecDeque<Action>,
    transmit: VecDeque<EnginePacket>,
    outputs: VecDeque<Output>,
}

impl Manager {
    /// A manager that immediately asks for a transport. `seed` feeds the reconnection jitter.
    pub fn new(config: Config, seed: u64) -> Self {
        let backoff =
            Backoff::new(config.reconnection_delay, config.reconnection_delay_max, config.randomization_factor);
        let mut manager = Self {
            config,
            engine: Engine::Closed,
            transport: TransportKind::WebSocket,
            decoder: Decoder::default(),
            namespaces: BTreeMap::new(),
            acks: BTreeMap::new(),
            next_ack_id: 0,
            backoff,
            reconnect_at: None,
            terminated: false,
            session: 0,
            // xorshift needs a non-zero state.
            rng: seed | 1,
            state: ConnectionState::Connecting,
            actions: VecDeque::new(),
            transmit: VecDeque::new(),
            outputs: VecDeque::new(),
        };
        manager.actions.push_back(Action::OpenTransport);
        manager.outputs.push_back(Output::State(ConnectionState::Connecting));
        manager
    }

    pub fn state(&self) -> &ConnectionState {
        &self.state
    }

    /// The handshake of the current connection, once it is open.
    pub fn open_info(&self) -> Option<&OpenInfo> {
        match &self.engine {
            Engine::Open { info, .. } => Some(info),
            _ => None,
        }
    }

    /// Whether the namespace is connected right now.
    pub fn is_connected(&self, nsp: &str) -> bool {
        matches!(self.engine, Engine::Open { .. })
            && self.namespaces.get(nsp).is_some_and(|ns| ns.status == NsStatus::Connected)
    }

    /// Whether the next action closes the transport (so that packets queued before it, such as DISCONNECTs,
    /// should still leave over it).
    pub fn closing_transport(&self) -> bool {
        self.actions.front() == Some(&Action::CloseTransport)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_transmit(&mut self) -> Option<EnginePacket> {
        self.transmit.pop_front()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest instant at which [`Manager::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let engine = match &self.engine {
            Engine::Closed => self.reconnect_at,
            Engine::Opening { since } => Some(since.after(self.config.connect_timeout)),
            Engine::Open { heartbeat_deadline, .. } => Some(*heartbeat_deadline),
        };
        let ack = self.acks.values().filter_map(|a| a.deadline).min();
        [engine, ack].into_iter().flatten().min()
    }

    /// Opens (or reopens) a namespace. If the engine is open the CONNECT goes out at once, else on the next handshake.
    pub fn open_namespace(&mut self, nsp: &str, auth: Option<Value>) {
        let ns = self.namespaces.entry(nsp.to_owned()).or_insert_with(|| Namespace {
            auth: None,
            status: NsStatus::Closed,
            buffer: VecDeque::new(),
            unanswered_connect: None,
        });
        ns.auth = auth;
        match ns.status {
            NsStatus::Connected => return,
            // Its CONNECT is out, or goes out with the next handshake: a second one would make the server open a
            // second socket, left behind in whatever rooms the first one joins.
            NsStatus::Pending if !self.terminated => return,
            NsStatus::Pending | NsStatus::Closed => {}
        }
        ns.status = NsStatus::Pending;
        let open = matches!(self.engine, Engine::Open { .. });
        if open && ns.unanswered_connect == Some(self.session) {
            // Left and opened again while the server was answering: its answer to the CONNECT already out opens
            // this namespace (with the auth sent then).
        } else if open {
            ns.unanswered_connect = Some(self.session);
            let packet = Packet::connect(nsp, ns.auth.clone());
            self.send_packet(&packet);
        } else if self.terminated {
            // Opening a namespace on a closed client starts it again, as `socket.connect()` does in JavaScript.
            self.terminated = false;
            self.backoff.reset();
            self.set_state(ConnectionState::Connecting);
            self.actions.push_back(Action::OpenTransport);
        }
    }

    /// Leaves a namespace: a DISCONNECT goes out, buffered packets are dropped, and the namespace stays closed.
    /// When no namespace is left open, the connection is closed.
    pub fn close_namespace(&mut self, now: Millis, nsp: &str) {
        if !self.namespaces.contains_key(nsp) {
            return;
        }
        if self.end_namespace(nsp) {
            self.send_packet(&Packet::disconnect(nsp));
            self.outputs
                .push_back(Output::Disconnected { nsp: nsp.to_owned(), reason: DisconnectReason::ClientClosed });
        }
        if self.namespaces.values().all(|ns| ns.status == NsStatus::Closed) {
            self.close(now);
        }
    }

    /// Closes everything for good: namespaces get a DISCONNECT, pending acks fail, nothing reconnects.
    pub fn close(&mut self, _now: Millis) {
        if self.terminated {
            return;
        }
        let open = matches!(self.engine, Engine::Open { .. });
        let connected: Vec<String> = self
            .namespaces
            .iter()
            .filter(|(_, ns)| ns.status == NsStatus::Connected)
            .map(|(name, _)| name.clone())
            .collect();
        for nsp in connected {
            if open {
                self.send_packet(&Packet::disconnect(&nsp));
            }
            self.outputs.push_back(Output::Disconnected { nsp, reason: DisconnectReason::ClientClosed });
        }
        for ns in self.namespaces.values_mut() {
            ns.status = NsStatus::Closed;
            ns.buffer.clear();
        }
        self.fail_all_acks(AckFailure::Closed);
        self.terminate(DisconnectReason::ClientClosed);
    }

    /// Emits `[name, ...args]` on a namespace. Returns the ack id when an ack was asked for.
    pub fn emit(
        &mut self,
        now: Millis,
        nsp: &str,
        name: &str,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
        options: EmitOptions,
    ) -> Result<Option<u64>, EmitError> {
        match self.namespaces.get(nsp).map(|ns| ns.status) {
            None => return Err(EmitError::UnknownNamespace(nsp.to_owned())),
            Some(NsStatus::Closed) => return Err(EmitError::NamespaceClosed(nsp.to_owned())),
            Some(_) if self.terminated => return Err(EmitError::ClientClosed),
            Some(_) => {}
        }
        let connected = self.is_connected(nsp);
        let id = options.ack.map(|timeout| {
            let id = self.next_ack_id;
            self.next_ack_id += 1;
            let deadline = (timeout != Duration::MAX).then(|| now.after(timeout));
            self.acks.insert(id, PendingAck { deadline, nsp: nsp.to_owned(), sent: connected });
            id
        });
        let packet = Packet::event(nsp, name, args, attachments, id);
        if connected {
            self.send_packet(&packet);
        } else if !options.volatile
            && let Some(ns) = self.namespaces.get_mut(nsp)
        {
            ns.buffer.push_back(packet);
        }
        Ok(id)
    }

    /// Answers an event the server sent with an ack id.
    pub fn ack(&mut self, nsp: &str, id: u64, args: Vec<Value>, attachments: Vec<Vec<u8>>) {
        if self.is_connected(nsp) {
            self.send_packet(&Packet::ack(nsp, id, args, attachments));
        }
    }

    /// The driver opened a transport; the handshake (OPEN packet) is awaited next.
    pub fn transport_opened(&mut self, now: Millis, kind: TransportKind) {
        // Whatever was queued for an earlier transport is not for this one (buffered emits wait in namespaces).
        self.transmit.clear();
        // A packet half-received on another transport (a binary one waiting for its attachments) is not coming.
        self.decoder.reset();
        self.transport = kind;
        self.engine = Engine::Opening { since: now };
    }

    /// The driver switched the open connection to another transport (after an upgrade).
    pub fn transport_upgraded(&mut self, kind: TransportKind) {
        self.transport = kind;
        if let Engine::Open { .. } = self.engine {
            self.set_state(ConnectionState::Connected { transport: kind });
        }
    }

    /// The transport closed or failed, or could not be opened.
    pub fn transport_closed(&mut self, now: Millis, reason: DisconnectReason) {
        if matches!(self.engine, Engine::Closed) && self.reconnect_at.is_some() {
            return;
        }
        tracing::debug!(%reason, "transport closed");
        self.engine = Engine::Closed;
        self.decoder.reset();
        // Packets queued for the dead transport are lost with it, and no answer to what it carried can come now:
        // those acks fail, so that callers retry on the next connection instead of waiting out their timeouts.
        self.transmit.clear();
        self.fail_acks(AckFailure::Closed, |ack| ack.sent);
        for (nsp, ns) in &mut self.namespaces {
            if ns.status == NsStatus::Connected {
                ns.status = NsStatus::Pending;
                self.outputs.push_back(Output::Disconnected { nsp: nsp.clone(), reason: reason.clone() });
            }
        }
        if self.terminated {
            return;
        }
        self.schedule_reconnect(now, reason);
    }

    /// Feeds one WebSocket frame from the transport.
    pub fn handle_frame(&mut self, now: Millis, frame: crate::Frame) {
        match EnginePacket::from_frame(frame) {
            Ok(packet) => self.handle_packet(now, packet),
            Err(e) => self.on_parse_error(now, e),
        }
    }

    /// The transport delivered something that is not an Engine.IO packet: the connection is unusable.
    pub fn handle_invalid(&mut self, now: Millis, error: DecodeError) {
        self.on_parse_error(now, error);
    }

    /// Feeds one Engine.IO packet from the transport.
    pub fn handle_packet(&mut self, now: Millis, packet: EnginePacket) {
        tracing::trace!(?packet, "received");
        match packet {
            EnginePacket::Open(info) => self.on_open(now, info),
            EnginePacket::Ping(data) => {
                if let Engine::Open { info, heartbeat_deadline } = &mut self.engine {
                    *heartbeat_deadline = now.after(heartbeat_grace(info));
                }
                self.transmit.push_back(EnginePacket::Pong(data));
            }
            EnginePacket::Close => {
                self.actions.push_back(Action::CloseTransport);
                self.transport_closed(now, DisconnectReason::TransportClose);
            }
            EnginePacket::Message(text) => match self.decoder.decode_text(&text) {
                Ok(Some(packet)) => self.on_socket_packet(now, packet),
                Ok(None) => {}
                Err(e) => self.on_parse_error(now, e),
            },
            EnginePacket::Binary(bytes) => match self.decoder.decode_binary(bytes) {
                Ok(Some(packet)) => self.on_socket_packet(now, packet),
                Ok(None) => {}
                Err(e) => self.on_parse_error(now, e),
            },
            EnginePacket::Pong(_) | EnginePacket::Upgrade | EnginePacket::Noop => {}
        }
    }

    /// Fires whatever is due at `now`: a missed heartbeat, a handshake that took too long, ack timeouts, a
    /// scheduled reconnection.
    pub fn handle_timeout(&mut self, now: Millis) {
        match &self.engine {
            Engine::Open { heartbeat_deadline, .. } if now >= *heartbeat_deadline => {
                self.actions.push_back(Action::CloseTransport);
                self.transport_closed(now, DisconnectReason::PingTimeout);
            }
            Engine::Opening { since } if now >= since.after(self.config.connect_timeout) => {
                self.actions.push_back(Action::CloseTransport);
                self.transport_closed(now, DisconnectReason::TransportError("timed out opening the connection".into()));
            }
            Engine::Closed if self.reconnect_at.is_some_and(|at| now >= at) => {
                self.reconnect_at = None;
                self.engine = Engine::Opening { since: now };
                self.actions.push_back(Action::OpenTransport);
            }
            _ => {}
        }
        let expired: Vec<u64> =
            self.acks.iter().filter(|(_, ack)| ack.deadline.is_some_and(|d| now >= d)).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(ack) = self.acks.remove(&id)
                && let Some(ns) = self.namespaces.get_mut(&ack.nsp)
            {
                // Given up on: an emit still waiting for the connection must not go out after all (the caller
                // may be retrying it already).
                ns.buffer.retain(|packet| packet.id != Some(id));
            }
            self.outputs.push_back(Output::AckFailed { id, reason: AckFailure::Timeout });
        }
    }

    fn on_open(&mut self, now: Millis, info: OpenInfo) {
        let deadline = now.after(heartbeat_grace(&info));
        self.engine = Engine::Open { info, heartbeat_deadline: deadline };
        self.session += 1;
        self.backoff.reset();
        self.reconnect_at = None;
        self.set_state(ConnectionState::Connected { transport: self.transport });
        let session = self.session;
        let pending: Vec<(String, Option<Value>)> = self
            .namespaces
            .iter_mut()
            .filter(|(_, ns)| ns.status == NsStatus::Pending)
            .map(|(name, ns)| {
                ns.unanswered_connect = Some(session);
                (name.clone(), ns.auth.clone())
            })
            .collect();
        for (nsp, auth) in pending {
            self.send_packet(&Packet::connect(&nsp, auth));
        }
    }

    fn on_socket_packet(&mut self, now: Millis, mut packet: Packet) {
        let Some(ns) = self.namespaces.get_mut(&packet.nsp) else {
            tracing::debug!(nsp = %packet.nsp, "packet for a namespace this client did not open");
            return;
        };
        match packet.kind {
            PacketKind::Connect => {
                ns.unanswered_connect = None;
                match ns.status {
                    NsStatus::Pending => {}
                    // Left while the server was still answering: tell it, or it keeps that socket (in its rooms,
                    // in presence) for as long as the connection lasts.
                    NsStatus::Closed => return self.send_packet(&Packet::disconnect(&packet.nsp)),
                    NsStatus::Connected => return,
                }
                ns.status = NsStatus::Connected;
                let buffered: Vec<Packet> = ns.buffer.drain(..).collect();
                for id in buffered.iter().filter_map(|packet| packet.id) {
                    if let Some(ack) = self.acks.get_mut(&id) {
                        ack.sent = true;
                    }
                }
                let sid = packet.value().and_then(|d| d.get("sid")).and_then(Value::as_str).map(str::to_owned);
                self.outputs.push_back(Output::Connected { nsp: packet.nsp.clone(), sid });
                // Buffered emits go out after the CONNECT answer, in the order they were made.
                for buffered in &buffered {
                    self.send_packet(buffered);
                }
            }
            PacketKind::ConnectError => {
                ns.unanswered_connect = None;
                self.end_namespace(&packet.nsp);
                let data = packet.value().cloned().unwrap_or(Value::Null);
                let message = match &data {
                    Value::String(s) => s.clone(),
                    other => other.get("message").and_then(Value::as_str).unwrap_or("connection refused").to_owned(),
                };
                self.outputs.push_back(Output::ConnectError { nsp: packet.nsp, message, data });
                self.close_if_no_namespace_left(now, DisconnectReason::ServerDisconnect);
            }
            PacketKind::Disconnect => {
                if self.end_namespace(&packet.nsp) {
                    self.outputs.push_back(Output::Disconnected {
                        nsp: packet.nsp,
                        reason: DisconnectReason::ServerDisconnect,
                    });
                }
                self.close_if_no_namespace_left(now, DisconnectReason::ServerDisconnect);
            }
            PacketKind::Event | PacketKind::BinaryEvent => {
                if ns.status != NsStatus::Connected {
                    return;
                }
                let Some((name, args)) = packet.take_event() else {
                    return;
                };
                self.outputs.push_back(Output::Event {
                    nsp: packet.nsp,
                    name,
                    args,
                    attachments: packet.attachments,
                    ack_id: packet.id,
                });
            }
            PacketKind::Ack | PacketKind::BinaryAck => {
                let Some(id) = packet.id else { return };
                if self.acks.remove(&id).is_none() {
                    // Late (already timed out) or unknown: nobody waits for it any more.
                    return;
                }
                let args = packet.take_args();
                self.outputs.push_back(Output::Ack { id, args, attachments: packet.attachments });
            }
        }
    }

    fn on_parse_error(&mut self, now: Millis, error: DecodeError) {
        tracing::warn!(%error, "invalid packet from the server; closing the connection");
        self.actions.push_back(Action::CloseTransport);
        self.transport_closed(now, DisconnectReason::ParseError(error.to_string()));
    }

    fn close_if_no_namespace_left(&mut self, _now: Millis, reason: DisconnectReason) {
        if self.namespaces.values().any(|ns| ns.status != NsStatus::Closed) {
            return;
        }
        self.fail_all_acks(AckFailure::Closed);
        self.terminate(reason);
    }

    fn terminate(&mut self, reason: DisconnectReason) {
        self.terminated = true;
        self.reconnect_at = None;
        if !matches!(self.engine, Engine::Closed) {
            self.engine = Engine::Closed;
            self.actions.push_back(Action::CloseTransport);
        }
        self.decoder.reset();
        self.set_state(ConnectionState::Disconnected { reason });
    }

    fn schedule_reconnect(&mut self, now: Millis, reason: DisconnectReason) {
        let exhausted = self.config.reconnection_attempts.is_some_and(|max| self.backoff.attempts() >= max);
        if !self.config.reconnection || exhausted {
            self.fail_all_acks(AckFailure::Closed);
            let reason = if exhausted { DisconnectReason::ReconnectFailed } else { reason };
            self.terminate(reason);
            return;
        }
        let random = self.next_random();
        let delay = self.backoff.next_delay(random);
        self.reconnect_at = Some(now.after(delay));
        self.set_state(ConnectionState::Reconnecting { attempt: self.backoff.attempts(), delay });
    }

    /// Closes `nsp` on this side: its buffered emits are dropped and its pending acks fail (no answer can come
    /// for them now). Returns whether it was connected.
    fn end_namespace(&mut self, nsp: &str) -> bool {
        let Some(ns) = self.namespaces.get_mut(nsp) else { return false };
        let was_connected = ns.status == NsStatus::Connected;
        ns.status = NsStatus::Closed;
        ns.buffer.clear();
        self.fail_acks(AckFailure::Closed, |ack| ack.nsp == nsp);
        was_connected
    }

    fn fail_all_acks(&mut self, reason: AckFailure) {
        self.fail_acks(reason, |_| true);
    }

    /// Fails the pending acks that `which` picks, in the order they were asked for.
    fn fail_acks(&mut self, reason: AckFailure, which: impl Fn(&PendingAck) -> bool) {
        let failed: Vec<u64> = self.acks.iter().filter(|(_, ack)| which(ack)).map(|(id, _)| *id).collect();
        for id in failed {
            self.acks.remove(&id);
            self.outputs.push_back(Output::AckFailed { id, reason });
        }
    }

    fn send_packet(&mut self, packet: &Packet) {
        let (text, attachments) = packet.encode();
        self.transmit.push_back(EnginePacket::Message(text));
        for attachment in attachments {
            self.transmit.push_back(EnginePacket::Binary(attachment.clone()));
        }
    }

    fn set_state(&mut self, state: ConnectionState) {
        if self.state != state {
            tracing::debug!(?state, "connection state");
            self.state = state.clone();
            self.outputs.push_back(Output::State(state));
        }
    }

    /// xorshift64*: plenty for spreading reconnection delays.
    fn next_random(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let value = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (value >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How long after a ping (or the handshake) the next ping may take before the server counts as gone.
fn heartbeat_grace(info: &OpenInfo) -> Duration {
    Duration::from_millis(info.ping_interval.saturating_add(info.ping_timeout))
}
