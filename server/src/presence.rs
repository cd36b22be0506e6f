//! Who is in which room, counted in people rather than tabs, on one node or across several.
//!
//! A member is in a room while at least one of their connections is, on any node. Each node knows its own
//! connections (the *local* part) and keeps a replica of what every other node reported (the *remote* part,
//! fed by [`crate::cluster`] over Redis); the room's members are the union, the *view*. Every question the chat
//! asks ("is this name free?", "who is here?") is answered from the view, with one lock each, so that "is this
//! name free?" and "take it" cannot interleave between two tabs.
//!
//! Changes to the local part go out to the other nodes through an [`Outbox`], in the order they happened: they are
//! queued under the same lock that made them. A change of the view (someone entered or left the room as a whole)
//! is announced by each node to its own connections, so that nobody is told twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Mutex, OnceLock};

use protocol::{DisplayName, Member, MemberId, MembersPage, RoomDetail, RoomName, RoomSummary, RoomsSnapshot};
use serde::{Deserialize, Serialize};
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
    /// The member was in the room on no node: announce them.
    Entered,
    /// The member was already there on another connection (here or on another node): nothing to announce.
    AnotherConnection,
}

/// A change of the view that this node's connections must be told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Entered(RoomName, Member),
    Left(RoomName, Member),
}

/// A member of this node who took a name in a room while a member of another node was taking it too, and lost it
/// to them (see [`Presence::apply`]): they are out of the room here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameLost {
    pub room: RoomName,
    pub member: Member,
    /// Their connections on this node, now out of the room: tell them, and take them out of its traffic.
    pub connections: Vec<Sid>,
}

/// What a report from another node did here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Changes of the view, to announce to this node's connections.
    pub changes: Vec<Change>,
    /// This node's members who lost their name to a member of another node.
    pub names_lost: Vec<NameLost>,
}

/// What one node tells the others about its own connections (see [`crate::cluster`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    /// Everyone present on the sending node, room by room: replaces what the receiver knew of that node.
    Snapshot { rooms: Vec<(RoomName, Vec<Member>)> },
    /// A member now has a connection in the room on the sending node (and had none there before).
    Entered { room: RoomName, member: Member },
    /// A member has no connection left in the room on the sending node.
    Left { room: RoomName, member: MemberId },
    /// An admin removed a member from a room: every node takes them out of it.
    Removed { room: RoomName, member: MemberId },
}

/// Where the local part's changes go, in order, to be published to the other nodes.
pub type Outbox = tokio::sync::mpsc::UnboundedSender<Report>;

/// Another node, named by the id it gave itself when it started.
pub type NodeId = String;

#[derive(Debug)]
struct Present {
    member: Member,
    connections: FewSet<Sid>,
}

/// A set kept as a list, for the sets every connection has one of: the rooms it is in (a few at most,
/// [`MAX_ROOMS_PER_CONNECTION`]) and, in each room, its member's connections (their tabs). A hash set's smallest
/// table (four slots, and their control bytes) costs more than the one entry nearly all of them hold, for as long
/// as the connection lasts.
#[derive(Debug)]
struct FewSet<T>(Vec<T>);

impl<T> Default for FewSet<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: PartialEq> FewSet<T> {
    /// Adds `item` unless it is in already; says whether it was added.
    fn insert(&mut self, item: T) -> bool {
        if self.contains(&item) {
            return false;
        }
        // Room for this one only: nearly every set holds one entry its whole life.
        self.0.reserve_exact(1);
        self.0.push(item);
        true
    }

    /// Takes `item` out; says whether it was in.
    fn remove(&mut self, item: &T) -> bool {
        let at = self.0.iter().position(|held| held == item);
        at.map(|at| self.0.swap_remove(at)).is_some()
    }

