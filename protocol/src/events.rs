//! One struct per Socket.IO event. The event name is tied to the type through [`Event::NAME`], so no handler spells
//! an event name by hand, and a request's answer type is tied to it through [`Request::Response`].

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{DisplayName, ImageKind, ImageRef, MessageBody, RoomName, SessionToken};

/// A request that carries one binary attachment after its JSON payload: the event's arguments are the payload,
/// then the bytes (sent as a Socket.IO binary attachment, over WebSocket and long-polling alike).
pub trait BinaryRequest: Request {}

/// A Socket.IO event with a typed payload.
pub trait Event: Serialize + DeserializeOwned {
    /// The event name on the wire.
    const NAME: &'static str;
}

/// A client-to-server event that is answered through a Socket.IO acknowledgement carrying an [`AckResult`].
pub trait Request: Event {
    /// What the server acknowledges with on success.
    type Response: Serialize + DeserializeOwned;
}

/// The chat namespace. Every browser tab connects here.
pub const CHAT_NAMESPACE: &str = "/";

/// The lobby namespace: no sign-in, and nothing to send; it pushes [`RoomsSnapshot`]s of the active rooms.
pub const LOBBY_NAMESPACE: &str = "/lobby";

/// The admin namespace, guarded by the token in [`AdminAuth`]. It pushes [`Stats`] and answers [`RemoveMember`].
pub const ADMIN_NAMESPACE: &str = "/admin";

/// The `auth` payload of the CONNECT packet to the chat namespace. The server reads the sender's identity from it
/// once, at connect time; no later event carries a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatAuth {
    pub name: DisplayName,
    /// Makes this connection the same member as every other connection with this token. Browsers leave it out:
    /// their session cookie says it. Without either, the connection is a member of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionToken>,
}

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

/// The server-assigned identifier of a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub String);

/// The public identifier of a member: the same for all their tabs, derived from their session, and safe to show.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MemberId(pub String);

/// A person in a room: one entry however many tabs they have open.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub id: MemberId,
    pub name: DisplayName,
}

/// A client-chosen identifier for a message it sends: a retry with the same one is the same message, stored and
/// shown once. 1–64 letters, digits, `-` or `_` (a UUID fits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(input: &str) -> Result<Self, crate::ValidationError> {
        let valid =
            (1..=64).contains(&input.len()) && input.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if valid { Ok(Self(input.to_owned())) } else { Err(crate::ValidationError::MalformedClientId) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ClientId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Client → server: enter a room. Its recent history comes back in the ack, and live messages follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRoom {
    pub room: RoomName,
    /// The highest `seq` of this room the client already has. The ack then carries the first messages after it,
    /// in order (at most [`Joined::MAX_HISTORY`] and [`HistoryPage::MAX_BYTES`]; `has_more` when there are more, to
    /// fetch with [`LoadHistory`] `after`): that is how a client resumes after a reconnection without a gap or a
    /// duplicate. Without it, the ack carries the latest messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

impl Event for JoinRoom {
    const NAME: &'static str = "join";
}

impl Request for JoinRoom {
    type Response = Joined;
}

/// The answer to [`JoinRoom`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    pub room: RoomName,
    /// Who the server knows this connection as.
    pub you: Member,
    /// Who is in the room now, by name: everyone, or in a room of more than [`Joined::MAX_MEMBERS`], the first of
    /// them in the order of their ids (`you` among them or not), the rest to ask for with [`ListMembers`] from
    /// `more_members`.
    pub members: Vec<Member>,
    /// Where the list goes on, when `members` is not everyone: the [`ListMembers::after`] of the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_members: Option<MemberId>,
    /// Stored messages, oldest first: the latest ones, or those after `since`.
    #[serde(default)]
    pub history: Vec<ChatMessage>,
    /// Whether there are more messages (older ones, or after `since` beyond the limit).
    #[serde(default)]
    pub has_more: bool,
}

impl Joined {
    /// At most this many messages come with a join, and at most [`HistoryPage::MAX_BYTES`] of them.
    pub const MAX_HISTORY: usize = 100;

    /// At most this many members come with a join, and with each [`MembersPage`]: about 1 KB of JSON (1.3 KB
    /// with the longest names). The server keeps each connection's largest write allocated for the connection's
    /// life, so a join that carried a room of 5,000 whole (150 KB) would cost that much for every one of them.
    /// Pages of 32 and presence events of 16 changes cost each idle connection 0.8 KiB more than 16 and 8
    /// (docs/performance.md, session 20).
    pub const MAX_MEMBERS: usize = 16;
}

/// Client → server: the next members of a room this connection is in, in the order of their ids, after the
/// member id `after` (a join's [`Joined::more_members`], or the last page's [`MembersPage::more`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMembers {
    pub room: RoomName,
    pub after: MemberId,
}

