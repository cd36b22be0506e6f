//! Presence notices go out to a room in bursts: at most one burst per room every interval.
//!
//! A quiet room hears of an arrival or a departure at once. While notices keep coming (a server restart, when
//! everyone in a room of fifty comes back within a few seconds and each return is news to all the others), the
//! ones that follow wait for the end of the interval and then go out together, in order, as one `presence` event
//! (or a few, for a big burst). Each recipient's connection then gets one packet per burst instead of one per
//! change: in the connect storm of `scripts/bench` the notices were a quarter of the server's work, nearly all of
//! it in system calls.
//!
//! This module only keeps the queue; [`super::chat::notify`] sends.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use protocol::RoomName;

/// Notices waiting, per room. A room is listed while a burst is in progress (its first notice went out less than
/// an interval ago, or a burst of them did); its list holds what waits for the next one.
pub struct Bursts<T> {
    interval: Duration,
    rooms: Mutex<HashMap<RoomName, Vec<T>>>,
}

impl<T> Bursts<T> {
    pub fn new(interval: Duration) -> Self {
        Self { interval, rooms: Mutex::new(HashMap::new()) }
    }

    /// How long a room's notices wait at most.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Returns `notice` when the room is quiet: the caller sends it now, then calls [`Self::drain`] once every
    /// interval until that returns `None`. Otherwise the notice waits for that call, behind the earlier ones.
    pub fn offer(&self, room: &RoomName, notice: T) -> Option<T> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        match rooms.get_mut(room) {
            Some(waiting) => {
                waiting.push(notice);
                None
            }
            None => {
                rooms.insert(room.clone(), Vec::new());
                Some(notice)
            }
        }
    }

    /// What was offered for `room` since the last call, oldest first. `None` when nothing was: the room is quiet
    /// again, and its next notice goes out at once.
    pub fn drain(&self, room: &RoomName) -> Option<Vec<T>> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        match rooms.get_mut(room) {
            Some(waiting) if !waiting.is_empty() => Some(std::mem::take(waiting)),
            _ => {
                rooms.remove(room);
                None
            }
        }
    }

    /// Rooms with a burst in progress.
    #[cfg(test)]
    fn busy(&self) -> usize {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    fn bursts() -> Bursts<&'static str> {
        Bursts::new(Duration::from_millis(500))
    }

    #[test]
    fn a_quiet_room_hears_its_first_notice_at_once() {
        let bursts = bursts();
        assert_eq!(bursts.offer(&room("general"), "ada joined"), Some("ada joined"));
        assert_eq!(bursts.offer(&room("other"), "bob joined"), Some("bob joined"), "rooms are independent");
    }

    #[test]
    fn notices_during_a_burst_wait_and_come_together_in_order() {
        let bursts = bursts();
        let general = room("general");
        assert!(bursts.offer(&general, "ada joined").is_some());
        assert_eq!(bursts.offer(&general, "bob joined"), None);
        assert_eq!(bursts.offer(&general, "ada left"), None);
        assert_eq!(bursts.offer(&general, "cy joined"), None);
        assert_eq!(bursts.drain(&general), Some(vec!["bob joined", "ada left", "cy joined"]));
        // The burst goes on while notices keep coming: the next one waits for the next drain.
        assert_eq!(bursts.offer(&general, "dan joined"), None);
        assert_eq!(bursts.drain(&general), Some(vec!["dan joined"]));
    }

    #[test]
    fn a_room_with_nothing_more_to_say_is_quiet_again_and_forgotten() {
        let bursts = bursts();
        let general = room("general");
        assert!(bursts.offer(&general, "ada joined").is_some());
        assert_eq!(bursts.drain(&general), None);
        assert_eq!(bursts.busy(), 0, "nothing kept for a quiet room");
        assert_eq!(bursts.offer(&general, "bob joined"), Some("bob joined"));
    }
}
