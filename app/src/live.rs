//! The live connections, in the browser only: Socket.IO clients from `sio-client`, wired to the pages' signals.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::{Either, select};
use leptos::prelude::*;
use leptos::task::spawn_local;
use protocol::{
    ADMIN_NAMESPACE, AdminAuth, CHAT_NAMESPACE, ChatAuth, ChatMessage, ClientId, DisplayName, ErrorCode, HistoryFrom,
    ImageKind, JoinRoom, LOBBY_NAMESPACE, ListMembers, LoadHistory, MemberChange, MemberId, MessageBody, NameTaken,
    PresenceChanged, PrivateMessage, RemoveMember, Removed, RoomName, RoomSummary, RoomsSnapshot, SendImage,
    SendMessage, SendPrivate, Stats, Typing, TypingNotice,
};
use sio_client::{AckError, Client, ConnectionState, RequestError, Socket, SocketEvent};

use crate::pages::{AdminState, HeldPresence, Pending, PendingImage, RoomState, Status};

/// A message that got no answer this many times in a row shows as failed, with a retry button.
const MAX_ATTEMPTS: u32 = 3;

/// A message refused for a moment (`rate_limited`, `internal`) goes again after 1 s, then 2, 4 and 8 (15 s in
/// all), before it shows as failed.
const MOMENT_RETRIES: u32 = 4;

/// This tab's unacknowledged messages to one room, in order, mirrored in the browser's `localStorage` so that a
/// reload (or a crash) keeps them. Each keeps its client id for good: however often it is sent, the server stores
/// it once. Every tab of the room shares the stored list: each writes back the others' entries as it finds them.
#[derive(Clone)]
struct Outbox {
    room: RoomName,
    state: RoomState,
    entries: Arc<std::sync::Mutex<Vec<Pending>>>,
    /// What this tab has had acknowledged: gone from the stored list for good, whoever else still lists it.
    /// A list, not a set: one id per message this tab sent, few for a page's life, and a set's code would cost
    /// the page's download more.
    delivered: Arc<std::sync::Mutex<Vec<ClientId>>>,
    /// One flush at a time, so that messages go out in order.
    flushing: Arc<std::sync::atomic::AtomicBool>,
}

impl Outbox {
    fn key(room: &RoomName) -> String {
        format!("causerie.outbox.{}", room.as_str())
    }

    fn storage() -> Option<web_sys::Storage> {
        window().local_storage().ok().flatten()
    }

    /// What the room's stored outbox holds now (every tab's).
    fn stored(storage: &web_sys::Storage, room: &RoomName) -> Vec<Pending> {
        storage
            .get_item(&Self::key(room))
            .ok()
            .flatten()
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default()
    }

    /// The outbox left by an earlier page of this room, shown at once as pending.
    fn load(room: RoomName, state: RoomState) -> Self {
        let entries: Vec<Pending> = Self::storage().map(|storage| Self::stored(&storage, &room)).unwrap_or_default();
        // Shown once the page is hydrated: the server rendered no pending messages, and hydration must find exactly
        // what it rendered.
        let restored = entries.clone();
        let outbox = Self {
            room,
            state,
            entries: Arc::new(std::sync::Mutex::new(entries)),
            delivered: Default::default(),
            flushing: Default::default(),
        };
        let settling = outbox.clone();
        Effect::new(move |_| {
            for pending in &restored {
                // Stored just before the page went away, and answered by the server then: the rendered history
                // shows it, so it is done, not pending.
                if state.shows_sent(&pending.client_id) {
                    settling.sent(&pending.client_id);
                } else {
                    state.set_pending(pending.clone());
                }
            }
        });
        outbox
    }

    /// Marks as sent what this outbox holds among `messages` (the server's history): the server has them, so
    /// they need not go again.
    fn settle(&self, messages: &[ChatMessage]) {
        for client_id in messages.iter().filter_map(|m| m.client_id.as_ref()) {
            self.sent_elsewhere(client_id);
        }
    }

