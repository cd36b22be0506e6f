//! The Socket.IO side of Causerie: who a connection is, and what its events do.
//!
//! Identity is read once, from the CONNECT packet's `auth`, by [`authenticate`], and kept in the socket's
//! extensions; no event payload can claim a name. Every request event answers through its ack with a typed
//! [`AckResult`], and broadcasts only ever go to one room.

use protocol::{
    AckResult, CHAT_NAMESPACE, ChatAuth, ChatMessage, ErrorBody, ErrorCode, Event, JoinRoom, Joined, MessageAccepted,
    MessageId, SendMessage, UnixMillis,
};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Event as EventName, Extension, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;

use crate::limits::{RateLimit, TokenBucket};

/// Who a chat connection is, set by [`authenticate`] before the connection is accepted.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: protocol::DisplayName,
}

/// What this connection may still send (see [`RateLimit`]). Shared behind a mutex because socketioxide runs each
/// event's handler as its own task; the lock is never held across an `await`.
#[derive(Debug, Clone)]
struct SendBudget(Arc<Mutex<TokenBucket>>);

impl SendBudget {
    fn try_take(&self) -> Result<(), std::time::Duration> {
        match self.0.lock() {
            Ok(mut bucket) => bucket.try_take(Instant::now()),
            // A poisoned lock means a handler panicked mid-update; the bucket is still a number, so keep going.
            Err(poisoned) => poisoned.into_inner().try_take(Instant::now()),
        }
    }
}

/// Why a CONNECT to the chat namespace was refused. The text reaches the client in the CONNECT_ERROR packet.
#[derive(Debug, thiserror::Error)]
pub enum ConnectRefused {
    #[error("Invalid sign-in: {0}")]
    InvalidAuth(String),
}

/// Registers Causerie's namespaces and handlers.
pub fn attach(io: &SocketIo) {
    io.ns(CHAT_NAMESPACE, on_connect.with(authenticate));
}

/// Connect middleware: validates the `auth` payload and records the connection's identity.
async fn authenticate(socket: SocketRef, TryData(auth): TryData<ChatAuth>) -> Result<(), ConnectRefused> {
    let auth = auth.map_err(|e| ConnectRefused::InvalidAuth(e.to_string()))?;
    socket.extensions.insert(Identity { name: auth.name });
    Ok(())
}

async fn on_connect(socket: SocketRef, State(limit): State<RateLimit>) {
    tracing::debug!(sid = %socket.id, transport = ?socket.transport_type(), "chat connection");
    socket.extensions.insert(SendBudget(Arc::new(Mutex::new(TokenBucket::new(limit, Instant::now())))));
    socket.on(JoinRoom::NAME, on_join);
    socket.on(SendMessage::NAME, on_send);
    socket.on_fallback(async |socket: SocketRef, EventName(event): EventName| {
        tracing::info!(sid = %socket.id, %event, "ignoring an unknown event");
    });
}

async fn on_join(
    socket: SocketRef,
    Extension(me): Extension<Identity>,
    TryData(request): TryData<JoinRoom>,
    ack: AckSender,
) {
    let result = request.map_err(invalid_payload).map(|JoinRoom { room }| {
        socket.join(room.to_string());
        tracing::info!(sid = %socket.id, name = %me.name, %room, "joined");
        Joined { room, you: me.name }
    });
    reply(ack, result);
}

async fn on_send(
    socket: SocketRef,
    Extension(me): Extension<Identity>,
    Extension(budget): Extension<SendBudget>,
    TryData(request): TryData<SendMessage>,
    ack: AckSender,
) {
    // Counted before anything else: a flood of invalid payloads costs as much as a flood of messages.
    if let Err(wait) = budget.try_take() {
        let message = format!("You are sending messages too fast. Try again in {:.1} s.", wait.as_secs_f64().max(0.1));
        return reply::<MessageAccepted>(ack, Err(ErrorBody::new(ErrorCode::RateLimited, message)));
    }
    let request = match request {
        Ok(request) => request,
        Err(e) => return reply::<MessageAccepted>(ack, Err(invalid_payload(e))),
    };
    if !socket.rooms().iter().any(|joined| joined == request.room.as_str()) {
        let error = ErrorBody::new(ErrorCode::NotInRoom, format!("Join #{} before sending to it.", request.room));
        return reply::<MessageAccepted>(ack, Err(error));
    }
    let message = ChatMessage {
        id: MessageId(uuid::Uuid::new_v4().to_string()),
        room: request.room,
        from: me.name,
        body: request.body,
        sent_at: now(),
    };
    // `to` leaves the sender out: it gets the message back in its ack instead.
    if let Err(e) = socket.to(message.room.to_string()).emit(ChatMessage::NAME, &message).await {
        tracing::warn!(error = %e, room = %message.room, "broadcast failed");
    }
    reply(ack, Ok(MessageAccepted { message }));
}

fn invalid_payload(error: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidPayload, format!("Invalid request: {error}"))
}

fn reply<T: Serialize>(ack: AckSender, result: Result<T, ErrorBody>) {
    if let Err(e) = ack.send(&AckResult::from(result)) {
        // The client went away, or did not ask for an ack; either way nobody is waiting for this answer.
        tracing::debug!(error = %e, "ack not sent");
    }
}

fn now() -> UnixMillis {
    let elapsed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    UnixMillis(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}
