//! The lobby namespace: a live list of the active rooms and how many people are in each.

use std::time::Duration;

use protocol::{Event, LOBBY_NAMESPACE, RoomsSnapshot};
use socketioxide::SocketIo;
use socketioxide::extract::{SocketRef, State};

use super::Hub;

/// Changes closer together than this are sent as one snapshot: a busy server changes presence all the time, and
/// the lobby only needs to look live.
const COALESCE: Duration = Duration::from_millis(250);

pub(super) fn attach(io: &SocketIo, hub: &Hub) {
    io.ns(LOBBY_NAMESPACE, async |socket: SocketRef, State(hub): State<Hub>| {
        let snapshot = RoomsSnapshot { rooms: hub.presence.summaries() };
        if let Err(e) = socket.emit(RoomsSnapshot::NAME, &snapshot) {
            tracing::debug!(error = %e, "first lobby snapshot not sent");
        }
    });
    let (io, hub) = (io.clone(), hub.clone());
    tokio::spawn(async move {
        loop {
            hub.presence.changed().await;
            // Not synchronisation: a rate limit. Whatever changes meanwhile goes out in the snapshot below.
            tokio::time::sleep(COALESCE).await;
            let Some(lobby) = io.of(LOBBY_NAMESPACE) else { break };
            let snapshot = RoomsSnapshot { rooms: hub.presence.summaries() };
            if let Err(e) = lobby.emit(RoomsSnapshot::NAME, &snapshot).await {
                tracing::debug!(error = %e, "lobby snapshot not sent");
            }
        }
    });
}