    /// Runs `change` on the entries, then saves them and returns what `change` returned.
    fn update<T>(&self, change: impl FnOnce(&mut Vec<Pending>) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = change(&mut entries);
        if let Some(storage) = Self::storage() {
            // Another tab of this room may have stored messages since: theirs stay as they are now, ours are
            // written as this tab holds them. (localStorage has no transactions; tabs writing in the same instant
            // can still lose one write, which the writer's tab keeps in memory and sends.)
            let delivered = self.delivered.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let ours = |id: &ClientId| entries.iter().any(|p| &p.client_id == id);
            let theirs: Vec<Pending> = Self::stored(&storage, &self.room)
                .into_iter()
                .filter(|p| !ours(&p.client_id) && !delivered.contains(&p.client_id))
                .collect();
            // Images stay in memory: they would not fit in the browser's storage.
            let kept: Vec<&Pending> =
                theirs.iter().chain(entries.iter().filter(|pending| pending.image.is_none())).collect();
            let saved = match serde_json::to_string(&kept) {
                Ok(json) if kept.is_empty() => storage.remove_item(&Self::key(&self.room)).map(|_| json),
                Ok(json) => storage.set_item(&Self::key(&self.room), &json).map(|_| json),
                Err(e) => Ok(e.to_string()),
            };
            if saved.is_err() {
                leptos::logging::warn!("the outbox could not be saved in localStorage");
            }
        }
        result
    }

    fn push(&self, pending: Pending) {
        self.state.set_pending(pending.clone());
        self.update(|entries| entries.push(pending));
    }

    fn first_unsent(&self) -> Option<Pending> {
        // A read: no need to write the outbox back to storage.
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.iter().find(|p| p.failed.is_none()).cloned()
    }

    fn sent(&self, client_id: &ClientId) {
        self.delivered.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(client_id.clone());
        let previews: Vec<String> = self.update(|entries| {
            let (gone, kept) = std::mem::take(entries).into_iter().partition(|p| &p.client_id == client_id);
            *entries = kept;
            gone.into_iter().filter_map(|p: Pending| p.image.map(|image| image.preview)).collect()
        });
        // The server's copy replaces an image's local preview: the browser can let go of the file it kept for it.
        for url in previews {
            if web_sys::Url::revoke_object_url(&url).is_err() {
                leptos::logging::warn!("an image preview could not be released");
            }
        }
    }

    /// [`Outbox::sent`], if this tab holds that message (one of this person's other tabs delivered it); says
    /// whether it did.
    fn sent_elsewhere(&self, client_id: &ClientId) -> bool {
        let held = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .any(|p| &p.client_id == client_id);
        if held {
            self.sent(client_id);
        }
        held
    }

    fn change(&self, client_id: &ClientId, how: impl FnOnce(&mut Pending)) {
        let changed = self.update(|entries| {
            entries.iter_mut().find(|p| &p.client_id == client_id).map(|pending| {
                how(pending);
                pending.clone()
            })
        });
        if let Some(pending) = changed {
            self.state.set_pending(pending);
        }
    }

    /// Sends the unsent messages, oldest first, while the room is joined. Stops at the first one that gets no
    /// answer for good; the next join (after a reconnection) calls this again.
    fn flush(&self, socket: Socket) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.flushing.swap(true, SeqCst) {
            return;
        }
        let outbox = self.clone();
        spawn_local(async move {
            // How often the message at the head has been refused for a moment, in this flush.
            let mut refused: Option<(ClientId, u32)> = None;
            while outbox.state.is_joined() {
                let Some(next) = outbox.first_unsent() else { break };
                let answer = match &next.image {
                    None => {
                        let request = SendMessage {
                            room: outbox.room.clone(),
                            body: next.body.clone(),
                            client_id: Some(next.client_id.clone()),
                        };
                        socket.request(&request, REQUEST_TIMEOUT).await
                    }
                    Some(image) => {
                        let request = SendImage {
                            room: outbox.room.clone(),
                            content_type: image.kind,
                            caption: next.body.clone(),
                            client_id: Some(next.client_id.clone()),
                        };
                        socket.request_with_binary(&request, image.bytes.to_vec(), IMAGE_TIMEOUT).await
                    }
                };
                match answer {
                    Ok(accepted) => {
                        outbox.sent(&next.client_id);
                        outbox.state.add_message(accepted.message);
                        outbox.state.error.try_set(None);
                    }
                    // The connection was replaced before this send: the rejoin flushes again.
                    Err(RequestError::Rejected(error)) if error.code == ErrorCode::NotInRoom => break,
                    // Too fast for the server's limit (messages written offline all go at once when the page is
                    // back), or a moment's trouble there: the same message goes again after a pause, and the later
                    // ones wait behind it so that the room gets them in the order they were written.
                    Err(RequestError::Rejected(error))
                        if matches!(error.code, ErrorCode::RateLimited | ErrorCode::Internal) =>
                    {
                        let times = match &refused {
                            Some((id, times)) if id == &next.client_id => times + 1,
                            _ => 1,
                        };
                        refused = Some((next.client_id.clone(), times));
                        if times > MOMENT_RETRIES {
                            outbox.change(&next.client_id, |pending| pending.failed = Some(error.message));
                            continue;
                        }
                        let wait = Duration::from_secs(1 << (times - 1));
                        let note = format!("{} It goes again on its own in {} s.", error.message, wait.as_secs());
                        outbox.state.error.try_set(Some(note));
                        pause(wait).await;
                    }
                    // The server will not take it as it is: say why, and let the person retry.
                    Err(RequestError::Rejected(error)) => {
                        outbox.change(&next.client_id, |pending| pending.failed = Some(error.message));
                    }
                    // No answer in time: the same client id goes again (the server keeps one copy whatever
                    // happened to the earlier attempts), up to a point.
                    Err(RequestError::Ack(AckError::Timeout)) => {
                        outbox.change(&next.client_id, |pending| {
                            pending.attempts += 1;
                            if pending.attempts >= MAX_ATTEMPTS {
                                pending.failed = Some("the server did not answer. Check your connection.".to_owned());
                            }
                        });
                    }
                    // The connection went away: the rejoin after the reconnection flushes again.
                    Err(RequestError::Ack(AckError::Closed | AckError::Emit(_))) => break,
                    Err(RequestError::Ack(e)) => {
                        outbox.change(&next.client_id, |pending| pending.failed = Some(e.to_string()));
                    }
                }
            }
            outbox.flushing.store(false, SeqCst);
        });
    }
}

