//! Durable storage of messages, behind one trait: SQLite (the default, embedded), Postgres (several nodes), or
//! memory (benchmarks and trials).
//!
//! The store assigns each message its place in its room (`seq`: 1, 2, 3… with no gaps) when it commits it, and
//! keeps one message per (room, sender, client id): a retried send gets the original back. The chat acknowledges
//! a send only after [`MessageStore::append`] returned, that is after the commit.

#[cfg(test)]
mod contract;
pub mod memory;
pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use protocol::{
    ChatMessage, ClientId, DisplayName, ImageKind, ImageRef, Member, MemberId, MessageBody, MessageId, RoomName,
    UnixMillis,
};

pub use memory::MemoryStore;
pub use postgres::PostgresStore;
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

/// Which messages of a [`Page`] to keep when it is cut to size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The newest: the latest page, and pages before a `seq`.
    Newest,
    /// The oldest: pages after a `seq`.
    Oldest,
}

impl Page {
    /// Cuts the page to the messages nearest to where it starts (`keep`) that fit in `max_bytes` of JSON, and at
    /// least one; `has_more` is set when any were cut, so that the client asks for the rest.
    pub fn within(mut self, max_bytes: usize, keep: Keep) -> Page {
        let mut bytes = 0;
        let mut fits = |message: &&ChatMessage| {
            bytes += json_len(message);
            bytes <= max_bytes
        };
        let fitting = match keep {
            Keep::Newest => self.messages.iter().rev().take_while(&mut fits).count(),
            Keep::Oldest => self.messages.iter().take_while(&mut fits).count(),
        }
        .max(1);
        if fitting < self.messages.len() {
            match keep {
                Keep::Newest => drop(self.messages.drain(..self.messages.len() - fitting)),
                Keep::Oldest => self.messages.truncate(fitting),
            }
            self.has_more = true;
        }
        self
    }
}

/// The length of `message` as JSON, counted without writing it anywhere.
fn json_len(message: &ChatMessage) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // A message is plain data: it always serialises. Were it ever not to, it counts as nothing and still comes.
    let _ = serde_json::to_writer(&mut count, message);
    count.0
}

/// Why the store failed. Callers log it and answer `internal`: none of it is the client's doing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("Postgres error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no Postgres connection: {0}")]
    Pool(String),
    #[error("a stored value is invalid: {0}")]
    Corrupt(String),
    #[error("the transaction holding this message failed: {0}")]
    Batch(String),
    #[error("the database worker stopped: {0}")]
    Worker(String),
    #[error("could not prepare the database at {path}: {source}")]
    Open { path: String, source: std::io::Error },
}

impl StoreError {
    /// Whether this error, failing a batch, can be one message's doing: a constraint the database enforced or a
    /// value it refused (SQLite's constraint violations; Postgres's SQLSTATE classes 23 and 22), or a row that does
    /// not read back. The stores then write the batch again one message at a time, so that it fails alone;
    /// anything else (a busy or failing disk, no connection, a timeout) would fail each of them again.
    pub fn is_one_messages_fault(&self) -> bool {
        match self {
            Self::Database(rusqlite::Error::SqliteFailure(failure, _)) => {
                failure.code == rusqlite::ErrorCode::ConstraintViolation
            }
            Self::Postgres(e) => e
                .as_db_error()
                .is_some_and(|db| db.code().code().starts_with("23") || db.code().code().starts_with("22")),
            Self::Corrupt(_) => true,
            _ => false,
        }
    }
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

/// A stored message as the database returns it, before validation: what SQLite and Postgres share.
pub(crate) struct StoredRow {
    pub id: String,
    pub room: String,
    pub seq: i64,
    pub sender_id: String,
    pub sender_name: String,
    pub body: String,
    pub sent_at: i64,
    pub client_id: Option<String>,
    /// (id, content type, size, width, height) of its image, if it has one.
    pub image: Option<(String, String, i64, i64, i64)>,
}

impl StoredRow {
    /// Validated like anything else that arrives from outside: a bad row is an error, never a panic.
    pub fn into_message(self) -> Result<ChatMessage, StoreError> {
        let id = self.id;
        let corrupt =
            |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("{what} of message {id}: {e}"));
        let image = match self.image {
            None => None,
            Some((image_id, content_type, size, width, height)) => Some(ImageRef {
                url: image_url(&image_id),
                content_type: ImageKind::from_content_type(&content_type).map_err(|e| corrupt("image", &e))?,
                size: u64::try_from(size).map_err(|e| corrupt("image size", &e))?,
                width: u32::try_from(width).map_err(|e| corrupt("image width", &e))?,
                height: u32::try_from(height).map_err(|e| corrupt("image height", &e))?,
            }),
        };
        Ok(ChatMessage {
            image,
            room: RoomName::parse(&self.room).map_err(|e| corrupt("room", &e))?,
            seq: u64::try_from(self.seq).map_err(|e| corrupt("seq", &e))?,
            from: Member {
                id: MemberId(self.sender_id),
                name: DisplayName::parse(&self.sender_name).map_err(|e| corrupt("sender", &e))?,
            },
            body: MessageBody::parse(&self.body).map_err(|e| corrupt("body", &e))?,
            sent_at: UnixMillis(self.sent_at),
            client_id: self.client_id.map(|c| ClientId::parse(&c)).transpose().map_err(|e| corrupt("client id", &e))?,
            id: MessageId(id.clone()),
        })
    }
}

