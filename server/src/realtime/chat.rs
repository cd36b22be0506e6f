//! The chat namespace: rooms, messages, presence, typing and private messages.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::{
    CHAT_NAMESPACE, ChatAuth, ChatMessage, ErrorBody, ErrorCode, Event, HistoryFrom, HistoryPage, ImageKind, JoinRoom,
    Joined, LeaveReason, ListMembers, LoadHistory, Member, MemberChange, MemberId, MembersPage, MessageAccepted,
    MessageId, PresenceChanged, PrivateAccepted, PrivateMessage, RoomName, SendImage, SendMessage, SendPrivate, Typing,
    TypingNotice, UnixMillis,
};
use socketioxide::ParserError;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event as EventName, Extension, SocketRef, State, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts};
use socketioxide::socket::Socket;
use socketioxide_core::Value;
use socketioxide_core::adapter::DefinedAdapter;

use super::{Hub, broadcast, invalid_payload, member_channel, reply, room_channel};
use crate::limits::Limiter;
use crate::presence::{Arrival, Change, JoinRefused};
use crate::store::{Appended, Keep, NewImage, NewMessage, Page, StoreError};

use crate::session;

/// Who a chat connection is, set by [`sign_in`] before the connection is accepted, and what its handlers keep
/// between events. One extension behind one `Arc`: each event's handler gets a clone (a count, not a copy of the
/// name), and an idle connection holds one allocation for it all instead of one per part.
#[derive(Debug, Clone)]
pub struct Identity(Arc<Connection>);

#[derive(Debug)]
pub struct Connection {
    pub member: Member,
    typing: TypingClock,
    joins: Joins,
}

impl Identity {
    fn new(member: Member) -> Self {
        Self(Arc::new(Connection { member, typing: TypingClock::default(), joins: Joins::default() }))
    }
}

impl std::ops::Deref for Identity {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0
    }
}

/// When this connection last caused a typing notice. Behind a mutex because socketioxide runs each event's
/// handler as its own task; the lock is never held across an `await`.
#[derive(Debug, Default)]
struct TypingClock(Mutex<Option<Instant>>);

/// Typing events closer together than this are dropped: the notice lasts seconds, so they would add nothing.
const TYPING_AT_MOST_EVERY: Duration = Duration::from_millis(500);

impl TypingClock {
    fn tick(&self, now: Instant) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_some_and(|at| now.saturating_duration_since(at) < TYPING_AT_MOST_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// A message went out: the next typing event starts a new notice, however soon it comes.
    fn reset(&self) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

/// This connection's joins of each room it is in (or was joining): which one came last, and whether any of them
/// was answered "joined". socketioxide runs each event's handler as its own task, so a client that asks again (a
/// page whose join timed out) can have two joins of one room under way at once; a join whose history read then
/// fails undoes the membership only if it is the last one and none was answered, since a later join may already
/// have told the client it is in. Read and changed under the presence turn; the lock is never held across an
/// `await`. At most one entry per room the connection joined, removed when a join is undone: a list, as a
/// connection is in a few rooms at most ([`crate::presence::MAX_ROOMS_PER_CONNECTION`]).
#[derive(Debug, Default)]
struct Joins(Mutex<Vec<(RoomName, JoinsOfRoom)>>);

#[derive(Debug, Clone, Copy, Default)]
struct JoinsOfRoom {
    latest: u64,
    answered: bool,
}

impl Joins {
    /// A join of `room` is under way; `fresh` when it put the connection in the room (the others only confirm).
    /// Returns its number.
    fn begin(&self, room: &RoomName, fresh: bool) -> u64 {
        let mut joins = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = match joins.iter().position(|(joined, _)| joined == room) {
            Some(at) => at,
            None => {
                // Room for this one only: nearly every connection joins one room (a page is one room), and the
                // list lasts as long as the connection.
                joins.reserve_exact(1);
                joins.push((room.clone(), JoinsOfRoom::default()));
                joins.len() - 1
            }
        };
        let of_room = &mut joins[at].1;
        if fresh {
            of_room.answered = false;
        }
        of_room.latest += 1;
        of_room.latest
    }

    /// The join was answered "joined".
    fn answered(&self, room: &RoomName) {
        let mut joins = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, of_room)) = joins.iter_mut().find(|(joined, _)| joined == room) {
            of_room.answered = true;
        }
    }

