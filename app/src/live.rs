//! The room's live connection, in the browser only: a Socket.IO client from `sio-client`, wired to the page's
//! signals.

use std::time::Duration;

use futures::StreamExt;
use leptos::prelude::*;
use leptos::task::spawn_local;
use protocol::{CHAT_NAMESPACE, ChatAuth, ChatMessage, DisplayName, JoinRoom, MessageBody, RoomName, SendMessage};
use sio_client::{Client, ConnectionState, Socket, SocketEvent};

use crate::pages::{RoomState, Status};

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

/// One room's connection. The connection closes when the page is left.
pub struct Chat {
    socket: Option<Socket>,
    room: RoomName,
    state: RoomState,
}

impl Chat {
    pub fn connect(room: RoomName, name: DisplayName, state: RoomState) -> Self {
        let origin = match window().location().origin() {
            Ok(origin) => origin,
            Err(_) => {
                state.status.set(Status::Offline("this page has no origin to connect to".into()));
                return Self { socket: None, room, state };
            }
        };
        let client = Client::builder(origin).connect();
        let socket = match client.socket_with_auth(CHAT_NAMESPACE, &ChatAuth { name }) {
            Ok(socket) => socket,
            Err(e) => {
                state.status.set(Status::Offline(format!("could not prepare the connection: {e}")));
                return Self { socket: None, room, state };
            }
        };

        let mut states = client.state_changes();
        spawn_local(async move {
            while let Some(connection) = states.next().await {
                // `try_set` gives the value back once the page is gone: then stop listening.
                if state.status.try_set(status_of(&connection)).is_some() {
                    break;
                }
            }
        });

        let mut lifecycle = socket.lifecycle();
        let join_socket = socket.clone();
        let join_room = room.clone();
        spawn_local(async move {
            while let Some(event) = lifecycle.next().await {
                match event {
                    // Room membership lives on the server's socket, which is new after every reconnection: join
                    // again each time the namespace connects.
                    SocketEvent::Connected { .. } => {
                        let join = JoinRoom { room: join_room.clone() };
                        match join_socket.request(&join, REQUEST_TIMEOUT).await {
                            Ok(_) => {
                                state.joined.try_set(true);
                                state.error.try_set(None);
                            }
                            Err(e) => {
                                state.error.try_set(Some(format!("Could not join the room: {e}")));
                            }
                        }
                    }
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

        let mut incoming = socket.on::<ChatMessage>();
        let this_room = room.clone();
        spawn_local(async move {
            while let Some(message) = incoming.next().await {
                if message.room == this_room {
                    state.add_message(message);
                }
            }
        });

        // Leaving the page closes the connection; the tasks above end with it.
        on_cleanup(move || client.close());
        Self { socket: Some(socket), room, state }
    }

    /// Sends a message; it is shown once the server accepted it.
    pub fn send(&self, body: MessageBody) {
        let Some(socket) = self.socket.clone() else { return };
        let request = SendMessage { room: self.room.clone(), body };
        let state = self.state;
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
}