    fn contains(&self, item: &T) -> bool {
        self.0.contains(item)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> IntoIterator for FewSet<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a FewSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[derive(Debug, Default)]
struct Registry {
    rooms: HashMap<RoomName, BTreeMap<MemberId, Present>>,
    /// Where each connection is, so that a connection that vanishes can be taken out of every room at once.
    connections: HashMap<Sid, (MemberId, FewSet<RoomName>)>,
    /// What each other node reported: its members, room by room.
    remote: HashMap<NodeId, HashMap<RoomName, BTreeMap<MemberId, Member>>>,
}

impl Registry {
    /// Whether `member` is in `room` on any node.
    fn in_view(&self, room: &RoomName, member: &MemberId) -> bool {
        self.rooms.get(room).is_some_and(|members| members.contains_key(member))
            || self.remote.values().any(|rooms| rooms.get(room).is_some_and(|members| members.contains_key(member)))
    }

    /// Everyone in `room` on any node, each once, by name.
    fn view(&self, room: &RoomName) -> BTreeMap<MemberId, Member> {
        self.view_of(room).into_iter().map(|(id, member)| (id.clone(), member.clone())).collect()
    }

    /// [`Self::view`], borrowed: a join reads the whole room, and copying it twice showed in the connect storm.
    fn view_of(&self, room: &RoomName) -> BTreeMap<&MemberId, &Member> {
        self.view_within(room, (Bound::Unbounded, Bound::Unbounded), usize::MAX)
    }

    /// The part of [`Self::view_of`] whose ids are within `ids`, from at most `take` of each node's members there:
    /// the first `take` of the whole, each once.
    fn view_within<'a>(
        &'a self,
        room: &RoomName,
        ids: (Bound<&MemberId>, Bound<&MemberId>),
        take: usize,
    ) -> BTreeMap<&'a MemberId, &'a Member> {
        let mut members: BTreeMap<&MemberId, &Member> = BTreeMap::new();
        if let Some(local) = self.rooms.get(room) {
            members.extend(local.range::<MemberId, _>(ids).take(take).map(|(id, present)| (id, &present.member)));
        }
        for rooms in self.remote.values() {
            if let Some(remote) = rooms.get(room) {
                for (id, member) in remote.range::<MemberId, _>(ids).take(take) {
                    members.entry(id).or_insert(member);
                }
            }
        }
        members
    }

    /// Every room that has someone on some node.
    fn room_names(&self) -> HashSet<RoomName> {
        let mut names: HashSet<RoomName> = self.rooms.keys().cloned().collect();
        for rooms in self.remote.values() {
            names.extend(rooms.keys().cloned());
        }
        names
    }

    /// Who is in the view, room by room: to compare before and after a change from another node.
    fn everyone(&self, rooms: impl IntoIterator<Item = RoomName>) -> Vec<(RoomName, BTreeMap<MemberId, Member>)> {
        rooms.into_iter().map(|room| (room.clone(), self.view(&room))).collect()
    }

    /// Takes `member` out of `room` on this node, all their connections with them; returns what was there.
    fn take_local(&mut self, room: &RoomName, member: &MemberId) -> Option<Present> {
        let members = self.rooms.get_mut(room)?;
        let gone = members.remove(member)?;
        if members.is_empty() {
            self.rooms.remove(room);
        }
        for connection in &gone.connections {
            if let Some((_, rooms)) = self.connections.get_mut(connection) {
                rooms.remove(room);
            }
        }
        Some(gone)
    }

    /// This node's members of `room` whose name a member of another node also holds there: two nodes let two
    /// people take one name in the few milliseconds before either heard of the other. Whoever's id sorts first
    /// keeps it, so that every node settles the same clash the same way, each taking out only its own loser. The
    /// same goes for one member under two names, one per node (tabs that chose differently at the same moment):
    /// the name that sorts first stays.
    fn clashing(&self, room: &RoomName) -> Vec<MemberId> {
        let Some(local) = self.rooms.get(room) else { return Vec::new() };
        let remote: Vec<&Member> =
            self.remote.values().filter_map(|rooms| rooms.get(room)).flat_map(|m| m.values()).collect();
        local
            .values()
            .map(|present| &present.member)
            .filter(|mine| {
                remote.iter().any(|other| {
                    let name_clash = other.id < mine.id && other.name.same_as(&mine.name);
                    let two_names = other.id == mine.id && other.name.as_str() < mine.name.as_str();
                    name_clash || two_names
                })
            })
            .map(|mine| mine.id.clone())
            .collect()
    }

    fn snapshot(&self) -> Vec<(RoomName, Vec<Member>)> {
        self.rooms
            .iter()
            .map(|(room, members)| (room.clone(), members.values().map(|p| p.member.clone()).collect()))
            .collect()
    }
}

/// The presence registry. See the module documentation.
#[derive(Debug, Default)]
pub struct Presence {
    registry: Mutex<Registry>,
    changed: Notify,
    outbox: OnceLock<Outbox>,
}

impl Presence {
    // Every method takes the lock once, for in-memory work only, and never across an await.
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A poisoned lock means a panic mid-update elsewhere; the maps are still consistent enough to serve.
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// From now on, reports every change of the local part to `outbox`, starting with a snapshot of it. Once only:
    /// a second outbox is refused (returned).
    pub fn publish_to(&self, outbox: Outbox) -> Result<(), Outbox> {
        // Under the lock, so that no change falls between the snapshot and the first report after it.
        let registry = self.registry();
        let snapshot = Report::Snapshot { rooms: registry.snapshot() };
        self.outbox.set(outbox)?;
        self.report(snapshot);
        drop(registry);
        Ok(())
    }