/// Whole messages with their image's details (not its bytes), in [`StoredRow`]'s order; queries add `WHERE` on `m`.
pub(crate) const SELECT_MESSAGES: &str = "SELECT m.id, m.room, m.seq, m.sender_id, m.sender_name, m.body, m.sent_at, \
                                          m.client_id, i.id, i.content_type, i.size, i.width, i.height \
                                          FROM messages m LEFT JOIN images i ON i.id = m.image_id";

/// A `seq` as the databases store it (a signed 64-bit integer); beyond any stored one when too large.
pub(crate) fn seq_param(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// The row limit for a page of `limit` messages: one more, to learn whether there are more (see [`page_of`]).
pub(crate) fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1
}

/// Keeps `limit` of `rows` fetched with a limit of `limit + 1`: the extra row says whether there are more.
pub(crate) fn page_of(mut messages: Vec<ChatMessage>, limit: usize) -> Page {
    let has_more = messages.len() > limit;
    messages.truncate(limit);
    Page { messages, has_more }
}

#[cfg(test)]
mod tests {
    use super::contract::new;
    use super::{Keep, Page, json_len};

    /// Five messages whose JSON is `size` bytes each, oldest first, `seq` 1 to 5.
    fn five(size: usize) -> (Page, usize) {
        let overhead = json_len(&new("general", "Ada", "x", None).stored_as(1)) - 1;
        let messages = (1..=5).map(|seq| new("general", "Ada", &"x".repeat(size - overhead), None).stored_as(seq));
        let page = Page { messages: messages.collect(), has_more: false };
        assert!(page.messages.iter().all(|m| json_len(m) == size));
        (page, size)
    }

    fn seqs(page: &Page) -> Vec<u64> {
        page.messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn a_page_cut_to_size_keeps_the_messages_nearest_where_it_starts_and_says_there_are_more() {
        let (page, size) = five(300);
        let newest = page.clone().within(3 * size, Keep::Newest);
        assert_eq!((seqs(&newest), newest.has_more), (vec![3, 4, 5], true));
        let oldest = page.within(3 * size + size / 2, Keep::Oldest);
        assert_eq!((seqs(&oldest), oldest.has_more), (vec![1, 2, 3], true));
    }

    #[test]
    fn a_page_that_fits_is_left_as_it_was() {
        let (page, size) = five(300);
        assert_eq!(page.clone().within(5 * size, Keep::Newest), page);
        let more = Page { has_more: true, ..page.clone() };
        assert_eq!(more.clone().within(5 * size, Keep::Oldest), more, "`has_more` from the store is kept");
    }

    #[test]
    fn a_message_longer_than_the_limit_still_comes_alone() {
        let (page, size) = five(300);
        let cut = page.clone().within(size - 1, Keep::Newest);
        assert_eq!((seqs(&cut), cut.has_more), (vec![5], true));
        let cut = page.within(0, Keep::Oldest);
        assert_eq!((seqs(&cut), cut.has_more), (vec![1], true));
        let empty = Page::default().within(0, Keep::Newest);
        assert_eq!(empty, Page::default());
    }
}