    /// Join `number` failed: whether it is to undo the membership (it came last, and no join was answered), in
    /// which case it is forgotten.
    fn undo(&self, room: &RoomName, number: u64) -> bool {
        let mut joins = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = joins.iter().position(|(joined, of_room)| joined == room && of_room.latest == number);
        match at {
            Some(at) if !joins[at].1.answered => {
                joins.swap_remove(at);
                true
            }
            _ => false,
        }
    }
}

/// Why a CONNECT to the chat namespace was refused. The text reaches the client in the CONNECT_ERROR packet.
#[derive(Debug, thiserror::Error)]
pub enum ConnectRefused {
    #[error("Invalid sign-in: {0}")]
    InvalidAuth(String),
}

pub(super) fn attach<A: Adapter + DefinedAdapter>(io: &SocketIo<A>) -> A::InitRes {
    io.ns(CHAT_NAMESPACE, on_connect::<A>.with(sign_in::<A>))
}

/// Connect middleware: validates the `auth` payload, records the connection's identity and registers the event
/// handlers. The session is the one in `auth` if given (programs), else the cookie (browsers), else a new one for
/// this connection alone.
///
/// The handlers are registered here and not in [`on_connect`]: socketioxide sends the CONNECT packet after the
/// middleware and then *spawns* the connect handler, so a client that emits `join` the moment it is connected (as
/// browsers and our client do) can be read before a spawned handler has run, and an event with no handler is
/// dropped without an answer. Under load that left a few joins in 10,000 unanswered.
async fn sign_in<A: Adapter>(socket: SocketRef<A>, TryData(auth): TryData<ChatAuth>) -> Result<(), ConnectRefused> {
    let auth = auth.map_err(|e| ConnectRefused::InvalidAuth(e.to_string()))?;
    let token =
        auth.session.or_else(|| session::from_headers(&socket.req_parts().headers)).unwrap_or_else(session::new_token);
    let member = Member { id: session::member_id(&token), name: auth.name };
    socket.extensions.insert(Identity::new(member));
    register_handlers(&socket);
    Ok(())
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    tracing::debug!(sid = %socket.id, transport = ?socket.transport_type(), "chat connection");
}

/// One handler for every event, [`on_event`], rather than one per event: socketioxide keeps each connection's
/// handlers in a table of its own, and seven of them cost every idle connection a third of a kilobyte
/// (docs/performance.md, session 20). It gets each event as socketioxide finds no handler by that name.
fn register_handlers<A: Adapter>(socket: &SocketRef<A>) {
    socket.on_fallback(on_event::<A>);
    socket.on_disconnect(on_disconnect::<A>);
}

/// An event of the chat namespace, its arguments decoded as the event its name says (the decoding's error, when
/// they are not that event's, goes to the handler: it answers with it).
enum Incoming {
    Join(Result<JoinRoom, ParserError>),
    Send(Result<SendMessage, ParserError>),
    Image(Result<(SendImage, bytes::Bytes), ParserError>),
    Typing(Result<Typing, ParserError>),
    Private(Result<SendPrivate, ParserError>),
    History(Result<LoadHistory, ParserError>),
    Members(Result<ListMembers, ParserError>),
    Unknown(String),
}

impl<A: Adapter> FromMessageParts<A> for Incoming {
    type Error = ParserError;

    fn from_message_parts(socket: &Arc<Socket<A>>, value: &mut Value, ack: &Option<i64>) -> Result<Self, ParserError> {
        fn decode<T: serde::de::DeserializeOwned, A: Adapter>(
            socket: &Arc<Socket<A>>,
            value: &mut Value,
            ack: &Option<i64>,
        ) -> Result<T, ParserError> {
            match TryData::<T>::from_message_parts(socket, value, ack) {
                Ok(TryData(decoded)) => decoded,
            }
        }
        let EventName(event) = EventName::from_message_parts(socket, value, ack)?;
        Ok(match event.as_str() {
            JoinRoom::NAME => Self::Join(decode(socket, value, ack)),
            SendMessage::NAME => Self::Send(decode(socket, value, ack)),
            SendImage::NAME => Self::Image(decode(socket, value, ack)),
            Typing::NAME => Self::Typing(decode(socket, value, ack)),
            SendPrivate::NAME => Self::Private(decode(socket, value, ack)),
            LoadHistory::NAME => Self::History(decode(socket, value, ack)),
            ListMembers::NAME => Self::Members(decode(socket, value, ack)),
            _ => Self::Unknown(event),
        })
    }
}

