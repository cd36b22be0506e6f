//! Who is in which room, counted in people rather than tabs.
//!
//! A member is in a room while at least one of their connections is. The registry answers the questions the chat
//! needs with one lock each, so that "is this name free?" and "take it" cannot interleave between two tabs.
//!
//! This registry is local to one server. With several nodes (issue #8) each node keeps its own, and the room's
//! members are the union: the changes it reports ([`Arrival`], departures) are exactly what a node publishes to
//! the others.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use protocol::{DisplayName, Member, MemberId, RoomDetail, RoomName, RoomSummary};
use socketioxide::socket::Sid;
use tokio::sync::Notify;

/// Why a connection may not join a room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    #[error("Name in use: someone in #{room} is already called {name}. Pick another name.")]
    NameInUse { room: RoomName, name: DisplayName },
    #[error("You are already in #{room} as {current} in another tab. Use that name here too.")]
    OtherNameInRoom { room: RoomName, current: DisplayName },
    #[error("One connection can be in at most {max} rooms.")]
    TooManyRooms { max: usize },
}

/// How many rooms one connection may be in: a page shows one; a program may want a few. A cap keeps one
/// connection from filling the registry (and every lobby) with rooms.
pub const MAX_ROOMS_PER_CONNECTION: usize = 16;

/// How a join changed the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// The member was not in the room: announce them.
    Entered,
    /// The member was already there on another connection: nothing to announce.
    AnotherConnection,
}

#[derive(Debug)]
struct Present {
    member: Member,
    connections: HashSet<Sid>,
}

#[derive(Debug, Default)]
struct Registry {
    rooms: HashMap<RoomName, BTreeMap<MemberId, Present>>,
    /// Where each connection is, so that a connection that vanishes can be taken out of every room at once.
    connections: HashMap<Sid, (MemberId, HashSet<RoomName>)>,
}

/// The presence registry. See the module documentation.
#[derive(Debug, Default)]
pub struct Presence {
    registry: Mutex<Registry>,
    changed: Notify,
}

impl Presence {
    // Every method takes the lock once, for in-memory work only, and never across an await.
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A poisoned lock means a panic mid-update elsewhere; the maps are still consistent enough to serve.
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts `connection` of `member` in `room`, unless another member goes by the same name there.
    pub fn join(
        &self,
        room: &RoomName,
        member: &Member,
        connection: Sid,
    ) -> Result<(Arrival, Vec<Member>), JoinRefused> {
        let mut registry = self.registry();
        if let Some(members) = registry.rooms.get(room) {
            admissible(room, members, member)?;
        }
        if let Some((_, rooms)) = registry.connections.get(&connection)
            && rooms.len() >= MAX_ROOMS_PER_CONNECTION
            && !rooms.contains(room)
        {
            return Err(JoinRefused::TooManyRooms { max: MAX_ROOMS_PER_CONNECTION });
        }
        let members = registry.rooms.entry(room.clone()).or_default();
        let present = members
            .entry(member.id.clone())
            .or_insert_with(|| Present { member: member.clone(), connections: HashSet::new() });
        let arrival = if present.connections.is_empty() { Arrival::Entered } else { Arrival::AnotherConnection };
        present.connections.insert(connection);
        let everyone = sorted(members);
        registry
            .connections
            .entry(connection)
            .or_insert_with(|| (member.id.clone(), HashSet::new()))
            .1
            .insert(room.clone());
        drop(registry);
        if arrival == Arrival::Entered {
            self.changed.notify_one();
        }
        Ok((arrival, everyone))
    }

    /// Takes `connection` out of every room; returns the rooms its member left with it (their last connection).
    pub fn disconnect(&self, connection: Sid) -> Vec<(RoomName, Member)> {
        let mut registry = self.registry();
        let Some((member_id, rooms)) = registry.connections.remove(&connection) else { return Vec::new() };
        let mut departures = Vec::new();
        for room in rooms {
            let Some(members) = registry.rooms.get_mut(&room) else { continue };
            let Some(present) = members.get_mut(&member_id) else { continue };
            present.connections.remove(&connection);
            if present.connections.is_empty()
                && let Some(gone) = members.remove(&member_id)
            {
                departures.push((room.clone(), gone.member));
            }
            if members.is_empty() {
                registry.rooms.remove(&room);
            }
        }
        drop(registry);
        if !departures.is_empty() {
            self.changed.notify_one();
        }
        departures
    }