/// How long a request may wait for the server's acknowledgement.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The first wait before a failed join is tried again, and the longest.
const JOIN_RETRY_FIRST: Duration = Duration::from_secs(2);
const JOIN_RETRY_MAX: Duration = Duration::from_secs(30);

/// Whether a join refused this way may work a little later.
fn join_worth_retrying(error: &RequestError) -> bool {
    match error {
        RequestError::Ack(AckError::Timeout) => true,
        // `rate_limited` on a join is the reading budget (a page holds one room, never the 16-room cap).
        RequestError::Rejected(error) => matches!(error.code, ErrorCode::Internal | ErrorCode::RateLimited),
        _ => false,
    }
}

/// Waits `duration` without blocking the page.
async fn pause(duration: Duration) {
    let (done, wait) = futures::channel::oneshot::channel::<()>();
    set_timeout(
        move || {
            let _ = done.send(());
        },
        duration,
    );
    let _ = wait.await;
}

/// How long an image may take to upload and be acknowledged: megabytes take a while on a slow link.
const IMAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads a file the person picked, pasted or dropped, and checks it as an image (type, size, contents) before
/// anything is sent, so that a refusal is explained at once, in the same words the server would use.
pub async fn read_image(file: &web_sys::File) -> Result<(ImageKind, Vec<u8>), String> {
    let not_an_image = || format!("“{}” is not a PNG, JPEG, GIF or WebP image.", file.name());
    let kind = ImageKind::from_content_type(&file.type_()).map_err(|_| not_an_image())?;
    protocol::check_image_size(file.size() as usize).map_err(|e| e.to_string())?;
    let buffer = wasm_bindgen_futures::JsFuture::from(file.array_buffer())
        .await
        .map_err(|_| format!("“{}” could not be read.", file.name()))?;
    let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
    protocol::check_image(kind, &bytes).map_err(|e| e.to_string())?;
    Ok((kind, bytes))
}

fn status_of(state: &ConnectionState) -> Status {
    match state {
        ConnectionState::Connecting => Status::Connecting,
        ConnectionState::Connected { transport } => Status::Connected { transport: transport.as_str() },
        ConnectionState::Reconnecting { attempt, delay } => {
            Status::Reconnecting { attempt: *attempt, delay_ms: delay.as_millis() as u64 }
        }
        ConnectionState::Disconnected { reason } => Status::Offline(reason.to_string()),
    }
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// `performance.now()`: milliseconds since the page started, on a clock that never goes back.
    #[wasm_bindgen(catch, js_namespace = performance, js_name = now)]
    fn performance_now() -> Result<f64, wasm_bindgen::JsValue>;
}

/// The page's clock, in milliseconds: monotonic, so that setting the system's time neither hides someone's typing
/// at once nor shows it for as long as the jump. (Only the wall clock where `performance` is missing.)
fn now_ms() -> f64 {
    performance_now().unwrap_or_else(|_| js_sys::Date::now())
}

