//! Issue #7's jitter chaos: many clients in rooms, each one's TCP connections cut at random and its network kept
//! down for a while, as on a bad mobile network, while every room talks; optionally the server is SIGKILLed and
//! started again in the middle. Measures, per receiver, what arrived of what the server acknowledged: delivery,
//! messages stored twice, and order.
//!
//! Each client reaches the server through a line of its own in [`Network`], a TCP relay on loopback that can cut
//! every connection of one client and refuse its new ones until the line is back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use protocol::{
    ChatMessage, ClientId, ErrorCode, HistoryFrom, HistoryPage, LoadHistory, MessageBody, RoomName, SendMessage,
};
use serde::Serialize;
use sio_client::{RawEvent, RequestError, SocketEvent, TransportKind};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

use crate::target::{Launcher, Server, Target};
use crate::users::{Probe, User, wait_until};

/// How big, how long and how rough.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosConfig {
    pub clients: u32,
    pub per_room: u32,
    /// Messages each room's sender sends, and how fast.
    pub messages_per_room: u32,
    pub messages_per_second: f64,
    /// Each client's connections are cut after about this long (±50%, at random)...
    #[serde(with = "millis")]
    pub cut_every: Duration,
    /// ...and its network stays down for about this long (±50%).
    #[serde(with = "millis")]
    pub offline_for: Duration,
    /// SIGKILL the server this long after the first message, and start it again.
    #[serde(with = "option_millis")]
    pub restart_after: Option<Duration>,
    /// Clients that recover (as Causerie's page does): rejoin with `since`, and resend an unacknowledged message
    /// under the same client id. Without, they behave like a plain Socket.IO client: rejoin, and never resend.
    pub recovery: bool,
    /// How long requests wait for their ack before a recovering client asks again.
    #[serde(with = "millis")]
    pub request_timeout: Duration,
}