    /// Takes a member out of a room on all their connections; returns them and those connections.
    pub fn remove(&self, room: &RoomName, member: &MemberId) -> Option<(Member, Vec<Sid>)> {
        let mut registry = self.registry();
        let members = registry.rooms.get_mut(room)?;
        let gone = members.remove(member)?;
        if members.is_empty() {
            registry.rooms.remove(room);
        }
        for connection in &gone.connections {
            if let Some((_, rooms)) = registry.connections.get_mut(connection) {
                rooms.remove(room);
            }
        }
        drop(registry);
        self.changed.notify_one();
        Some((gone.member, gone.connections.into_iter().collect()))
    }

    /// Whether `member` could join `room` now, and why not: what [`Presence::join`] would say, without joining.
    pub fn check(&self, room: &RoomName, member: &Member) -> Result<(), JoinRefused> {
        match self.registry().rooms.get(room) {
            Some(members) => admissible(room, members, member),
            None => Ok(()),
        }
    }

    /// `member` as present in `room`, if they are.
    pub fn find(&self, room: &RoomName, member: &MemberId) -> Option<Member> {
        self.registry().rooms.get(room)?.get(member).map(|present| present.member.clone())
    }

    /// Whether `connection` has joined `room`.
    pub fn is_in(&self, room: &RoomName, connection: Sid) -> bool {
        self.registry().connections.get(&connection).is_some_and(|(_, rooms)| rooms.contains(room))
    }

    /// Every active room with its number of members, busiest first.
    pub fn summaries(&self) -> Vec<RoomSummary> {
        let registry = self.registry();
        let mut rooms: Vec<RoomSummary> = registry
            .rooms
            .iter()
            .map(|(room, members)| RoomSummary { room: room.clone(), online: saturating_u32(members.len()) })
            .collect();
        rooms.sort_by(|a, b| b.online.cmp(&a.online).then_with(|| a.room.cmp(&b.room)));
        rooms
    }

    /// Every active room with its members, by room name.
    pub fn details(&self) -> Vec<RoomDetail> {
        let registry = self.registry();
        let mut rooms: Vec<RoomDetail> = registry
            .rooms
            .iter()
            .map(|(room, members)| RoomDetail { room: room.clone(), members: sorted(members) })
            .collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        rooms
    }