async fn on_event<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    State(hub): State<Hub>,
    Extension(me): Extension<Identity>,
    incoming: Incoming,
    ack: AckSender<A>,
) {
    match incoming {
        Incoming::Join(request) => on_join(socket, io, hub, me, request, ack).await,
        Incoming::Send(request) => on_send(socket, hub, me, request, ack).await,
        Incoming::Image(request) => on_image(socket, hub, me, request, ack).await,
        Incoming::Typing(request) => on_typing(socket, hub, me, request).await,
        Incoming::Private(request) => on_private(socket, hub, me, request, ack).await,
        Incoming::History(request) => on_history(socket, hub, me, request, ack).await,
        Incoming::Members(request) => on_members(socket, hub, me, request, ack).await,
        Incoming::Unknown(event) => tracing::info!(sid = %socket.id, %event, "ignoring an unknown event"),
    }
}

async fn on_join<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    hub: Hub,
    me: Identity,
    request: Result<JoinRoom, ParserError>,
    ack: AckSender<A>,
) {
    let joins = &me.joins;
    if let Err(refusal) = spend_read(&hub, &me) {
        return reply::<Joined>(ack, Err(refusal));
    }
    let JoinRoom { room, since } = match request {
        Ok(request) => request,
        Err(e) => return reply::<Joined>(ack, Err(invalid_payload(e))),
    };
    let turn = hub.presence_turn();
    let already_in = hub.presence.is_in(&room, socket.id);
    let (arrival, first_members) = match hub.presence.join(&room, &me.member, socket.id) {
        Ok(joined) => joined,
        Err(refused) => {
            drop(turn);
            tracing::info!(sid = %socket.id, name = %me.member.name, %room, %refused, "join refused");
            let code = match refused {
                JoinRefused::NameInUse { .. } | JoinRefused::OtherNameInRoom { .. } => ErrorCode::NameInUse,
                JoinRefused::TooManyRooms { .. } => ErrorCode::RateLimited,
            };
            return reply::<Joined>(ack, Err(ErrorBody::new(code, refused.to_string())));
        }
    };
    // A second join of the same room on this connection (a client asking again) must not be undone below as if
    // it had put the connection there, nor a first one that a later join relies on.
    let this_join = joins.begin(&room, !already_in);
    let channels = [room_channel(&room), member_channel(&room, &me.member.id)];
    socket.join(channels.clone());
    // socketioxide runs this handler and the disconnect handler as separate tasks: the connection may have closed
    // since this join began. It clears `connected` before starting `on_disconnect`, which then waits for the turn
    // held here: seen connected now, the departure comes after this arrival; seen closed, this join undoes itself
    // (announcing what the disconnect may no longer find to announce: the connection's other rooms), and nobody
    // hears of an arrival that did not last.
    if !socket.connected() {
        for (left, member) in hub.presence.disconnect(socket.id) {
            if left != room || arrival == Arrival::AnotherConnection {
                announce(&io, &hub, Change::Left(left, member));
            }
        }
        drop(turn);
        socket.leave(channels);
        return;
    }
    if arrival == Arrival::Entered {
        // This node's connections only: every other node learns of the arrival from the cluster and tells its own.
        announce(&io, &hub, Change::Entered(room.clone(), me.member.clone()));
    }
    // Likewise an admin may have removed this member between the registry and the channels above, or their name
    // gone to someone on another node.
    if let Err(refusal) = still_in(&hub, &socket, &room, &me, &channels) {
        drop(turn);
        return reply::<Joined>(ack, Err(refusal));
    }
    drop(turn);
    tracing::info!(sid = %socket.id, name = %me.member.name, %room, ?arrival, "joined");
    // Read after joining the room's channel: a message sent meanwhile may then come twice (here and live), which
    // the client drops by `seq`, but never zero times.
    let history = match since {
        Some(seq) => read_page(&hub, room.clone(), Some(HistoryFrom::After(seq)), Joined::MAX_HISTORY).await,
        None => read_page(&hub, room.clone(), None, HistoryPage::SIZE).await,
    };
    match history {
        Ok(page) => {
            // Checked again under the turn, and answered before it is let go: the same can happen during the read.
            // A removal or a lost name after this comes after the answer on this connection, and says so itself.
            let turn = hub.presence_turn();
            if let Err(refusal) = still_in(&hub, &socket, &room, &me, &channels) {
                drop(turn);
                return reply::<Joined>(ack, Err(refusal));
            }
            joins.answered(&room);
            let joined = Joined {
                room,
                you: me.member.clone(),
                members: first_members.members,
                more_members: first_members.more,
                history: page.messages,
                has_more: page.has_more,
            };
            reply(ack, Ok(joined));
            drop(turn);
        }
        Err(e) => {
            tracing::error!(error = %e, %room, "history not read");
            // Not joined after all: the others must not see someone whose page shows an error, and a retry must
            // not count as a second tab. Under the turn, so that the departure follows the arrival.
            let turn = hub.presence_turn();
            if joins.undo(&room, this_join) {
                if let Some(member) = hub.presence.leave(&room, socket.id) {
                    announce(&io, &hub, Change::Left(room.clone(), member));
                }
                socket.leave(channels);
            }
            drop(turn);
            reply::<Joined>(ack, Err(internal("The room's history could not be read. Try again in a moment.")));
        }
    }
}