impl Event for ListMembers {
    const NAME: &'static str = "members";
}

impl Request for ListMembers {
    type Response = MembersPage;
}

/// The answer to [`ListMembers`]: up to [`Joined::MAX_MEMBERS`] members, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembersPage {
    pub members: Vec<Member>,
    /// Where the list goes on, if it does: the next request's `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<MemberId>,
}

/// Client → server: a page of a joined room's messages: older ones when scrolling back (`before`), or newer ones
/// when resuming after more were missed than a join carries (`after`). On the wire it is
/// `{"room", "before": seq}` or `{"room", "after": seq}`; anything else is refused with a clear error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LoadHistoryWire", into = "LoadHistoryWire")]
pub struct LoadHistory {
    pub room: RoomName,
    pub from: HistoryFrom,
}

/// Which way a [`LoadHistory`] pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryFrom {
    /// The last messages before this `seq` (the oldest the client has).
    Before(u64),
    /// The first messages after this `seq` (the newest the client has).
    After(u64),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoadHistoryWire {
    room: RoomName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<u64>,
}

impl TryFrom<LoadHistoryWire> for LoadHistory {
    type Error = &'static str;

    fn try_from(wire: LoadHistoryWire) -> Result<Self, Self::Error> {
        let from = match (wire.before, wire.after) {
            (Some(seq), None) => HistoryFrom::Before(seq),
            (None, Some(seq)) => HistoryFrom::After(seq),
            _ => return Err("give either `before` or `after`: the seq to page back or forward from"),
        };
        Ok(Self { room: wire.room, from })
    }
}

impl From<LoadHistory> for LoadHistoryWire {
    fn from(request: LoadHistory) -> Self {
        let (before, after) = match request.from {
            HistoryFrom::Before(seq) => (Some(seq), None),
            HistoryFrom::After(seq) => (None, Some(seq)),
        };
        Self { room: request.room, before, after }
    }
}

impl Event for LoadHistory {
    const NAME: &'static str = "history";
}

impl Request for LoadHistory {
    type Response = HistoryPage;
}

/// The answer to [`LoadHistory`]: up to [`HistoryPage::SIZE`] messages and [`HistoryPage::MAX_BYTES`], oldest
/// first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub messages: Vec<ChatMessage>,
    /// Whether more exist in the direction asked: older ones for `before`, newer ones for `after`.
    pub has_more: bool,
}

impl HistoryPage {
    /// At most this many messages come in a page.
    pub const SIZE: usize = 50;
    /// A page, and a join's history, also stops before this many bytes of messages (as JSON), keeping the
    /// messages nearest to where it starts; `has_more` then says the rest is there to ask for. Whatever a
    /// connection writes at once stays allocated in its WebSocket write buffer for as long as it is open (the
    /// server's WebSocket library keeps the buffer's largest size), so the server keeps its answers small. A
    /// message longer than this comes alone. (A join's member list is not cut: 3 KB for a room of 100.)
    pub const MAX_BYTES: usize = 4096;
}