    /// Resolves after the set of members of some room changed since the last call (changes coalesce).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// The rule for entering a room: a member keeps one name per room, and no two members share one.
fn admissible(room: &RoomName, members: &BTreeMap<MemberId, Present>, member: &Member) -> Result<(), JoinRefused> {
    if let Some(present) = members.get(&member.id)
        && present.member.name != member.name
    {
        return Err(JoinRefused::OtherNameInRoom { room: room.clone(), current: present.member.name.clone() });
    }
    if members.values().any(|present| present.member.id != member.id && present.member.name.same_as(&member.name)) {
        return Err(JoinRefused::NameInUse { room: room.clone(), name: member.name.clone() });
    }
    Ok(())
}

fn sorted(members: &BTreeMap<MemberId, Present>) -> Vec<Member> {
    let mut list: Vec<Member> = members.values().map(|present| present.member.clone()).collect();
    list.sort_by_key(|member| member.name.as_str().to_lowercase());
    list
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, name: &str) -> Member {
        Member { id: MemberId(id.into()), name: DisplayName::parse(name).unwrap() }
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    #[test]
    fn a_name_held_by_another_member_is_refused_whatever_its_case() {
        let presence = Presence::default();
        presence.join(&room("general"), &member("a", "Ada"), Sid::new()).unwrap();
        let refused = presence.join(&room("general"), &member("b", "ADA"), Sid::new()).unwrap_err();
        assert!(matches!(refused, JoinRefused::NameInUse { .. }));
        assert!(refused.to_string().starts_with("Name in use"), "{refused}");
        assert!(matches!(presence.check(&room("general"), &member("b", "ada")), Err(JoinRefused::NameInUse { .. })));
        assert_eq!(presence.check(&room("general"), &member("a", "Ada")), Ok(()), "Ada's own other tab");
        // The same name is free in another room.
        assert!(presence.join(&room("elsewhere"), &member("b", "Ada"), Sid::new()).is_ok());
    }

    #[test]
    fn a_second_connection_of_a_member_is_let_in_and_not_announced() {
        let presence = Presence::default();
        let ada = member("a", "Ada");
        let (first, _) = presence.join(&room("general"), &ada, Sid::new()).unwrap();
        let (second, everyone) = presence.join(&room("general"), &ada, Sid::new()).unwrap();
        assert_eq!((first, second), (Arrival::Entered, Arrival::AnotherConnection));
        assert_eq!(everyone, vec![ada]);
    }

    #[test]
    fn a_member_leaves_only_with_their_last_connection() {
        let presence = Presence::default();
        let ada = member("a", "Ada");
        let (tab1, tab2) = (Sid::new(), Sid::new());
        presence.join(&room("general"), &ada, tab1).unwrap();
        presence.join(&room("general"), &ada, tab2).unwrap();
        assert_eq!(presence.disconnect(tab1), vec![]);
        assert_eq!(presence.disconnect(tab2), vec![(room("general"), ada)]);
        assert_eq!(presence.summaries(), vec![], "an empty room is forgotten");
        assert_eq!(presence.check(&room("general"), &member("b", "Ada")), Ok(()));
    }

    #[test]
    fn one_member_cannot_hold_two_names_in_one_room() {
        let presence = Presence::default();
        presence.join(&room("general"), &member("a", "Ada"), Sid::new()).unwrap();
        let refused = presence.join(&room("general"), &member("a", "Lovelace"), Sid::new()).unwrap_err();
        assert!(matches!(refused, JoinRefused::OtherNameInRoom { .. }));
    }

    #[test]
    fn removing_a_member_returns_all_their_connections() {
        let presence = Presence::default();
        let ada = member("a", "Ada");
        let (tab1, tab2) = (Sid::new(), Sid::new());
        presence.join(&room("general"), &ada, tab1).unwrap();
        presence.join(&room("general"), &ada, tab2).unwrap();
        let (gone, mut connections) = presence.remove(&room("general"), &ada.id).unwrap();
        connections.sort();
        let mut expected = vec![tab1, tab2];
        expected.sort();
        assert_eq!((gone, connections), (ada, expected));
        assert!(!presence.is_in(&room("general"), tab1));
        assert_eq!(presence.disconnect(tab1), vec![], "no second departure on disconnect");
    }

    #[test]
    fn one_connection_is_in_a_limited_number_of_rooms() {
        let presence = Presence::default();
        let (ada, tab) = (member("a", "Ada"), Sid::new());
        for i in 0..MAX_ROOMS_PER_CONNECTION {
            presence.join(&room(&format!("r{i}")), &ada, tab).unwrap();
        }
        assert!(matches!(presence.join(&room("one-more"), &ada, tab), Err(JoinRefused::TooManyRooms { .. })));
        assert!(presence.join(&room("r0"), &ada, tab).is_ok(), "joining a room again is no new room");
        assert!(presence.join(&room("one-more"), &ada, Sid::new()).is_ok(), "the cap is per connection");
    }

    #[test]
    fn summaries_count_people_busiest_first() {
        let presence = Presence::default();
        presence.join(&room("quiet"), &member("a", "Ada"), Sid::new()).unwrap();
        presence.join(&room("busy"), &member("a", "Ada"), Sid::new()).unwrap();
        presence.join(&room("busy"), &member("b", "Bob"), Sid::new()).unwrap();
        presence.join(&room("busy"), &member("b", "Bob"), Sid::new()).unwrap();
        let counts: Vec<(String, u32)> =
            presence.summaries().into_iter().map(|s| (s.room.to_string(), s.online)).collect();
        assert_eq!(counts, vec![("busy".into(), 2), ("quiet".into(), 1)]);
    }
}
