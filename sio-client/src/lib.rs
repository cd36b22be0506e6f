//! A Socket.IO v5 (Engine.IO v4) client for the browser (WASM) and for native code.
//!
//! The crate is built sans-IO: [`engine`] and [`packet`] encode and decode the protocol, and [`manager::Manager`]
//! is the whole connection state machine (handshake, heartbeat, namespaces, acknowledgements, send buffer,
//! reconnection with backoff), driven by packets and timestamps only. [`Client`] runs that state machine over a
//! real transport: the browser's WebSocket on `wasm32`, tokio + tungstenite natively (feature `tokio`).
//!
//! The typed API speaks the events of the `protocol` crate: one struct per event, the event name tied to the type.
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use protocol::{ChatAuth, ChatMessage, DisplayName, JoinRoom, RoomName};
//! use sio_client::Client;
//! use futures::StreamExt;
//! use std::time::Duration;
//!
//! let client = Client::builder("http://127.0.0.1:3000").connect();
//! let chat = client.socket_with_auth("/", &ChatAuth { name: DisplayName::parse("Ada")?, session: None })?;
//! let mut messages = chat.on::<ChatMessage>();
//! let joined = chat.request(&JoinRoom { room: RoomName::parse("general")?, since: None }, Duration::from_secs(5)).await?;
//! println!("joined {} as {}", joined.room, joined.you.name);
//! while let Some(message) = messages.next().await {
//!     println!("{}: {}", message.from.name, message.body);
//! }
//! # Ok(())
//! # }
//! ```

mod backoff;
mod client;
pub mod engine;
pub mod manager;
pub mod packet;
mod rt;
mod transport;

#[cfg(test)]
mod manager_tests;

pub use client::{AckError, Client, ClientBuilder, RawEvent, RequestError, Socket, SocketEvent};
pub use engine::{EnginePacket, Frame, OpenInfo};
pub use manager::{Config, ConnectionState, DisconnectReason, EmitError, TransportKind};
pub use packet::Arg;
pub use transport::DEFAULT_MAX_INCOMING_BYTES;

/// A point in time, in milliseconds since an origin the driver picks. The sans-IO core never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// This instant plus `duration`, saturating.
    pub fn after(self, duration: std::time::Duration) -> Millis {
        Millis(self.0.saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)))
    }

    /// The time from `self` until `later`, zero if `later` is not later.
    pub fn until(self, later: Millis) -> std::time::Duration {
        std::time::Duration::from_millis(later.0.saturating_sub(self.0))
    }
}

/// Why bytes from the peer are not valid Engine.IO or Socket.IO.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown Engine.IO packet type {0:?}")]
    UnknownEngineType(char),
    #[error("unknown Socket.IO packet type {0:?}")]
    UnknownSocketType(char),
    #[error("invalid handshake: {0}")]
    InvalidHandshake(String),
    #[error("invalid base64 in a binary packet")]
    InvalidBase64,
    #[error("binary packet without a valid attachment count")]
    MissingAttachmentCount,
    #[error("binary packet announces {0} attachments, more than allowed")]
    TooManyAttachments(usize),
    #[error("invalid acknowledgement id")]
    InvalidAckId,
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("payload of the wrong shape for packet type {0:?}")]
    InvalidPayload(char),
    #[error("binary placeholder without a matching attachment")]
    InvalidPlaceholder,
    #[error("text packet while binary attachments were expected")]
    UnexpectedText,
    #[error("binary data without a binary packet")]
    UnexpectedBinary,
}