/// Whether a connection that joined `room` is still in it, before its join is answered. If not, it leaves the
/// room's `channels`, and the refusal says why: someone on another node holds its member's name there now, or the
/// member holds another name there through another node ([`NameTaken`](protocol::NameTaken) went to it too), or an
/// admin removed them. (Removed by an admin while someone else took the name reads as the name: either way the
/// person picks another.) Call it holding the turn, so that a second join of the connection cannot come between
/// the check and the leaving.
fn still_in<A: Adapter>(
    hub: &Hub,
    socket: &SocketRef<A>,
    room: &RoomName,
    me: &Identity,
    channels: &[String; 2],
) -> Result<(), ErrorBody> {
    if hub.presence.is_in(room, socket.id) {
        return Ok(());
    }
    let refusal = match hub.presence.check(room, &me.member) {
        Err(refused @ (JoinRefused::NameInUse { .. } | JoinRefused::OtherNameInRoom { .. })) => {
            ErrorBody::new(ErrorCode::NameInUse, refused.to_string())
        }
        _ => ErrorBody::new(ErrorCode::NotFound, format!("An admin removed you from #{room}.")),
    };
    socket.leave(channels.clone());
    Err(refusal)
}

/// A connection closed, or went silent past the heartbeat's timeout: its member leaves the rooms where this was
/// their last connection.
async fn on_disconnect<A: Adapter>(socket: SocketRef<A>, io: SocketIo<A>, State(hub): State<Hub>) {
    let _turn = hub.presence_turn();
    for (room, member) in hub.presence.disconnect(socket.id) {
        tracing::info!(sid = %socket.id, name = %member.name, %room, "left");
        announce(&io, &hub, Change::Left(room, member));
    }
}

/// How long a busy room's presence notices wait at most (see [`super::bursts`]). A quiet room's go out at once.
pub const NOTICE_INTERVAL: Duration = Duration::from_millis(500);

/// How many of a burst's changes go in one event. A connection's WebSocket keeps a write buffer the size of its
/// largest write, so a whole burst in one event would cost every idle connection in a big room kilobytes. Eight
/// (about 0.6 KB) keeps a presence event no bigger than a join's member list ([`protocol::Joined::MAX_MEMBERS`]).
pub const CHANGES_PER_EVENT: usize = 8;

/// Tells this node's connections in the room that someone entered or left it, except that member's own
/// connections. Each node announces to its own connections (see [`crate::presence`]). Call it holding
/// [`Hub::presence_turn`] since the change.
pub fn announce<A: Adapter>(io: &SocketIo<A>, hub: &Hub, change: Change) {
    let (room, change) = match change {
        Change::Entered(room, member) => (room, MemberChange::Joined { member }),
        Change::Left(room, member) => (room, MemberChange::Left { member, reason: LeaveReason::Left }),
    };
    notify(io, hub, room, change);
}

/// Sends a presence change to this node's connections in `room`: at once if the room is quiet, else with the
/// room's next burst (see [`super::bursts`]). Every presence change goes through here, so that none overtakes an
/// earlier one: a departure never arrives before the arrival it follows.
pub fn notify<A: Adapter>(io: &SocketIo<A>, hub: &Hub, room: RoomName, change: MemberChange) {
    let Some(first) = hub.notices.offer(&room, change) else { return };
    let (io, hub) = (io.clone(), hub.clone());
    // One task per room while its burst lasts. It alone sends the room's changes, so they keep their order: the
    // first at once, the ones offered meanwhile after each interval. Spawned before anything is awaited, so that
    // no caller going away can leave the room listed (and its later changes waiting) with no task to send them.
    tokio::spawn(async move {
        send_changes(&io, &room, &[first]).await;
        loop {
            tokio::time::sleep(hub.notices.interval()).await;
            let Some(burst) = hub.notices.drain(&room) else { return };
            for part in burst.chunks(CHANGES_PER_EVENT) {
                send_changes(&io, &room, part).await;
                // Let the connections write this event out before queueing the next: every packet queued at once
                // sits in each recipient's queue, and those queues keep the memory of their fullest moment.
                tokio::task::yield_now().await;
            }
        }
    });
}

