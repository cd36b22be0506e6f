//! `causerie-bench store`: how long one append to the in-memory store (`--in-memory`) can take as its rooms grow,
//! and what a stored message costs in memory. A send waits for its append under the store's lock, and the server
//! runs its sends on one core, so the slowest append is a pause of every room's sending (the fan-out's p99).
//! This runs in-process, without sockets: the figures are the store's alone.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use protocol::{ClientId, DisplayName, Member, MemberId, MessageBody, MessageId, RoomName, UnixMillis};
use server::store::memory::MemoryStore;
use server::store::{Appended, MessageStore, NewMessage};

/// What to append: `messages` of 100 characters, each with a client id, spread over `rooms` and 200 senders.
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    pub messages: usize,
    pub rooms: usize,
}

/// Appends slower than each of these are counted.
pub const THRESHOLDS: [Duration; 3] = [Duration::from_micros(100), Duration::from_millis(1), Duration::from_millis(10)];

#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreResult {
    pub appended: usize,
    pub mean_micros: f64,
    pub worst_micros: f64,
    /// How many appends took longer than each of [`THRESHOLDS`].
    pub slower_than: [u64; 3],
    /// The process's RSS growth over the run, divided by the messages stored.
    pub rss_bytes_per_message: f64,
}

pub async fn appends(config: StoreConfig) -> anyhow::Result<StoreResult> {
    let store = MemoryStore::new();
    let rooms = (0..config.rooms.max(1))
        .map(|i| RoomName::parse(&format!("room-{i}")))
        .collect::<Result<Vec<_>, _>>()
        .context("naming the rooms")?;
    let senders = (0..200)
        .map(|i| {
            DisplayName::parse(&format!("user {i}")).map(|name| Member { id: MemberId(format!("{i:032x}")), name })
        })
        .collect::<Result<Vec<_>, _>>()
        .context("naming the senders")?;
    let body = MessageBody::parse(&"x".repeat(100)).context("writing the body")?;
    let before = rss_bytes()?;
    let (mut worst, mut slower_than) = (Duration::ZERO, [0u64; 3]);
    let start = Instant::now();
    for i in 0..config.messages {
        let client_id = ClientId::parse(&uuid::Uuid::new_v4().to_string()).context("making a client id")?;
        let message = NewMessage {
            id: MessageId(uuid::Uuid::now_v7().to_string()),
            room: rooms[i % rooms.len()].clone(),
            from: senders[i % senders.len()].clone(),
            body: body.clone(),
            sent_at: UnixMillis(0),
            client_id: Some(client_id),
            image: None,
        };
        let began = Instant::now();
        let appended = store.append(message).await.context("appending")?;
        let took = began.elapsed();
        anyhow::ensure!(matches!(appended, Appended::New(_)), "message {i} was taken for a duplicate: {appended:?}");
        worst = worst.max(took);
        for (count, threshold) in slower_than.iter_mut().zip(THRESHOLDS) {
            *count += u64::from(took > threshold);
        }
    }
    let elapsed = start.elapsed();
    let grown = rss_bytes()?.saturating_sub(before);
    let messages = config.messages.max(1) as f64;
    Ok(StoreResult {
        appended: config.messages,
        mean_micros: elapsed.as_secs_f64() * 1e6 / messages,
        worst_micros: worst.as_secs_f64() * 1e6,
        slower_than,
        rss_bytes_per_message: grown as f64 / messages,
    })
}

fn rss_bytes() -> anyhow::Result<u64> {
    Ok(crate::target::Usage::of(std::process::id())?.rss_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_store_run_appends_every_message_and_counts_none_as_a_duplicate() {
        let result = appends(StoreConfig { messages: 3_000, rooms: 3 }).await.unwrap();
        assert_eq!(result.appended, 3_000);
        assert!(result.worst_micros >= result.mean_micros, "{result:?}");
        assert!(result.slower_than[0] >= result.slower_than[1] && result.slower_than[1] >= result.slower_than[2]);
    }
}
