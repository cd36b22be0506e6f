//! The room page, `/r/<room>?name=<name>`. The server renders its frame; once hydrated, the browser connects over
//! Socket.IO (see `crate::live`) and the conversation appears.

use leptos::ev::{KeyboardEvent, SubmitEvent};
use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::{use_params_map, use_query_map};
use protocol::{
    ChatMessage, ClientId, DisplayName, HistoryPage, ImageKind, ImageRef, LeaveReason, Member, MemberChange, MemberId,
    MessageBody, PrivateMessage, RoomName,
};

use crate::urls::{encode_component, join_url};

/// The connection as the page shows it. Only the browser ever leaves `Connecting`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub enum Status {
    Connecting,
    Connected { transport: &'static str },
    Reconnecting { attempt: u32, delay_ms: u64 },
    Offline(String),
}

impl Status {
    pub(crate) fn label(&self) -> String {
        match self {
            Status::Connecting => "Connecting…".to_owned(),
            Status::Connected { transport } => format!("Connected · {transport}"),
            Status::Reconnecting { attempt, delay_ms } => {
                format!("Reconnecting (attempt {attempt}, in {} s)…", protocol::tenths(*delay_ms, 1000))
            }
            Status::Offline(reason) => format!("Offline: {reason}"),
        }
    }

    pub(crate) fn key(&self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Connected { .. } => "connected",
            Status::Reconnecting { .. } => "reconnecting",
            Status::Offline(_) => "offline",
        }
    }
}

/// One line of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Message(ChatMessage),
    Private(PrivateMessage),
    /// "Ada joined", "Ada left": from the server's presence events, never from a person's text.
    Notice {
        key: String,
        text: String,
    },
    /// One of this person's messages the server has not acknowledged yet.
    Pending(Pending),
}

/// A message on its way: shown at once as "sending", "failed" (with a retry button) when it cannot be sent.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub client_id: ClientId,
    pub body: MessageBody,
    /// Why it failed for good, in words; `None` while it is still being sent.
    pub failed: Option<String>,
    /// Attempts that ended without an answer.
    #[serde(default)]
    pub attempts: u32,
    /// The image it shares, if any (`body` is then its caption). Kept in memory only: images are too large for
    /// the browser's storage, so an unsent image does not survive a reload.
    #[serde(skip)]
    pub image: Option<PendingImage>,
}

/// An image on its way, with a local preview of it.
#[derive(Clone)]
pub struct PendingImage {
    pub kind: ImageKind,
    pub bytes: std::sync::Arc<Vec<u8>>,
    /// A `blob:` URL of the picked file, shown until the server's copy replaces it.
    pub preview: String,
}

impl PartialEq for PendingImage {
    fn eq(&self, other: &Self) -> bool {
        // The preview URL is unique to the file read: no need to compare megabytes.
        self.preview == other.preview
    }
}

impl std::fmt::Debug for PendingImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PendingImage({}, {} bytes)", self.kind, self.bytes.len())
    }
}

impl Item {
    fn key(&self) -> String {
        match self {
            Item::Message(message) => message.id.0.clone(),
            Item::Private(message) => format!("p:{}", message.id.0),
            Item::Notice { key, .. } => key.clone(),
            Item::Pending(pending) => format!("c:{}:{}", pending.client_id.as_str(), pending.failed.is_some()),
        }
    }

    /// Its place in the room, for stored messages.
    fn seq(&self) -> Option<u64> {
        match self {
            Item::Message(message) => Some(message.seq),
            _ => None,
        }
    }

    /// What a screen reader says when it arrives.
    fn spoken(&self) -> Option<String> {
        match self {
            Item::Message(message) => Some(format!("{}: {}", message.from.name, message.body)),
            Item::Private(message) => Some(format!("Private from {}: {}", message.from.name, message.body)),
            Item::Notice { text, .. } => Some(text.clone()),
            Item::Pending(_) => None,
        }
    }

    /// Who wrote it, for grouping and for autoscroll after one's own message.
    fn author(&self) -> Option<&Member> {
        match self {
            Item::Message(message) => Some(&message.from),
            Item::Private(message) => Some(&message.from),
            Item::Notice { .. } | Item::Pending(_) => None,
        }
    }
}

/// A member as the sidebar shows them. Someone who left stays listed, offline, until the page is left.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberEntry {
    pub member: Member,
    pub online: bool,
}

/// Presence notices that arrive between (re)connecting and the join's answer: held, and applied after the answer's
/// member list. Applied before it, a departure of someone the list then names (the list was taken a moment
/// earlier) would be undone by it, leaving them shown as present.
#[derive(Default)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub struct HeldPresence(std::cell::Cell<Vec<MemberChange>>);

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
impl HeldPresence {
    /// Keeps `change` for later if the page has not joined yet; otherwise gives it back, to apply now.
    pub fn hold_unless_joined(&self, joined: bool, change: MemberChange) -> Option<MemberChange> {
        if joined {
            return Some(change);
        }
        let mut held = self.0.take();
        held.push(change);
        self.0.set(held);
        None
    }

    /// What was held, oldest first; nothing is held after.
    pub fn release(&self) -> Vec<MemberChange> {
        self.0.take()
    }

    /// Forgets what was held: the connection it came on is gone, and the next join's answer lists the members
    /// as they are then (a departure held from before would mark someone offline who is back).
    pub fn forget(&self) {
        self.0.take();
    }
}

/// Whether `items` show the server's copy of the message this person sent as `client_id`.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn sent_copy_shown(items: &[Item], client_id: &ClientId) -> bool {
    items.iter().any(|item| matches!(item, Item::Message(m) if m.client_id.as_ref() == Some(client_id)))
}

/// Marks `id` offline; says whether they were online until now.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn went_offline(entries: &mut [MemberEntry], id: &MemberId) -> bool {
    let Some(entry) = entries.iter_mut().find(|entry| &entry.member.id == id) else { return false };
    let was_online = std::mem::replace(&mut entry.online, false);
    sort_members(entries);
    was_online
}

/// The reactive state of one open room, shared with the live connection.
#[derive(Clone, Copy)]
pub struct RoomState {
    pub items: RwSignal<Vec<Item>>,
    pub status: RwSignal<Status>,
    /// The server confirmed the join on the current connection: sending is possible.
    pub joined: RwSignal<bool>,
    /// The last problem to show near the composer.
    pub error: RwSignal<Option<String>>,
    /// Who the server says this person is, once joined.
    pub me: RwSignal<Option<Member>>,
    pub members: RwSignal<Vec<MemberEntry>>,
    /// Who is typing, with when their notice expires (milliseconds, the page's clock).
    pub typing: RwSignal<Vec<(Member, f64)>>,
    /// An admin removed this person: the page stops rejoining.
    pub removed: RwSignal<bool>,
    /// The room has messages older than the first one shown.
    pub has_older: RwSignal<bool>,
    /// A page of older messages is on its way.
    pub loading_older: RwSignal<bool>,
    /// Presence notices shown so far: each one's key. Not the time, since a burst's changes all land in the same
    /// millisecond, and a notice whose key is already shown is dropped.
    notices: StoredValue<u64>,
    /// The member list as the last join started it, while its pages are still coming.
    listing: StoredValue<Listing>,
}

