//! A store that keeps messages in memory only (`--in-memory`): nothing survives a restart. For benchmarks (how
//! much does durability cost?) and throwaway deployments. Same numbering, deduplication and paging as SQLite.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use hashbrown::HashTable;

use protocol::{ChatMessage, ClientId, MemberId, RoomName};

use super::{Appended, MessageStore, NewMessage, Page, StoreFuture, StoredImage};

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    rooms: HashMap<RoomName, Room>,
    images: HashMap<String, StoredImage>,
}

/// How many client ids one deduplication table of a room holds (see [`Room::sent`]). Fewer in tests, so that
/// they cross from table to table.
#[cfg(not(test))]
const SENT_PER_TABLE: usize = 1 << 16;
#[cfg(test)]
const SENT_PER_TABLE: usize = 1_000;

#[derive(Default)]
struct Room {
    /// The room's messages, in `seq` order: message `seq` is at index `seq - 1`.
    messages: Vec<ChatMessage>,
    /// The messages that carry a client id, for deduplication: the index in `messages` of each, filed under the
    /// hash of its (sender, client id), which is kept beside it. The key's strings are the message's own, so an
    /// entry costs 16 bytes and no allocation, and growing a table moves entries without hashing any string
    /// again. (One table for every room, keyed by copies of the strings, took 0.7 s to grow past a million
    /// messages, and every send on the server waited meanwhile: `causerie-bench store`.) A table takes at most
    /// [`SENT_PER_TABLE`] entries and the next one starts empty, so that no growth moves more than that many: a
    /// room of a million messages paused 17 ms as its one table grew.
    sent: Vec<HashTable<(u64, usize)>>,
    /// Keyed per room, so that the hashes of client ids (which clients choose) cannot be aimed at a table.
    hasher: RandomState,
}

impl Room {
    fn hash(&self, from: &MemberId, client_id: &ClientId) -> u64 {
        self.hasher.hash_one((from, client_id))
    }

    /// The message `from` sent earlier with `client_id`, if any.
    fn sent_before(&self, hash: u64, from: &MemberId, client_id: &ClientId) -> Option<&ChatMessage> {
        let messages = &self.messages;
        let is_it = |&(h, index): &(u64, usize)| {
            h == hash
                && messages.get(index).is_some_and(|m| m.from.id == *from && m.client_id.as_ref() == Some(client_id))
        };
        // Newest first: a retry is of a recent message.
        let (_, index) = self.sent.iter().rev().find_map(|table| table.find(hash, is_it))?;
        messages.get(*index)
    }

    fn file_sent(&mut self, hash: u64, index: usize) {
        if self.sent.last().is_none_or(|table| table.len() >= SENT_PER_TABLE) {
            self.sent.push(HashTable::new());
        }
        if let Some(table) = self.sent.last_mut() {
            table.insert_unique(hash, (hash, index), |&(h, _)| h);
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, work: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock means a panic mid-call; every call leaves the maps consistent before it can panic.
        work(&mut self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

/// Messages `[from, to)` of `messages` (0-based indices, clamped) as a page.
fn slice(messages: &[ChatMessage], from: usize, to: usize, has_more: bool) -> Page {
    let to = to.min(messages.len());
    Page { messages: messages[from.min(to)..to].to_vec(), has_more }
}

impl MessageStore for MemoryStore {
    fn append(&self, new: NewMessage) -> StoreFuture<'_, Appended> {
        let appended = self.with(|state| {
            let room = state.rooms.entry(new.room.clone()).or_default();
            let key = new.client_id.as_ref().map(|client_id| (room.hash(&new.from.id, client_id), client_id));
            if let Some((hash, client_id)) = key
                && let Some(original) = room.sent_before(hash, &new.from.id, client_id)
            {
                return Appended::Duplicate(original.clone());
            }
            let index = room.messages.len();
            let message = new.stored_as(index as u64 + 1);
            if let Some(stored) = new.image {
                state.images.insert(stored.id, StoredImage { kind: stored.kind, bytes: stored.bytes.to_vec() });
            }
            room.messages.push(message.clone());
            if let Some((hash, _)) = key {
                room.file_sent(hash, index);
            }
            Appended::New(message)
        });
        Box::pin(std::future::ready(Ok(appended)))
    }

    fn latest(&self, room: RoomName, limit: usize) -> StoreFuture<'_, Page> {
        self.before(room, u64::MAX, limit)
    }

    fn after(&self, room: RoomName, seq: u64, limit: usize) -> StoreFuture<'_, Page> {
        let page = self.with(|state| {
            let messages = state.rooms.get(&room).map(|r| r.messages.as_slice()).unwrap_or_default();
            let from = usize::try_from(seq).unwrap_or(usize::MAX).min(messages.len());
            let to = from.saturating_add(limit);
            slice(messages, from, to, to < messages.len())
        });
        Box::pin(std::future::ready(Ok(page)))
    }

    fn before(&self, room: RoomName, seq: u64, limit: usize) -> StoreFuture<'_, Page> {
        let page = self.with(|state| {
            let messages = state.rooms.get(&room).map(|r| r.messages.as_slice()).unwrap_or_default();
            // Messages before `seq` are indices 0..seq-1.
            let to = usize::try_from(seq.saturating_sub(1)).unwrap_or(usize::MAX).min(messages.len());
            let from = to.saturating_sub(limit);
            slice(messages, from, to, from > 0)
        });
        Box::pin(std::future::ready(Ok(page)))
    }

    fn image(&self, id: String) -> StoreFuture<'_, Option<StoredImage>> {
        let image = self.with(|state| state.images.get(&id).cloned());
        Box::pin(std::future::ready(Ok(image)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::store::contract::store_contract!(MemoryStore::new());

    #[tokio::test]
    async fn every_client_id_still_finds_its_message_after_its_tables_have_grown_and_filled() {
        use crate::store::contract::{new, stored};
        let store = MemoryStore::new();
        let room = RoomName::parse("a").unwrap();
        for i in 0..5_000 {
            let from = if i % 2 == 0 { "Ada" } else { "Bob" };
            store.append(new("a", from, "hi", Some(&format!("c-{i}")))).await.unwrap();
        }
        for i in (0..5_000).step_by(7) {
            let from = if i % 2 == 0 { "Ada" } else { "Bob" };
            let again = store.append(new("a", from, "hi", Some(&format!("c-{i}")))).await.unwrap();
            let Appended::Duplicate(original) = again else { panic!("c-{i} was stored twice: {again:?}") };
            assert_eq!(original.seq, i + 1);
        }
        // And the other member's client id with the same text is theirs alone.
        assert_eq!(stored(store.append(new("a", "Bob", "hi", Some("c-0"))).await.unwrap()).seq, 5_001);
        assert_eq!(store.latest(room, 1).await.unwrap().messages[0].seq, 5_001);
    }
}