/// Where a client that holds messages with these `seq`s resumes (the `since` of its next [`JoinRoom`]): the end
/// of the unbroken run from the oldest it holds, not the newest. A room's `seq`s have no gaps, so a gap is
/// something missed: a join's history lost with its connection while live messages after it arrived. Resuming
/// after the newest would skip it for good; resuming here fetches it, and whatever comes twice is dropped by `seq`.
pub fn resume_point(seqs: impl IntoIterator<Item = u64>) -> Option<u64> {
    let mut seqs: Vec<u64> = seqs.into_iter().collect();
    seqs.sort_unstable();
    seqs.dedup();
    let (&first, rest) = seqs.split_first()?;
    Some(
        rest.iter()
            .try_fold(first, |end, &seq| if seq == end + 1 { Ok(seq) } else { Err(end) })
            .unwrap_or_else(|end| end),
    )
}

/// Whether a live message numbered `seq`, arriving at a client whose messages run unbroken up to `resume` (its
/// [`resume_point`]), shows that some went missing on their way: then `Some(after)`, where to page forward from
/// (`history` with `after`). A room's `seq`s have no gaps, so anything more than one past `resume` is a hole: a
/// broadcast lost with the node that stored the message, or while Redis was down. A client that holds nothing yet
/// (`None`) misses everything before `seq`.
pub fn missing_before(resume: Option<u64>, seq: u64) -> Option<u64> {
    let after = resume.unwrap_or(0);
    (seq > after.saturating_add(1)).then_some(after)
}

/// Where messages are missing among those a client holds (`seqs`): the `after` to page forward from, if some are.
/// [`missing_before`] of the newest one held, seen from the [`resume_point`].
pub fn hole(seqs: impl IntoIterator<Item = u64>) -> Option<u64> {
    let seqs: Vec<u64> = seqs.into_iter().collect();
    let newest = seqs.iter().max().copied()?;
    missing_before(resume_point(seqs), newest)
}

/// Client → server: post a message to a room the sender has joined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    pub room: RoomName,
    pub body: MessageBody,
    /// Makes retries safe: the server stores a message once per sender and client id, and answers a repeat with
    /// the original. Optional for simple clients, which then get no such protection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
}

impl Event for SendMessage {
    const NAME: &'static str = "send";
}

impl Request for SendMessage {
    type Response = MessageAccepted;
}

/// Client → server: share an image in a room the sender has joined. Two arguments: this object, then the image's
/// bytes as a binary attachment (`socket.emit("image", {room, contentType, caption}, bytes, ack)` in JavaScript).
/// The server checks the bytes against `content_type` and [`crate::MAX_IMAGE_BYTES`], stores the image, and
/// answers like [`SendMessage`]: the room gets a [`ChatMessage`] whose `image` says where to fetch it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendImage {
    pub room: RoomName,
    pub content_type: ImageKind,
    /// Shown under the image and used as its text alternative. The browser uses the file's name when the person
    /// wrote nothing.
    pub caption: MessageBody,
    /// As in [`SendMessage::client_id`]: a retry is stored once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
}

impl Event for SendImage {
    const NAME: &'static str = "image";
}

impl Request for SendImage {
    type Response = MessageAccepted;
}

impl BinaryRequest for SendImage {}

/// The answer to [`SendMessage`]: the message as the room will see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageAccepted {
    pub message: ChatMessage,
}

/// Server → client: a message posted in a room the client has joined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub id: MessageId,
    pub room: RoomName,
    /// The message's place in its room: 1, 2, 3… with no gaps, assigned when it is stored.
    pub seq: u64,
    pub from: Member,
    pub body: MessageBody,
    pub sent_at: UnixMillis,
    /// The sender's [`SendMessage::client_id`], if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
    /// The image shared with this message (see [`SendImage`]); `body` is then its caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
}

impl Event for ChatMessage {
    const NAME: &'static str = "message";
}

/// Server → client: people entered or left the room, in the order it happened. A quiet room hears of each change
/// at once, one per event; while changes keep coming (everyone coming back after a server restart) they come
/// together, about every half second. Apply them in order; a change about someone already shown that way is no
/// change. Never about the recipient themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceChanged {
    pub room: RoomName,
    pub changes: Vec<MemberChange>,
}

impl Event for PresenceChanged {
    const NAME: &'static str = "presence";
}