/// The pages of a big room's member list, as they come after a join ([`RoomState::joined_as`]).
#[derive(Default)]
struct Listing {
    /// Which join's pages are welcome: a page of an earlier connection's join is no longer true.
    generation: u64,
    /// Who has been seen online since that join began, in its pages or arriving: once the last page is in, the
    /// rest of those listed are offline. `None` once it is complete.
    seen: Option<std::collections::HashSet<MemberId>>,
    /// Who left since that join began (and has not come back): a page the server made before they left may come
    /// after their departure (the answer and the notice travel apart), and must not list them online again.
    departed: std::collections::HashSet<MemberId>,
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
impl RoomState {
    /// The state of a room whose latest messages are `first` (as the server rendered them).
    fn new(first: HistoryPage) -> Self {
        let mut items = Vec::with_capacity(first.messages.len());
        for message in first.messages {
            insert_in_order(&mut items, message);
        }
        Self {
            items: RwSignal::new(items),
            status: RwSignal::new(Status::Connecting),
            joined: RwSignal::new(false),
            error: RwSignal::new(None),
            me: RwSignal::new(None),
            members: RwSignal::new(Vec::new()),
            typing: RwSignal::new(Vec::new()),
            removed: RwSignal::new(false),
            has_older: RwSignal::new(first.has_more),
            loading_older: RwSignal::new(false),
            notices: StoredValue::new(0),
            listing: StoredValue::new(Listing::default()),
        }
    }

    // Every update is a `try_update`: the page may have been left while an event was on its way.

    fn push(&self, item: Item) {
        self.items.try_update(|items| {
            let key = item.key();
            if !items.iter().any(|existing| existing.key() == key) {
                items.push(item);
            }
        });
    }

    /// Adds a message unless it is already shown, in its room's order (`seq`): a replayed message that arrives
    /// after a newer live one still lands in its place. Its author has stopped typing. If it is one of this
    /// person's pending messages (same client id), it takes that one's place.
    pub fn add_message(&self, message: ChatMessage) {
        self.stopped_typing(&message.from.id);
        self.items.try_update(|items| {
            if let Some(client_id) = &message.client_id {
                items.retain(|item| !matches!(item, Item::Pending(p) if &p.client_id == client_id));
            }
            insert_in_order(items, message);
        });
    }

    /// Whether the message this person sent as `client_id` is shown, as the server's copy.
    pub fn shows_sent(&self, client_id: &ClientId) -> bool {
        self.items.try_with_untracked(|items| sent_copy_shown(items, client_id)).unwrap_or(false)
    }

    /// Shows (or updates) a pending message, at the end until it is sent; not if the server's copy is shown
    /// already (a reload's stored outbox can hold a message that reached the server just before).
    pub fn set_pending(&self, pending: Pending) {
        self.items.try_update(|items| {
            if sent_copy_shown(items, &pending.client_id) {
                return;
            }
            match items.iter_mut().find(|item| matches!(item, Item::Pending(p) if p.client_id == pending.client_id)) {
                Some(item) => *item = Item::Pending(pending),
                None => items.push(Item::Pending(pending)),
            }
        });
    }

    /// Whether the server confirmed the join on the current connection; false once the page is gone (tasks and
    /// timers may outlive the room's signals, and reading a disposed signal panics, which kills the WASM).
    pub fn is_joined(&self) -> bool {
        self.joined.try_get_untracked().unwrap_or(false)
    }

    /// Whether the connection is up now (a task of its own keeps `status`); false once the page is gone.
    pub fn online(&self) -> bool {
        self.status.try_with_untracked(|s| matches!(s, Status::Connected { .. })).unwrap_or(false)
    }

    /// What to resume after: the end of the unbroken run of `seq`s from the oldest shown
    /// ([`protocol::resume_point`]), so that a message missed between two shown ones is fetched, not skipped.
    pub fn resume_seq(&self) -> Option<u64> {
        self.items.try_with_untracked(|items| protocol::resume_point(items.iter().filter_map(Item::seq))).flatten()
    }

    /// Where messages are missing among those shown (the `after` to fetch from), if they are: a room's seqs have
    /// no gaps. Like the other reads here it tolerates a page already gone: timers and tasks call it, and may
    /// outlive the room's signals.
    pub fn hole(&self) -> Option<u64> {
        self.items.try_with_untracked(|items| protocol::hole(items.iter().filter_map(Item::seq))).flatten()
    }

    /// Past [`MAX_SHOWN_MESSAGES`], drops the oldest messages (and the notices among them) down to the newest
    /// [`KEEP_SHOWN_MESSAGES`], so that a tab left open in a busy room does not grow for ever; they load again, as
    /// older messages, if the reader scrolls back up. A hundred at a time, not one per new message: each trim
    /// moves the list under the reader (see `on_scroll`). Only for a reader at the end, and not while an older
    /// page is on its way.
    pub fn trim_shown(&self) {
        if self.loading_older.try_get_untracked().unwrap_or(true) {
            return;
        }
        // Subscribers hear of it only when something went.
        let trimmed = self
            .items
            .try_maybe_update(|items| {
                let trimmed = trim_oldest(items, MAX_SHOWN_MESSAGES, KEEP_SHOWN_MESSAGES);
                (trimmed, trimmed)
            })
            .unwrap_or(false);
        if trimmed {
            self.has_older.try_set(true);
        }
    }

    /// The lowest `seq` shown: what older pages load before.
    pub fn first_seq(&self) -> Option<u64> {
        self.items.try_with_untracked(|items| items.iter().filter_map(Item::seq).min()).flatten()
    }

    pub fn add_private(&self, message: PrivateMessage) {
        self.stopped_typing(&message.from.id);
        self.push(Item::Private(message));
    }

    fn notice(&self, text: String) {
        let Some(number) = self.notices.try_update_value(|count| {
            *count += 1;
            *count
        }) else {
            return;
        };
        self.push(Item::Notice { key: format!("notice:{number}"), text });
    }

    /// The join was accepted: these are the members now, all of them unless `complete` is false (a big room,
    /// whose further pages come to [`Self::members_listed`]). Anyone else listed is offline, at once or once the
    /// last page is in ([`Self::members_complete`]). Returns which join the pages belong to.
    pub fn joined_as(&self, me: Member, members: Vec<Member>, complete: bool) -> u64 {
        let everyone: Vec<Member> = std::iter::once(me.clone()).chain(members).collect();
        let seen = everyone.iter().map(|member| member.id.clone()).collect();
        self.me.try_set(Some(me));
        self.list_online(everyone);
        let generation = self
            .listing
            .try_update_value(|listing| {
                listing.generation += 1;
                listing.seen = Some(seen);
                listing.departed.clear();
                listing.generation
            })
            .unwrap_or(0);
        if complete {
            self.members_complete(generation);
        }
        self.joined.try_set(true);
        generation
    }