    /// Queues a snapshot of the local part (for a node that just arrived, or after Redis came back).
    pub fn report_snapshot(&self) {
        let registry = self.registry();
        self.report(Report::Snapshot { rooms: registry.snapshot() });
        drop(registry);
    }

    /// Called with the lock held, so that reports leave in the order the changes were made.
    fn report(&self, report: Report) {
        if let Some(outbox) = self.outbox.get() {
            // The publisher is gone only when the server is stopping; nobody needs the report then.
            let _ = outbox.send(report);
        }
    }

    /// Puts `connection` of `member` in `room`, unless another member goes by the same name there. Returns the
    /// room's first [`Joined::MAX_MEMBERS`](protocol::Joined::MAX_MEMBERS) members, `member` counted in.
    pub fn join(
        &self,
        room: &RoomName,
        member: &Member,
        connection: Sid,
    ) -> Result<(Arrival, MembersPage), JoinRefused> {
        let mut registry = self.registry();
        let mut view = registry.view_of(room);
        admissible(room, &view, member)?;
        if let Some((_, rooms)) = registry.connections.get(&connection)
            && rooms.len() >= MAX_ROOMS_PER_CONNECTION
            && !rooms.contains(room)
        {
            return Err(JoinRefused::TooManyRooms { max: MAX_ROOMS_PER_CONNECTION });
        }
        let arrival = if view.contains_key(&member.id) { Arrival::AnotherConnection } else { Arrival::Entered };
        // The view with this member in it: what it was before, as admissible made sure of their name.
        view.insert(&member.id, member);
        let first = page(view, protocol::Joined::MAX_MEMBERS);
        let members = registry.rooms.entry(room.clone()).or_default();
        let present = members
            .entry(member.id.clone())
            .or_insert_with(|| Present { member: member.clone(), connections: FewSet::default() });
        let first_here = present.connections.is_empty();
        present.connections.insert(connection);
        registry
            .connections
            .entry(connection)
            .or_insert_with(|| (member.id.clone(), FewSet::default()))
            .1
            .insert(room.clone());
        if first_here {
            self.report(Report::Entered { room: room.clone(), member: member.clone() });
        }
        drop(registry);
        if arrival == Arrival::Entered {
            self.changed.notify_one();
        }
        Ok((arrival, first))
    }

    /// The members of `room` whose ids come after `after`, [`Joined::MAX_MEMBERS`](protocol::Joined::MAX_MEMBERS)
    /// at most: the page after the one that ended there.
    pub fn members_after(&self, room: &RoomName, after: &MemberId) -> MembersPage {
        let registry = self.registry();
        // Each node's part from where the page starts, enough of it for a page (and one more, to tell whether
        // the list goes on): a room of thousands is not walked whole for every page of 16.
        let starting = (Bound::Excluded(after), Bound::Unbounded);
        page(registry.view_within(room, starting, protocol::Joined::MAX_MEMBERS + 1), protocol::Joined::MAX_MEMBERS)
    }

    /// Takes `connection` out of every room; returns the rooms its member left with it (their last connection on
    /// any node).
    pub fn disconnect(&self, connection: Sid) -> Vec<(RoomName, Member)> {
        let mut registry = self.registry();
        let Some((member_id, rooms)) = registry.connections.remove(&connection) else { return Vec::new() };
        let mut departures = Vec::new();
        for room in rooms {
            if let Some(gone) = self.take_connection_out(&mut registry, &room, &member_id, connection) {
                departures.push((room, gone));
            }
        }
        drop(registry);
        if !departures.is_empty() {
            self.changed.notify_one();
        }
        departures
    }

    /// Takes `connection` out of `room` alone: a join that could not be completed. Returns its member when that
    /// was their last connection there on any node (their departure is to be announced).
    pub fn leave(&self, room: &RoomName, connection: Sid) -> Option<Member> {
        let mut registry = self.registry();
        let (member_id, rooms) = registry.connections.get_mut(&connection)?;
        if !rooms.remove(room) {
            return None;
        }
        let member_id = member_id.clone();
        if rooms.is_empty() {
            registry.connections.remove(&connection);
        }
        let departure = self.take_connection_out(&mut registry, room, &member_id, connection);
        drop(registry);
        if departure.is_some() {
            self.changed.notify_one();
        }
        departure
    }

    /// The room's side of a connection leaving it; the caller has already updated the connection's own rooms.
    fn take_connection_out(
        &self,
        registry: &mut Registry,
        room: &RoomName,
        member_id: &MemberId,
        connection: Sid,
    ) -> Option<Member> {
        let members = registry.rooms.get_mut(room)?;
        let present = members.get_mut(member_id)?;
        present.connections.remove(&connection);
        let gone = present.connections.is_empty().then(|| members.remove(member_id)).flatten()?;
        if members.is_empty() {
            registry.rooms.remove(room);
        }
        self.report(Report::Left { room: room.clone(), member: member_id.clone() });
        (!registry.in_view(room, member_id)).then_some(gone.member)
    }