/// One arrival or departure in a [`PresenceChanged`]. On the wire `{"change": "joined", "member"}` or
/// `{"change": "left", "member", "reason"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WireChange", into = "WireChange")]
pub enum MemberChange {
    /// Their first tab entered the room (further tabs are not announced).
    Joined { member: Member },
    /// Their last tab closed or went silent, or an admin removed them.
    Left { member: Member, reason: LeaveReason },
    /// A change from a newer server: skip it.
    Unknown,
}

/// [`MemberChange`] as it travels: a flat object rather than a serde-tagged enum, whose decoding buffers every
/// field first (and costs the browser's bundle kilobytes of generic code for it).
#[derive(Serialize, Deserialize)]
struct WireChange {
    change: ChangeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    member: Option<Member>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<LeaveReason>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChangeKind {
    Joined,
    Left,
    #[serde(other)]
    Unknown,
}

impl TryFrom<WireChange> for MemberChange {
    type Error = String;

    fn try_from(wire: WireChange) -> Result<Self, String> {
        match (wire.change, wire.member) {
            (ChangeKind::Unknown, _) => Ok(Self::Unknown),
            (ChangeKind::Joined, Some(member)) => Ok(Self::Joined { member }),
            // A departure without a reason is one of unknown reason, not a malformed one.
            (ChangeKind::Left, Some(member)) => {
                Ok(Self::Left { member, reason: wire.reason.unwrap_or(LeaveReason::Unknown) })
            }
            (ChangeKind::Joined | ChangeKind::Left, None) => Err("a presence change without its member".to_owned()),
        }
    }
}

impl From<MemberChange> for WireChange {
    fn from(change: MemberChange) -> Self {
        match change {
            MemberChange::Joined { member } => Self { change: ChangeKind::Joined, member: Some(member), reason: None },
            MemberChange::Left { member, reason } => {
                Self { change: ChangeKind::Left, member: Some(member), reason: Some(reason) }
            }
            MemberChange::Unknown => Self { change: ChangeKind::Unknown, member: None, reason: None },
        }
    }
}

impl MemberChange {
    /// Whom the change is about; `None` for an [`MemberChange::Unknown`] one.
    pub fn member(&self) -> Option<&Member> {
        match self {
            Self::Joined { member } | Self::Left { member, .. } => Some(member),
            Self::Unknown => None,
        }
    }

    /// Who arrived, if this is an arrival.
    pub fn joined(self) -> Option<Member> {
        match self {
            Self::Joined { member } => Some(member),
            _ => None,
        }
    }

    /// Who left and why, if this is a departure.
    pub fn left(self) -> Option<(Member, LeaveReason)> {
        match self {
            Self::Left { member, reason } => Some((member, reason)),
            _ => None,
        }
    }
}

/// Why a member left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// They closed their last tab, or it stopped answering the heartbeat.
    Left,
    /// An admin removed them.
    Removed,
    /// A reason from a newer server.
    #[serde(other)]
    Unknown,
}

/// Client → server: "I am typing in this room". Send it at most every couple of seconds while typing; it asks
/// for no ack, and the notice it causes expires on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Typing {
    pub room: RoomName,
}

impl Event for Typing {
    const NAME: &'static str = "typing";
}

/// Server → client: a member is typing in the room. Show it for [`TypingNotice::SHOW_FOR_MS`] unless refreshed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingNotice {
    pub room: RoomName,
    pub member: Member,
}

impl TypingNotice {
    /// How long a notice stays up without a fresh one.
    pub const SHOW_FOR_MS: u64 = 4000;
    /// How often a typing client repeats [`Typing`]: often enough that the notice never blinks out.
    pub const REPEAT_EVERY_MS: u64 = 2000;
}

impl Event for TypingNotice {
    const NAME: &'static str = "typing";
}

/// Client → server: a message only the recipient and the sender see (on all of their tabs in that room).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendPrivate {
    pub room: RoomName,
    pub to: MemberId,
    pub body: MessageBody,
}

impl Event for SendPrivate {
    const NAME: &'static str = "private";
}

