//! One struct per Socket.IO event. The event name is tied to the type through [`Event::NAME`], so no handler spells
//! an event name by hand, and a request's answer type is tied to it through [`Request::Response`].

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{DisplayName, MessageBody, RoomName};

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

/// The `auth` payload of the CONNECT packet to the chat namespace. The server reads the sender's identity from it
/// once, at connect time; no later event carries a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatAuth {
    pub name: DisplayName,
}

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

/// The server-assigned identifier of a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub String);

/// Client → server: enter a room. Live messages of that room follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRoom {
    pub room: RoomName,
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
    /// The name the server knows this connection by.
    pub you: DisplayName,
}

/// Client → server: post a message to a room the sender has joined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    pub room: RoomName,
    pub body: MessageBody,
}

impl Event for SendMessage {
    const NAME: &'static str = "send";
}

impl Request for SendMessage {
    type Response = MessageAccepted;
}

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
    pub from: DisplayName,
    pub body: MessageBody,
    pub sent_at: UnixMillis,
}

impl Event for ChatMessage {
    const NAME: &'static str = "message";
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

    #[test]
    fn an_ok_ack_is_an_object_with_an_ok_field() {
        let ack: AckResult<Joined> = AckResult::Ok(Joined {
            room: RoomName::parse("general").unwrap(),
            you: DisplayName::parse("Ada").unwrap(),
        });
        assert_eq!(serde_json::to_value(&ack).unwrap(), json!({"ok": {"room": "general", "you": "Ada"}}));
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
            from: DisplayName::parse("Ada").unwrap(),
            body: MessageBody::parse("hello").unwrap(),
            sent_at: UnixMillis(1_700_000_000_000),
        };
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            json!({"id": "m1", "room": "general", "from": "Ada", "body": "hello", "sentAt": 1_700_000_000_000_i64})
        );
    }

    #[test]
    fn a_send_with_an_invalid_body_does_not_deserialize() {
        let err = serde_json::from_value::<SendMessage>(json!({"room": "general", "body": "   "})).unwrap_err();
        assert!(err.to_string().contains("Please enter a message."), "{err}");
    }
}