    /// An admin removes a member from a room, on every node: this node's connections are taken out (and returned),
    /// and the other nodes are told to do the same. Returns `None` when the member is in the room on no node.
    pub fn remove(&self, room: &RoomName, member: &MemberId) -> Option<(Member, Vec<Sid>)> {
        let removed = self.take_out(room, member, true);
        removed.0.map(|member| (member, removed.1))
    }

    /// Another node's admin removed a member: the same as [`Presence::remove`] without telling the others again.
    pub fn removed_elsewhere(&self, room: &RoomName, member: &MemberId) -> (Option<Member>, Vec<Sid>) {
        self.take_out(room, member, false)
    }

    fn take_out(&self, room: &RoomName, member: &MemberId, tell_others: bool) -> (Option<Member>, Vec<Sid>) {
        let mut registry = self.registry();
        let seen = registry.view(room).remove(member);
        // Out of the replicas too: the owners' own reports of it, still on their way, then change nothing.
        for rooms in registry.remote.values_mut() {
            if let Some(members) = rooms.get_mut(room) {
                members.remove(member);
                if members.is_empty() {
                    rooms.remove(room);
                }
            }
        }
        let connections: Vec<Sid> =
            registry.take_local(room, member).map(|gone| gone.connections.into_iter().collect()).unwrap_or_default();
        if tell_others && seen.is_some() {
            self.report(Report::Removed { room: room.clone(), member: member.clone() });
        } else if !connections.is_empty() {
            // This node's part changed: say so, in order, so that a report of this member sent before the
            // removal reached this node (and re-added elsewhere after it) is undone everywhere.
            self.report(Report::Left { room: room.clone(), member: member.clone() });
        }
        drop(registry);
        if seen.is_some() {
            self.changed.notify_one();
        }
        (seen, connections)
    }

    /// Applies what another node reported: returns how the view changed, and who here lost their name to one of
    /// that node's members (they are out of the room, and the other nodes are told).
    pub fn apply(&self, node: &str, report: Report) -> Applied {
        let mut registry = self.registry();
        let touched: Vec<RoomName> = match &report {
            Report::Snapshot { rooms } => {
                let mut touched: HashSet<RoomName> = rooms.iter().map(|(room, _)| room.clone()).collect();
                touched.extend(registry.remote.get(node).into_iter().flat_map(|rooms| rooms.keys().cloned()));
                touched.into_iter().collect()
            }
            Report::Entered { room, .. } | Report::Left { room, .. } => vec![room.clone()],
            // Removal changes this node's own connections too: see `removed_elsewhere`.
            Report::Removed { .. } => return Applied::default(),
        };
        let before = registry.everyone(touched.iter().cloned());
        match report {
            Report::Snapshot { rooms } => {
                let replica = rooms
                    .into_iter()
                    .filter(|(_, members)| !members.is_empty())
                    .map(|(room, members)| (room, members.into_iter().map(|m| (m.id.clone(), m)).collect()))
                    .collect();
                registry.remote.insert(node.to_owned(), replica);
            }
            Report::Entered { room, member } => {
                registry
                    .remote
                    .entry(node.to_owned())
                    .or_default()
                    .entry(room)
                    .or_default()
                    .insert(member.id.clone(), member);
            }
            Report::Left { room, member } => {
                if let Some(rooms) = registry.remote.get_mut(node)
                    && let Some(members) = rooms.get_mut(&room)
                {
                    members.remove(&member);
                    if members.is_empty() {
                        rooms.remove(&room);
                    }
                }
            }
            Report::Removed { .. } => {}
        }
        let mut names_lost = Vec::new();
        for room in &touched {
            for id in registry.clashing(room) {
                let Some(gone) = registry.take_local(room, &id) else { continue };
                // Under the lock, in order with this node's other reports, as every change of its part is.
                self.report(Report::Left { room: room.clone(), member: id });
                let connections = gone.connections.into_iter().collect();
                names_lost.push(NameLost { room: room.clone(), member: gone.member, connections });
            }
        }
        let changes = differences(before, &registry);
        drop(registry);
        if !changes.is_empty() {
            self.changed.notify_one();
        }
        Applied { changes, names_lost }
    }