impl Request for SendPrivate {
    type Response = PrivateAccepted;
}

/// The answer to [`SendPrivate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateAccepted {
    pub message: PrivateMessage,
}

/// Server → client: a private message to or from this member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateMessage {
    pub id: MessageId,
    pub room: RoomName,
    pub from: Member,
    pub to: Member,
    pub body: MessageBody,
    pub sent_at: UnixMillis,
}

impl Event for PrivateMessage {
    const NAME: &'static str = "private_message";
}

/// Server → client: an admin removed you from the room. The client should not join it again by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Removed {
    pub room: RoomName,
}

impl Event for Removed {
    const NAME: &'static str = "removed";
}

/// Server → client: someone on another node took your name in this room at the same moment you did, and keeps it
/// (two nodes cannot check a name against each other faster than their presence reaches one another). You are out
/// of the room: join again under another name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameTaken {
    pub room: RoomName,
    pub name: DisplayName,
}

impl Event for NameTaken {
    const NAME: &'static str = "name_taken";
}

/// A room with people in it, as the lobby lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    pub room: RoomName,
    /// Members online (people, not tabs).
    pub online: u32,
}

/// Server → client, on [`LOBBY_NAMESPACE`]: every active room, busiest first. Sent on connect and after every
/// change, at most a few times a second.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomsSnapshot {
    pub rooms: Vec<RoomSummary>,
}

impl RoomsSnapshot {
    /// The most rooms listed: the busiest ones. Every lobby visitor gets the list a few times a second, so its
    /// size must not grow with the number of rooms someone cares to open.
    pub const MAX_ROOMS: usize = 50;
}

impl Event for RoomsSnapshot {
    const NAME: &'static str = "rooms";
}

/// The `auth` payload of the CONNECT packet to [`ADMIN_NAMESPACE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminAuth {
    pub token: String,
}

/// A room and who is in it, for admins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomDetail {
    pub room: RoomName,
    pub members: Vec<Member>,
}

/// Server → admin, every second: the server's vital signs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Open connections on the chat namespace.
    pub connections: u32,
    /// Of those, how many are on long-polling and on WebSocket right now.
    pub polling: u32,
    pub websocket: u32,
    pub rooms: Vec<RoomDetail>,
    /// Messages accepted over the last second.
    pub messages_per_second: f64,
    /// Messages accepted since the server started.
    pub messages_total: u64,
}

impl Event for Stats {
    const NAME: &'static str = "stats";
}

/// Admin → server: take a member out of a room, on all their tabs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveMember {
    pub room: RoomName,
    pub member: MemberId,
}

impl Event for RemoveMember {
    const NAME: &'static str = "remove";
}

impl Request for RemoveMember {
    type Response = MemberRemoved;
}

/// The answer to [`RemoveMember`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRemoved {
    pub room: RoomName,
    pub member: Member,
}

/// How every request is acknowledged: `{"ok": …}` or `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AckResult<T> {
    Ok(T),
    Error(ErrorBody),
}

impl<T> AckResult<T> {
    pub fn into_result(self) -> Result<T, ErrorBody> {
        match self {
            AckResult::Ok(value) => Ok(value),
            AckResult::Error(error) => Err(error),
        }
    }
}

impl<T> From<Result<T, ErrorBody>> for AckResult<T> {
    fn from(result: Result<T, ErrorBody>) -> Self {
        match result {
            Ok(value) => AckResult::Ok(value),
            Err(error) => AckResult::Error(error),
        }
    }
}