/// Sends `changes` to this node's connections in `room` as one [`PresenceChanged`], leaving out of each
/// connection's copy the changes about its own member.
async fn send_changes<A: Adapter>(io: &SocketIo<A>, room: &RoomName, changes: &[MemberChange]) {
    let Some(chat) = io.of(CHAT_NAMESPACE) else { return };
    let mut about: Vec<&MemberId> = changes.iter().filter_map(MemberChange::member).map(|m| &m.id).collect();
    about.sort_unstable();
    about.dedup();
    // Never to a member's own connections: they know they arrived, and a departure that waited for a burst could
    // otherwise reach a tab they opened meanwhile (a reload), which would then show them gone. So everyone else
    // in the room gets all the changes, and each member the burst is about gets the others' (when there are any).
    let channels: Vec<String> = about.iter().map(|id| member_channel(room, id)).collect();
    let everyone_else = chat.clone().local().to(room_channel(room)).except(channels.clone());
    send_presence(everyone_else, room, changes.to_vec()).await;
    if about.len() < 2 {
        return;
    }
    for (id, channel) in about.iter().zip(channels) {
        let others: Vec<MemberChange> =
            changes.iter().filter(|c| c.member().map(|m| &m.id) != Some(*id)).cloned().collect();
        send_presence(chat.clone().local().to(channel), room, others).await;
    }
}

async fn send_presence<A: Adapter>(
    to: socketioxide::operators::BroadcastOperators<A>,
    room: &RoomName,
    changes: Vec<MemberChange>,
) {
    let event = PresenceChanged { room: room.clone(), changes };
    if let Err(e) = to.emit(PresenceChanged::NAME, &event).await {
        tracing::warn!(error = %e, ?event, "presence change not sent");
    }
}

/// Spends one of the member's sending tokens, or says why not, in words.
fn spend(hub: &Hub, me: &Identity) -> Result<(), ErrorBody> {
    spend_from(&hub.limiter, me, "sending messages")
}

/// Spends one of the member's reading tokens (a join, a page of history), or says why not, in words.
fn spend_read(hub: &Hub, me: &Identity) -> Result<(), ErrorBody> {
    spend_from(&hub.reads, me, "joining rooms or loading history")
}

/// Takes a token from the member's bucket in `budget`; the refusal names what they are `doing` too fast.
fn spend_from(budget: &Limiter<MemberId>, me: &Identity, doing: &str) -> Result<(), ErrorBody> {
    budget.try_take(&me.member.id, Instant::now()).map_err(|wait| {
        let wait = wait.as_secs_f64().max(0.1);
        ErrorBody::new(ErrorCode::RateLimited, format!("You are {doing} too fast. Try again in {wait:.1} s."))
    })
}

/// The checks every message passes, in this order: the sender's budget first (a flood of invalid payloads costs
/// as much as a flood of messages), then the payload, then membership of the room it names.
fn admit<T>(
    hub: &Hub,
    me: &Identity,
    connection: socketioxide::socket::Sid,
    request: Result<T, impl std::fmt::Display>,
    room: impl FnOnce(&T) -> &protocol::RoomName,
) -> Result<T, ErrorBody> {
    spend(hub, me)?;
    let request = request.map_err(invalid_payload)?;
    let room = room(&request);
    if !hub.presence.is_in(room, connection) {
        return Err(not_in_room(room));
    }
    Ok(request)
}

/// The checks every read of a room passes, in this order, as [`admit`]'s for messages: the reading budget, the
/// payload, then membership of the room (only members read a room, the same rule as for its live messages). The
/// refusal to someone outside it says what to join it for (`to`: "read it").
fn admit_read<T>(
    hub: &Hub,
    me: &Identity,
    connection: socketioxide::socket::Sid,
    request: Result<T, impl std::fmt::Display>,
    room: impl FnOnce(&T) -> &protocol::RoomName,
    to: &str,
) -> Result<T, ErrorBody> {
    spend_read(hub, me)?;
    let request = request.map_err(invalid_payload)?;
    let room = room(&request);
    if !hub.presence.is_in(room, connection) {
        return Err(ErrorBody::new(ErrorCode::NotInRoom, format!("Join #{room} to {to}.")));
    }
    Ok(request)
}

