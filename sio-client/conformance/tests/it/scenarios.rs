//! Each scenario takes the kind of peer to run against. Waits are on conditions, with a deadline; the few fixed
//! windows (`QUIET`) assert that something does *not* happen, and are several times longer than it would take.

use std::time::Duration;

use futures::{Stream, StreamExt};
use protocol::Event;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sio_client::{AckError, Client, Config, ConnectionState, DisconnectReason, Socket, SocketEvent, TransportKind};

use crate::peers::{Kind, Options, Peer};
use crate::proxy::{Filter, Mode, Proxy, Request};

/// How long anything expected may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(15);
/// How long we watch for something that must not happen: at least five reconnection delays of [`fast`].
const QUIET: Duration = Duration::from_millis(800);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EchoAck {
    text: String,
}

impl Event for EchoAck {
    const NAME: &'static str = "echo-ack";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NoAck {}

impl Event for NoAck {
    const NAME: &'static str = "no-ack";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    key: String,
    n: u64,
}

impl Event for Record {
    const NAME: &'static str = "record";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Recorded(String);

impl Event for Recorded {
    const NAME: &'static str = "recorded";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DisconnectMe {}

impl Event for DisconnectMe {
    const NAME: &'static str = "disconnect-me";
}

#[derive(Serialize)]
struct Token {
    token: &'static str,
}

/// Reconnection without jitter and with short delays, so that tests run fast and delays are exact.
fn fast() -> Config {
    Config {
        reconnection_delay: Duration::from_millis(100),
        reconnection_delay_max: Duration::from_millis(400),
        randomization_factor: 0.0,
        ..Config::default()
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits for the first item of `stream` that `pick` accepts, skipping the others.
async fn wait_for<S: Stream + Unpin, T>(what: &str, stream: &mut S, mut pick: impl FnMut(&S::Item) -> Option<T>) -> T {
    within(what, async {
        while let Some(item) = stream.next().await {
            if let Some(found) = pick(&item) {
                return found;
            }
        }
        panic!("the stream ended while waiting for {what}");
    })
    .await
}

async fn connected(lifecycle: &mut (impl Stream<Item = SocketEvent> + Unpin)) -> Option<String> {
    wait_for("the namespace to connect", lifecycle, |e| match e {
        SocketEvent::Connected { sid } => Some(sid.clone()),
        _ => None,
    })
    .await
}

async fn echo(socket: &Socket, text: &str) {
    let answer: EchoAck =
        within("an echo", socket.emit_with_ack(&EchoAck { text: text.into() }, PATIENCE)).await.unwrap();
    assert_eq!(answer.text, text);
}

/// Everything the stream has right now, without waiting.
fn drain<T>(stream: &mut (impl Stream<Item = T> + Unpin)) -> Vec<T> {
    let mut items = Vec::new();
    while let Some(Some(item)) = stream.next().now_or_never() {
        items.push(item);
    }
    items
}

use futures::FutureExt as _;

fn first_transport(states: &[ConnectionState]) -> Option<TransportKind> {
    states.iter().find_map(|s| match s {
        ConnectionState::Connected { transport } => Some(*transport),
        _ => None,
    })
}

pub async fn a_handshake_over_polling_is_upgraded_to_websocket(kind: Kind) {
    let peer = Peer::start(kind).await;
    let client = Client::builder(peer.url()).connect();
    let mut states = client.state_changes();
    let socket = client.socket("/");
    let mut lifecycle = socket.lifecycle();
    assert_eq!(next_connection(&mut states).await, TransportKind::Polling, "the first transport is long-polling");
    upgraded(&mut states).await;
    connected(&mut lifecycle).await;
    echo(&socket, "after the upgrade").await;
}

pub async fn a_websocket_only_client_never_polls(kind: Kind) {
    let peer = Peer::start(kind).await;
    let client = Client::builder(peer.url()).transports(&[TransportKind::WebSocket]).connect();
    let mut states = client.state_changes();
    let socket = client.socket("/");
    let mut lifecycle = socket.lifecycle();
    connected(&mut lifecycle).await;
    echo(&socket, "websocket only").await;
    assert_eq!(first_transport(&drain(&mut states)), Some(TransportKind::WebSocket));
}

pub async fn a_polling_only_server_keeps_the_client_on_polling(kind: Kind) {
    let peer = Peer::start_with(kind, Options { transports: "polling", ..Options::default() }).await;
    let client = Client::builder(peer.url()).connect();
    let socket = client.socket("/");
    let mut lifecycle = socket.lifecycle();
    connected(&mut lifecycle).await;
    for i in 0..5 {
        echo(&socket, &format!("polling {i}")).await;
    }
    // The server offered no upgrade, so none was tried: the state is final, not a race.
    assert_eq!(client.state(), ConnectionState::Connected { transport: TransportKind::Polling });
}

pub async fn a_blocked_websocket_leaves_the_client_on_polling(kind: Kind) {
    let peer = Peer::start(kind).await;
    let proxy = Proxy::start_filtered(peer.port, Filter::NoWebSocket).await;
    let client = Client::builder(proxy.url()).connect();
    let socket = client.socket("/");
    let mut lifecycle = socket.lifecycle();
    connected(&mut lifecycle).await;
    // The server offers the upgrade; the proxy kills the WebSocket; the client keeps the connection it has.
    within("the upgrade attempt", async {
        while proxy.blocked() == 0 {
            echo(&socket, "waiting for the upgrade attempt").await;
        }
    })
    .await;
    for i in 0..5 {
        echo(&socket, &format!("through the proxy {i}")).await;
    }
    assert_eq!(client.state(), ConnectionState::Connected { transport: TransportKind::Polling });
    assert!(drain(&mut lifecycle).iter().all(|e| !matches!(e, SocketEvent::Disconnected { .. })));
}

pub async fn a_polling_only_client_never_upgrades(kind: Kind) {
    let peer = Peer::start(kind).await;
    let client = Client::builder(peer.url()).transports(&[TransportKind::Polling]).connect();
    let socket = client.socket("/");
    let mut lifecycle = socket.lifecycle();
    connected(&mut lifecycle).await;
    echo(&socket, "polling only").await;
    assert_eq!(client.state(), ConnectionState::Connected { transport: TransportKind::Polling });
}

/// The transport of the next `Connected` state.
async fn next_connection(states: &mut (impl Stream<Item = ConnectionState> + Unpin)) -> TransportKind {
    wait_for("a connection", states, |s| match s {
        ConnectionState::Connected { transport } => Some(*transport),
        _ => None,
    })
    .await
}

async fn upgraded(states: &mut (impl Stream<Item = ConnectionState> + Unpin)) {
    wait_for("the upgrade", states, |s| {
        (*s == ConnectionState::Connected { transport: TransportKind::WebSocket }).then_some(())
    })
    .await;
}

async fn disconnected(lifecycle: &mut (impl Stream<Item = SocketEvent> + Unpin)) {
    wait_for("the disconnect", lifecycle, |e| matches!(e, SocketEvent::Disconnected { .. }).then_some(())).await;
}

/// A client on `/` through a proxy to a peer, with its state and lifecycle streams, for the reconnection tests.
/// Bind every field (the peer and the client stop when dropped).
struct Proxied {
    _peer: Peer,
    proxy: Proxy,
    _client: Client,
    states: futures::channel::mpsc::UnboundedReceiver<ConnectionState>,
    socket: Socket,
    lifecycle: futures::channel::mpsc::UnboundedReceiver<SocketEvent>,
}

impl Proxied {
    async fn start(kind: Kind, remember_upgrade: bool) -> Self {
        let peer = Peer::start(kind).await;
        let proxy = Proxy::start(peer.port).await;
        let client = Client::builder(proxy.url()).config(fast()).remember_upgrade(remember_upgrade).connect();
        let states = client.state_changes();
        let socket = client.socket("/");
        let lifecycle = socket.lifecycle();
        Self { _peer: peer, proxy, _client: client, states, socket, lifecycle }
    }
}

pub async fn a_remembered_upgrade_reconnects_over_websocket_without_polling(kind: Kind) {
    let Proxied { _peer, proxy, _client, mut states, socket, mut lifecycle } = Proxied::start(kind, true).await;
    assert_eq!(next_connection(&mut states).await, TransportKind::Polling, "the first connection polls first");
    upgraded(&mut states).await;
    connected(&mut lifecycle).await;

    proxy.set(Mode::Down);
    // Attempts that fail while the server is unreachable must not make the client forget the WebSocket.
    wait_for("a second attempt", &mut states, |s| {
        matches!(s, ConnectionState::Reconnecting { attempt, .. } if *attempt >= 2).then_some(())
    })
    .await;
    let before = proxy.requests().len();
    proxy.set(Mode::Open);
    assert_eq!(next_connection(&mut states).await, TransportKind::WebSocket, "the reconnection opens a WebSocket");
    connected(&mut lifecycle).await;
    echo(&socket, "back over WebSocket").await;
    assert_eq!(proxy.requests()[before..], [Request::WebSocket], "one WebSocket, and no long-polling, on the way back");
}

/// Every state up to the next `Connected`, that one included.
async fn states_until_connected(states: &mut (impl Stream<Item = ConnectionState> + Unpin)) -> Vec<ConnectionState> {
    within("a connection", async {
        let mut seen = Vec::new();
        while let Some(state) = states.next().await {
            let done = matches!(state, ConnectionState::Connected { .. });
            seen.push(state);
            if done {
                return seen;
            }
        }
        panic!("the states ended before a connection");
    })
    .await
}

fn attempts(states: &[ConnectionState]) -> usize {
    states.iter().filter(|s| matches!(s, ConnectionState::Reconnecting { .. })).count()
}

/// A remembered client, upgraded and connected through `proxy`, then cut off with the proxy's filter set to
/// `filter`. Returns how the proxy saw the way back begin, and the states up to the first connection.
async fn cut_off_after_an_upgrade(
    proxy: &Proxy,
    filter: Filter,
    states: &mut (impl Stream<Item = ConnectionState> + Unpin),
    lifecycle: &mut (impl Stream<Item = SocketEvent> + Unpin),
) -> (Vec<Request>, Vec<ConnectionState>) {
    upgraded(states).await;
    connected(lifecycle).await;
    proxy.set_filter(filter);
    let before = proxy.requests().len();
    drain(states);
    proxy.cut();
    disconnected(lifecycle).await;
    let seen = states_until_connected(states).await;
    connected(lifecycle).await;
    (proxy.requests()[before..].to_vec(), seen)
}

pub async fn a_remembered_websocket_that_is_blocked_now_falls_back_to_polling_and_is_forgotten(kind: Kind) {
    let Proxied { _peer, proxy, _client, mut states, socket, mut lifecycle } = Proxied::start(kind, true).await;

    // The connection drops, and a proxy that cuts WebSockets is in the way now.
    let (way_back, seen) = cut_off_after_an_upgrade(&proxy, Filter::NoWebSocket, &mut states, &mut lifecycle).await;
    assert_eq!(seen.last(), Some(&ConnectionState::Connected { transport: TransportKind::Polling }));
    assert_eq!(attempts(&seen), 1, "long-polling comes in the same attempt as the WebSocket: {seen:?}");
    assert_eq!(way_back.get(..2), Some(&[Request::BlockedWebSocket, Request::Polling][..]));
    echo(&socket, "over long-polling").await;

    // WebSockets pass again: having forgotten, the client polls first and upgrades as on a first connection.
    proxy.set_filter(Filter::Everything);
    let before = proxy.requests().len();
    proxy.cut();
    disconnected(&mut lifecycle).await;
    assert_eq!(next_connection(&mut states).await, TransportKind::Polling, "after forgetting, it polls first");
    upgraded(&mut states).await;
    assert_eq!(proxy.requests().get(before), Some(&Request::Polling));
    connected(&mut lifecycle).await;
    echo(&socket, "upgraded again").await;
}

pub async fn a_remembered_websocket_cut_before_its_first_frame_falls_back_to_polling_at_once(kind: Kind) {
    let Proxied { _peer, proxy, _client, mut states, socket, mut lifecycle } = Proxied::start(kind, true).await;

    // The WebSocket opens, then dies before the handshake: as the browser sees a refused WebSocket. The
    // upgrade that follows on long-polling passes, so the client is back on WebSocket in the end.
    let (way_back, seen) =
        cut_off_after_an_upgrade(&proxy, Filter::NewWebSocketCutWhenOpen, &mut states, &mut lifecycle).await;
    assert_eq!(seen.last(), Some(&ConnectionState::Connected { transport: TransportKind::Polling }));
    assert_eq!(attempts(&seen), 1, "long-polling comes in the same attempt as the WebSocket: {seen:?}");
    assert_eq!(way_back.get(..2), Some(&[Request::CutWebSocket, Request::Polling][..]));
    upgraded(&mut states).await;
    echo(&socket, "upgraded again").await;
}

pub async fn a_client_that_does_not_remember_polls_first_on_every_reconnection(kind: Kind) {
    let Proxied { _peer, proxy, _client, mut states, socket: _socket, mut lifecycle } =
        Proxied::start(kind, false).await;
    upgraded(&mut states).await;
    connected(&mut lifecycle).await;

    proxy.set(Mode::Down);
    disconnected(&mut lifecycle).await;
    proxy.set(Mode::Open);
    assert_eq!(next_connection(&mut states).await, TransportKind::Polling);
    upgraded(&mut states).await;
}

pub async fn heartbeats_keep_the_connection_and_a_silent_server_is_detected(kind: Kind) {
    let options = Options { ping_interval_ms: 200, ping_timeout_ms: 400, ..Options::default() };
    let peer = Peer::start_with(kind, options).await;
    let proxy = Proxy::start(peer.port).await;
    let client = Client::builder(proxy.url()).config(fast()).connect();
    let mut states = client.state_changes();
    let socket = client.socket("/");
    let mut lifecycle = socket.lifecycle();
    let sid = connected(&mut lifecycle).await;

    // Four ping cycles: the server drops a client that does not answer a ping within 400 ms.
    tokio::time::sleep(QUIET).await;
    echo(&socket, "still here").await;
    assert!(
        drain(&mut lifecycle).iter().all(|e| !matches!(e, SocketEvent::Disconnected { .. })),
        "the connection survived {QUIET:?} of heartbeats (sid {sid:?})"
    );

    proxy.set(Mode::Frozen);
    let reason = wait_for("the silent server to be noticed", &mut lifecycle, |e| match e {
        SocketEvent::Disconnected { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::PingTimeout);
    wait_for("a reconnection attempt", &mut states, |s| {
        matches!(s, ConnectionState::Reconnecting { .. }).then_some(())
    })
    .await;
}

pub async fn an_ack_times_out_on_time_while_a_write_waits_for_a_server_that_stopped_reading(kind: Kind) {
    let peer = Peer::start(kind).await;
    let proxy = Proxy::start(peer.port).await;
    let client = Client::builder(proxy.url()).config(fast()).transports(&[TransportKind::WebSocket]).connect();
    let socket = client.socket("/");
    let mut lifecycle = socket.lifecycle();
    connected(&mut lifecycle).await;

    // Nothing the client writes is read any more: once the socket buffers on the way are full (8 MiB is more
    // than they hold here), the driver's write waits, until the server's ping timeout (20 s) gives it up.
    proxy.set(Mode::Frozen);
    let ack = socket.emit_raw_with_ack("nobody-answers", Vec::new(), Vec::new(), Duration::from_millis(300));
    for _ in 0..32 {
        socket.emit_raw("blob", Vec::new(), vec![vec![0; 256 * 1024]], false);
    }
    // Within the test's patience (15 s), not only once that write gives up.
    let outcome = within("the ack's timeout", ack).await;
    assert!(matches!(outcome, Err(AckError::Timeout)), "{outcome:?}");
}

pub async fn a_restarted_server_is_reconnected_with_backoff_on_every_namespace(kind: Kind) {
    let mut peer = Peer::start(kind).await;
    let config = Config { reconnection_delay: Duration::from_millis(100), ..fast() };
    let client = Client::builder(peer.url()).config(config).connect();
    let mut states = client.state_changes();
    let main = client.socket("/");
    let admin = client.socket_with_auth("/admin", &Token { token: "secret" }).unwrap();
    let (mut main_events, mut admin_events) = (main.lifecycle(), admin.lifecycle());
    connected(&mut main_events).await;
    connected(&mut admin_events).await;

    peer.kill().await;
    let mut delays = Vec::new();
    while delays.len() < 3 {
        let (attempt, delay) = wait_for("a reconnection attempt", &mut states, |s| match s {
            ConnectionState::Reconnecting { attempt, delay } => Some((*attempt, *delay)),
            _ => None,
        })
        .await;
        assert_eq!(attempt as usize, delays.len() + 1, "attempts are counted");
        delays.push(delay.as_millis());
    }
    assert_eq!(delays, vec![100, 200, 400], "the delay doubles");

    peer.restart().await;
    connected(&mut main_events).await;
    connected(&mut admin_events).await;
    echo(&main, "back on /").await;
    echo(&admin, "back on /admin").await;
}

pub async fn emits_made_offline_are_delivered_once_after_reconnecting(kind: Kind) {
    let peer = Peer::start(kind).await;
    let proxy = Proxy::start(peer.port).await;
    let client = Client::builder(proxy.url()).config(fast()).connect();
    let socket = client.socket("/");
    let mut lifecycle = socket.lifecycle();
    connected(&mut lifecycle).await;
    let key = format!("offline-{kind:?}");

    socket.emit(&Record { key: key.clone(), n: 1 }).unwrap();
    let before = wait_until_recorded(&socket, &key, 1).await;
    assert_eq!(before, vec![1]);

    proxy.set(Mode::Down);
    disconnected(&mut lifecycle).await;
    for n in 2..=4 {
        socket.emit(&Record { key: key.clone(), n }).unwrap();
    }
    proxy.set(Mode::Open);
    connected(&mut lifecycle).await;
    let mut after = wait_until_recorded(&socket, &key, 4).await;
    // socketioxide runs each event's handler as its own task, so arrival order at the handler is not guaranteed;
    // what matters here is that each message arrived, and only once.
    after.sort_unstable();
    assert_eq!(after, vec![1, 2, 3, 4]);
}

/// Asks the peer what it recorded under `key` until it has at least `count` entries.
async fn wait_until_recorded(socket: &Socket, key: &str, count: usize) -> Vec<u64> {
    within("the records", async {
        loop {
            let list: Vec<u64> = socket.emit_with_ack(&Recorded(key.to_owned()), PATIENCE).await.unwrap();
            if list.len() >= count {
                return list;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

pub async fn acks_carry_the_answer_and_time_out_without_one(kind: Kind) {
    let peer = Peer::start(kind).await;
    let client = Client::builder(peer.url()).connect();
    let socket = client.socket("/");
    let mut lifecycle = socket.lifecycle();
    connected(&mut lifecycle).await;
    echo(&socket, "acknowledged").await;
    let started = tokio::time::Instant::now();
    let answer = socket.emit_with_ack::<_, EchoAck>(&NoAck {}, Duration::from_millis(300)).await;
    assert_eq!(answer, Err(AckError::Timeout));
    // The client's timer and this clock are not the same clock, and timers round to the millisecond: a margin
    // keeps the check to what matters, that the answer is the timeout and not an immediate failure.
    assert!(started.elapsed() >= Duration::from_millis(250), "not before the timeout: {:?}", started.elapsed());
}

async fn binary_round_trip(client: &Client) {
    let socket = client.socket("/");
    let mut lifecycle = socket.lifecycle();
    connected(&mut lifecycle).await;
    let bytes: Vec<u8> = (0..=255).chain([0, 0, 255]).collect();
    let placeholder = json!({"_placeholder": true, "num": 0});

    let answer = within(
        "the binary ack",
        socket.emit_raw_with_ack("echo-ack", vec![placeholder.clone()], vec![bytes.clone()], PATIENCE),
    )
    .await
    .unwrap();
    assert_eq!(answer.attachments, vec![bytes.clone()], "client → server → ack");
    assert_eq!(answer.args, vec![placeholder.clone().into()]);

    let mut echoes = socket.on_raw("echo");
    socket.emit_raw("echo", vec![placeholder.clone()], vec![bytes.clone()], false);
    let echoed = within("the binary event", echoes.next()).await.unwrap();
    assert_eq!(echoed.attachments, vec![bytes], "server → client as an event");
}

pub async fn binary_data_travels_both_ways(kind: Kind) {
    let peer = Peer::start(kind).await;
    binary_round_trip(&Client::builder(peer.url()).transports(&[TransportKind::WebSocket]).connect()).await;
}

pub async fn binary_data_travels_over_polling(kind: Kind) {
    let peer = Peer::start(kind).await;
    binary_round_trip(&Client::builder(peer.url()).transports(&[TransportKind::Polling]).connect()).await;
}

pub async fn the_server_can_ask_the_client_for_an_ack(kind: Kind) {
    let peer = Peer::start(kind).await;
    let client = Client::builder(peer.url()).connect();
    let socket = client.socket("/");
    let mut lifecycle = socket.lifecycle();
    let mut questions = socket.on_raw("question");
    let mut answers = socket.on_raw("answer");
    connected(&mut lifecycle).await;
    socket.emit_raw("ask-me", vec![json!({"text": "what is six times seven?"})], vec![], false);
    let question = within("the server's question", questions.next()).await.unwrap();
    assert_eq!(question.args, vec![json!({"text": "what is six times seven?"}).into()]);
    let id = question.ack_id.expect("the server asked for an acknowledgement");
    socket.ack_raw(id, vec![json!({"text": "42"})], vec![]);
    let answer = within("the server to report our answer", answers.next()).await.unwrap();
    assert_eq!(answer.args, vec![json!({"text": "42"}).into()]);
}

pub async fn two_namespaces_share_one_connection(kind: Kind) {
    let peer = Peer::start(kind).await;
    let proxy = Proxy::start(peer.port).await;
    // WebSocket only: one connection is exactly one TCP connection through the proxy.
    let client = Client::builder(proxy.url()).transports(&[TransportKind::WebSocket]).connect();
    let main = client.socket("/");
    let admin = client.socket_with_auth("/admin", &Token { token: "secret" }).unwrap();
    let (mut main_events, mut admin_events) = (main.lifecycle(), admin.lifecycle());
    connected(&mut main_events).await;
    connected(&mut admin_events).await;
    echo(&main, "on /").await;
    echo(&admin, "on /admin").await;
    assert_eq!(proxy.accepted(), 1, "both namespaces travel over one connection");
}

pub async fn a_refused_auth_is_surfaced_and_not_retried(kind: Kind) {
    let peer = Peer::start(kind).await;
    let client = Client::builder(peer.url()).config(fast()).connect();
    let mut states = client.state_changes();
    let socket = client.socket_with_auth("/", &Token { token: "reject" }).unwrap();
    let mut lifecycle = socket.lifecycle();
    let message = wait_for("the refusal", &mut lifecycle, |e| match e {
        SocketEvent::ConnectError { message, .. } => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(message, "rejected");
    tokio::time::sleep(QUIET).await;
    let seen = drain(&mut states);
    assert!(!seen.iter().any(|s| matches!(s, ConnectionState::Reconnecting { .. })), "no reconnection: {seen:?}");
    assert!(matches!(client.state(), ConnectionState::Disconnected { .. }), "{:?}", client.state());
}

pub async fn a_refused_namespace_leaves_the_others_connected(kind: Kind) {
    let peer = Peer::start(kind).await;
    let client = Client::builder(peer.url()).connect();
    let main = client.socket("/");
    let mut main_events = main.lifecycle();
    connected(&mut main_events).await;
    let admin = client.socket_with_auth("/admin", &Token { token: "wrong" }).unwrap();
    let mut admin_events = admin.lifecycle();
    let message = wait_for("the refusal", &mut admin_events, |e| match e {
        SocketEvent::ConnectError { message, .. } => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(message, "unauthorized");
    echo(&main, "unaffected").await;
    assert!(matches!(client.state(), ConnectionState::Connected { .. }));
}

pub async fn a_server_side_disconnect_is_not_retried(kind: Kind) {
    let peer = Peer::start(kind).await;
    let client = Client::builder(peer.url()).config(fast()).connect();
    let mut states = client.state_changes();
    let socket = client.socket("/");
    let mut lifecycle = socket.lifecycle();
    connected(&mut lifecycle).await;
    socket.emit(&DisconnectMe {}).unwrap();
    let reason = wait_for("the disconnect", &mut lifecycle, |e| match e {
        SocketEvent::Disconnected { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, DisconnectReason::ServerDisconnect);
    tokio::time::sleep(QUIET).await;
    let seen = drain(&mut states);
    assert!(!seen.iter().any(|s| matches!(s, ConnectionState::Reconnecting { .. })), "no reconnection: {seen:?}");
    assert!(drain(&mut lifecycle).is_empty(), "and no new connection");
}

/// What is too big never reaches the program, over either transport: the client drops the connection at once and
/// connects again, as after any other transport failure, and the connection works as before.
pub async fn more_than_the_clients_limit_at_once_drops_the_connection_and_it_reconnects(kind: Kind) {
    for transport in [TransportKind::WebSocket, TransportKind::Polling] {
        let peer = Peer::start(kind).await;
        let client =
            Client::builder(peer.url()).transports(&[transport]).max_incoming_bytes(4096).config(fast()).connect();
        let socket = client.socket("/");
        let mut lifecycle = socket.lifecycle();
        let mut echoes = socket.on_raw("echo");
        connected(&mut lifecycle).await;
        echo(&socket, "under the limit").await;

        socket.emit_raw("echo", vec![json!({"text": "x".repeat(8192)})], vec![], false);
        disconnected(&mut lifecycle).await;
        connected(&mut lifecycle).await;
        echo(&socket, "after reconnecting").await;
        assert!(drain(&mut echoes).is_empty(), "{transport:?}: the event over the limit was not delivered");
    }
}