/// `typing_sent_at` when this tab has not said it was typing since its last message: long enough ago on any clock
/// (`performance.now()` starts near 0 when the page opens, so 0 would hold back the first few seconds' notice).
const NEVER: f64 = f64::NEG_INFINITY;

/// A fresh id for a message this tab sends (see `SendMessage::client_id`): 128 random bits from the browser.
fn client_id() -> protocol::ClientId {
    let random = || (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
    let text = format!("{:08x}{:08x}{:08x}{:08x}", random(), random(), random(), random());
    // 32 hex digits always make a valid client id.
    protocol::ClientId::parse(&text).unwrap_or_else(|_| unreachable!("32 hex digits are a valid client id"))
}

/// A client to this page's own server, or why there cannot be one.
fn client() -> Result<Client, String> {
    let origin = window().location().origin().map_err(|_| "this page has no origin to connect to".to_owned())?;
    // A page that has upgraded once comes back over WebSocket at once after a drop or a server restart, without
    // polling first; if WebSockets are blocked by then, the client falls back to long-polling within the same
    // attempt and polls first from then on (`ClientBuilder::remember_upgrade`).
    Ok(Client::builder(origin).remember_upgrade(true).connect())
}

/// Mirrors the connection's state into `status` until the page is gone.
fn watch_status(client: &Client, status: RwSignal<Status>) {
    let mut states = client.state_changes();
    spawn_local(async move {
        while let Some(connection) = states.next().await {
            // `try_set` gives the value back once the page is gone: then stop listening.
            if status.try_set(status_of(&connection)).is_some() {
                break;
            }
        }
    });
}

/// A presence notice as it arrives: shown now once the room is joined, else held for the join's answer.
fn presence_notice(state: RoomState, held: &HeldPresence, change: MemberChange) {
    if let Some(change) = held.hold_unless_joined(state.is_joined(), change) {
        apply_presence(state, change);
    }
}

/// Shows an arrival or a departure in the room.
fn apply_presence(state: RoomState, change: MemberChange) {
    match change {
        MemberChange::Joined { member } => state.member_joined(member),
        MemberChange::Left { member, reason } => state.member_left(member, reason),
        MemberChange::Unknown => {}
    }
}

/// Runs `apply` on every `E` the socket receives, until the stream ends (the page closed the client).
fn on_each<E: protocol::Event + 'static>(socket: &Socket, mut apply: impl FnMut(E) + 'static) {
    let mut incoming = socket.on::<E>();
    spawn_local(async move {
        while let Some(event) = incoming.next().await {
            apply(event);
        }
    });
}

/// How long a hole among a room's messages may last before the page fetches what is missing.
const HOLE_GRACE: Duration = Duration::from_millis(300);

/// Loads the rest of what was missed, page by page, after the join brought the first of it (up to `after`: at most
/// [`protocol::Joined::MAX_HISTORY`] messages and [`protocol::HistoryPage::MAX_BYTES`]). It pages from its own
/// cursor, not from the newest message shown: live messages keep arriving meanwhile, and paging after them would
/// skip the gap.
async fn catch_up(socket: &Socket, room: &RoomName, state: RoomState, outbox: &Outbox, mut after: u64) {
    loop {
        let request = LoadHistory { room: room.clone(), from: HistoryFrom::After(after) };
        match socket.request(&request, REQUEST_TIMEOUT).await {
            Ok(page) => {
                let Some(last) = page.messages.last().map(|m| m.seq) else { return };
                after = last;
                outbox.settle(&page.messages);
                for message in page.messages {
                    state.add_message(message);
                }
                if !page.has_more {
                    return;
                }
            }
            // The reading budget (shared by this person's tabs) is spent for now: go on once it has refilled a
            // little, while still in the room, rather than leave the gap for good.
            // (`status`, not `joined`: the task that clears `joined` may be the one awaiting this.)
            Err(RequestError::Rejected(error)) if error.code == ErrorCode::RateLimited && state.online() => {
                pause(Duration::from_secs(1)).await;
            }
            Err(e) => {
                state.error.try_set(Some(format!("Some missed messages could not be loaded: {e}")));
                return;
            }
        }
    }
}

