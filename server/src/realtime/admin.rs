//! The admin namespace: live statistics and removing members from rooms, behind a token.
//!
//! It shares each client's Engine.IO connection with the other namespaces: a refused admin CONNECT is a
//! CONNECT_ERROR on `/admin` alone, and the chat on the same connection goes on.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use protocol::{
    ADMIN_NAMESPACE, AdminAuth, CHAT_NAMESPACE, ErrorBody, ErrorCode, Event, LeaveReason, Member, MemberChange,
    MemberRemoved, RemoveMember, Removed, RoomName, Stats,
};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::Sid;
use socketioxide::{SocketIo, TransportType};
use socketioxide_core::adapter::DefinedAdapter;

use super::{Hub, chat, invalid_payload, reply, send_out};

/// How often admins get fresh [`Stats`].
const STATS_EVERY: Duration = Duration::from_secs(1);

/// Why a CONNECT to the admin namespace was refused, in the CONNECT_ERROR's words.
#[derive(Debug, thiserror::Error)]
pub enum AdminRefused {
    #[error("The admin page is turned off: start the server with --admin-token (or CAUSERIE_ADMIN_TOKEN).")]
    Disabled,
    #[error("Invalid admin token.")]
    InvalidToken,
}

pub(super) fn attach<A: Adapter + DefinedAdapter>(io: &SocketIo<A>, hub: &Hub) -> A::InitRes {
    let init = io.ns(ADMIN_NAMESPACE, on_connect::<A>.with(authenticate::<A>));
    let (io, hub) = (io.clone(), hub.clone());
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(STATS_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous = (Instant::now(), 0);
        loop {
            ticks.tick().await;
            let Some(admins) = io.of(ADMIN_NAMESPACE) else { break };
            if admins.clone().sockets().is_empty() {
                // Nobody to tell: skip the walk over every chat connection, but keep the rate's window current.
                previous = (Instant::now(), hub.messages_total.load(Ordering::Relaxed));
                continue;
            }
            // This node's admins: with several nodes, each admin sees the figures of the node it is connected to
            // (the rooms and members are the whole cluster's).
            if let Err(e) = admins.local().emit(Stats::NAME, &stats(&io, &hub, &mut previous)).await {
                tracing::debug!(error = %e, "stats not sent");
            }
        }
    });
    init
}

/// Connect middleware: checks the token and registers the event handlers. They are registered here, before the
/// CONNECT packet goes out, because socketioxide spawns the connect handler afterwards and an event read before a
/// handler exists is dropped unanswered (see `chat::sign_in`).
async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    State(hub): State<Hub>,
    TryData(auth): TryData<AdminAuth>,
) -> Result<(), AdminRefused> {
    let expected = hub.admin_token.as_deref().ok_or(AdminRefused::Disabled)?;
    match auth {
        Ok(auth) if same_secret(auth.token.as_bytes(), expected.as_bytes()) => {
            socket.on(RemoveMember::NAME, on_remove::<A>);
            Ok(())
        }
        _ => {
            tracing::warn!("admin connection refused: invalid token");
            Err(AdminRefused::InvalidToken)
        }
    }
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>, io: SocketIo<A>, State(hub): State<Hub>) {
    tracing::info!(sid = %socket.id, "admin connected");
    let mut previous = (Instant::now(), hub.messages_total.load(Ordering::Relaxed));
    if let Err(e) = socket.emit(Stats::NAME, &stats(&io, &hub, &mut previous)) {
        tracing::debug!(error = %e, "first stats not sent");
    }
}

/// The current figures. `previous` is the last (instant, message total), for the rate; it is updated.
fn stats<A: Adapter>(io: &SocketIo<A>, hub: &Hub, previous: &mut (Instant, u64)) -> Stats {
    let sockets = io.of(CHAT_NAMESPACE).map(|chat| chat.sockets()).unwrap_or_default();
    let polling = sockets.iter().filter(|socket| socket.transport_type() == TransportType::Polling).count();
    let now = (Instant::now(), hub.messages_total.load(Ordering::Relaxed));
    let seconds = now.0.saturating_duration_since(previous.0).as_secs_f64();
    let rate = if seconds > 0.0 { now.1.saturating_sub(previous.1) as f64 / seconds } else { 0.0 };
    *previous = now;
    Stats {
        connections: count(sockets.len()),
        polling: count(polling),
        websocket: count(sockets.len() - polling),
        rooms: hub.presence.details(),
        messages_per_second: rate,
        messages_total: now.1,
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

async fn on_remove<A: Adapter>(
    io: SocketIo<A>,
    State(hub): State<Hub>,
    TryData(request): TryData<RemoveMember>,
    ack: AckSender<A>,
) {
    let RemoveMember { room, member } = match request {
        Ok(request) => request,
        Err(e) => return reply::<MemberRemoved>(ack, Err(invalid_payload(e))),
    };
    // Takes them out here and tells the other nodes to do the same with their connections (see `cluster`).
    let turn = hub.presence_turn();
    let Some((member, connections)) = hub.presence.remove(&room, &member) else {
        drop(turn);
        let error = ErrorBody::new(ErrorCode::NotFound, format!("That person is not in #{room} any more."));
        return reply::<MemberRemoved>(ack, Err(error));
    };
    tracing::info!(name = %member.name, %room, "removed by an admin");
    removed(&io, &hub, &room, &member, &connections);
    drop(turn);
    reply(ack, Ok(MemberRemoved { room, member }));
}

/// What each node does when a member is removed from a room: tells that member's connections here (before they
/// leave, so that the client stops rejoining), takes them out of the room's traffic, and tells the room, behind any
/// notice of theirs still waiting (such as their arrival). Call it holding [`Hub::presence_turn`] since the
/// removal, so that a join from one of their tabs cannot slip in between and be undone by the leaving here.
pub fn removed<A: Adapter>(io: &SocketIo<A>, hub: &Hub, room: &RoomName, member: &Member, connections: &[Sid]) {
    let change = MemberChange::Left { member: member.clone(), reason: LeaveReason::Removed };
    chat::notify(io, hub, room.clone(), change);
    send_out(io, room, &member.id, connections, &Removed { room: room.clone() });
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }
}
