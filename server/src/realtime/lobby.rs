//! The lobby namespace: a live list of the active rooms and how many people are in each.

use std::time::Duration;

use protocol::{Event, LOBBY_NAMESPACE, RoomsSnapshot};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, State};
use socketioxide_core::adapter::DefinedAdapter;

use super::Hub;

/// Changes closer together than this are sent as one snapshot: a busy server changes presence all the time, and
/// the lobby only needs to look live.
const COALESCE: Duration = Duration::from_millis(250);

pub(super) fn attach<A: Adapter + DefinedAdapter>(io: &SocketIo<A>, hub: &Hub) -> A::InitRes {
    let init = io.ns(LOBBY_NAMESPACE, async |socket: SocketRef<A>, State(hub): State<Hub>| {
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
            // Each node sends its own lobby connections the snapshot (the same on every node: presence is the
            // cluster's view).
            if let Err(e) = lobby.local().emit(RoomsSnapshot::NAME, &snapshot).await {
                tracing::debug!(error = %e, "lobby snapshot not sent");
            }
        }
    });
    init
}