/// The server answered a join (sent with `since`): shows what it returned, lets held presence changes through,
/// fetches the rest of what was missed, and sends whatever was written while away (or before a reload), in order.
async fn settle_join(
    state: RoomState,
    held: &HeldPresence,
    socket: &Socket,
    room: &RoomName,
    outbox: &Outbox,
    since: Option<u64>,
    joined: protocol::Joined,
) {
    // Without `since`, `has_more` speaks of older messages; with it, of newer ones.
    let missed_more = match since {
        None => {
            state.has_older.try_set(joined.has_more);
            false
        }
        Some(_) => joined.has_more,
    };
    let resume_after = joined.history.last().map(|m| m.seq);
    outbox.settle(&joined.history);
    for message in joined.history {
        state.add_message(message);
    }
    let listing = state.joined_as(joined.you, joined.members, joined.more_members.is_none());
    for change in held.release() {
        apply_presence(state, change);
    }
    state.error.try_set(None);
    if let Some(after) = joined.more_members {
        // A task of its own: in a room of thousands the pages take a while, and nothing else waits for them.
        spawn_local(list_members(socket.clone(), room.clone(), state, listing, after));
    }
    if missed_more && let Some(after) = resume_after {
        catch_up(socket, room, state, outbox, after).await;
    }
    outbox.flush(socket.clone());
}

/// Loads a big room's member list past what the join brought, page by page, until it is all in or a newer join
/// started its own ([`RoomState::listing`]: after a reconnection the pages of an earlier join are no longer
/// true). Spends the reading budget, as history pages do: when it is spent, goes on once it has refilled a little.
async fn list_members(socket: Socket, room: RoomName, state: RoomState, listing: u64, mut after: MemberId) {
    while state.listing(listing) {
        let request = ListMembers { room: room.clone(), after: after.clone() };
        match socket.request(&request, REQUEST_TIMEOUT).await {
            Ok(page) => {
                if !state.members_listed(listing, page.members) {
                    return;
                }
                match page.more {
                    Some(next) => after = next,
                    None => return state.members_complete(listing),
                }
            }
            // Asked again in a moment, from the same place, while the page is still on this connection's join.
            Err(RequestError::Rejected(error)) if error.code == ErrorCode::RateLimited => {
                pause(Duration::from_secs(1)).await;
            }
            Err(RequestError::Ack(AckError::Timeout)) if state.online() => pause(Duration::from_secs(1)).await,
            // Out of the room (removed), or the connection went: its next join lists the room again.
            Err(_) => return,
        }
    }
}

/// One room's connection. The connection closes when the page is left.
pub struct Chat {
    socket: Option<Socket>,
    room: RoomName,
    state: RoomState,
    outbox: Outbox,
    /// When this tab last said it was typing: the page's clock in ms, as `f64` bits. (The browser has one thread;
    /// the atomic only makes `Chat` storable in Leptos's `Send` storage.)
    typing_sent_at: Arc<AtomicU64>,
}

