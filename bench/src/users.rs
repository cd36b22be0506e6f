//! Simulated people: one [`sio_client::Client`] each, signed in to the chat namespace and in one room, sending
//! timestamped messages and timing the ones they receive.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use futures::channel::mpsc::UnboundedReceiver;
use protocol::Event as _;
use protocol::{
    ChatAuth, ClientId, DisplayName, JoinRoom, Joined, MessageAccepted, MessageBody, RoomName, SendMessage,
    SessionToken,
};
use sio_client::{Client, RawEvent, RequestError, Socket, SocketEvent, TransportKind};

use crate::stats::Samples;

/// How long a request may wait for its acknowledgement before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The instant every timestamp in a message body counts from. All users live in this one process, so senders and
/// receivers read the same clock.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub fn now_micros() -> u64 {
    micros_since_epoch(Instant::now())
}

fn micros_since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_micros()).unwrap_or(u64::MAX)
}

/// What a benchmark message says in its body: which step of the run, when it was sent, by whom, and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Probe {
    pub step: u32,
    pub sent_micros: u64,
    pub sender: u32,
    pub n: u32,
}

impl Probe {
    pub fn body(&self) -> MessageBody {
        let text = format!("{} {} {} {}", self.step, self.sent_micros, self.sender, self.n);
        // Four numbers always make a valid body (non-empty, one line, far under the length limit).
        MessageBody::parse(&text).unwrap_or_else(|_| unreachable!("a probe body is always valid"))
    }

    pub fn parse(body: &str) -> Option<Probe> {
        let mut parts = body.split(' ');
        let mut next = || parts.next().and_then(|part| part.parse::<u64>().ok());
        let (step, sent_micros, sender, n) = (next()?, next()?, next()?, next()?);
        Some(Probe {
            step: u32::try_from(step).ok()?,
            sent_micros,
            sender: u32::try_from(sender).ok()?,
            n: u32::try_from(n).ok()?,
        })
    }
}

/// One simulated person.
pub struct User {
    pub index: u32,
    pub room: RoomName,
    client: Client,
    pub chat: Socket,
    messages: Option<UnboundedReceiver<RawEvent>>,
    lifecycle: Option<UnboundedReceiver<SocketEvent>>,
    /// How many messages this user has sent: each send's client id is made from it.
    sent: AtomicU64,
}

impl User {
    /// Starts connecting (it returns at once): user `index`, who will be in `room`.
    pub fn open(url: &str, index: u32, room: &RoomName, transports: &[TransportKind]) -> anyhow::Result<User> {
        Self::connect(url, index, room, transports, None, None)
    }

    /// As [`User::open`], holding `session` on every connection, as a browser holds its cookie: a reconnection
    /// is the same person, whom the server lets back in under the same name at once.
    pub fn open_as(
        url: &str,
        index: u32,
        room: &RoomName,
        transports: &[TransportKind],
        session: SessionToken,
    ) -> anyhow::Result<User> {
        Self::connect(url, index, room, transports, Some(session), None)
    }

    /// As [`User::open_as`], through a load balancer that keeps each client on one node by `sticky` (the
    /// `sticky` query parameter of every request: see docs/deploy.md).
    pub fn open_sticky(
        url: &str,
        index: u32,
        room: &RoomName,
        session: SessionToken,
        sticky: &str,
    ) -> anyhow::Result<User> {
        Self::connect(url, index, room, &[], Some(session), Some(sticky))
    }

    fn connect(
        url: &str,
        index: u32,
        room: &RoomName,
        transports: &[TransportKind],
        session: Option<SessionToken>,
        sticky: Option<&str>,
    ) -> anyhow::Result<User> {
        // Like the page (app/src/live.rs): once upgraded, a reconnection opens a WebSocket straight away.
        let mut builder = Client::builder(url).transports(transports).remember_upgrade(true);
        if let Some(sticky) = sticky {
            builder = builder.query("sticky", sticky);
        }
        let client = builder.connect();
        let name = DisplayName::parse(&format!("u{index}")).context("a user's name")?;
        let chat = client.socket_with_auth(protocol::CHAT_NAMESPACE, &ChatAuth { name, session })?;
        // Subscribed before anything is awaited, so that no message and no connect is missed.
        let lifecycle = Some(chat.lifecycle());
        let messages = Some(chat.on_raw(protocol::ChatMessage::NAME));
        Ok(User { index, room: room.clone(), client, chat, messages, lifecycle, sent: AtomicU64::new(0) })
    }

    pub async fn join(&self, since: Option<u64>) -> Result<Joined, RequestError> {
        self.chat.request(&JoinRoom { room: self.room.clone(), since }, REQUEST_TIMEOUT).await
    }