/// A refused request: a stable code for programs and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Stable error codes. Clients must accept codes they do not know yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The payload did not match the event's shape or broke a validation rule.
    InvalidPayload,
    /// The request names a room this connection has not joined.
    NotInRoom,
    /// Too many messages too fast; the message says when to try again.
    RateLimited,
    /// Someone else in the room already goes by this name (names differing only in case count as the same).
    NameInUse,
    /// The member or room the request names is not there (any more).
    NotFound,
    /// The server failed; the message is safe to show but says nothing of the cause.
    Internal,
    /// A code from a newer server.
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ada() -> Member {
        Member { id: MemberId("m-ada".into()), name: DisplayName::parse("Ada").unwrap() }
    }

    #[test]
    fn presence_changes_are_tagged_by_kind_and_a_newer_kind_is_skipped_not_refused() {
        let changed = PresenceChanged {
            room: RoomName::parse("rust").unwrap(),
            changes: vec![
                MemberChange::Joined { member: ada() },
                MemberChange::Left { member: ada(), reason: LeaveReason::Removed },
            ],
        };
        let member = json!({"id": "m-ada", "name": "Ada"});
        let wire = json!({"room": "rust", "changes": [
            {"change": "joined", "member": member},
            {"change": "left", "member": member, "reason": "removed"},
        ]});
        assert_eq!(serde_json::to_value(&changed).unwrap(), wire);
        assert_eq!(serde_json::from_value::<PresenceChanged>(wire).unwrap(), changed);
        let newer = json!({"room": "rust", "changes": [{"change": "renamed", "member": member}]});
        let read = serde_json::from_value::<PresenceChanged>(newer).unwrap();
        assert_eq!(read.changes, vec![MemberChange::Unknown]);
        assert_eq!(read.changes[0].member(), None);
        let memberless = json!({"room": "rust", "changes": [{"change": "joined"}]});
        let error = serde_json::from_value::<PresenceChanged>(memberless).unwrap_err();
        assert!(error.to_string().contains("without its member"), "{error}");
    }

    #[test]
    fn a_client_resumes_after_its_unbroken_run_of_messages_not_after_the_newest() {
        assert_eq!(resume_point([]), None);
        assert_eq!(resume_point([7]), Some(7));
        assert_eq!(resume_point([3, 1, 2, 2]), Some(3), "in any order, copies and all");
        assert_eq!(resume_point([10, 11, 12, 14, 15]), Some(12), "13 is missing: resume after 12");
        assert_eq!(resume_point([51, 52, 53]), Some(53), "the run need not start at 1");
    }

    #[test]
    fn a_live_message_past_the_next_seq_shows_a_hole_to_fill() {
        assert_eq!(missing_before(Some(8), 9), None, "the next one");
        assert_eq!(missing_before(Some(8), 5), None, "an old one again");
        assert_eq!(missing_before(Some(8), 10), Some(8), "9 went missing");
        assert_eq!(missing_before(None, 1), None, "the room's first message");
        assert_eq!(missing_before(None, 4), Some(0), "nothing held, three before it");
        assert_eq!(missing_before(Some(u64::MAX), u64::MAX), None);
    }

    #[test]
    fn a_hole_is_where_the_unbroken_run_ends_before_the_newest_message() {
        assert_eq!(hole([]), None);
        assert_eq!(hole([4, 5, 6]), None);
        assert_eq!(hole([4, 5, 8, 6]), Some(6), "7 is missing");
        assert_eq!(hole([1, 3]), Some(1));
    }

    #[test]
    fn an_ok_ack_is_an_object_with_an_ok_field() {
        let ack: AckResult<Joined> = AckResult::Ok(Joined {
            room: RoomName::parse("general").unwrap(),
            you: ada(),
            members: vec![ada()],
            more_members: None,
            history: vec![],
            has_more: false,
        });
        let ada = json!({"id": "m-ada", "name": "Ada"});
        assert_eq!(
            serde_json::to_value(&ack).unwrap(),
            json!({"ok": {"room": "general", "you": ada, "members": [ada], "history": [], "hasMore": false}})
        );
    }

    #[test]
    fn a_members_page_is_asked_for_after_a_member_id_and_says_where_the_list_goes_on() {
        let request = ListMembers { room: RoomName::parse("general").unwrap(), after: MemberId("m-ada".into()) };
        assert_eq!(serde_json::to_value(&request).unwrap(), json!({"room": "general", "after": "m-ada"}));
        let page = MembersPage { members: vec![ada()], more: Some(MemberId("m-ada".into())) };
        let ada = json!({"id": "m-ada", "name": "Ada"});
        assert_eq!(serde_json::to_value(&page).unwrap(), json!({"members": [ada], "more": "m-ada"}));
        let last: MembersPage = serde_json::from_value(json!({"members": []})).unwrap();
        assert_eq!(last.more, None, "the last page says nothing of more");
        let joined: Joined =
            serde_json::from_value(json!({"room": "general", "you": ada, "members": [ada], "moreMembers": "m-b"}))
                .unwrap();
        assert_eq!(joined.more_members, Some(MemberId("m-b".into())));
    }

    #[test]
    fn an_error_ack_carries_a_code_and_a_message() {
        let ack: AckResult<Joined> = AckResult::Error(ErrorBody::new(ErrorCode::NotInRoom, "Join the room first."));
        let value = serde_json::to_value(&ack).unwrap();
        assert_eq!(value, json!({"error": {"code": "not_in_room", "message": "Join the room first."}}));
        let back: AckResult<Joined> = serde_json::from_value(value).unwrap();
        assert_eq!(back.into_result().unwrap_err().code, ErrorCode::NotInRoom);
    }

    #[test]
    fn an_unknown_error_code_still_parses() {
        let body: ErrorBody = serde_json::from_value(json!({"code": "brand_new", "message": "x"})).unwrap();
        assert_eq!(body.code, ErrorCode::Unknown);
    }

    #[test]
    fn a_chat_message_uses_camel_case_fields() {
        let message = ChatMessage {
            id: MessageId("m1".into()),
            room: RoomName::parse("general").unwrap(),
            seq: 7,
            from: ada(),
            body: MessageBody::parse("hello").unwrap(),
            sent_at: UnixMillis(1_700_000_000_000),
            client_id: None,
            image: None,
        };
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            json!({
                "id": "m1",
                "room": "general",
                "seq": 7,
                "from": {"id": "m-ada", "name": "Ada"},
                "body": "hello",
                "sentAt": 1_700_000_000_000_i64
            })
        );
    }

    #[test]
    fn a_send_with_an_invalid_body_does_not_deserialize() {
        let err = serde_json::from_value::<SendMessage>(json!({"room": "general", "body": "   "})).unwrap_err();
        assert!(err.to_string().contains("Please enter a message."), "{err}");
    }

    #[test]
    fn chat_auth_may_leave_out_the_session_and_a_bad_one_is_refused() {
        let auth: ChatAuth = serde_json::from_value(json!({"name": "Ada"})).unwrap();
        assert_eq!(auth.session, None);
        assert_eq!(serde_json::to_value(&auth).unwrap(), json!({"name": "Ada"}));
        let err = serde_json::from_value::<ChatAuth>(json!({"name": "Ada", "session": "x"})).unwrap_err();
        assert!(err.to_string().contains("session token"), "{err}");
    }

    #[test]
    fn a_history_request_pages_either_back_or_forward_and_never_both() {
        let room = RoomName::parse("general").unwrap();
        let back: LoadHistory = serde_json::from_value(json!({"room": "general", "before": 12})).unwrap();
        assert_eq!(back, LoadHistory { room: room.clone(), from: HistoryFrom::Before(12) });
        let forward = LoadHistory { room, from: HistoryFrom::After(3) };
        assert_eq!(serde_json::to_value(&forward).unwrap(), json!({"room": "general", "after": 3}));
        for bad in [json!({"room": "general"}), json!({"room": "general", "before": 1, "after": 2})] {
            let err = serde_json::from_value::<LoadHistory>(bad).unwrap_err();
            assert!(err.to_string().contains("either `before` or `after`"), "{err}");
        }
    }

    #[test]
    fn error_codes_and_leave_reasons_are_snake_case_words() {
        assert_eq!(serde_json::to_value(ErrorCode::NameInUse).unwrap(), json!("name_in_use"));
        assert_eq!(serde_json::to_value(LeaveReason::Removed).unwrap(), json!("removed"));
        assert_eq!(serde_json::from_value::<LeaveReason>(json!("teleported")).unwrap(), LeaveReason::Unknown);
    }
}
