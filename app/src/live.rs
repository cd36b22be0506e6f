//! The live connections, in the browser only: Socket.IO clients from `sio-client`, wired to the pages' signals.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use leptos::prelude::*;
use leptos::task::spawn_local;
use protocol::{
    ADMIN_NAMESPACE, AdminAuth, CHAT_NAMESPACE, ChatAuth, ChatMessage, DisplayName, ErrorCode, JoinRoom,
    LOBBY_NAMESPACE, MemberId, MemberJoined, MemberLeft, MessageBody, PrivateMessage, RemoveMember, Removed, RoomName,
    RoomSummary, RoomsSnapshot, SendMessage, SendPrivate, Stats, Typing, TypingNotice,
};
use sio_client::{Client, ConnectionState, RequestError, Socket, SocketEvent};

use crate::pages::{AdminState, RoomState, Status};

/// How long a request may wait for the server's acknowledgement.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The page's clock, in milliseconds.
fn now_ms() -> f64 {
    js_sys::Date::now()
}

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
    Ok(Client::builder(origin).connect())
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

/// Runs `apply` on every `E` the socket receives, until the stream ends (the page closed the client).
fn on_each<E: protocol::Event + 'static>(socket: &Socket, mut apply: impl FnMut(E) + 'static) {
    let mut incoming = socket.on::<E>();
    spawn_local(async move {
        while let Some(event) = incoming.next().await {
            apply(event);
        }
    });
}

/// One room's connection. The connection closes when the page is left.
pub struct Chat {
    socket: Option<Socket>,
    room: RoomName,
    state: RoomState,
    /// When this tab last said it was typing: the page's clock in ms, as `f64` bits. (The browser has one thread;
    /// the atomic only makes `Chat` storable in Leptos's `Send` storage.)
    typing_sent_at: Arc<AtomicU64>,
}

impl Chat {
    pub fn connect(room: RoomName, name: DisplayName, state: RoomState) -> Self {
        let typing_sent_at = Arc::new(AtomicU64::new(0));
        let client = match client() {
            Ok(client) => client,
            Err(reason) => {
                state.status.set(Status::Offline(reason));
                return Self { socket: None, room, state, typing_sent_at };
            }
        };
        // No session in `auth`: the browser's session cookie goes with the handshake, and the server reads it.
        let socket = match client.socket_with_auth(CHAT_NAMESPACE, &ChatAuth { name: name.clone(), session: None }) {
            Ok(socket) => socket,
            Err(e) => {
                state.status.set(Status::Offline(format!("could not prepare the connection: {e}")));
                return Self { socket: None, room, state, typing_sent_at };
            }
        };
        watch_status(&client, state.status);

        let mut lifecycle = socket.lifecycle();
        let join_socket = socket.clone();
        let join_room = room.clone();
        spawn_local(async move {
            while let Some(event) = lifecycle.next().await {
                match event {
                    // Room membership lives on the server's socket, which is new after every reconnection: join
                    // again each time the namespace connects, unless an admin removed this person.
                    SocketEvent::Connected { .. } if !state.removed.get_untracked() => {
                        // After a reconnection, ask for what was missed: everything after the last message shown.
                        let join = JoinRoom { room: join_room.clone(), since: state.last_seq() };
                        match join_socket.request(&join, REQUEST_TIMEOUT).await {
                            Ok(joined) => {
                                for message in joined.history {
                                    state.add_message(message);
                                }
                                state.joined_as(joined.you, joined.members);
                                state.error.try_set(None);
                            }
                            Err(RequestError::Rejected(error)) if error.code == ErrorCode::NameInUse => {
                                // The form explains it, and lets the person pick another name.
                                let url = crate::urls::join_url(&join_room, &name, Some("name_in_use"));
                                if window().location().set_href(&url).is_err() {
                                    state.error.try_set(Some(error.message));
                                }
                            }
                            Err(e) => {
                                state.error.try_set(Some(format!("Could not join the room: {e}")));
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
                    }
                }
            }
        });

        let this_room = room.clone();
        on_each(&socket, move |message: ChatMessage| {
            if message.room == this_room {
                state.add_message(message);
            }
        });
        let this_room = room.clone();
        on_each(&socket, move |message: PrivateMessage| {
            if message.room == this_room {
                state.add_private(message);
            }
        });
        let this_room = room.clone();
        on_each(&socket, move |event: MemberJoined| {
            if event.room == this_room {
                state.member_joined(event.member, now_ms());
            }
        });
        let this_room = room.clone();
        on_each(&socket, move |event: MemberLeft| {
            if event.room == this_room {
                state.member_left(event.member, event.reason, now_ms());
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

        // Leaving the page closes the connection; the tasks above end with it.
        on_cleanup(move || client.close());
        Self { socket: Some(socket), room, state, typing_sent_at }
    }

    /// Sends a message to the room; it is shown once the server accepted it.
    pub fn send(&self, body: MessageBody) {
        let Some(socket) = self.socket.clone() else { return };
        let request = SendMessage { room: self.room.clone(), body, client_id: Some(client_id()) };
        let state = self.state;
        self.typing_sent_at.store(0, Ordering::Relaxed);
        spawn_local(async move {
            match socket.request(&request, REQUEST_TIMEOUT).await {
                Ok(accepted) => {
                    state.add_message(accepted.message);
                    // The newest outcome is what the person needs to see: a success clears an earlier failure.
                    state.error.try_set(None);
                }
                Err(e) => {
                    state.error.try_set(Some(format!("Not sent: {e}")));
                }
            }
        });
    }

    /// Sends a private message to `to`, who must be in the room.
    pub fn send_private(&self, to: MemberId, body: MessageBody) {
        let Some(socket) = self.socket.clone() else { return };
        let request = SendPrivate { room: self.room.clone(), to, body };
        let state = self.state;
        self.typing_sent_at.store(0, Ordering::Relaxed);
        spawn_local(async move {
            match socket.request(&request, REQUEST_TIMEOUT).await {
                Ok(accepted) => {
                    state.add_private(accepted.message);
                    state.error.try_set(None);
                }
                Err(e) => {
                    state.error.try_set(Some(format!("Not sent: {e}")));
                }
            }
        });
    }

    /// Says "I am typing", at most every [`TypingNotice::REPEAT_EVERY_MS`].
    pub fn typing(&self) {
        let Some(socket) = &self.socket else { return };
        let now = now_ms();
        let last = f64::from_bits(self.typing_sent_at.load(Ordering::Relaxed));
        if !self.state.joined.get_untracked() || now - last < TypingNotice::REPEAT_EVERY_MS as f64 {
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