    /// A further page of the member list of join `generation`: these are online too, but for those who left
    /// since. Returns whether the list still wants pages of that join (a newer join started its own).
    pub fn members_listed(&self, generation: u64, members: Vec<Member>) -> bool {
        let here = self
            .listing
            .try_update_value(|listing| {
                let departed = &listing.departed;
                match listing.seen.as_mut() {
                    Some(seen) if listing.generation == generation => {
                        let here: Vec<Member> =
                            members.into_iter().filter(|member| !departed.contains(&member.id)).collect();
                        seen.extend(here.iter().map(|member| member.id.clone()));
                        Some(here)
                    }
                    _ => None,
                }
            })
            .flatten();
        match here {
            Some(here) => {
                self.list_online(here);
                true
            }
            None => false,
        }
    }

    /// Whether the member list of join `generation` still wants pages.
    pub fn listing(&self, generation: u64) -> bool {
        self.listing
            .try_with_value(|listing| listing.generation == generation && listing.seen.is_some())
            .unwrap_or(false)
    }

    /// The member list of join `generation` is all in: whoever was listed before and has not been seen since is
    /// offline.
    pub fn members_complete(&self, generation: u64) {
        let seen = self
            .listing
            .try_update_value(|listing| if listing.generation == generation { listing.seen.take() } else { None })
            .flatten();
        if let Some(seen) = seen {
            self.members.try_update(|entries| {
                for entry in entries.iter_mut().filter(|entry| !seen.contains(&entry.member.id)) {
                    entry.online = false;
                }
                sort_members(entries);
            });
        }
    }

    /// Marks `members` online, listed under the names they use now.
    fn list_online(&self, members: impl IntoIterator<Item = Member>) {
        self.members.try_update(|entries| {
            // By id: someone who came back under another name is the same person, listed under the name they
            // use now.
            for member in members {
                match entries.iter_mut().find(|entry| entry.member.id == member.id) {
                    Some(entry) => *entry = MemberEntry { member, online: true },
                    None => entries.push(MemberEntry { member, online: true }),
                }
            }
            sort_members(entries);
        });
    }

    pub fn member_joined(&self, member: Member) {
        // Seen online while the list's pages come: the page that would have listed them may be past already.
        self.listing.try_update_value(|listing| {
            if let Some(seen) = listing.seen.as_mut() {
                seen.insert(member.id.clone());
                listing.departed.remove(&member.id);
            }
        });
        let mut announce = false;
        self.members.try_update(|entries| {
            match entries.iter_mut().find(|entry| entry.member.id == member.id) {
                Some(entry) if entry.online => entry.member = member.clone(),
                // Back, perhaps under another name: listed under the one they use now.
                Some(entry) => {
                    *entry = MemberEntry { member: member.clone(), online: true };
                    announce = true;
                }
                None => {
                    entries.push(MemberEntry { member: member.clone(), online: true });
                    announce = true;
                }
            }
            sort_members(entries);
        });
        if announce {
            self.notice(format!("{} joined", member.name));
        }
    }

    pub fn member_left(&self, member: Member, reason: LeaveReason) {
        self.stopped_typing(&member.id);
        self.listing.try_update_value(|listing| {
            if let Some(seen) = listing.seen.as_mut() {
                seen.remove(&member.id);
                listing.departed.insert(member.id.clone());
            }
        });
        let was_here = self.members.try_update(|entries| went_offline(entries, &member.id)).unwrap_or(false);
        // A departure of someone this page never saw here (it waited in a busy room's burst while this page
        // joined) is no news.
        if !was_here {
            return;
        }
        let text = match reason {
            LeaveReason::Removed => format!("{} was removed by an admin", member.name),
            LeaveReason::Left | LeaveReason::Unknown => format!("{} left", member.name),
        };
        self.notice(text);
    }

    /// `member` is typing: show it until `until_ms`, unless it is this person.
    pub fn someone_typing(&self, member: Member, until_ms: f64) {
        if self.me.try_with_untracked(|me| me.as_ref().is_some_and(|me| me.id == member.id)) != Some(false) {
            return;
        }
        self.typing.try_update(|typing| {
            typing.retain(|(who, _)| who.id != member.id);
            typing.push((member, until_ms));
        });
    }

    /// Drops typing notices that expired by `now_ms`.
    pub fn expire_typing(&self, now_ms: f64) {
        self.typing.try_update(|typing| typing.retain(|(_, until)| *until > now_ms));
    }

    fn stopped_typing(&self, member: &MemberId) {
        self.typing.try_update(|typing| typing.retain(|(who, _)| &who.id != member));
    }
}

/// The most room messages a page shows while its reader follows the end (see [`RoomState::trim_shown`]).
pub const MAX_SHOWN_MESSAGES: usize = 600;

/// How many of the newest a trim keeps.
pub const KEEP_SHOWN_MESSAGES: usize = 500;

/// When more than `most` messages are shown, removes everything before the `keep` newest, but private messages:
/// the server does not keep those, so they could not be loaded again. Returns whether anything went.
fn trim_oldest(items: &mut Vec<Item>, most: usize, keep: usize) -> bool {
    let shown = items.iter().filter(|item| matches!(item, Item::Message(_))).count();
    if shown <= most {
        return false;
    }
    let mut to_drop = shown - keep;
    let mut dropping = true;
    items.retain(|item| {
        if !dropping {
            return true;
        }
        match item {
            Item::Private(_) => true,
            Item::Message(_) if to_drop == 0 => {
                dropping = false;
                true
            }
            Item::Message(_) => {
                to_drop -= 1;
                false
            }
            Item::Notice { .. } => false,
            // Pending messages come after every stored one: not reached while dropping.
            Item::Pending(_) => {
                dropping = false;
                true
            }
        }
    });
    true
}

/// Inserts `message` after the last message with a lower `seq` (notices stay where they are), unless a message
/// with its `seq` is already there.
fn insert_in_order(items: &mut Vec<Item>, message: ChatMessage) {
    if items.iter().any(|item| matches!(item, Item::Message(m) if m.seq == message.seq || m.id == message.id)) {
        return;
    }
    let after = items.iter().rposition(|item| matches!(item, Item::Message(m) if m.seq < message.seq));
    let newer_follows = items.iter().any(|item| matches!(item, Item::Message(m) if m.seq > message.seq));
    match (after, newer_follows) {
        // The usual case: the newest message goes at the end, after any notices but before pending messages.
        (_, false) => {
            let at = items.iter().position(|item| matches!(item, Item::Pending(_))).unwrap_or(items.len());
            items.insert(at, Item::Message(message));
        }
        (Some(index), true) => items.insert(index + 1, Item::Message(message)),
        (None, true) => items.insert(0, Item::Message(message)),
    }
}

/// Online first, then by name.
fn sort_members(entries: &mut [MemberEntry]) {
    entries.sort_by_key(|entry| (!entry.online, entry.member.name.as_str().to_lowercase()));
}

/// "Ada is typing…", "Ada and Bob are typing…", and so on, or nothing.
fn typing_line(names: &[DisplayName]) -> Option<String> {
    match names {
        [] => None,
        [one] => Some(format!("{one} is typing…")),
        [one, two] => Some(format!("{one} and {two} are typing…")),
        [one, two, three] => Some(format!("{one}, {two} and {three} are typing…")),
        _ => Some("Several people are typing…".to_owned()),
    }
}

#[component]
pub fn RoomPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let room = Memo::new(move |_| params.read().get("room").and_then(|r| RoomName::parse(&r).ok()));
    let name = Memo::new(move |_| query.read().get("name").and_then(|n| DisplayName::parse(&n).ok()));
    // The room's latest messages, read by the server while it renders. The route renders in `SsrMode::Async`: the
    // HTML waits for them, so that the first paint (and a reader without JavaScript) has the conversation, and the
    // browser gets the same page, with them, to hydrate.
    let reader = crate::directory::LatestMessages::from_context();
    let latest = Resource::new(move || room.get(), move |room| reader.clone().read(room));
    move || match (room.get(), name.get()) {
        // Asked of the server while rendering (the browser never gets a page it would refuse): a name someone else
        // holds here goes back to the form, which says so.
        (Some(room), Some(name)) if crate::directory::join_problem(&room, &name).is_some() => {
            view! { <Redirect path=join_url(&room, &name, Some("name_in_use")) /> }.into_any()
        }
        (Some(room), Some(name)) => view! {
            <Suspense fallback=|| ()>
                {move || {
                    let (room, name) = (room.clone(), name.clone());
                    Suspend::new(async move {
                        let first = latest.await;
                        view! { <ChatRoom room name first /> }
                    })
                }}
            </Suspense>
        }
        .into_any(),
        // No usable name: the join form asks for one, with the room filled in.
        (Some(room), None) => {
            view! { <Redirect path=format!("/?room={}", encode_component(room.as_str())) /> }.into_any()
        }
        (None, _) => view! {
            <main class="page narrow">
                <h1>"No such room"</h1>
                <p>"That is not a valid room name. " <a href="/">"Choose another room"</a> "."</p>
            </main>
        }
        .into_any(),
    }
}