fn not_in_room(room: &protocol::RoomName) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotInRoom, format!("Join #{room} before sending to it."))
}

async fn on_send<A: Adapter>(
    socket: SocketRef<A>,
    hub: Hub,
    me: Identity,
    request: Result<SendMessage, ParserError>,
    ack: AckSender<A>,
) {
    let request = match admit(&hub, &me, socket.id, request, |request: &SendMessage| &request.room) {
        Ok(request) => request,
        Err(refusal) => return reply::<MessageAccepted>(ack, Err(refusal)),
    };
    let new = NewMessage {
        id: new_id(),
        room: request.room,
        from: me.member.clone(),
        body: request.body,
        sent_at: now(),
        client_id: request.client_id,
        image: None,
    };
    publish(&socket, &hub, &me.typing, new, ack).await;
}

/// The largest width or height accepted, in pixels: beyond it an image is more likely a decompression bomb than a
/// photo.
pub const MAX_IMAGE_SIDE: usize = 16_384;

/// The largest image accepted in all, in pixels (40 megapixels, 160 MB once decoded): a flat-coloured
/// 16,384×16,384 PNG fits in 2 MiB and would take every viewer's tab a gigabyte to show.
pub const MAX_IMAGE_PIXELS: usize = 40_000_000;

async fn on_image<A: Adapter>(
    socket: SocketRef<A>,
    hub: Hub,
    me: Identity,
    request: Result<(SendImage, bytes::Bytes), ParserError>,
    ack: AckSender<A>,
) {
    let request = request
        .map_err(|e| format!("{e} (an image is two arguments: its details, then its bytes as a binary attachment)"));
    let (request, bytes) = match admit(&hub, &me, socket.id, request, |(request, _): &(SendImage, _)| &request.room) {
        Ok(request) => request,
        Err(refusal) => return reply::<MessageAccepted>(ack, Err(refusal)),
    };
    let image = match checked_image(request.content_type, bytes) {
        Ok(image) => image,
        Err(reason) => return reply::<MessageAccepted>(ack, Err(ErrorBody::new(ErrorCode::InvalidPayload, reason))),
    };
    let new = NewMessage {
        id: new_id(),
        room: request.room,
        from: me.member.clone(),
        body: request.caption,
        sent_at: now(),
        client_id: request.client_id,
        image: Some(image),
    };
    publish(&socket, &hub, &me.typing, new, ack).await;
}

/// Checks an image's bytes whatever the client said (its kind, its size), reads its dimensions and prepares it for
/// storing; the error is the sentence its sender sees. Public for the fuzz target.
pub fn checked_image(declared: ImageKind, bytes: bytes::Bytes) -> Result<NewImage, String> {
    let kind = protocol::check_image(declared, &bytes).map_err(|e| e.to_string())?;
    let size = imagesize::blob_size(&bytes).map_err(|_| "That image is damaged: its dimensions cannot be read.")?;
    if size.width == 0 || size.height == 0 || size.width > MAX_IMAGE_SIDE || size.height > MAX_IMAGE_SIDE {
        return Err(format!(
            "That image is {}×{} pixels; each side must be between 1 and {MAX_IMAGE_SIDE}.",
            size.width, size.height
        ));
    }
    if size.width * size.height > MAX_IMAGE_PIXELS {
        return Err(format!(
            "That image is {}×{} pixels, {:.1} megapixels; the limit is {} megapixels.",
            size.width,
            size.height,
            (size.width * size.height) as f64 / 1e6,
            MAX_IMAGE_PIXELS / 1_000_000
        ));
    }
    let side = |pixels: usize| u32::try_from(pixels).map_err(|_| "That image is too large.".to_owned());
    Ok(NewImage { id: new_id().0, kind, width: side(size.width)?, height: side(size.height)?, bytes })
}

/// How long after it was first sent a retried message still goes to the room again: longer than a client's
/// retries of one message take (three 10 s attempts, a reconnection, a reload).
const REBROADCAST_WITHIN_MS: i64 = 10 * 60 * 1000;