impl Chat {
    pub fn connect(room: RoomName, name: DisplayName, state: RoomState) -> Self {
        let typing_sent_at = Arc::new(AtomicU64::new(NEVER.to_bits()));
        let outbox = Outbox::load(room.clone(), state);
        let client = match client() {
            Ok(client) => client,
            Err(reason) => {
                state.status.set(Status::Offline(reason));
                return Self { socket: None, room, state, outbox, typing_sent_at };
            }
        };
        // No session in `auth`: the browser's session cookie goes with the handshake, and the server reads it.
        let socket = match client.socket_with_auth(CHAT_NAMESPACE, &ChatAuth { name: name.clone(), session: None }) {
            Ok(socket) => socket,
            Err(e) => {
                state.status.set(Status::Offline(format!("could not prepare the connection: {e}")));
                return Self { socket: None, room, state, outbox, typing_sent_at };
            }
        };
        watch_status(&client, state.status);
        let join_outbox = outbox.clone();

        let mut lifecycle = socket.lifecycle();
        let join_socket = socket.clone();
        let join_room = room.clone();
        let held = std::rc::Rc::new(HeldPresence::default());
        let join_held = held.clone();
        spawn_local(async move {
            // An event that came while a join's retry was pausing, to handle before waiting for the next.
            let mut interrupted: Option<SocketEvent> = None;
            loop {
                let event = match interrupted.take() {
                    Some(event) => event,
                    None => match lifecycle.next().await {
                        Some(event) => event,
                        None => break,
                    },
                };
                match event {
                    // Room membership lives on the server's socket, which is new after every reconnection: join
                    // again each time the namespace connects, unless an admin removed this person.
                    SocketEvent::Connected { .. } if state.removed.try_get_untracked() == Some(false) => {
                        let mut retry_in = JOIN_RETRY_FIRST;
                        loop {
                            // After a reconnection, ask for what was missed: everything after the last message shown
                            // with none missing before it.
                            let since = state.resume_seq();
                            let join = JoinRoom { room: join_room.clone(), since };
                            match join_socket.request(&join, REQUEST_TIMEOUT).await {
                                Ok(joined) => {
                                    settle_join(
                                        state,
                                        &join_held,
                                        &join_socket,
                                        &join_room,
                                        &join_outbox,
                                        since,
                                        joined,
                                    )
                                    .await;
                                    break;
                                }
                                Err(RequestError::Rejected(error)) if error.code == ErrorCode::NameInUse => {
                                    // The form explains it, and lets the person pick another name.
                                    let url = crate::urls::join_url(&join_room, &name, Some("name_in_use"));
                                    if window().location().set_href(&url).is_err() {
                                        state.error.try_set(Some(error.message));
                                    }
                                    break;
                                }
                                // The connection dropped meanwhile: joining again is the reconnection's job.
                                Err(RequestError::Ack(AckError::Closed)) => break,
                                // A moment's trouble (no answer, the history could not be read): try again while
                                // connected, less and less often, rather than leave the page unable to send.
                                Err(e) if join_worth_retrying(&e) => {
                                    let seconds = retry_in.as_secs();
                                    let error = format!("Could not join the room ({e}). Trying again in {seconds} s.");
                                    state.error.try_set(Some(error));
                                    // The connection may drop and come back during the pause: its events are
                                    // handled then, not after it, so that the new connection joins at once (and a
                                    // join made after the pause is not undone by a stale "disconnected").
                                    let pause = std::pin::pin!(pause(retry_in));
                                    if let Either::Right((event, _)) = select(pause, lifecycle.next()).await {
                                        interrupted = event;
                                        if interrupted.is_none() {
                                            return;
                                        }
                                        break;
                                    }
                                    if !state.online() || state.removed.try_get_untracked() != Some(false) {
                                        break;
                                    }
                                    retry_in = (retry_in * 2).min(JOIN_RETRY_MAX);
                                }
                                Err(e) => {
                                    state.error.try_set(Some(format!("Could not join the room: {e}")));
                                    break;
                                }
                            }
                        }
                    }
                    SocketEvent::Connected { .. } => {}
                    SocketEvent::ConnectError { message, .. } => {
                        state.joined.try_set(false);
                        state.error.try_set(Some(format!("The server refused the connection: {message}")));
                    }
                    SocketEvent::Disconnected { .. } => {
                        state.joined.try_set(false);
                        join_held.forget();
                    }
                }
            }
        });

        let this_room = room.clone();
        let gap_socket = socket.clone();
        // Set while a hole is being filled, so that the live messages arriving meanwhile do not ask again.
        let filling = std::rc::Rc::new(std::cell::Cell::new(false));
        let live_outbox = outbox.clone();
        on_each(&socket, move |message: ChatMessage| {
            if message.room != this_room {
                return;
            }
            // Another tab of this person delivered a message this tab also holds (both loaded it from the shared
            // outbox): it is done here too, and shown in place of its pending line.
            let held_here = message.client_id.as_ref().is_some_and(|client_id| live_outbox.sent_elsewhere(client_id));
            // Otherwise, older than everything shown: a late repeat (a retry's copy); older pages come through
            // history.
            if !held_here && state.first_seq().is_some_and(|first| message.seq < first) {
                return;
            }
            state.add_message(message);
            // Seqs have no gaps: a hole among the messages shown means some never arrived (a broadcast lost with
            // the node that stored it, or while Redis was down). Only once joined: before, the join's own history
            // is still on its way.
            if !state.is_joined() || state.hole().is_none() || filling.replace(true) {
                return;
            }
            let (socket, room, filling, outbox) =
                (gap_socket.clone(), this_room.clone(), filling.clone(), live_outbox.clone());
            // Broadcasts of consecutive messages can cross on their way (two handlers, two nodes): wait a moment,
            // and fill only a hole that is still there, so that a reordering costs the room no request.
            set_timeout(
                move || {
                    spawn_local(async move {
                        if let Some(after) = state.hole() {
                            catch_up(&socket, &room, state, &outbox, after).await;
                        }
                        filling.set(false);
                    });
                },
                HOLE_GRACE,
            );
        });
        let this_room = room.clone();
        on_each(&socket, move |message: PrivateMessage| {
            if message.room == this_room {
                state.add_private(message);
            }
        });
        let this_room = room.clone();
        on_each(&socket, move |event: PresenceChanged| {
            if event.room == this_room {
                for change in event.changes {
                    presence_notice(state, &held, change);
                }
            }
        });
        let this_room = room.clone();
        on_each(&socket, move |notice: TypingNotice| {
            if notice.room == this_room {
                let show_for = TypingNotice::SHOW_FOR_MS as f64;
                state.someone_typing(notice.member, now_ms() + show_for);
                // The notice goes away on its own: check again just after it would expire.
                set_timeout(
                    move || state.expire_typing(now_ms()),
                    Duration::from_millis(TypingNotice::SHOW_FOR_MS + 50),
                );
            }
        });
        let this_room = room.clone();
        on_each(&socket, move |removed: Removed| {
            if removed.room == this_room {
                state.removed.try_set(true);
                state.joined.try_set(false);
            }
        });
        let this_room = room.clone();
        on_each(&socket, move |taken: NameTaken| {
            if taken.room == this_room {
                // Someone on another node took the name at the same moment, and keeps it: as when a join is refused
                // for it, the form explains and lets the person pick another.
                state.joined.try_set(false);
                let url = crate::urls::join_url(&taken.room, &taken.name, Some("name_in_use"));
                if window().location().set_href(&url).is_err() {
                    let message =
                        format!("Someone else in #{} took the name {} at the same moment.", taken.room, taken.name);
                    state.error.try_set(Some(message));
                }
            }
        });

        // Leaving the page closes the connection; the tasks above end with it.
        on_cleanup(move || client.close());
        Self { socket: Some(socket), room, state, outbox, typing_sent_at }
    }