/// Within this many pixels of the end, the reader is "at the bottom" and new messages scroll into view.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const AT_BOTTOM_PX: i32 = 48;

/// Within this many pixels of the top, older messages load.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const LOAD_OLDER_WITHIN_PX: i32 = 200;

#[component]
fn ChatRoom(room: RoomName, name: DisplayName, first: HistoryPage) -> impl IntoView {
    let state = RoomState::new(first);
    let handoff = SharedValue::new(|| crate::directory::handoff_link(&crate::room_url(&room, &name))).into_inner();
    let draft = RwSignal::new(String::new());
    let private_to = RwSignal::new(None::<Member>);
    let list = NodeRef::<leptos::html::Ol>::new();
    let at_bottom = RwSignal::new(true);
    let unread = RwSignal::new(false);
    // The latest arrival in words, in a live region of its own.
    let announcement = RwSignal::new(String::new());
    // While older messages load: how far the reader was from the end, so that they stay where they were reading
    // when the page grows above them.
    let keep_from_end = StoredValue::new(None::<i32>);

    #[cfg(feature = "hydrate")]
    let chat = StoredValue::new(crate::live::Chat::connect(room.clone(), name.clone(), state));

    // Where the list was last scrolled to, by the reader or by the page, and how tall it was then (see
    // `on_scroll`).
    let last_top = StoredValue::new(0);
    let last_height = StoredValue::new(0);
    let remember_position = move |list: &leptos::web_sys::HtmlOListElement| {
        last_top.set_value(list.scroll_top());
        last_height.set_value(list.scroll_height());
    };
    let scroll_to_end = move || {
        if let Some(list) = list.get_untracked() {
            list.set_scroll_top(list.scroll_height());
            remember_position(&list);
        }
        unread.set(false);
    };
    // After each change to the conversation: when something new came last, follow it if the reader was at the end
    // (or just wrote), else offer a button; when older messages came first, keep the reader's place. Effects run
    // after the DOM is updated, and only in the browser: the first run shows the end of the server's history.
    Effect::new(move |previous: Option<Option<String>>| {
        let (last, mine, spoken) = state.items.with(|items| {
            let me = state.me.get_untracked();
            let mine = match items.last() {
                // Written here and not yet stored (perhaps offline): the writer wants to see it go.
                Some(Item::Pending(_)) => true,
                last => {
                    last.and_then(Item::author).is_some_and(|author| Some(&author.id) == me.as_ref().map(|m| &m.id))
                }
            };
            (items.last().map(Item::key), mine, items.last().and_then(Item::spoken))
        });
        match previous {
            None => scroll_to_end(),
            Some(before) if before != last => {
                // Only what is new, and not one's own: the list itself is not a live region, or loading older
                // messages would read a whole page out.
                if !mine && let Some(spoken) = spoken {
                    announcement.set(spoken);
                }
                if at_bottom.get_untracked() || mine {
                    scroll_to_end();
                    // Read at the end: what is far above can go (it loads again on scrolling up). Not from inside
                    // this effect: a change to `items` made while it runs puts it ahead of the list's rendering
                    // for the next change, and it would then scroll before the DOM has the new messages.
                    request_animation_frame(move || state.trim_shown());
                } else {
                    unread.set(true);
                }
            }
            Some(_) => {
                if let (Some(list), Some(from_end)) = (list.get_untracked(), keep_from_end.get_value()) {
                    list.set_scroll_top(list.scroll_height() - from_end);
                    remember_position(&list);
                    keep_from_end.set_value(None);
                } else if at_bottom.get_untracked() {
                    // Something changed above the end (the oldest trimmed, a missed message put in its place):
                    // a reader at the end stays there.
                    scroll_to_end();
                }
            }
        }
        last
    });
    let load_older = move || {
        if !state.has_older.get_untracked() || state.loading_older.get_untracked() {
            return;
        }
        if let Some(list) = list.get_untracked() {
            keep_from_end.set_value(Some(list.scroll_height() - list.scroll_top()));
        }
        #[cfg(feature = "hydrate")]
        chat.with_value(|chat| chat.load_older());
    };
    let on_scroll = move |_| {
        if let Some(list) = list.get_untracked() {
            let (top, height) = (list.scroll_top(), list.scroll_height());
            let bottom = height - top - list.client_height() <= AT_BOTTOM_PX;
            // Only the reader scrolls up. The browser sends the scroll event of the page's own scroll to the end a
            // frame later, and in a busy room more messages may have come below by then: short of the end but
            // further down, the reader is still following, not leaving. Nor when the list got shorter: the
            // oldest messages were trimmed above, and the browser moved up with them. (A reader who does scroll
            // up then is seen at the next event: scrolling sends many.)
            let went_up = top < last_top.get_value() && height >= last_height.get_value();
            remember_position(&list);
            if bottom {
                at_bottom.set(true);
                unread.set(false);
            } else if went_up {
                at_bottom.set(false);
            }
            // Near the top: the next older page comes before the reader reaches the end of this one.
            if list.scroll_top() <= LOAD_OLDER_WITHIN_PX && state.joined.get_untracked() {
                load_older();
            }
        }
    };

    let send = move || {
        let text = draft.get_untracked();
        match MessageBody::parse(&text) {
            Err(error) => state.error.set(Some(error.to_string())),
            Ok(body) => {
                state.error.set(None);
                draft.set(String::new());
                #[cfg(feature = "hydrate")]
                chat.with_value(|chat| match private_to.get_untracked() {
                    Some(to) => chat.send_private(to.id, body, draft),
                    None => chat.send(body),
                });
                #[cfg(not(feature = "hydrate"))]
                let _ = body;
            }
        }
    };
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        send();
    };
    let retry = Callback::new(move |client_id: ClientId| {
        #[cfg(feature = "hydrate")]
        chat.with_value(|chat| chat.retry(client_id));
        #[cfg(not(feature = "hydrate"))]
        let _ = client_id;
    });
    // Enter sends; Shift+Enter starts a new line, as in every chat.
    let on_keydown = move |ev: KeyboardEvent| {
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            send();
        }
    };
    // An image picked, pasted or dropped: checked here first, then shared with the draft (or else the file's name)
    // as its caption.
    #[cfg(feature = "hydrate")]
    let share_file = move |file: web_sys::File| {
        if private_to.get_untracked().is_some() {
            state.error.set(Some("Images go to the whole room: close the private message first.".to_owned()));
            return;
        }
        let draft_text = draft.get_untracked();
        leptos::task::spawn_local(async move {
            let (kind, bytes) = match crate::live::read_image(&file).await {
                Ok(image) => image,
                Err(reason) => {
                    state.error.try_set(Some(reason));
                    return;
                }
            };
            let from_draft = MessageBody::parse(&draft_text).ok();
            if from_draft.is_some() {
                draft.try_set(String::new());
            }
            let caption = from_draft.or_else(|| MessageBody::parse(&file.name()).ok());
            let Some(caption) = caption.or_else(|| MessageBody::parse("image").ok()) else { return };
            let preview = web_sys::Url::create_object_url_with_blob(&file).unwrap_or_default();
            state.error.try_set(None);
            chat.try_with_value(|chat| chat.send_image(kind, bytes, caption, preview));
        });
    };
    let on_pick = move |ev: leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast as _;
            if let Some(input) = ev.target().and_then(|target| target.dyn_into::<web_sys::HtmlInputElement>().ok()) {
                if let Some(file) = input.files().and_then(|files| files.get(0)) {
                    share_file(file);
                }
                // Cleared, so that picking the same file again is a change too.
                input.set_value("");
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    let on_paste = move |ev: leptos::ev::ClipboardEvent| {
        #[cfg(feature = "hydrate")]
        if let Some(file) = ev.clipboard_data().and_then(|data| data.files()).and_then(|files| files.get(0)) {
            // A pasted image is shared; pasted text goes into the draft as usual.
            ev.prevent_default();
            share_file(file);
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    let dragging = RwSignal::new(false);
    let on_dragover = move |ev: leptos::ev::DragEvent| {
        // Without this the browser would open the dropped file itself, leaving the chat.
        ev.prevent_default();
        dragging.set(true);
    };
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        #[cfg(feature = "hydrate")]
        if let Some(file) = ev.data_transfer().and_then(|data| data.files()).and_then(|files| files.get(0)) {
            share_file(file);
        }
    };
    let on_input = move |ev: leptos::ev::Event| {
        draft.set(event_target_value(&ev));
        #[cfg(feature = "hydrate")]
        chat.with_value(|chat| chat.typing());
    };

    let typing = move || {
        let mut names: Vec<DisplayName> = state.typing.read().iter().map(|(member, _)| member.name.clone()).collect();
        // By name, not by who started first: the line does not reshuffle as notices are refreshed.
        names.sort_by_key(|name| name.as_str().to_lowercase());
        typing_line(&names)
    };
    // Choosing someone to write to privately, or going back to the room, puts the cursor where the writing happens
    // (the first run is the page's load, where `autofocus` does it).
    let message_box = NodeRef::<leptos::html::Textarea>::new();
    Effect::new(move |loaded: Option<()>| {
        private_to.track();
        if loaded.is_some()
            && let Some(message_box) = message_box.get_untracked()
        {
            let _ = message_box.focus();
        }
    });
    // Type-erased: the whole page as one static type is too deep for the compiler.
    let composer = view! {
        <form class="composer" on:submit=on_submit>
            {move || private_to.get().map(|to| view! {
                <p class="private-to" data-testid="private-to">
                    "Private to " <strong>{to.name.to_string()}</strong>
                    <button type="button" class="link" aria-label="Back to the room" on:click=move |_| private_to.set(None)>"✕"</button>
                </p>
            })}
            <label for="message" class="visually-hidden">"Message"</label>
            <textarea
                id="message"
                name="message"
                node_ref=message_box
                autofocus=true
                rows="2"
                placeholder="Write a message…"
                prop:value=move || draft.get()
                on:input=on_input
                on:keydown=on_keydown
                on:paste=on_paste
            ></textarea>
            <label class="attach" title="Share an image: pick one, paste one, or drop one on the conversation">
                "Add image"
                <input
                    type="file"
                    class="visually-hidden"
                    accept=ImageKind::ALL.map(ImageKind::content_type).join(",")
                    data-testid="image-input"
                    on:change=on_pick
                />
            </label>
            // Once in the room, the button works offline too (as Enter does): the message waits in the outbox. It
            // is disabled before the first join, and for good after an admin's removal.
            <button type="submit" disabled=move || !(state.joined.get() || (state.me.read().is_some() && !state.removed.get()))>
                "Send"
            </button>
        </form>
    }
    .into_any();
    let room_label = room.to_string();
    view! {
        <main class="page chat">
            <header class="room-header">
                <a class="home" href="/">"Causerie"</a>
                <h1 data-testid="room-name">"#" {room_label}</h1>
                <p class="you">"You are " <strong data-testid="my-name">{name.to_string()}</strong></p>
                <p
                    class="status"
                    data-testid="connection-status"
                    data-state=move || state.status.read().key()
                    role="status"
                >
                    {move || state.status.read().label()}
                </p>
            </header>
            <noscript>
                <p class="notice">"Live chat needs JavaScript. Turn it on to see and send messages."</p>
            </noscript>
            <div class="room-body">
                <div
                    class="conversation"
                    class:dragging=move || dragging.get()
                    data-testid="conversation"
                    on:dragover=on_dragover
                    on:dragleave=move |_| dragging.set(false)
                    on:drop=on_drop
                >
                    <ol class="messages" data-testid="messages" aria-label="Messages" node_ref=list on:scroll=on_scroll>
                        <Show when=move || state.has_older.get()>
                            <li class="older">
                                <button
                                    type="button"
                                    class="link"
                                    data-testid="load-older"
                                    disabled=move || !state.joined.get() || state.loading_older.get()
                                    on:click=move |_| load_older()
                                >
                                    {move || if state.loading_older.get() { "Loading older messages…" } else { "Load older messages" }}
                                </button>
                            </li>
                        </Show>
                        <For each=move || grouped(&state.items.read()) key=|(item, continued)| (item.key(), *continued) let:entry>
                            <Line item=entry.0 continued=entry.1 me=state.me joined=state.joined retry />
                        </For>
                    </ol>
                    <Show when=move || unread.get()>
                        <button type="button" class="new-messages" data-testid="new-messages" on:click=move |_| scroll_to_end()>
                            "New messages ↓"
                        </button>
                    </Show>
                </div>
                <MembersPanel state private_to handoff />
            </div>
            <p class="typing" data-testid="typing" aria-live="polite">{typing}</p>
            <p class="visually-hidden" data-testid="announcement" aria-live="polite">{move || announcement.get()}</p>
            <Show when=move || state.removed.get()>
                <p class="notice" role="alert" data-testid="removed">
                    "An admin removed you from this room. " <a href="/">"Join a room"</a> " again when you are ready."
                </p>
            </Show>
            {composer}
            {move || state.error.get().map(|e| view! { <p class="field-error" role="alert">{e}</p> })}
        </main>
    }
}

/// Who is in the room, online first; a member's button starts a private message to them.
#[component]
fn MembersPanel(state: RoomState, private_to: RwSignal<Option<Member>>, handoff: Option<String>) -> impl IntoView {
    view! {
        <aside class="members" aria-label="Members">
            <h2>
                "Members"
                // Until the join is answered the list is what the page last saw, not the room: no count then.
                {move || {
                    let online = state.members.with(|entries| entries.iter().filter(|entry| entry.online).count());
                    (state.joined.get() && online > 0)
                        .then(|| view! { <span class="count" data-testid="online-count">{format!(" · {online} online")}</span> })
                }}
            </h2>
            <ul data-testid="members">
                <For each=move || state.members.get() key=|entry| (entry.member.id.clone(), entry.online) let:entry>
                    <MemberRow entry me=state.me private_to />
                </For>
            </ul>
            {handoff.map(|link| view! {
                <details class="handoff">
                    <summary>"On another device?"</summary>
                    <p>
                        "Open " <a href=link data-testid="handoff-link" rel="nofollow">"this link"</a>
                        " on your other device to be the same person there. Anyone with it can chat as you: keep it to yourself."
                    </p>
                </details>
            })}
        </aside>
    }
    .into_any()
}

#[component]
fn MemberRow(entry: MemberEntry, me: RwSignal<Option<Member>>, private_to: RwSignal<Option<Member>>) -> impl IntoView {
    let member = entry.member.clone();
    let is_me = {
        let id = member.id.clone();
        move || me.read().as_ref().is_some_and(|me| me.id == id)
    };
    let name = member.name.to_string();
    let pick = {
        let member = member.clone();
        move |_| private_to.set(Some(member.clone()))
    };
    let online = entry.online;
    view! {
        <li class="member" data-testid="member" data-online=online.to_string() class:offline=!online>
            // The dot is for the eyes; screen readers get the same as words (a label on a plain span is ignored).
            <span class="presence" aria-hidden="true"></span>
            <span class="name">{name.clone()}</span>
            <span class="visually-hidden">{if online { ", online" } else { ", offline" }}</span>
            {move || if is_me() {
                view! { <span class="me">" (you)"</span> }.into_any()
            } else if online {
                view! {
                    <button type="button" class="link pm" aria-label=format!("Private message to {name}") on:click=pick.clone()>
                        "Message privately"
                    </button>
                }.into_any()
            } else {
                ().into_any()
            }}
        </li>
    }
}

/// Consecutive messages from one sender within this long are shown as one group, under one name.
const GROUP_WITHIN_MS: i64 = 5 * 60 * 1000;

/// Each line, and whether it continues the previous public message's group.
fn grouped(items: &[Item]) -> Vec<(Item, bool)> {
    let mut previous: Option<&ChatMessage> = None;
    items
        .iter()
        .map(|item| {
            let continued = match item {
                Item::Message(message) => {
                    let continued = previous.is_some_and(|p| {
                        p.from.id == message.from.id && message.sent_at.0 - p.sent_at.0 < GROUP_WITHIN_MS
                    });
                    previous = Some(message);
                    continued
                }
                _ => {
                    previous = None;
                    false
                }
            };
            (item.clone(), continued)
        })
        .collect()
}

#[component]
fn PendingLine(pending: Pending, joined: RwSignal<bool>, retry: Callback<ClientId>) -> impl IntoView {
    let client_id = pending.client_id.clone();
    let state = if pending.failed.is_some() { "failed" } else { "sending" };
    let preview = pending.image.map(|image| {
        view! { <img class="image" src=image.preview alt=pending.body.to_string() data-testid="image" /> }
    });
    view! {
        <li class="message pending" data-testid="message" data-delivery=state>
            {preview}
            <p class="body">{body(pending.body.as_str())}</p>
            {match pending.failed {
                None => view! {
                    <span class="delivery">
                        {move || if joined.get() { "Sending…" } else { "Will be sent when the connection is back" }}
                    </span>
                }.into_any(),
                Some(reason) => view! {
                    <span class="delivery failed" role="alert">"Not sent: " {reason} " "
                        <button type="button" class="link" on:click=move |_| retry.run(client_id.clone())>"Retry"</button>
                    </span>
                }.into_any(),
            }}
        </li>
    }
}

#[component]
fn Line(
    item: Item,
    continued: bool,
    me: RwSignal<Option<Member>>,
    joined: RwSignal<bool>,
    retry: Callback<ClientId>,
) -> impl IntoView {
    match item {
        Item::Message(message) => {
            let image = message.image.map(|image| image_view(image, message.body.to_string()));
            view! {
                <li class="message" class:continued=continued data-testid="message">
                    <span class="from">{message.from.name.to_string()}</span>
                    {sent_time(message.sent_at.0)}
                    {image}
                    <p class="body">{body(message.body.as_str())}</p>
                </li>
            }
            .into_any()
        }
        Item::Private(message) => {
            let outgoing = me.get_untracked().is_some_and(|me| me.id == message.from.id);
            let label = if outgoing {
                format!("Private to {}", message.to.name)
            } else {
                format!("Private from {}", message.from.name)
            };
            view! {
                <li class="message private" data-testid="message" data-private="true">
                    <span class="from">{message.from.name.to_string()}</span>
                    {sent_time(message.sent_at.0)}
                    <span class="private-label">{label}</span>
                    <p class="body">{body(message.body.as_str())}</p>
                </li>
            }
            .into_any()
        }
        Item::Notice { text, .. } => view! { <li class="system-notice" data-testid="notice">{text}</li> }.into_any(),
        Item::Pending(pending) => view! { <PendingLine pending joined retry /> }.into_any(),
    }
}

/// Images show within this box (CSS pixels), never larger than they are.
const IMAGE_BOX: (u32, u32) = (360, 270);

/// The size to show a `width` × `height` image at: within [`IMAGE_BOX`], in proportion.
fn fitted(width: u32, height: u32) -> (u32, u32) {
    let scale =
        f64::min(1.0, f64::min(IMAGE_BOX.0 as f64 / width.max(1) as f64, IMAGE_BOX.1 as f64 / height.max(1) as f64));
    ((width as f64 * scale).round().max(1.0) as u32, (height as f64 * scale).round().max(1.0) as u32)
}

/// A shared image, inline at a size known before it loads (so the conversation does not jump), opening whole
/// in a new tab.
fn image_view(image: ImageRef, caption: String) -> impl IntoView + use<> {
    let (width, height) = fitted(image.width, image.height);
    let (src, href) = (image.url.clone(), image.url);
    view! {
        <a class="image-link" href=href target="_blank" rel="noopener">
            <img
                class="image"
                src=src
                alt=caption
                width=width
                height=height
                loading="lazy"
                decoding="async"
                data-testid="image"
            />
        </a>
    }
}

/// A message's text, with its web links made clickable and everything else kept as text.
fn body(text: &str) -> impl IntoView + use<> {
    crate::text::segments(text)
        .into_iter()
        .map(|segment| match segment {
            crate::text::Segment::Text(text) => text.into_any(),
            crate::text::Segment::Link(url) => {
                let label = url.clone();
                view! { <a href=url target="_blank" rel="noopener noreferrer nofollow ugc">{label}</a> }.into_any()
            }
        })
        .collect_view()
}

/// When a message was sent, as `HH:MM` in the reader's time zone.
///
/// The server does not know that zone, so it renders UTC, and hydration keeps server-rendered text as it is: the
/// local time is set just after (an effect runs in the browser only, before the next paint). Rows made in the
/// browser take the same path, so history and live messages always agree.
fn sent_time(unix_ms: i64) -> impl IntoView {
    let shown = RwSignal::new(utc_clock(unix_ms));
    Effect::new(move |_| shown.set(local_clock(unix_ms)));
    view! { <time datetime=iso_minute(unix_ms)>{move || shown.get()}</time> }
}

/// `HH:MM` in UTC.
fn utc_clock(unix_ms: i64) -> String {
    let minutes = unix_ms.div_euclid(60_000).rem_euclid(24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `HH:MM` in the browser's time zone.
fn local_clock(unix_ms: i64) -> String {
    #[cfg(feature = "hydrate")]
    {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(unix_ms as f64));
        format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
    }
    #[cfg(not(feature = "hydrate"))]
    utc_clock(unix_ms)
}

/// `YYYY-MM-DDTHH:MMZ`, the machine-readable form of a `<time>` element.
fn iso_minute(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{}Z", utc_clock(unix_ms))
}

#[cfg(test)]
mod tests {
    use protocol::{MessageId, UnixMillis};

    use super::*;

    #[test]
    fn a_message_time_is_written_in_utc_for_machines_whatever_the_day() {
        assert_eq!(iso_minute(0), "1970-01-01T00:00Z");
        assert_eq!(iso_minute(951_782_400_000), "2000-02-29T00:00Z");
        assert_eq!(iso_minute(1_796_158_859_000), "2026-12-01T21:00Z");
        assert_eq!(iso_minute(-60_000), "1969-12-31T23:59Z");
    }

    fn message(id: &str, from: &str, at_ms: i64) -> Item {
        Item::Message(ChatMessage {
            id: MessageId(id.into()),
            room: RoomName::parse("r").unwrap(),
            from: Member { id: MemberId(from.to_lowercase()), name: DisplayName::parse(from).unwrap() },
            body: MessageBody::parse("hi").unwrap(),
            sent_at: UnixMillis(at_ms),
            seq: id.parse().unwrap_or(0),
            client_id: None,
            image: None,
        })
    }

    #[test]
    fn consecutive_messages_from_one_sender_are_grouped_within_five_minutes() {
        let messages = [
            message("1", "Ada", 0),
            message("2", "Ada", 60_000),
            message("3", "Bob", 61_000),
            message("4", "Bob", 61_000 + GROUP_WITHIN_MS),
        ];
        let flags: Vec<bool> = grouped(&messages).into_iter().map(|(_, continued)| continued).collect();
        assert_eq!(flags, vec![false, true, false, false]);
    }

    #[test]
    fn a_notice_breaks_a_group() {
        let items = [
            message("1", "Ada", 0),
            Item::Notice { key: "n".into(), text: "Bob joined".into() },
            message("2", "Ada", 1000),
        ];
        let flags: Vec<bool> = grouped(&items).into_iter().map(|(_, continued)| continued).collect();
        assert_eq!(flags, vec![false, false, false]);
    }

    #[test]
    fn the_typing_line_names_up_to_three_people() {
        let names = |list: &[&str]| list.iter().map(|n| DisplayName::parse(n).unwrap()).collect::<Vec<_>>();
        assert_eq!(typing_line(&names(&[])), None);
        assert_eq!(typing_line(&names(&["Ada"])).unwrap(), "Ada is typing…");
        assert_eq!(typing_line(&names(&["Ada", "Bob"])).unwrap(), "Ada and Bob are typing…");
        assert_eq!(typing_line(&names(&["Ada", "Bob", "Cy"])).unwrap(), "Ada, Bob and Cy are typing…");
        assert_eq!(typing_line(&names(&["A", "B", "C", "D"])).unwrap(), "Several people are typing…");
    }

    fn seqs(items: &[Item]) -> Vec<u64> {
        items.iter().filter_map(|item| if let Item::Message(m) = item { Some(m.seq) } else { None }).collect()
    }

    fn chat(item: Item) -> ChatMessage {
        match item {
            Item::Message(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn images_are_shown_within_the_box_in_proportion_and_never_enlarged() {
        assert_eq!(fitted(720, 270), (360, 135));
        assert_eq!(fitted(100, 1000), (27, 270));
        assert_eq!(fitted(40, 30), (40, 30));
        assert_eq!(fitted(0, 0), (1, 1));
    }

    #[test]
    fn someone_who_joins_leaves_and_joins_again_in_one_burst_gets_three_notices() {
        // Signals live in their owner's arena (server builds keep one per request).
        Owner::new_root(None).with(|| {
            let ada = Member { id: MemberId("ada".into()), name: DisplayName::parse("Ada").unwrap() };
            let me = Member { id: MemberId("bob".into()), name: DisplayName::parse("Bob").unwrap() };
            let state = RoomState::new(HistoryPage { messages: Vec::new(), has_more: false });
            state.joined_as(me.clone(), vec![me], true);
            // One event's changes are applied one after the other, within the same millisecond.
            state.member_joined(ada.clone());
            state.member_left(ada.clone(), LeaveReason::Left);
            state.member_joined(ada);
            let notices: Vec<String> = state
                .items
                .get_untracked()
                .into_iter()
                .filter_map(|item| match item {
                    Item::Notice { text, .. } => Some(text),
                    _ => None,
                })
                .collect();
            assert_eq!(notices, ["Ada joined", "Ada left", "Ada joined"]);
            let online: Vec<bool> = state.members.get_untracked().iter().map(|entry| entry.online).collect();
            assert_eq!(online, [true, true], "Ada and Bob are both here");
        });
    }

    #[test]
    fn presence_notices_before_the_join_answer_wait_for_it_in_order() {
        let ada = Member { id: MemberId("ada".into()), name: DisplayName::parse("Ada").unwrap() };
        let held = HeldPresence::default();
        let joined = MemberChange::Joined { member: ada.clone() };
        let left = MemberChange::Left { member: ada.clone(), reason: LeaveReason::Left };
        assert_eq!(held.hold_unless_joined(false, joined.clone()), None);
        assert_eq!(held.hold_unless_joined(false, left.clone()), None);
        assert_eq!(held.release(), vec![joined, left.clone()]);
        assert_eq!(held.release(), vec![], "released once");
        assert_eq!(held.hold_unless_joined(true, left.clone()), Some(left), "once joined, applied at once");
    }

    #[test]
    fn someone_back_under_another_name_is_listed_once_under_the_new_one_and_online() {
        Owner::new_root(None).with(|| {
            let ada = Member { id: MemberId("ada".into()), name: DisplayName::parse("Ada").unwrap() };
            let renamed = Member { id: ada.id.clone(), name: DisplayName::parse("Ada2").unwrap() };
            let me = Member { id: MemberId("bob".into()), name: DisplayName::parse("Bob").unwrap() };
            let state = RoomState::new(HistoryPage { messages: Vec::new(), has_more: false });
            let listed = || -> Vec<(String, bool)> {
                let entries = state.members.get_untracked();
                entries.iter().map(|entry| (entry.member.name.as_str().to_owned(), entry.online)).collect()
            };
            state.joined_as(me.clone(), vec![me.clone(), ada.clone()], true);
            state.member_left(ada, LeaveReason::Left);
            state.member_joined(renamed.clone());
            assert_eq!(listed(), [("Ada2".to_owned(), true), ("Bob".to_owned(), true)]);

            // This page's next join (after a reconnection) lists her under the new name: still online.
            state.joined_as(me.clone(), vec![me, renamed], true);
            assert_eq!(listed(), [("Ada2".to_owned(), true), ("Bob".to_owned(), true)]);
        });
    }

    #[test]
    fn a_big_rooms_list_fills_page_by_page_and_whoever_no_page_listed_goes_offline_at_the_end() {
        Owner::new_root(None).with(|| {
            let person = |id: &str| Member { id: MemberId(id.into()), name: DisplayName::parse(id).unwrap() };
            let state = RoomState::new(HistoryPage { messages: Vec::new(), has_more: false });
            let online = || -> Vec<(String, bool)> {
                let mut entries: Vec<(String, bool)> = state
                    .members
                    .get_untracked()
                    .iter()
                    .map(|entry| (entry.member.id.0.clone(), entry.online))
                    .collect();
                entries.sort();
                entries
            };
            let yes = |id: &str| (id.to_owned(), true);
            let no = |id: &str| (id.to_owned(), false);
            // A first connection saw Ada, Bob and Cy.
            state.joined_as(person("me"), vec![person("ada"), person("bob"), person("cy")], true);
            // After a reconnection the join brings a first page; the others stay as they were until the end.
            let listing = state.joined_as(person("me"), vec![person("ada")], false);
            assert_eq!(online(), [yes("ada"), yes("bob"), yes("cy"), yes("me")]);
            // Dan arrives while the pages come: the page that would have listed him may be past already.
            state.member_joined(person("dan"));
            assert!(state.members_listed(listing, vec![person("bob"), person("eve")]));
            // Fay's departure overtakes the page the server made while she was still here.
            state.member_joined(person("fay"));
            state.member_left(person("fay"), LeaveReason::Left);
            assert!(state.members_listed(listing, vec![person("fay")]));
            // A page of an earlier join is no longer true.
            assert!(!state.members_listed(listing - 1, vec![person("cy")]));
            assert!(state.listing(listing));
            state.members_complete(listing);
            assert!(!state.listing(listing), "complete");
            assert_eq!(online(), [yes("ada"), yes("bob"), no("cy"), yes("dan"), yes("eve"), no("fay"), yes("me")]);
        });
    }

    #[test]
    fn presence_held_for_a_join_is_forgotten_with_its_connection() {
        let ada = Member { id: MemberId("ada".into()), name: DisplayName::parse("Ada").unwrap() };
        let held = HeldPresence::default();
        let left = MemberChange::Left { member: ada, reason: LeaveReason::Left };
        assert_eq!(held.hold_unless_joined(false, left), None);
        held.forget();
        assert_eq!(held.release(), vec![]);
    }

    #[test]
    fn only_someone_online_here_can_go_offline() {
        let ada = Member { id: MemberId("ada".into()), name: DisplayName::parse("Ada").unwrap() };
        let mut entries = vec![MemberEntry { member: ada.clone(), online: true }];
        assert!(went_offline(&mut entries, &ada.id));
        assert!(!entries[0].online);
        assert!(!went_offline(&mut entries, &ada.id), "already offline");
        assert!(!went_offline(&mut entries, &MemberId("bob".into())), "never here");
    }

    #[test]
    fn a_long_conversation_keeps_its_newest_messages_its_private_ones_and_what_is_pending() {
        let notice = |key: &str| Item::Notice { key: key.into(), text: key.into() };
        let ChatMessage { id, room, from, body, sent_at, .. } = chat(message("p1", "Bob", 0));
        let private = Item::Private(PrivateMessage { id, room, to: from.clone(), from, body, sent_at });
        let pending = Item::Pending(Pending {
            client_id: ClientId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            body: MessageBody::parse("on its way").unwrap(),
            failed: None,
            attempts: 0,
            image: None,
        });
        let mut items = vec![notice("a"), message("1", "Ada", 0), private.clone(), notice("b"), message("2", "Ada", 0)];
        items.extend([message("3", "Ada", 0), notice("c"), message("4", "Ada", 0), pending.clone()]);
        assert!(!trim_oldest(&mut items, 4, 2), "nothing over the limit");
        assert_eq!(items.len(), 9);

        assert!(trim_oldest(&mut items, 3, 2));
        assert_eq!(seqs(&items), vec![3, 4]);
        assert_eq!(items.first(), Some(&private), "kept: it could not be loaded again");
        assert_eq!(items.iter().filter(|item| matches!(item, Item::Notice { .. })).count(), 1, "only the one after 3");
        assert_eq!(items.last(), Some(&pending));
    }

    #[test]
    fn messages_are_shown_in_room_order_once_whatever_order_they_arrive_in() {
        let mut items = Vec::new();
        for seq in ["1", "3", "2", "3", "5", "4", "1"] {
            insert_in_order(&mut items, chat(message(seq, "Ada", 0)));
        }
        assert_eq!(seqs(&items), vec![1, 2, 3, 4, 5]);
    }
}