/// Stores a message, then sends it to the room and acknowledges it to its sender: acknowledged only once
/// committed, so that an ack means the message survives a crash.
async fn publish<A: Adapter>(
    socket: &SocketRef<A>,
    hub: &Hub,
    clock: &TypingClock,
    new: NewMessage,
    ack: AckSender<A>,
) {
    clock.reset();
    let (message, to_room) = match hub.store.append(new).await {
        Ok(Appended::New(message)) => {
            hub.messages_total.fetch_add(1, Ordering::Relaxed);
            (message, true)
        }
        // A retry of a message already stored: the sender gets the original, and a recent one goes to the room
        // again. Its first broadcast may never have happened (a node that died between the commit and the
        // broadcast, a COMMIT reported as failed that did succeed), and in a quiet room no later message would
        // reveal the gap; clients drop a `seq` they already hold. An old one is not repeated: anyone in the room
        // since has it, and replaying it on request would let anyone stir up a room's history.
        Ok(Appended::Duplicate(message)) => {
            let recent = now().0.saturating_sub(message.sent_at.0) <= REBROADCAST_WITHIN_MS;
            (message, recent)
        }
        Err(e) => {
            tracing::error!(error = %e, "message not stored");
            let error = internal("Your message could not be saved. It will be sent again.");
            return reply::<MessageAccepted>(ack, Err(error));
        }
    };
    // `to` leaves this connection out: it gets the message back in its ack instead. If the other nodes cannot be
    // reached, their people fetch it when they see the hole in the room's numbers.
    let to = || socket.to(room_channel(&message.room));
    if to_room && let Err(e) = broadcast(to, ChatMessage::NAME, &message).await {
        tracing::warn!(error = %e, room = %message.room, "broadcast failed");
    }
    reply(ack, Ok(MessageAccepted { message }));
}

async fn on_typing<A: Adapter>(socket: SocketRef<A>, hub: Hub, me: Identity, request: Result<Typing, ParserError>) {
    let Ok(Typing { room }) = request else {
        return tracing::debug!(sid = %socket.id, "ignoring a malformed typing event");
    };
    if !hub.presence.is_in(&room, socket.id) || !me.typing.tick(Instant::now()) {
        return;
    }
    let notice = TypingNotice { room: room.clone(), member: me.member.clone() };
    // Nobody needs to be told that they themselves are typing, on any of their tabs.
    let others = || socket.to(room_channel(&room)).except(member_channel(&room, &me.member.id));
    if let Err(e) = broadcast(others, TypingNotice::NAME, &notice).await {
        tracing::debug!(error = %e, %room, "typing notice not sent");
    }
}

async fn on_private<A: Adapter>(
    socket: SocketRef<A>,
    hub: Hub,
    me: Identity,
    request: Result<SendPrivate, ParserError>,
    ack: AckSender<A>,
) {
    let request = match admit(&hub, &me, socket.id, request, |request: &SendPrivate| &request.room) {
        Ok(request) => request,
        Err(refusal) => return reply::<PrivateAccepted>(ack, Err(refusal)),
    };
    if request.to == me.member.id {
        let error = ErrorBody::new(ErrorCode::InvalidPayload, "A private message goes to someone else.");
        return reply::<PrivateAccepted>(ack, Err(error));
    }
    let Some(to) = hub.presence.find(&request.room, &request.to) else {
        let error = ErrorBody::new(ErrorCode::NotFound, format!("That person is not in #{} any more.", request.room));
        return reply::<PrivateAccepted>(ack, Err(error));
    };
    let message = PrivateMessage {
        id: new_id(),
        room: request.room,
        from: me.member.clone(),
        to,
        body: request.body,
        sent_at: now(),
    };
    hub.messages_total.fetch_add(1, Ordering::Relaxed);
    me.typing.reset();
    // Exactly the two members' connections in this room; this one gets it in its ack.
    let recipients = || {
        let channels = [member_channel(&message.room, &message.to.id), member_channel(&message.room, &message.from.id)];
        socket.to(channels)
    };
    if let Err(e) = broadcast(recipients, PrivateMessage::NAME, &message).await {
        tracing::warn!(error = %e, room = %message.room, "private message not delivered everywhere");
        // Private messages are not stored: one that reached only this node is lost for a recipient elsewhere.
        if matches!(e, socketioxide::BroadcastError::Adapter(_)) && !hub.presence.is_here(&message.room, &message.to.id)
        {
            let error = internal("Your private message could not be delivered right now. Try again in a moment.");
            return reply::<PrivateAccepted>(ack, Err(error));
        }
    }
    reply(ack, Ok(PrivateAccepted { message }));
}