mod millis {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

mod option_millis {
    pub fn serialize<S: serde::Serializer>(d: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ChaosResult {
    pub target: Target,
    pub config: ChaosConfig,
    pub rooms: u32,
    /// Connection cuts made by the network, over all clients.
    pub cuts: u64,
    /// Connections the clients saw lost, whatever the cause (a cut, a restart, a node's death).
    pub disconnects: u64,
    /// Messages the server acknowledged, over all rooms.
    pub acknowledged: u64,
    /// Messages a sender gave up on (without recovery: every send whose ack did not come).
    pub abandoned: u64,
    /// Each acknowledged message times the other members of its room.
    pub expected: u64,
    /// Of those, how many arrived (live, in a join's history, or in a history page).
    pub delivered: u64,
    pub delivery_percent: f64,
    /// Messages stored twice: one send (sender, number) that reached a receiver under two `seq`s.
    pub duplicates: u64,
    /// A receiver's messages from one sender, in `seq` order, not in the order they were sent.
    pub order_violations: u64,
    /// Copies of a `seq` a receiver already had (a live message also in a resume's history): dropped by `seq`, as
    /// the page does, and counted here only to show recovery at work.
    pub redelivered: u64,
    /// How long after the last send every receiver had everything (or the deadline passed).
    pub seconds_to_settle: f64,
}

/// Runs the chaos once against `target`.
pub async fn chaos(launcher: &Launcher, target: Target, config: &ChaosConfig) -> anyhow::Result<ChaosResult> {
    let mut server = Server::start(launcher, target).await?;
    let network = Network::start(server.port, config.clients).await?;
    let endpoint = |index: u32| Ok((format!("http://{}", network.line_addr(index)?), None));
    let restart = async {
        eprintln!("  SIGKILL and restart of the server");
        server.restart().await.map(|_| ())
    };
    let result = exercise(target, config, endpoint, Some(&network), restart).await;
    network.stop();
    result
}

/// Two nodes behind nginx (docs/deploy/nginx.conf), sharing Redis and Postgres; every client connects through
/// nginx, kept on its node by its own `sticky` key. At `restart_after`, one node is killed (SIGKILL) and not
/// started again: its clients must carry on through the other one, and lose nothing.
pub async fn node_loss(launcher: &Launcher, config: &ChaosConfig) -> anyhow::Result<ChaosResult> {
    // Quick heartbeats, so that a client notices its node is gone within two seconds.
    let fast = ["--ping-interval", "1000", "--ping-timeout", "1000"].map(String::from);
    let mut cluster = crate::cluster::Cluster::start(launcher, 2, &fast).await?;
    let url = cluster.url();
    let endpoint = |index: u32| Ok((url.clone(), Some(format!("client-{index}"))));
    let victim = cluster.nodes.first_mut().context("a node to kill")?;
    let kill = async {
        eprintln!("  SIGKILL of one node of two");
        victim.kill().await
    };
    exercise(Target::CauserieNode, config, endpoint, None, kill).await
}

/// The chaos itself: `config.clients` recovering (or not) clients, each connecting to `endpoint(index)` (a URL,
/// and a sticky key for a load balancer), cut now and then by `network` if given, and `disruption` (a restart, a
/// node's death) `config.restart_after` into the talking.
async fn exercise(
    target: Target,
    config: &ChaosConfig,
    endpoint: impl Fn(u32) -> anyhow::Result<(String, Option<String>)>,
    network: Option<&Network>,
    disruption: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<ChaosResult> {
    anyhow::ensure!(
        config.per_room > 1 && config.clients.is_multiple_of(config.per_room),
        "the clients must fill rooms of at least two"
    );
    let rooms = config.clients / config.per_room;
    let ledger = Arc::new(Ledger::default());

    let mut users = Vec::with_capacity(config.clients as usize);
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    for index in 0..config.clients {
        let room = RoomName::parse(&format!("chaos-{}", index / config.per_room.max(1))).context("a room name")?;
        let (url, sticky) = endpoint(index)?;
        let session = protocol::SessionToken::parse(&format!("chaos-session-{index:08}")).context("a session")?;
        let mut user = match sticky {
            Some(sticky) => User::open_sticky(&url, index, &room, session, &sticky)?,
            None => User::open_as(&url, index, &room, &[TransportKind::Polling, TransportKind::WebSocket], session)?,
        };
        let lifecycle = user.take_lifecycle().context("a user's lifecycle")?;
        let messages = user.take_messages().context("a user's messages")?;
        let user = Arc::new(user);
        tasks.push(tokio::spawn(receive(user.clone(), lifecycle, messages, ledger.clone(), config.clone())));
        users.push(user);
    }
    // Everyone in before the talking starts, so that "expected" is the whole room from the first message.
    let all_in = wait_until(Duration::from_secs(60), || ledger.joined() >= u64::from(config.clients)).await;
    anyhow::ensure!(all_in, "only {} of {} clients joined within a minute", ledger.joined(), config.clients);

    let cutting = Arc::new(AtomicBool::new(true));
    if let Some(network) = network {
        tasks.extend(network.start_cutting(config.cut_every, config.offline_for, cutting.clone()));
    }
    let started = Instant::now();
    let senders: Vec<_> = users
        .iter()
        .filter(|user| user.index % config.per_room.max(1) == 0)
        .map(|user| tokio::spawn(send_all(user.clone(), ledger.clone(), config.clone(), started)))
        .collect();
    if let Some(after) = config.restart_after {
        tokio::time::sleep_until(tokio::time::Instant::from_std(started + after)).await;
        disruption.await?;
    }
    for sender in senders {
        sender.await.context("a sender task")?;
    }
    // The talking is over: the network heals, and everyone should catch up.
    cutting.store(false, Ordering::SeqCst);
    let sent_at = Instant::now();
    let settled = settle(&ledger, config.per_room).await;
    let seconds_to_settle = if settled { sent_at.elapsed().as_secs_f64() } else { f64::INFINITY };

    // Without recovery, missing messages are the expected outcome; with it, each one is a bug to understand.
    if !settled && config.recovery {
        for line in ledger.explain_missing(config.per_room, 10) {
            eprintln!("  missing: {line}");
        }
    }
    let cuts = network.map_or(0, |network| network.cuts.load(Ordering::Relaxed));
    let result = ledger.result(target, config, rooms, cuts, seconds_to_settle);
    drop(users);
    for task in tasks {
        task.abort();
    }
    Ok(result)
}

/// Waits until every receiver has everything (true), or nothing new arrived for [`QUIET`] or 30 s passed (false):
/// clients without recovery never get what they missed, and need not be waited for.
async fn settle(ledger: &Ledger, per_room: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut missing, mut changed) = (ledger.missing(per_room), Instant::now());
    while missing > 0 && Instant::now() < deadline && changed.elapsed() < QUIET {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now_missing = ledger.missing(per_room);
        if now_missing != missing {
            (missing, changed) = (now_missing, Instant::now());
        }
    }
    missing == 0
}

/// Longer than a client takes to come back once the network heals (its reconnection delay is at most 5 s).
const QUIET: Duration = Duration::from_secs(6);

// ---------------------------------------------------------------------------------------------------------------
// The clients

/// One room's sender: `messages_per_room` messages at the configured rate, each one until acknowledged when
/// recovering, else once.
async fn send_all(user: Arc<User>, ledger: Arc<Ledger>, config: ChaosConfig, started: Instant) {
    let interval = Duration::from_secs_f64(1.0 / config.messages_per_second.max(0.001));
    for n in 0..config.messages_per_room {
        tokio::time::sleep_until(tokio::time::Instant::from_std(started + interval * n)).await;
        let body = Probe { step: 0, sent_micros: 0, sender: user.index, n }.body();
        // One client id per message: a resend is the same message, which the server stores once.
        let Ok(client_id) = ClientId::parse(&format!("chaos-{}-{n}", user.index)) else { continue };
        for attempt in 1..=SEND_ATTEMPTS {
            // As the page's outbox does: messages go out once the room is joined again after a reconnection (a
            // send before that is refused as not in the room).
            wait_until(Duration::from_secs(30), || ledger.in_room(user.index)).await;
            match send(&user, &body, &client_id, config.request_timeout).await {
                Some(seq) => {
                    ledger.acknowledged(&user.room, user.index, n, seq);
                    break;
                }
                None if config.recovery && attempt < SEND_ATTEMPTS => {
                    // Back on a live connection before asking again (a resend while offline only waits in the
                    // client's buffer).
                    wait_until(Duration::from_secs(30), || user.connected()).await;
                }
                None => {
                    ledger.abandoned.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// How long a hole among a receiver's messages may last before it fetches what is missing (as the page does).
const HOLE_GRACE: Duration = Duration::from_millis(300);

/// How many times a client asks to join on one connection while its joins go unanswered.
const JOIN_ATTEMPTS: u32 = 20;

/// A recovering sender gives up on a message after this many unanswered tries (each `request_timeout` long), so
/// that a run always ends.
const SEND_ATTEMPTS: u32 = 20;

async fn send(user: &User, body: &MessageBody, client_id: &ClientId, timeout: Duration) -> Option<u64> {
    let request = SendMessage { room: user.room.clone(), body: body.clone(), client_id: Some(client_id.clone()) };
    user.chat.request(&request, timeout).await.ok().map(|accepted| accepted.message.seq)
}

/// One client's receiving side: joins on every connect (with `since` when recovering), pages forward when a
/// resume has more than one page, and records every message.
async fn receive(
    user: Arc<User>,
    mut lifecycle: futures::channel::mpsc::UnboundedReceiver<SocketEvent>,
    mut messages: futures::channel::mpsc::UnboundedReceiver<RawEvent>,
    ledger: Arc<Ledger>,
    config: ChaosConfig,
) {
    let live = {
        let (user, ledger, config) = (user.clone(), ledger.clone(), config.clone());
        // Set while a hole is being filled, so that live messages arriving meanwhile do not ask again.
        let filling = Arc::new(AtomicBool::new(false));
        tokio::spawn(async move {
            while let Some(event) = messages.next().await {
                let Some(Ok(message)) = event.args.first().map(|arg| arg.decode::<ChatMessage>()) else { continue };
                ledger.received(user.index, &message);
                // As the page does: a hole in what it holds (a broadcast lost with the node that stored it) is
                // filled, if it is still there after a moment. Only once joined, and only when recovering.
                let hole = config.recovery && ledger.in_room(user.index) && ledger.hole(user.index).is_some();
                if !hole || filling.swap(true, Ordering::SeqCst) {
                    continue;
                }
                let (user, ledger, filling, timeout) =
                    (user.clone(), ledger.clone(), filling.clone(), config.request_timeout);
                tokio::spawn(async move {
                    tokio::time::sleep(HOLE_GRACE).await;
                    if let Some(after) = ledger.hole(user.index) {
                        page_forward(&user, &ledger, after, timeout).await;
                    }
                    filling.store(false, Ordering::SeqCst);
                });
            }
        })
    };
    let mut first = true;
    while let Some(event) = lifecycle.next().await {
        if !matches!(event, SocketEvent::Connected { .. }) {
            if matches!(event, SocketEvent::Disconnected { .. }) {
                ledger.disconnects.fetch_add(1, Ordering::Relaxed);
            }
            ledger.left_room(user.index);
            continue;
        }
        let since = || if config.recovery { ledger.resume_point(user.index) } else { None };
        let Some(joined) = user.join_while_connected(since, config.request_timeout, JOIN_ATTEMPTS, || {}).await else {
            // Refused, or the connection was lost: the next connect joins again.
            continue;
        };
        ledger.entered_room(user.index);
        if first {
            ledger.joined.fetch_add(1, Ordering::Relaxed);
            first = false;
        }
        if !config.recovery {
            continue;
        }
        for message in &joined.history {
            ledger.received(user.index, message);
        }
        if joined.has_more
            && let Some(after) = ledger.resume_point(user.index)
        {
            page_forward(&user, &ledger, after, config.request_timeout).await;
        }
    }
    live.abort();
}

/// Reads the room forward from `after`, page by page, until nothing newer is left (or a request fails).
async fn page_forward(user: &User, ledger: &Ledger, mut after: u64, timeout: Duration) {
    loop {
        let request = LoadHistory { room: user.room.clone(), from: HistoryFrom::After(after) };
        match user.chat.request(&request, timeout).await {
            Ok(HistoryPage { messages, has_more }) => {
                for message in &messages {
                    ledger.received(user.index, message);
                }
                match messages.last() {
                    Some(last) if has_more => after = last.seq,
                    _ => return,
                }
            }
            // The reading budget is spent for now (a long catch-up): go on once it has refilled a little, as the
            // page does.
            Err(RequestError::Rejected(error)) if error.code == ErrorCode::RateLimited => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// What happened

#[derive(Debug, Default)]
struct Ledger {
    joined: AtomicU64,
    /// Times a client's connection was lost, over all clients.
    disconnects: AtomicU64,
    /// Clients joined to their room on their current connection.
    in_room: Mutex<std::collections::HashSet<u32>>,
    abandoned: AtomicU64,
    inner: Mutex<Books>,
}

/// seq → (sender, number): one receiver's messages.
type Seen = HashMap<u64, (u32, u32)>;

#[derive(Debug, Default)]
struct Books {
    /// Per room: (sender, number) → seq, for every acknowledged message.
    acknowledged: HashMap<RoomName, HashMap<(u32, u32), u64>>,
    /// Per receiver: its room, and what it received.
    received: HashMap<u32, (RoomName, Seen)>,
    redelivered: u64,
}

impl Ledger {
    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn joined(&self) -> u64 {
        self.joined.load(Ordering::Relaxed)
    }

    fn in_room(&self, client: u32) -> bool {
        self.in_room.lock().unwrap_or_else(|p| p.into_inner()).contains(&client)
    }

    fn entered_room(&self, client: u32) {
        self.in_room.lock().unwrap_or_else(|p| p.into_inner()).insert(client);
    }

    fn left_room(&self, client: u32) {
        self.in_room.lock().unwrap_or_else(|p| p.into_inner()).remove(&client);
    }

    fn acknowledged(&self, room: &RoomName, sender: u32, n: u32, seq: u64) {
        self.books().acknowledged.entry(room.clone()).or_default().insert((sender, n), seq);
    }

    fn received(&self, receiver: u32, message: &ChatMessage) {
        let Some(probe) = Probe::parse(message.body.as_str()) else { return };
        let mut books = self.books();
        let (_, seen) = books.received.entry(receiver).or_insert_with(|| (message.room.clone(), HashMap::new()));
        if seen.insert(message.seq, (probe.sender, probe.n)).is_some() {
            books.redelivered += 1;
        }
    }

    /// Where this receiver resumes, as the page does ([`protocol::resume_point`]).
    fn resume_point(&self, receiver: u32) -> Option<u64> {
        self.books().received.get(&receiver).and_then(|(_, seen)| protocol::resume_point(seen.keys().copied()))
    }

    /// Where messages are missing among those this receiver holds (the `after` to fetch from), if they are.
    fn hole(&self, receiver: u32) -> Option<u64> {
        self.books().received.get(&receiver).and_then(|(_, seen)| protocol::hole(seen.keys().copied()))
    }

    /// Acknowledged messages not yet at one of the other members of their room.
    fn missing(&self, per_room: u32) -> u64 {
        let books = self.books();
        expected(&books, per_room).saturating_sub(delivered(&books))
    }

    /// Up to `limit` deliveries still missing, in words, to find out why.
    fn explain_missing(&self, per_room: u32, limit: usize) -> Vec<String> {
        let books = self.books();
        let mut lines = Vec::new();
        for (room, sent) in &books.acknowledged {
            let first = room.as_str().trim_start_matches("chaos-").parse::<u32>().unwrap_or(0) * per_room;
            for receiver in first..first + per_room {
                let seen = books.received.get(&receiver).map(|(_, seen)| seen);
                let got: std::collections::HashSet<&(u32, u32)> = seen.into_iter().flat_map(|s| s.values()).collect();
                for ((sender, n), seq) in sent {
                    if *sender != receiver && !got.contains(&(*sender, *n)) && lines.len() < limit {
                        let newest = seen.and_then(|s| s.keys().max().copied());
                        let count = seen.map_or(0, |s| s.len());
                        lines.push(format!(
                            "{room}: receiver {receiver} lacks message {n} of sender {sender} (seq {seq}); it has {count} \
                             messages, the newest seq {newest:?}"
                        ));
                    }
                }
            }
        }
        lines
    }

    fn result(
        &self,
        target: Target,
        config: &ChaosConfig,
        rooms: u32,
        cuts: u64,
        seconds_to_settle: f64,
    ) -> ChaosResult {
        let books = self.books();
        let acknowledged = acknowledged(&books);
        let expected = expected(&books, config.per_room);
        let delivered = delivered(&books);
        let (mut duplicates, mut order_violations) = (0, 0);
        for (_, seen) in books.received.values() {
            let mut by_seq: Vec<(u64, (u32, u32))> = seen.iter().map(|(seq, probe)| (*seq, *probe)).collect();
            by_seq.sort_unstable();
            let mut sends: HashMap<(u32, u32), u32> = HashMap::new();
            let mut last_n: HashMap<u32, u32> = HashMap::new();
            for (_, (sender, n)) in by_seq {
                *sends.entry((sender, n)).or_default() += 1;
                if last_n.insert(sender, n).is_some_and(|previous| previous > n) {
                    order_violations += 1;
                }
            }
            duplicates +=
                sends.values().filter(|&&copies| copies > 1).map(|&copies| u64::from(copies - 1)).sum::<u64>();
        }
        ChaosResult {
            target,
            config: config.clone(),
            rooms,
            cuts,
            disconnects: self.disconnects.load(Ordering::Relaxed),
            acknowledged,
            abandoned: self.abandoned.load(Ordering::Relaxed),
            expected,
            delivered,
            delivery_percent: if expected == 0 { 100.0 } else { delivered as f64 * 100.0 / expected as f64 },
            duplicates,
            order_violations,
            redelivered: books.redelivered,
            seconds_to_settle,
        }
    }
}

fn acknowledged(books: &Books) -> u64 {
    books.acknowledged.values().map(|sent| sent.len() as u64).sum()
}

/// Each acknowledged message once for every member of its room but its sender.
fn expected(books: &Books, per_room: u32) -> u64 {
    acknowledged(books) * u64::from(per_room.saturating_sub(1))
}

/// Acknowledged messages that reached a receiver of their room other than their sender, counted once each.
fn delivered(books: &Books) -> u64 {
    let mut delivered = 0;
    for (receiver, (room, seen)) in &books.received {
        let Some(sent) = books.acknowledged.get(room) else { continue };
        let got: std::collections::HashSet<&(u32, u32)> = seen.values().collect();
        delivered +=
            sent.keys().filter(|(sender, _)| sender != receiver).filter(|key| got.contains(key)).count() as u64;
    }
    delivered
}

// ---------------------------------------------------------------------------------------------------------------
// The network

/// One TCP relay per client, on loopback, to the server's port.
struct Network {
    lines: Vec<Arc<Line>>,
    accept_tasks: Vec<JoinHandle<()>>,
    cuts: Arc<AtomicU64>,
}

struct Line {
    addr: SocketAddr,
    /// While set and in the future, new connections are closed at once: the network is down.
    down_until: Mutex<Option<Instant>>,
    /// The relays of this client's open connections, to cut them all at once.
    open: Mutex<Vec<AbortHandle>>,
}

impl Line {
    fn down(&self) -> bool {
        self.down_until.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|until| Instant::now() < until)
    }

    fn cut(&self, down_for: Duration) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + down_for);
        // Aborting a relay drops both of its sockets: the client and the server each see the connection end.
        for relay in self.open.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            relay.abort();
        }
    }
}

impl Network {
    async fn start(server_port: u16, clients: u32) -> anyhow::Result<Network> {
        let mut lines = Vec::with_capacity(clients as usize);
        let mut accept_tasks = Vec::with_capacity(clients as usize);
        for _ in 0..clients {
            let listener = TcpListener::bind("127.0.0.1:0").await.context("binding a client's relay")?;
            let line = Arc::new(Line {
                addr: listener.local_addr()?,
                down_until: Mutex::new(None),
                open: Mutex::new(Vec::new()),
            });
            accept_tasks.push(tokio::spawn(relay(listener, line.clone(), server_port)));
            lines.push(line);
        }
        Ok(Network { lines, accept_tasks, cuts: Arc::new(AtomicU64::new(0)) })
    }

    fn line_addr(&self, index: u32) -> anyhow::Result<SocketAddr> {
        self.lines.get(index as usize).map(|line| line.addr).context("a client without a line")
    }

    /// Cuts each line at random, about every `every`, for about `down_for`, while `running` holds.
    fn start_cutting(&self, every: Duration, down_for: Duration, running: Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
        self.lines
            .iter()
            .enumerate()
            .map(|(index, line)| {
                let (line, running, cuts) = (line.clone(), running.clone(), self.cuts.clone());
                tokio::spawn(async move {
                    let mut random = Jitter::seeded(index as u64);
                    loop {
                        tokio::time::sleep(random.around(every)).await;
                        if !running.load(Ordering::SeqCst) {
                            return;
                        }
                        line.cut(random.around(down_for));
                        cuts.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect()
    }

    fn stop(&self) {
        for task in &self.accept_tasks {
            task.abort();
        }
        for line in &self.lines {
            line.cut(Duration::ZERO);
        }
    }
}

/// Accepts a client's connections and relays each to the server, unless the line is down.
async fn relay(listener: TcpListener, line: Arc<Line>, server_port: u16) {
    while let Ok((mut client, _)) = listener.accept().await {
        if line.down() {
            // Accepted and closed: to the client, a network that does not answer.
            drop(client);
            continue;
        }
        let relay = tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", server_port)).await else { return };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            // Ends when either side closes; an error is a connection ending, which is what this relay is for.
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
        let mut open = line.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|handle| !handle.is_finished());
        open.push(relay.abort_handle());
    }
}

/// A small deterministic random source (xorshift), one per line, so that runs are comparable.
struct Jitter(u64);

impl Jitter {
    fn seeded(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `mean` spread by ±50%.
    fn around(&mut self, mean: Duration) -> Duration {
        mean.mul_f64(0.5 + self.next_unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_of_the_mean_either_way() {
        let mut random = Jitter::seeded(7);
        for _ in 0..10_000 {
            let d = random.around(Duration::from_secs(2));
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(3), "{d:?}");
        }
    }

    #[test]
    fn a_message_reaching_a_receiver_under_two_seqs_is_a_duplicate_and_late_numbers_are_out_of_order() {
        let ledger = Ledger::default();
        let room = RoomName::parse("r").unwrap_or_else(|_| unreachable!());
        ledger.acknowledged(&room, 0, 0, 1);
        ledger.acknowledged(&room, 0, 1, 2);
        {
            let mut books = ledger.books();
            let seen = HashMap::from([(1, (0, 1)), (2, (0, 0)), (3, (0, 1))]);
            books.received.insert(1, (room.clone(), seen));
        }
        let config = ChaosConfig {
            clients: 2,
            per_room: 2,
            messages_per_room: 2,
            messages_per_second: 1.0,
            cut_every: Duration::from_secs(1),
            offline_for: Duration::from_secs(1),
            restart_after: None,
            recovery: true,
            request_timeout: Duration::from_secs(1),
        };
        let result = ledger.result(Target::CauserieSqlite, &config, 1, 0, 0.0);
        assert_eq!((result.expected, result.delivered), (2, 2));
        assert_eq!(result.duplicates, 1, "(0, 1) came as seq 1 and seq 3");
        assert_eq!(result.order_violations, 1, "seq 2 carries number 0 after number 1");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The runs of issue #7, and their report

/// One chaos run of the set: what it shows, and its settings.
#[derive(Debug, Clone)]
pub struct Run {
    pub title: &'static str,
    pub target: Target,
    pub config: ChaosConfig,
}

/// The runs: recovering clients through the jitter, clients without recovery for comparison (what a plain
/// Socket.IO client gets), and recovering clients through a server SIGKILL and restart. `smoke` makes them tiny,
/// for the test command.
pub fn runs(smoke: bool) -> Vec<Run> {
    let jitter = if smoke {
        ChaosConfig {
            clients: 20,
            per_room: 5,
            messages_per_room: 10,
            messages_per_second: 5.0,
            cut_every: Duration::from_millis(2_000),
            offline_for: Duration::from_millis(300),
            restart_after: None,
            recovery: true,
            request_timeout: Duration::from_secs(2),
        }
    } else {
        // The public nodejs-websocket-bench jitter test, scaled to this machine: 1,000 clients in rooms of 10,
        // each connection cut about every 15 s and kept offline about 2 s, each room sending 120 messages at 2/s.
        ChaosConfig {
            clients: 1_000,
            per_room: 10,
            messages_per_room: 120,
            messages_per_second: 2.0,
            cut_every: Duration::from_secs(15),
            offline_for: Duration::from_secs(2),
            restart_after: None,
            recovery: true,
            request_timeout: Duration::from_secs(3),
        }
    };
    // Half-way through the talking.
    let restart_after = Duration::from_secs_f64(f64::from(jitter.messages_per_room) / jitter.messages_per_second / 2.0);
    vec![
        Run { title: "Jitter, recovering clients", target: Target::CauserieSqlite, config: jitter.clone() },
        Run {
            title: "Jitter, clients without recovery",
            target: Target::CauserieSqlite,
            config: ChaosConfig { recovery: false, ..jitter.clone() },
        },
        Run {
            title: "Jitter and a SIGKILL restart, recovering clients",
            target: Target::CauserieSqlite,
            config: ChaosConfig { restart_after: Some(restart_after), ..jitter },
        },
    ]
}

/// `docs/reliability.md`.
pub fn markdown(machine: &crate::report::Machine, runs: &[(Run, ChaosResult)]) -> String {
    use std::fmt::Write as _;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Reliability\n\nWritten by `scripts/reliability` (`causerie-bench chaos`) on {} at commit `{}`, on {} \
         ({} cores). Do not edit by hand: run it again. The tests behind it, and the small versions of them that \
         `scripts/test` runs: [README](../README.md#reliability).\n",
        machine.date, machine.commit, machine.cpu, machine.cores
    );
    let _ = writeln!(
        md,
        "## Jitter chaos\n\nEvery client reaches the server through a TCP relay of its own, which cuts all of that \
         client's connections at random (about every {} s, ±50%) and refuses new ones for about {} s (±50%). \
         Clients start on long-polling and upgrade to WebSocket, as browsers do, and reconnect by themselves. Each \
         room's first member sends numbered messages; every other member should get every message the server \
         acknowledged, exactly once and in order. *Recovering* clients do what Causerie's page does: rejoin with \
         `since` (the last `seq` they have) and page forward if there is more, and resend an unacknowledged message \
         under the same client id. Clients *without recovery* rejoin and never resend, like a plain Socket.IO client.\n",
        runs.first().map_or(0.0, |(run, _)| run.config.cut_every.as_secs_f64()),
        runs.first().map_or(0.0, |(run, _)| run.config.offline_for.as_secs_f64()),
    );
    let _ = writeln!(
        md,
        "| Run | clients | rooms | messages per room | cuts | acknowledged | given up | delivered | duplicates \
         | order violations | copies dropped by seq | settled after the last send |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (run, r) in runs {
        let settled = if r.seconds_to_settle.is_finite() {
            format!("{:.1} s", r.seconds_to_settle)
        } else if r.config.recovery {
            "not within 30 s".to_owned()
        } else {
            "never: nothing missed is asked for again".to_owned()
        };
        let _ = writeln!(
            md,
            "| {} ({}) | {} | {} | {} at {}/s | {} | {} | {} | {}/{} ({:.2}%) | {} | {} | {} | {} |",
            run.title,
            run.target.label(),
            r.config.clients,
            r.rooms,
            r.config.messages_per_room,
            r.config.messages_per_second,
            r.cuts,
            r.acknowledged,
            r.abandoned,
            r.delivered,
            r.expected,
            r.delivery_percent,
            r.duplicates,
            r.order_violations,
            r.redelivered,
            settled
        );
    }
    let _ = writeln!(
        md,
        "\n*Delivered* counts each acknowledged message once per member of its room other than its sender, \
         whether it came live, in a join's history or in a history page. A *duplicate* is one send stored twice \
         (reaching a member under two `seq`s); an *order violation* is a member seeing one sender's messages, in \
         `seq` order, out of the order they were sent. *Copies dropped by seq* are the messages a member got \
         twice (live and again in a resume), which the page drops by `seq`: recovery at work, not an error.\n\n\
         For comparison, the public nodejs-websocket-bench reports about 85% delivery for the reference Socket.IO \
         on its jitter test, which has no recovery.\n"
    );
    md
}