    /// Sends as the page does: with a client id of 32 hex digits, its own for every message (the page's are
    /// random; these are the user's index and a count), which the server keeps to tell a retry from a new message.
    pub async fn send(&self, body: MessageBody) -> Result<MessageAccepted, RequestError> {
        let count = self.sent.fetch_add(1, Ordering::Relaxed);
        let client_id = ClientId::parse(&format!("{:08x}{count:024x}", self.index))
            .unwrap_or_else(|_| unreachable!("32 hex digits are a valid client id"));
        let message = SendMessage { room: self.room.clone(), body, client_id: Some(client_id) };
        self.chat.request(&message, REQUEST_TIMEOUT).await
    }

    /// Joins, as a person would: a join left unanswered is asked again (up to `attempts` in all) while the
    /// connection holds, each time after `since()`. A refusal ends it, and so does a lost connection (the client
    /// fails the pending request at once): the next `Connected` joins again.
    /// `retried` hears of every repeat.
    pub async fn join_while_connected(
        &self,
        since: impl Fn() -> Option<u64>,
        timeout: Duration,
        attempts: u32,
        mut retried: impl FnMut(),
    ) -> Option<Joined> {
        for attempt in 1..=attempts {
            let join = JoinRoom { room: self.room.clone(), since: since() };
            match self.chat.request(&join, timeout).await {
                Ok(joined) => return Some(joined),
                Err(RequestError::Ack(sio_client::AckError::Timeout)) if attempt < attempts && self.connected() => {
                    retried();
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Whether the Engine.IO connection is up right now.
    pub fn connected(&self) -> bool {
        matches!(self.client.state(), sio_client::ConnectionState::Connected { .. })
    }

    /// The room's messages as they arrive (once; later calls get `None`).
    pub fn take_messages(&mut self) -> Option<UnboundedReceiver<RawEvent>> {
        self.messages.take()
    }

    /// Connects and disconnects of the chat namespace (once; later calls get `None`).
    pub fn take_lifecycle(&mut self) -> Option<UnboundedReceiver<SocketEvent>> {
        self.lifecycle.take()
    }
}

impl Drop for User {
    fn drop(&mut self) {
        self.client.close();
    }
}

/// What receivers saw, per step of a run.
#[derive(Debug, Default)]
pub struct Received {
    pub latencies: Samples,
    /// Distinct (sender, n) pairs received, summed over receivers.
    pub unique: u64,
    pub duplicates: u64,
    pub last_at: Option<Instant>,
}

/// Shared by every receiver of a run.
#[derive(Debug, Default)]
pub struct Recorder {
    steps: Mutex<Vec<Received>>,
}

impl Recorder {
    fn record(&self, probe: Probe, duplicate: bool) {
        // One clock read for both: at 100,000 deliveries a second, reading it twice was 1.7% of the generator.
        let now = Instant::now();
        let latency = micros_since_epoch(now).saturating_sub(probe.sent_micros);
        let mut steps = self.steps.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let index = probe.step as usize;
        if steps.len() <= index {
            steps.resize_with(index + 1, Received::default);
        }
        let step = &mut steps[index];
        if duplicate {
            step.duplicates += 1;
        } else {
            step.unique += 1;
            step.latencies.record_micros(latency);
        }
        step.last_at = Some(now);
    }

    /// How many distinct deliveries of `step` arrived so far.
    pub fn unique(&self, step: u32) -> u64 {
        let steps = self.steps.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        steps.get(step as usize).map_or(0, |s| s.unique)
    }

    /// Takes what was recorded for `step`.
    pub fn take(&self, step: u32) -> Received {
        let mut steps = self.steps.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        steps.get_mut(step as usize).map(std::mem::take).unwrap_or_default()
    }
}

/// The part of a [`protocol::ChatMessage`] the load generator reads.
#[derive(serde::Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    body: Cow<'a, str>,
}

/// The `body` of a chat message's JSON text, borrowed from it: nothing else of the message is needed here.
///
/// Found by its key first. Parsing the whole message to read one field (serde_json scanning every other string)
/// was 4.6% of the generator's core at 100,000 deliveries a second. Inside a JSON string every quote is escaped,
/// so `"body":"` preceded by `{` or `,` is a key, and a `ChatMessage` has no other `body` key (its `from` has
/// `name` and `id`). A body with an escape in it, or no such key, goes through serde_json.
fn body_of(json: &str) -> Option<Cow<'_, str>> {
    const KEY: &str = "\"body\":\"";
    if let Some(at) = json.find(KEY)
        && matches!(json[..at].bytes().next_back(), Some(b'{' | b','))
    {
        let rest = &json[at + KEY.len()..];
        if let Some(end) = rest.find(['"', '\\'])
            && rest.as_bytes()[end] == b'"'
        {
            return Some(Cow::Borrowed(&rest[..end]));
        }
    }
    serde_json::from_str::<Body<'_>>(json).ok().map(|message| message.body)
}

/// Which of each sender's numbers one receiver has had in one step: a bit per number. Senders number their
/// messages from 0 in every step, so the bits stay few (hundreds per sender); the hash set of (sender, number)
/// pairs this replaces was the generator's biggest item in its profile (3.8%, rehashing as a step went on).
#[derive(Debug, Default)]
struct Seen {
    /// By sender: a room has a few of them, so a scan beats a hash.
    senders: Vec<(u32, Vec<u64>)>,
}

impl Seen {
    /// The most numbers kept per sender: a probe numbered past it (none the benchmark sends) counts as new.
    const MAX_N: u32 = 1 << 20;

    /// Marks `n` of `sender` as received; says whether it is new.
    fn insert(&mut self, sender: u32, n: u32) -> bool {
        if n >= Self::MAX_N {
            return true;
        }
        let index = match self.senders.iter().position(|(s, _)| *s == sender) {
            Some(index) => index,
            None => {
                self.senders.push((sender, Vec::new()));
                self.senders.len() - 1
            }
        };
        let bits = &mut self.senders[index].1;
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let new = bits[word] & bit == 0;
        bits[word] |= bit;
        new
    }
}

/// Starts a task that times every benchmark message `user` receives. Duplicates are told apart by (step, sender,
/// number), per receiver.
pub fn receive(user: &mut User, recorder: Arc<Recorder>) -> Option<tokio::task::JoinHandle<()>> {
    let mut messages = user.take_messages()?;
    Some(tokio::spawn(async move {
        // What arrived, by step, for the latest two steps only (the previous step's last deliveries may still
        // come): a set of everything a run delivered grew to millions and its rehashing slowed the generator.
        let mut seen: BTreeMap<u32, Seen> = BTreeMap::new();
        while let Some(event) = messages.next().await {
            let body = event.args.first().and_then(|message| body_of(message.json()));
            if let Some(probe) = body.and_then(|body| Probe::parse(&body)) {
                let duplicate = !seen.entry(probe.step).or_default().insert(probe.sender, probe.n);
                while seen.len() > 2 {
                    seen.pop_first();
                }
                recorder.record(probe, duplicate);
            }
        }
    }))
}

/// Waits, checking every few milliseconds, until `done` holds or `timeout` passes; says whether it holds.
pub async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_reads_back_from_its_body() {
        let probe = Probe { step: 3, sent_micros: 123_456_789, sender: 42, n: 7 };
        assert_eq!(Probe::parse(probe.body().as_str()), Some(probe));
    }

    #[test]
    fn a_number_seen_again_from_the_same_sender_is_a_duplicate_and_from_another_is_not() {
        let mut seen = Seen::default();
        assert!(seen.insert(7, 0));
        assert!(seen.insert(7, 130));
        assert!(seen.insert(8, 130));
        assert!(!seen.insert(7, 130));
        assert!(!seen.insert(7, 0));
        assert!(!seen.insert(8, 130));
        assert!(seen.insert(8, 0));
        assert!(seen.insert(7, 63));
        assert!(seen.insert(7, 64));
        assert!(!seen.insert(7, 64));
    }

    #[test]
    fn a_message_body_is_read_by_its_key_and_one_with_escapes_through_the_parser() {
        let message =
            r#"{"id":"m1","room":"r","seq":3,"from":{"name":"a \"body\":\"x","id":"s"},"body":"1 2 3 4","sentAt":5}"#;
        assert_eq!(body_of(message).as_deref(), Some("1 2 3 4"));
        // The text `"body":"` at the end of another key (one with an escaped quote) is not the key.
        let lookalike = r#"{"x\"body":"no","body":"1 2 3 4"}"#;
        assert_eq!(body_of(lookalike).as_deref(), Some("1 2 3 4"));
        let escaped = r#"{"id":"m1","body":"say \"hi\"","sentAt":5}"#;
        assert_eq!(body_of(escaped).as_deref(), Some("say \"hi\""));
        let spaced = r#"{ "id": "m1", "body": "1 2 3 4" }"#;
        assert_eq!(body_of(spaced).as_deref(), Some("1 2 3 4"));
        assert_eq!(body_of(r#"{"id":"m1"}"#), None);
        assert_eq!(body_of("not json"), None);
    }

    #[test]
    fn a_body_that_is_not_a_probe_is_ignored() {
        assert_eq!(Probe::parse("hello there"), None);
        assert_eq!(Probe::parse("1 2 3"), None);
    }
}