async fn on_history<A: Adapter>(
    socket: SocketRef<A>,
    hub: Hub,
    me: Identity,
    request: Result<LoadHistory, ParserError>,
    ack: AckSender<A>,
) {
    let request = match admit_read(&hub, &me, socket.id, request, |request: &LoadHistory| &request.room, "read it") {
        Ok(request) => request,
        Err(refusal) => return reply::<HistoryPage>(ack, Err(refusal)),
    };
    let page = read_page(&hub, request.room, Some(request.from), HistoryPage::SIZE).await;
    match page {
        Ok(page) => reply(ack, Ok(HistoryPage { messages: page.messages, has_more: page.has_more })),
        Err(e) => {
            tracing::error!(error = %e, "history not read");
            reply::<HistoryPage>(ack, Err(internal("Messages could not be read. Try again in a moment.")));
        }
    }
}

async fn on_members<A: Adapter>(
    socket: SocketRef<A>,
    hub: Hub,
    me: Identity,
    request: Result<ListMembers, ParserError>,
    ack: AckSender<A>,
) {
    // No database is read (a page walks 17 entries per node, however big the room), but each answer is 1 KB
    // that a script could ask for in a loop: the reading budget brakes it as it does history pages.
    let request = match admit_read(&hub, &me, socket.id, request, |r: &ListMembers| &r.room, "see who is there") {
        Ok(request) => request,
        Err(refusal) => return reply::<MembersPage>(ack, Err(refusal)),
    };
    reply(ack, Ok(hub.presence.members_after(&request.room, &request.after)));
}

/// A page of `room` for an answer over the WebSocket: the latest messages (`from` is `None`), or those before or
/// after a `seq`; at most `limit` of them and [`HistoryPage::MAX_BYTES`], keeping those nearest to where the page
/// starts (the newest of the latest and of those before, the oldest of those after).
async fn read_page(hub: &Hub, room: RoomName, from: Option<HistoryFrom>, limit: usize) -> Result<Page, StoreError> {
    let (page, keep) = match from {
        None => (hub.store.latest(room, limit).await, Keep::Newest),
        Some(HistoryFrom::Before(seq)) => (hub.store.before(room, seq, limit).await, Keep::Newest),
        Some(HistoryFrom::After(seq)) => (hub.store.after(room, seq, limit).await, Keep::Oldest),
    };
    Ok(page?.within(HistoryPage::MAX_BYTES, keep))
}

fn internal(message: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, message)
}

/// A message's (or image's) id: a UUID of version 7, whose first 48 bits are the time. Ids made one after the
/// other sort one after the other, so each insert into the store's unique index of ids lands on its last page, as
/// the messages before it did: a batch committed together touches one page of that index, not one page per message as
/// random (version 4) ids did. After the time come a counter, which orders the ids made within one millisecond,
/// and at least 32 random bits. (An id need not be secret: a message's is shown to its room, and an image's URL is
/// in its message, in a public room.)
fn new_id() -> MessageId {
    MessageId(uuid::Uuid::now_v7().to_string())
}

fn now() -> UnixMillis {
    let elapsed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    UnixMillis(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::Joins;

    #[test]
    fn message_ids_made_one_after_the_other_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..1_000).map(|_| super::new_id().0).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 7)));
    }

    fn general() -> protocol::RoomName {
        protocol::RoomName::parse("general").unwrap()
    }

    #[test]
    fn a_failed_join_is_undone_only_if_it_came_last_and_none_was_answered() {
        let joins = Joins::default();
        let (first, second) = (joins.begin(&general(), true), joins.begin(&general(), false));
        assert!(!joins.undo(&general(), first), "a later join relies on the membership");
        assert!(joins.undo(&general(), second), "the last join failed too, and none was answered");

        let joins = Joins::default();
        let (first, _second) = (joins.begin(&general(), true), joins.begin(&general(), false));
        joins.answered(&general());
        assert!(!joins.undo(&general(), first), "the second was answered: the client is in");

        // A connection already in the room, asking again: its failure leaves it in.
        let joins = Joins::default();
        joins.begin(&general(), true);
        joins.answered(&general());
        let again = joins.begin(&general(), false);
        assert!(!joins.undo(&general(), again));

        // Out of the room (removed) and in again: the new membership is the new join's to undo.
        let fresh = joins.begin(&general(), true);
        assert!(joins.undo(&general(), fresh));
    }
}
