//! Durable storage of messages, behind a trait so that Postgres (issue #8) can follow SQLite.
//!
//! The store assigns each message its place in its room (`seq`: 1, 2, 3… with no gaps) when it commits it, and
//! keeps one message per (room, sender, client id): a retried send gets the original back. The chat acknowledges
//! a send only after [`MessageStore::append`] returned, that is after the commit.

#[cfg(test)]
mod contract;
pub mod memory;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use protocol::{ChatMessage, ClientId, ImageKind, ImageRef, Member, MessageBody, MessageId, RoomName, UnixMillis};

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// What a store method returns: boxed, so that the chat can hold any store as `Arc<dyn MessageStore>`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A message to store; the store gives it its `seq`.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub room: RoomName,
    pub from: Member,
    pub body: MessageBody,
    pub sent_at: UnixMillis,
    pub client_id: Option<ClientId>,
    /// The image it shares, stored in the same transaction.
    pub image: Option<NewImage>,
}

impl NewMessage {
    /// The message as the room sees it once stored under `seq`.
    pub fn stored_as(&self, seq: u64) -> ChatMessage {
        ChatMessage {
            id: self.id.clone(),
            room: self.room.clone(),
            seq,
            from: self.from.clone(),
            body: self.body.clone(),
            sent_at: self.sent_at,
            client_id: self.client_id.clone(),
            image: self.image.as_ref().map(NewImage::reference),
        }
    }
}

/// An image to store with its message, already checked (kind, size, dimensions).
#[derive(Debug, Clone)]
pub struct NewImage {
    pub id: String,
    pub kind: ImageKind,
    pub width: u32,
    pub height: u32,
    pub bytes: bytes::Bytes,
}

impl NewImage {
    /// How messages refer to it once stored.
    pub fn reference(&self) -> ImageRef {
        ImageRef {
            url: image_url(&self.id),
            content_type: self.kind,
            size: self.bytes.len() as u64,
            width: self.width,
            height: self.height,
        }
    }
}

/// A stored image, as served over HTTP.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub kind: ImageKind,
    pub bytes: Vec<u8>,
}

/// Where an image is served (see `crate::media`).
pub fn image_url(id: &str) -> String {
    format!("/media/{id}")
}

/// The outcome of [`MessageStore::append`].
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// Stored now.
    New(ChatMessage),
    /// The sender already sent this client id to this room: here is the message as it was stored then.
    Duplicate(ChatMessage),
}

/// Some of a room's messages, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub messages: Vec<ChatMessage>,
    /// Whether the store holds more in the direction asked.
    pub has_more: bool,
}

/// Why the store failed. Callers log it and answer `internal`: none of it is the client's doing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("a stored value is invalid: {0}")]
    Corrupt(String),
    #[error("the transaction holding this message failed: {0}")]
    Batch(String),
    #[error("the database worker stopped: {0}")]
    Worker(String),
    #[error("could not prepare the database at {path}: {source}")]
    Open { path: String, source: std::io::Error },
}

/// Where messages live.
pub trait MessageStore: Send + Sync + 'static {
    /// Stores `message` durably, or returns the earlier message with the same (room, sender, client id).
    fn append(&self, message: NewMessage) -> StoreFuture<'_, Appended>;

    /// The latest `limit` messages of `room`; `has_more` when older ones exist.
    fn latest(&self, room: RoomName, limit: usize) -> StoreFuture<'_, Page>;

    /// The first `limit` messages of `room` after `seq`; `has_more` when newer ones exist beyond them.
    fn after(&self, room: RoomName, seq: u64, limit: usize) -> StoreFuture<'_, Page>;

    /// The last `limit` messages of `room` before `seq`; `has_more` when older ones exist.
    fn before(&self, room: RoomName, seq: u64, limit: usize) -> StoreFuture<'_, Page>;

    /// The image stored under `id`, if any.
    fn image(&self, id: String) -> StoreFuture<'_, Option<StoredImage>>;
}