    /// Forgets everything another node reported (it stopped, or stopped answering); returns how the view changed.
    pub fn forget(&self, node: &str) -> Vec<Change> {
        let mut registry = self.registry();
        let Some(rooms) = registry.remote.get(node) else { return Vec::new() };
        let touched: Vec<RoomName> = rooms.keys().cloned().collect();
        let before = registry.everyone(touched);
        registry.remote.remove(node);
        let changes = differences(before, &registry);
        drop(registry);
        if !changes.is_empty() {
            self.changed.notify_one();
        }
        changes
    }

    /// Whether `member` could join `room` now, and why not: what [`Presence::join`] would say, without joining.
    pub fn check(&self, room: &RoomName, member: &Member) -> Result<(), JoinRefused> {
        admissible(room, &self.registry().view_of(room), member)
    }

    /// `member` as present in `room`, on any node.
    pub fn find(&self, room: &RoomName, member: &MemberId) -> Option<Member> {
        self.registry().view(room).remove(member)
    }

    /// Whether `member` has a connection in `room` on this node.
    pub fn is_here(&self, room: &RoomName, member: &MemberId) -> bool {
        self.registry().rooms.get(room).is_some_and(|members| members.contains_key(member))
    }

    /// Whether `connection` (one of this node's) has joined `room`.
    pub fn is_in(&self, room: &RoomName, connection: Sid) -> bool {
        self.registry().connections.get(&connection).is_some_and(|(_, rooms)| rooms.contains(room))
    }

    /// The [`RoomsSnapshot::MAX_ROOMS`] busiest active rooms with their number of members, busiest first.
    pub fn summaries(&self) -> Vec<RoomSummary> {
        let registry = self.registry();
        let mut rooms: Vec<RoomSummary> = registry
            .room_names()
            .into_iter()
            .map(|room| {
                let online = saturating_u32(registry.view(&room).len());
                RoomSummary { room, online }
            })
            .collect();
        let busiest_first =
            |a: &RoomSummary, b: &RoomSummary| b.online.cmp(&a.online).then_with(|| a.room.cmp(&b.room));
        if rooms.len() > RoomsSnapshot::MAX_ROOMS {
            rooms.select_nth_unstable_by(RoomsSnapshot::MAX_ROOMS, busiest_first);
            rooms.truncate(RoomsSnapshot::MAX_ROOMS);
        }
        rooms.sort_by(busiest_first);
        rooms
    }

    /// Every active room with its members, by room name.
    pub fn details(&self) -> Vec<RoomDetail> {
        let registry = self.registry();
        let mut rooms: Vec<RoomDetail> = registry
            .room_names()
            .into_iter()
            .map(|room| {
                let members = sorted(registry.view(&room).into_values());
                RoomDetail { room, members }
            })
            .collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        rooms
    }

    /// Resolves after the set of members of some room changed since the last call (changes coalesce).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Who entered and who left between `before` and now, room by room.
fn differences(before: Vec<(RoomName, BTreeMap<MemberId, Member>)>, registry: &Registry) -> Vec<Change> {
    let mut changes = Vec::new();
    for (room, was) in before {
        let now = registry.view(&room);
        for (id, member) in &now {
            if !was.contains_key(id) {
                changes.push(Change::Entered(room.clone(), member.clone()));
            }
        }
        for (id, member) in was {
            if !now.contains_key(&id) {
                changes.push(Change::Left(room.clone(), member));
            }
        }
    }
    changes
}

/// The rule for entering a room: a member keeps one name per room, and no two members share one.
fn admissible(room: &RoomName, members: &BTreeMap<&MemberId, &Member>, member: &Member) -> Result<(), JoinRefused> {
    if let Some(present) = members.get(&member.id)
        && present.name != member.name
    {
        return Err(JoinRefused::OtherNameInRoom { room: room.clone(), current: present.name.clone() });
    }
    if members.values().any(|present| present.id != member.id && present.name.same_as(&member.name)) {
        return Err(JoinRefused::NameInUse { room: room.clone(), name: member.name.clone() });
    }
    Ok(())
}

/// The first `limit` of `members` (in the order of their ids), by name, and where the list goes on if it does.
fn page(members: BTreeMap<&MemberId, &Member>, limit: usize) -> MembersPage {
    let more = (members.len() > limit).then(|| members.keys().nth(limit - 1).map(|id| (*id).clone())).flatten();
    MembersPage { members: sorted(members.into_values().take(limit).cloned()), more }
}

fn sorted(members: impl IntoIterator<Item = Member>) -> Vec<Member> {
    let mut list: Vec<Member> = members.into_iter().collect();
    // Cached: one lowercase copy per name, not two per comparison.
    list.sort_by_cached_key(|member| member.name.as_str().to_lowercase());
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
    fn a_few_set_holds_each_item_once_and_says_what_it_changed() {
        let mut rooms = FewSet::default();
        assert!(rooms.insert(room("general")));
        assert!(rooms.insert(room("rust")));
        assert!(!rooms.insert(room("general")), "already in");
        assert_eq!(rooms.len(), 2);
        assert!(rooms.remove(&room("general")));
        assert!(!rooms.remove(&room("general")), "already out");
        assert!(!rooms.contains(&room("general")));
        assert!(rooms.contains(&room("rust")));
        assert!(rooms.remove(&room("rust")));
        assert!(rooms.is_empty());
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
        assert_eq!(everyone, MembersPage { members: vec![ada], more: None });
    }

    #[test]
    fn a_big_room_is_listed_page_by_page_across_nodes_each_member_once() {
        let presence = Presence::default();
        let max = protocol::Joined::MAX_MEMBERS;
        // Two pages and a bit: ids m000.., here and on another node, one of them on both.
        let ids: Vec<String> = (0..2 * max + 5).map(|i| format!("m{i:03}")).collect();
        let mut remote = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let someone = member(id, &format!("P{i:03}"));
            if i % 3 == 0 {
                remote.push(someone.clone());
            }
            if i % 3 != 0 || i == 3 {
                presence.join(&room("big"), &someone, Sid::new()).unwrap();
            }
        }
        presence.apply("other", Report::Snapshot { rooms: vec![(room("big"), remote)] });
        let (_, first) = presence.join(&room("big"), &member("m000", "P000"), Sid::new()).unwrap();
        assert_eq!(first.members.len(), max);
        let mut listed: Vec<String> = first.members.iter().map(|m| m.id.0.clone()).collect();
        let mut more = first.more;
        let mut pages = 1;
        while let Some(after) = more {
            let next = presence.members_after(&room("big"), &after);
            assert!(next.members.len() <= max);
            listed.extend(next.members.iter().map(|m| m.id.0.clone()));
            more = next.more;
            pages += 1;
        }
        assert_eq!(pages, 3);
        listed.sort();
        assert_eq!(listed, ids, "everyone, once each");
    }