    /// Sends a message to the room: shown at once as "sending", and as sent once the server stored it. Kept (and
    /// retried with the same client id) until then, across reconnections and reloads.
    pub fn send(&self, body: MessageBody) {
        self.typing_sent_at.store(NEVER.to_bits(), Ordering::Relaxed);
        self.outbox.push(Pending { client_id: client_id(), body, failed: None, attempts: 0, image: None });
        if let Some(socket) = self.socket.clone() {
            self.outbox.flush(socket);
        }
    }

    /// Shares an image with the room, with `caption`: shown at once with its preview, and sent like a message
    /// (in order, retried under one client id).
    pub fn send_image(&self, kind: ImageKind, bytes: Vec<u8>, caption: MessageBody, preview: String) {
        let image = PendingImage { kind, bytes: Arc::new(bytes), preview };
        self.outbox.push(Pending {
            client_id: client_id(),
            body: caption,
            failed: None,
            attempts: 0,
            image: Some(image),
        });
        if let Some(socket) = self.socket.clone() {
            self.outbox.flush(socket);
        }
    }

    /// Tries a failed message again, under its original client id.
    pub fn retry(&self, client_id: ClientId) {
        self.outbox.change(&client_id, |pending| {
            pending.failed = None;
            pending.attempts = 0;
        });
        if let Some(socket) = self.socket.clone() {
            self.outbox.flush(socket);
        }
    }

    /// Loads the page of messages before the oldest one shown.
    pub fn load_older(&self) {
        let (Some(socket), Some(before)) = (self.socket.clone(), self.state.first_seq()) else { return };
        let state = self.state;
        if state.loading_older.get_untracked() {
            return;
        }
        state.loading_older.set(true);
        let request = LoadHistory { room: self.room.clone(), from: HistoryFrom::Before(before) };
        spawn_local(async move {
            match socket.request(&request, REQUEST_TIMEOUT).await {
                Ok(page) => {
                    for message in page.messages {
                        state.add_message(message);
                    }
                    state.has_older.try_set(page.has_more);
                }
                Err(e) => {
                    state.error.try_set(Some(format!("Older messages could not be loaded: {e}")));
                }
            }
            state.loading_older.try_set(false);
        });
    }

