//! The Socket.IO side of Causerie: three namespaces, multiplexed over each client's one connection.
//!
//! - [`chat`] (`/`): joining rooms, messages, presence, typing and private messages. Identity is read once, at
//!   connect time, from the session (cookie or `auth`), never from an event payload.
//! - [`lobby`] (`/lobby`): the live list of active rooms, for the join page.
//! - [`admin`] (`/admin`): live statistics and removing members, behind a token.
//!
//! Every request event answers through its ack with a typed [`protocol::AckResult`].

pub mod admin;
pub mod bursts;
pub mod chat;
pub mod lobby;

use std::ops::Deref;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use protocol::{CHAT_NAMESPACE, Event, MemberId, RoomName};
use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::AckSender;
use socketioxide::socket::Sid;
use socketioxide_core::adapter::DefinedAdapter;

use self::bursts::Bursts;
use crate::limits::{Limiter, RateLimit};
use crate::presence::Presence;
use crate::store::MessageStore;

/// How often a member may join rooms or load history, unless told otherwise (`--read-burst`,
/// `--reads-per-second`): 100 at once, then 20 a second. Each answer is at most about
/// 4 KiB of messages ([`protocol::HistoryPage::MAX_BYTES`]), so a page can hold a single long message: catching up
/// on a few hundred of those, or scrolling back through them, takes as many reads, and a person doing it must not
/// be refused. A script reading in a loop still gets at most 80 KiB a second.
pub const DEFAULT_READS: RateLimit = RateLimit { burst: 100, per_second: 20.0 };

/// The budgets every member gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Messages, public and private.
    pub sending: RateLimit,
    /// Joins and history pages.
    pub reading: RateLimit,
}

/// Everything the handlers share, cheap to clone (socketioxide hands each handler its own copy).
#[derive(Clone)]
pub struct Hub(Arc<HubState>);

pub struct HubState {
    pub presence: Presence,
    /// One sending budget per member, whatever their number of tabs.
    pub limiter: Limiter<MemberId>,
    /// One reading budget per member (joins, history pages and room pages rendered on the server, each a database
    /// read): generous for people, a brake on a script asking in a loop.
    pub reads: Limiter<MemberId>,
    /// Messages (public and private) accepted since start.
    pub messages_total: AtomicU64,
    /// The admin token; `None` disables the admin namespace.
    pub admin_token: Option<String>,
    /// Where messages are kept.
    pub store: Arc<dyn MessageStore>,
    /// Presence notices waiting for their room's next burst.
    pub notices: Bursts<protocol::MemberChange>,
    /// Held from a change to presence until its notice is queued (see [`Hub::presence_turn`]).
    presence_turn: Mutex<()>,
}

impl Hub {
    pub fn new(limits: Limits, admin_token: Option<String>, store: Arc<dyn MessageStore>) -> Self {
        Self(Arc::new(HubState {
            presence: Presence::default(),
            limiter: Limiter::new(limits.sending),
            reads: Limiter::new(limits.reading),
            messages_total: AtomicU64::new(0),
            admin_token,
            store,
            notices: Bursts::new(chat::NOTICE_INTERVAL),
            presence_turn: Mutex::new(()),
        }))
    }

    /// Hold this from a change to [`HubState::presence`] until its notices are queued ([`chat::notify`]): the
    /// registry and the queue are locked separately, and without the turn two handlers on two threads (a join and
    /// the same connection's disconnect) could queue their notices in the opposite order of their changes, leaving
    /// the room showing someone who is gone. Never held across an `.await`.
    pub fn presence_turn(&self) -> MutexGuard<'_, ()> {
        self.presence_turn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Deref for Hub {
    type Target = HubState;
    fn deref(&self) -> &HubState {
        &self.0
    }
}

/// Registers the namespaces and starts their background tasks. Needs a Tokio runtime. Returns what the adapter
/// needs to finish setting up each namespace: nothing for the local adapter, a future that subscribes to Redis for
/// the Redis adapter (await them before serving).
pub fn attach<A: Adapter + DefinedAdapter>(io: &SocketIo<A>, hub: &Hub) -> [A::InitRes; 3] {
    [chat::attach(io), lobby::attach(io, hub), admin::attach(io, hub)]
}

/// The Socket.IO room that receives a chat room's public traffic.
pub(crate) fn room_channel(room: &RoomName) -> String {
    format!("room:{room}")
}

/// The Socket.IO room of one member's connections in one chat room: for private messages and removal.
pub(crate) fn member_channel(room: &RoomName, member: &MemberId) -> String {
    format!("member:{room}:{}", member.0)
}

/// Sends this node's `connections` of `member` out of `room`: each is told why (`notice`, before it leaves, so that
/// the client knows not to join again as it was), then taken out of the room's traffic and its private messages.
pub(crate) fn send_out<A: Adapter, E: Event + Serialize>(
    io: &SocketIo<A>,
    room: &RoomName,
    member: &MemberId,
    connections: &[Sid],
    notice: &E,
) {
    let Some(namespace) = io.of(CHAT_NAMESPACE) else { return };
    let channels = [room_channel(room), member_channel(room, member)];
    for sid in connections {
        if let Some(socket) = namespace.get_socket(*sid) {
            if let Err(e) = socket.emit(E::NAME, notice) {
                tracing::debug!(error = %e, event = E::NAME, "notice not sent");
            }
            socket.leave(channels.clone());
        }
    }
}

/// Emits `event` to the sockets `to()` selects, on every node. With the Redis adapter, a failed publish (Redis
/// unreachable) sends nothing at all, not even to this node's sockets: they then get it at least, and the error
/// is returned. (Errors of single sockets are not retried: the others got it.)
pub(crate) async fn broadcast<A: Adapter, T: Serialize + ?Sized>(
    to: impl Fn() -> socketioxide::operators::BroadcastOperators<A>,
    event: &str,
    data: &T,
) -> Result<(), socketioxide::BroadcastError> {
    match to().emit(event, data).await {
        Err(e @ socketioxide::BroadcastError::Adapter(_)) => {
            if let Err(local) = to().local().emit(event, data).await {
                tracing::warn!(error = %local, event, "not even sent to this node's connections");
            }
            Err(e)
        }
        other => other,
    }
}

fn reply<T: Serialize>(ack: AckSender<impl Adapter>, result: Result<T, protocol::ErrorBody>) {
    if let Err(e) = ack.send(&protocol::AckResult::from(result)) {
        // The client went away, or did not ask for an ack; either way nobody is waiting for this answer.
        tracing::debug!(error = %e, "ack not sent");
    }
}

fn invalid_payload(error: impl std::fmt::Display) -> protocol::ErrorBody {
    protocol::ErrorBody::new(protocol::ErrorCode::InvalidPayload, format!("Invalid request: {error}"))
}