    #[test]
    fn a_page_of_members_is_by_name_and_a_full_last_page_says_nothing_more() {
        let presence = Presence::default();
        let max = protocol::Joined::MAX_MEMBERS;
        // Ids in one order, names in the other.
        for i in 0..max {
            presence.join(&room("r"), &member(&format!("m{i:03}"), &format!("N{:03}", max - i)), Sid::new()).unwrap();
        }
        let (_, all) = presence.join(&room("r"), &member("m000", &format!("N{max:03}")), Sid::new()).unwrap();
        assert_eq!(all.more, None, "exactly one page");
        let names: Vec<&str> = all.members.iter().map(|m| m.name.as_str()).collect();
        let mut by_name = names.clone();
        by_name.sort_unstable();
        assert_eq!(names, by_name);
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

    #[test]
    fn the_lobby_lists_only_the_busiest_rooms_however_many_are_open() {
        let presence = Presence::default();
        // One person opening many rooms of one, and a few real conversations.
        for n in 0..500 {
            presence.join(&room(&format!("spam-{n}")), &member("s", "Spam"), Sid::new()).unwrap();
        }
        for n in 0..3 {
            presence.join(&room(&format!("talk-{n}")), &member("a", "Ada"), Sid::new()).unwrap();
            presence.join(&room(&format!("talk-{n}")), &member("b", "Bob"), Sid::new()).unwrap();
        }
        let listed = presence.summaries();
        assert_eq!(listed.len(), RoomsSnapshot::MAX_ROOMS);
        let first: Vec<&str> = listed.iter().take(4).map(|s| s.room.as_str()).collect();
        assert_eq!(first, vec!["talk-0", "talk-1", "talk-2", "spam-0"]);
    }

    #[test]
    fn a_member_on_another_node_is_in_the_room_and_keeps_their_name() {
        let presence = Presence::default();
        let ada = member("a", "Ada");
        let entered = presence.apply("node-b", Report::Entered { room: room("general"), member: ada.clone() }).changes;
        assert_eq!(entered, vec![Change::Entered(room("general"), ada.clone())]);
        assert!(matches!(presence.check(&room("general"), &member("x", "ada")), Err(JoinRefused::NameInUse { .. })));
        let (_, everyone) = presence.join(&room("general"), &member("b", "Bob"), Sid::new()).unwrap();
        assert_eq!(everyone.members, vec![ada.clone(), member("b", "Bob")]);
        assert_eq!(presence.find(&room("general"), &ada.id), Some(ada));
        assert_eq!(presence.summaries()[0].online, 2);
    }

    #[test]
    fn a_member_connected_through_two_nodes_is_one_member_who_leaves_with_their_last_connection() {
        let presence = Presence::default();
        let (ada, tab) = (member("a", "Ada"), Sid::new());
        let (arrival, _) = presence.join(&room("general"), &ada, tab).unwrap();
        assert_eq!(arrival, Arrival::Entered);
        let elsewhere =
            presence.apply("node-b", Report::Entered { room: room("general"), member: ada.clone() }).changes;
        assert_eq!(elsewhere, vec![], "already in the room: nothing to announce");
        assert_eq!(presence.disconnect(tab), vec![], "still there through the other node");
        assert_eq!(presence.details()[0].members, vec![ada.clone()]);
        let gone = presence.apply("node-b", Report::Left { room: room("general"), member: ada.id.clone() }).changes;
        assert_eq!(gone, vec![Change::Left(room("general"), ada.clone())]);
        assert_eq!(presence.summaries(), vec![]);
        // And the other way round: present elsewhere first, then here, is no second arrival.
        presence.apply("node-b", Report::Entered { room: room("general"), member: ada.clone() });
        assert_eq!(presence.join(&room("general"), &ada, Sid::new()).unwrap().0, Arrival::AnotherConnection);
    }

    #[test]
    fn a_node_that_is_forgotten_takes_only_its_own_members_with_it() {
        let presence = Presence::default();
        let (ada, bob) = (member("a", "Ada"), member("b", "Bob"));
        presence.join(&room("general"), &ada, Sid::new()).unwrap();
        let snapshot = vec![(room("general"), vec![ada.clone(), bob.clone()]), (room("other"), vec![bob.clone()])];
        let changes = presence.apply("node-b", Report::Snapshot { rooms: snapshot }).changes;
        assert_eq!(changes.len(), 2, "Bob entered both rooms; Ada was already here: {changes:?}");
        let mut gone = presence.forget("node-b");
        gone.sort_by_key(|change| format!("{change:?}"));
        assert_eq!(gone, vec![Change::Left(room("general"), bob.clone()), Change::Left(room("other"), bob)]);
        assert_eq!(presence.details()[0].members, vec![ada]);
        assert_eq!(presence.forget("node-b"), vec![], "forgetting twice changes nothing");
    }

    #[test]
    fn a_snapshot_replaces_what_was_known_of_its_node() {
        let presence = Presence::default();
        let (ada, bob) = (member("a", "Ada"), member("b", "Bob"));
        presence.apply("node-b", Report::Entered { room: room("general"), member: ada.clone() });
        let changes =
            presence.apply("node-b", Report::Snapshot { rooms: vec![(room("general"), vec![bob.clone()])] }).changes;
        let mut changes: Vec<String> = changes.iter().map(|change| format!("{change:?}")).collect();
        changes.sort();
        let expected = [Change::Entered(room("general"), bob), Change::Left(room("general"), ada)];
        let mut expected: Vec<String> = expected.iter().map(|change| format!("{change:?}")).collect();
        expected.sort();
        assert_eq!(changes, expected);
    }

    #[test]
    fn local_changes_are_reported_in_order_after_a_snapshot() {
        let presence = Presence::default();
        let (ada, tab) = (member("a", "Ada"), Sid::new());
        presence.join(&room("early"), &ada, Sid::new()).unwrap();
        let (outbox, mut reports) = tokio::sync::mpsc::unbounded_channel();
        presence.publish_to(outbox).unwrap();
        presence.join(&room("general"), &ada, tab).unwrap();
        presence.join(&room("general"), &ada, Sid::new()).unwrap();
        presence.disconnect(tab);
        presence.remove(&room("general"), &ada.id).unwrap();
        let mut sent = Vec::new();
        while let Ok(report) = reports.try_recv() {
            sent.push(report);
        }
        assert_eq!(
            sent,
            vec![
                Report::Snapshot { rooms: vec![(room("early"), vec![ada.clone()])] },
                Report::Entered { room: room("general"), member: ada.clone() },
                Report::Removed { room: room("general"), member: ada.id.clone() },
            ],
            "a second tab and the first tab closing change nothing the other nodes see"
        );
    }

    #[test]
    fn a_removal_elsewhere_takes_the_member_out_here_and_their_late_reports_change_nothing() {
        let presence = Presence::default();
        let (ada, tab) = (member("a", "Ada"), Sid::new());
        presence.join(&room("general"), &ada, tab).unwrap();
        presence.apply("node-b", Report::Entered { room: room("general"), member: ada.clone() });
        let (seen, connections) = presence.removed_elsewhere(&room("general"), &ada.id);
        assert_eq!((seen, connections), (Some(ada.clone()), vec![tab]));
        assert!(!presence.is_in(&room("general"), tab));
        let late = presence.apply("node-b", Report::Left { room: room("general"), member: ada.id.clone() }).changes;
        assert_eq!(late, vec![]);
        assert_eq!(presence.summaries(), vec![]);
    }

    /// Applies every report `node` has queued so far to `to`, as the cluster's listener would.
    fn deliver(reports: &mut tokio::sync::mpsc::UnboundedReceiver<Report>, node: &str, to: &Presence) -> Vec<Applied> {
        std::iter::from_fn(|| reports.try_recv().ok()).map(|report| to.apply(node, report)).collect()
    }

    #[test]
    fn two_people_who_took_one_name_on_two_nodes_at_once_end_with_the_same_one_of_them_on_both() {
        let (node_a, node_b) = (Presence::default(), Presence::default());
        let (outbox_a, mut from_a) = tokio::sync::mpsc::unbounded_channel();
        let (outbox_b, mut from_b) = tokio::sync::mpsc::unbounded_channel();
        node_a.publish_to(outbox_a).unwrap();
        node_b.publish_to(outbox_b).unwrap();
        // Neither node has heard of the other's Ada when its own joins: both let them in.
        let (first, last) = (member("0a", "ada"), member("0b", "Ada"));
        let (tab_a, tab_b) = (Sid::new(), Sid::new());
        node_a.join(&room("general"), &last, tab_a).unwrap();
        node_b.join(&room("general"), &first, tab_b).unwrap();
        node_a.join(&room("general"), &member("0c", "Bob"), Sid::new()).unwrap();

        let at_a = deliver(&mut from_b, "node-b", &node_a);
        let lost: Vec<NameLost> = at_a.iter().flat_map(|applied| applied.names_lost.clone()).collect();
        assert_eq!(lost, vec![NameLost { room: room("general"), member: last.clone(), connections: vec![tab_a] }]);
        assert!(!node_a.is_in(&room("general"), tab_a), "out of the room's traffic here");
        let changes_a: Vec<Change> = at_a.into_iter().flat_map(|applied| applied.changes).collect();
        assert!(changes_a.contains(&Change::Left(room("general"), last.clone())), "{changes_a:?}");
        assert!(changes_a.contains(&Change::Entered(room("general"), first.clone())), "{changes_a:?}");

        // Node B heard of the loser, then of their leaving: nobody there loses anything.
        let at_b = deliver(&mut from_a, "node-a", &node_b);
        assert!(at_b.iter().all(|applied| applied.names_lost.is_empty()), "{at_b:?}");
        for node in [&node_a, &node_b] {
            let names: Vec<String> = node.details()[0].members.iter().map(|m| m.name.as_str().to_owned()).collect();
            assert_eq!(names, ["ada", "Bob"], "the same Ada on both nodes");
        }
        assert!(matches!(node_a.check(&room("general"), &last), Err(JoinRefused::NameInUse { .. })));
    }

    #[test]
    fn a_snapshot_after_a_split_takes_out_only_this_nodes_member_whose_id_sorts_after_the_others() {
        let presence = Presence::default();
        let (kept, tab) = (member("05", "Ada"), Sid::new());
        presence.join(&room("general"), &kept, tab).unwrap();
        let later = Report::Snapshot { rooms: vec![(room("general"), vec![member("09", "ADA")])] };
        assert_eq!(presence.apply("node-b", later).names_lost, vec![]);
        assert!(presence.is_in(&room("general"), tab), "this node's Ada sorts first: node B's is the one to go");

        let earlier = Report::Snapshot { rooms: vec![(room("general"), vec![member("01", "ada")])] };
        let lost = presence.apply("node-c", earlier).names_lost;
        assert_eq!(lost, vec![NameLost { room: room("general"), member: kept, connections: vec![tab] }]);
        assert!(!presence.is_in(&room("general"), tab));
    }

    #[test]
    fn one_member_under_two_names_on_two_nodes_keeps_the_name_that_sorts_first_everywhere() {
        let (node_a, node_b) = (Presence::default(), Presence::default());
        let (tab_a, tab_b) = (Sid::new(), Sid::new());
        node_a.join(&room("general"), &member("0a", "Bea"), tab_a).unwrap();
        node_b.join(&room("general"), &member("0a", "Ada"), tab_b).unwrap();
        let lost_at_a = node_a.apply("node-b", Report::Entered { room: room("general"), member: member("0a", "Ada") });
        let lost_at_b = node_b.apply("node-a", Report::Entered { room: room("general"), member: member("0a", "Bea") });
        assert_eq!(lost_at_a.names_lost.len(), 1, "Bea's tab goes: Ada sorts first");
        assert_eq!(lost_at_a.names_lost[0].connections, vec![tab_a]);
        assert_eq!(lost_at_b.names_lost, vec![]);
        assert!(node_b.is_in(&room("general"), tab_b));
    }
}