    /// Sends a private message to `to`, who must be in the room. It is not kept for later like a public one (its recipient may be gone by then):
    /// if it fails, its text goes back into `draft`, unless something new has been typed there meanwhile.
    pub fn send_private(&self, to: MemberId, body: MessageBody, draft: RwSignal<String>) {
        let state = self.state;
        let text = body.as_str().to_owned();
        let give_back = move |why: String, maybe_delivered: bool| {
            let restored = draft
                .try_update(|d| {
                    let empty = d.is_empty();
                    if empty {
                        *d = text;
                    }
                    empty
                })
                .unwrap_or(false);
            let why = why.trim_end_matches('.');
            // No answer after it went out: the server may have delivered it all the same, so the page does not
            // say it was not sent (a private message has no id for the server to recognise a second copy by).
            let error = match (maybe_delivered, restored) {
                (true, true) => format!(
                    "Maybe not sent: {why}. It may have arrived; it is back in the box, to send again if it did not."
                ),
                (true, false) => format!("Maybe not sent: {why}. It may have arrived."),
                (false, true) => format!("Not sent: {why}. It is back in the box, to send again."),
                (false, false) => format!("Not sent: {why}."),
            };
            state.error.try_set(Some(error));
        };
        let Some(socket) = self.socket.clone() else { return give_back("not connected".to_owned(), false) };
        let request = SendPrivate { room: self.room.clone(), to, body };
        self.typing_sent_at.store(NEVER.to_bits(), Ordering::Relaxed);
        spawn_local(async move {
            match socket.request(&request, REQUEST_TIMEOUT).await {
                Ok(accepted) => {
                    state.add_private(accepted.message);
                    state.error.try_set(None);
                }
                Err(e) => {
                    let maybe_delivered =
                        matches!(e, RequestError::Ack(AckError::Timeout | AckError::Closed | AckError::Decode(_)));
                    give_back(e.to_string(), maybe_delivered)
                }
            }
        });
    }

    /// Says "I am typing", at most every [`TypingNotice::REPEAT_EVERY_MS`].
    pub fn typing(&self) {
        let Some(socket) = &self.socket else { return };
        let now = now_ms();
        let last = f64::from_bits(self.typing_sent_at.load(Ordering::Relaxed));
        if !self.state.is_joined() || now - last < TypingNotice::REPEAT_EVERY_MS as f64 {
            return;
        }
        self.typing_sent_at.store(now.to_bits(), Ordering::Relaxed);
        // Volatile: a typing notice that cannot go now is worthless later.
        if let Err(e) = socket.emit_volatile(&Typing { room: self.room.clone() }) {
            leptos::logging::warn!("typing notice not sent: {e}");
        }
    }
}

/// Keeps `rooms` equal to the server's lobby feed while the page is open.
pub fn watch_lobby(rooms: RwSignal<Vec<RoomSummary>>) {
    let Ok(client) = client() else { return };
    let socket = client.socket(LOBBY_NAMESPACE);
    on_each(&socket, move |snapshot: RoomsSnapshot| {
        rooms.try_set(snapshot.rooms);
    });
    on_cleanup(move || client.close());
}

/// The admin page's connection: `/admin` and `/lobby`, multiplexed over one Engine.IO connection.
pub struct Admin {
    admin: Socket,
    client: Client,
}

impl Admin {
    pub fn connect(token: String, state: AdminState) -> Option<Self> {
        let client = match client() {
            Ok(client) => client,
            Err(reason) => {
                state.error.set(Some(reason));
                return None;
            }
        };
        watch_status(&client, state.status);
        let lobby = client.socket(LOBBY_NAMESPACE);
        on_each(&lobby, move |snapshot: RoomsSnapshot| {
            state.lobby.try_set(snapshot.rooms);
        });
        let admin = match client.socket_with_auth(ADMIN_NAMESPACE, &AdminAuth { token }) {
            Ok(socket) => socket,
            Err(e) => {
                state.error.set(Some(format!("could not prepare the connection: {e}")));
                return None;
            }
        };
        on_each(&admin, move |stats: Stats| {
            state.stats.try_set(Some(stats));
        });
        let mut lifecycle = admin.lifecycle();
        spawn_local(async move {
            while let Some(event) = lifecycle.next().await {
                match event {
                    SocketEvent::Connected { .. } => {
                        state.signed_in.try_set(true);
                        state.error.try_set(None);
                    }
                    SocketEvent::ConnectError { message, .. } => {
                        state.signed_in.try_set(false);
                        state.error.try_set(Some(format!("The server refused the admin connection: {message}")));
                    }
                    SocketEvent::Disconnected { .. } => {}
                }
            }
        });
        Some(Self { admin, client })
    }

    /// Removes `member` from `room`, and says how it went in `state.outcome`.
    pub fn remove(&self, room: RoomName, member: MemberId, state: AdminState) {
        let admin = self.admin.clone();
        spawn_local(async move {
            let outcome = match admin.request(&RemoveMember { room, member }, REQUEST_TIMEOUT).await {
                Ok(removed) => format!("Removed {} from #{}.", removed.member.name, removed.room),
                Err(e) => format!("Not removed: {e}"),
            };
            state.outcome.try_set(Some(outcome));
        });
    }

    pub fn close(&self) {
        self.client.close();
    }
}
