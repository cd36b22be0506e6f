//! A store that keeps messages in memory only (`--in-memory`): nothing survives a restart. For benchmarks (how
//! much does durability cost?) and throwaway deployments. Same numbering, deduplication and paging as SQLite.

use std::collections::HashMap;
use std::sync::Mutex;

use protocol::{ChatMessage, ClientId, MemberId, RoomName};

use super::{Appended, MessageStore, NewMessage, Page, StoreFuture, StoredImage};

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Each room's messages, in `seq` order: message `seq` is at index `seq - 1`.
    rooms: HashMap<RoomName, Vec<ChatMessage>>,
    /// (room, sender, client id) → seq, for deduplication.
    sent: HashMap<(RoomName, MemberId, ClientId), u64>,
    images: HashMap<String, StoredImage>,
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
            let key = new.client_id.clone().map(|client_id| (new.room.clone(), new.from.id.clone(), client_id));
            let messages = state.rooms.entry(new.room.clone()).or_default();
            if let Some(seq) = key.as_ref().and_then(|key| state.sent.get(key)) {
                let index = usize::try_from(*seq - 1).unwrap_or(usize::MAX);
                if let Some(original) = messages.get(index) {
                    return Appended::Duplicate(original.clone());
                }
            }
            let seq = messages.len() as u64 + 1;
            let message = new.stored_as(seq);
            if let Some(stored) = new.image {
                state.images.insert(stored.id, StoredImage { kind: stored.kind, bytes: stored.bytes.to_vec() });
            }
            messages.push(message.clone());
            if let Some(key) = key {
                state.sent.insert(key, seq);
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
            let messages = state.rooms.get(&room).map(Vec::as_slice).unwrap_or_default();
            let from = usize::try_from(seq).unwrap_or(usize::MAX).min(messages.len());
            let to = from.saturating_add(limit);
            slice(messages, from, to, to < messages.len())
        });
        Box::pin(std::future::ready(Ok(page)))
    }

    fn before(&self, room: RoomName, seq: u64, limit: usize) -> StoreFuture<'_, Page> {
        let page = self.with(|state| {
            let messages = state.rooms.get(&room).map(Vec::as_slice).unwrap_or_default();
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
}
