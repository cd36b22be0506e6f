//! Presence across nodes, over Redis pub/sub.
//!
//! socketioxide's Redis adapter carries broadcasts (messages, typing, private messages) from node to node, but
//! who is in which room lives in each node's [`Presence`](crate::presence::Presence). Each node publishes the changes to its own part as
//! [`Report`]s on one channel, in order, and keeps a replica of every other node's part from theirs:
//!
//! - a node that starts asks the others for a snapshot (`hello`) and sends its own;
//! - every node sends a heartbeat each [`HEARTBEAT`]; a node silent for [`SILENT_AFTER`] (it crashed, or lost
//!   Redis) is forgotten, and its members leave the rooms where no other node has them, so presence heals when
//!   its users reconnect elsewhere;
//! - after losing Redis, a node sends a fresh snapshot: the reports lost meanwhile do not matter.
//!
//! What the view gains or loses from a report, each node announces to its own connections.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use protocol::NameTaken;
use serde::{Deserialize, Serialize};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub mod driver;

use crate::presence::{NodeId, Report};
use crate::realtime::{Hub, admin, chat, send_out};

/// The pub/sub channel every node publishes its presence on.
const CHANNEL: &str = "causerie-presence";

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A node not heard from for this long is taken for gone.
pub const SILENT_AFTER: Duration = Duration::from_secs(5);

/// How long to wait before trying Redis again after losing it.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One message on [`CHANNEL`].
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    node: NodeId,
    message: Message,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Message {
    /// A node started (or came back): everyone, send a snapshot.
    Hello,
    Heartbeat,
    Report(Report),
}

/// Connects this node's presence to the others' through `redis`, and announces what they report to this node's
/// connections. Returns once the subscription is in place; the work goes on in background tasks.
pub async fn join<A: Adapter>(redis: redis::Client, io: SocketIo<A>, hub: Hub) -> anyhow::Result<NodeId> {
    let node: NodeId = uuid::Uuid::new_v4().to_string();
    let publisher = redis.get_connection_manager().await.context("connecting to Redis to publish presence")?;
    let mut subscriber = redis.get_async_pubsub().await.context("connecting to Redis to hear presence")?;
    subscriber.subscribe(CHANNEL).await.context("subscribing to the presence channel")?;
    let (outbox, reports) = mpsc::unbounded_channel();
    let (hello, hellos) = mpsc::unbounded_channel();
    // The snapshot that `publish_to` queues first, then a hello, so that the others answer with theirs.
    hub.presence.publish_to(outbox).map_err(|_| anyhow::anyhow!("this node's presence is already published"))?;
    let _ = hello.send(());
    tokio::spawn(publish(node.clone(), publisher, reports, hellos, hub.clone()));
    tokio::spawn(listen(node.clone(), redis, subscriber, io, hub, hello));
    tracing::info!(%node, "presence shared with the other nodes over Redis");
    Ok(node)
}

/// Sends this node's reports in order, a heartbeat every [`HEARTBEAT`] and a hello when asked.
///
/// While Redis is unreachable, what is queued is dropped, except removals: once Redis answers again, a fresh
/// snapshot replaces every other report (they are older than it), then the removals go out (a removal speaks of
/// other nodes' members, which no snapshot of this node covers), then a hello, so that the others' snapshots come.
async fn publish(
    node: NodeId,
    mut redis: redis::aio::ConnectionManager,
    mut reports: mpsc::UnboundedReceiver<Report>,
    mut hellos: mpsc::UnboundedReceiver<()>,
    hub: Hub,
) {
    let mut beats = tokio::time::interval(HEARTBEAT);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lost = false;
    // Removals made or taken off the queue while Redis was unreachable, to send once it is back.
    let mut removals: Vec<Report> = Vec::new();
    loop {
        let message = tokio::select! {
            report = reports.recv() => match report {
                Some(report) => Message::Report(report),
                None => return,
            },
            Some(()) = hellos.recv() => Message::Hello,
            _ = beats.tick() => Message::Heartbeat,
        };
        if lost {
            keep_removals(Some(message), &mut reports, &mut removals);
            // The ConnectionManager reconnects by itself; this only asks whether it has.
            if send(&mut redis, &node, Message::Heartbeat).await.is_err() {
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
            lost = false;
            // Whatever was queued meanwhile is older than the snapshot queued now (removals aside).
            keep_removals(None, &mut reports, &mut removals);
            hub.presence.report_snapshot();
            tracing::info!("Redis is back: presence snapshot, removals and a hello go out");
            for removal in std::mem::take(&mut removals) {
                if send(&mut redis, &node, Message::Report(removal.clone())).await.is_err() {
                    lost = true;
                    removals.push(removal);
                }
            }
            if send(&mut redis, &node, Message::Hello).await.is_err() {
                lost = true;
            }
            continue;
        }
        let removal = match &message {
            Message::Report(report @ Report::Removed { .. }) => Some(report.clone()),
            _ => None,
        };
        if let Err(e) = send(&mut redis, &node, message).await {
            tracing::warn!(error = %e, "presence not published: Redis unreachable");
            lost = true;
            removals.extend(removal);
        }
    }
}

/// While Redis is unreachable: keeps the removals among `message` and what is queued, drops the rest.
fn keep_removals(message: Option<Message>, reports: &mut mpsc::UnboundedReceiver<Report>, removals: &mut Vec<Report>) {
    if let Some(Message::Report(report @ Report::Removed { .. })) = message {
        removals.push(report);
    }
    while let Ok(report) = reports.try_recv() {
        if matches!(report, Report::Removed { .. }) {
            removals.push(report);
        }
    }
}

async fn send(redis: &mut redis::aio::ConnectionManager, node: &str, message: Message) -> anyhow::Result<()> {
    let envelope = Envelope { node: node.to_owned(), message };
    let payload = serde_json::to_string(&envelope).context("encoding a presence message")?;
    redis::cmd("PUBLISH").arg(CHANNEL).arg(payload).query_async::<()>(redis).await.context("publishing")?;
    Ok(())
}

/// Applies the other nodes' reports and forgets silent nodes; resubscribes after losing Redis.
async fn listen<A: Adapter>(
    node: NodeId,
    redis: redis::Client,
    mut subscriber: redis::aio::PubSub,
    io: SocketIo<A>,
    hub: Hub,
    hello: mpsc::UnboundedSender<()>,
) {
    let mut seen: HashMap<NodeId, Instant> = HashMap::new();
    let mut sweeps = tokio::time::interval(HEARTBEAT);
    // This node's own heartbeats coming back show that the subscription works: a connection that died without
    // closing would otherwise look like every other node falling silent.
    let mut heard_myself = Instant::now();
    loop {
        {
            let mut messages = subscriber.on_message();
            loop {
                tokio::select! {
                    message = futures::StreamExt::next(&mut messages) => {
                        let Some(message) = message else { break };
                        let payload: String = match message.get_payload() {
                            Ok(payload) => payload,
                            Err(e) => {
                                tracing::warn!(error = %e, "unreadable presence message");
                                continue;
                            }
                        };
                        match serde_json::from_str::<Envelope>(&payload) {
                            Ok(envelope) if envelope.node != node => {
                                let known = seen.insert(envelope.node.clone(), Instant::now()).is_some();
                                // A node not heard from before (or forgotten since): its reports change a copy
                                // of it that is empty here, so ask for its snapshot, unless this is one.
                                let whole = matches!(
                                    envelope.message,
                                    Message::Hello | Message::Report(Report::Snapshot { .. })
                                );
                                if !known && !whole {
                                    let _ = hello.send(());
                                }
                                receive(&io, &hub, envelope).await;
                            }
                            Ok(_) => heard_myself = Instant::now(),
                            Err(e) => tracing::warn!(error = %e, "invalid presence message ignored"),
                        }
                    }
                    _ = sweeps.tick() => {
                        let now = Instant::now();
                        if now.saturating_duration_since(heard_myself) > SILENT_AFTER {
                            // Not even this node's own heartbeats come back: the subscription is what is gone.
                            break;
                        }
                        let silent: Vec<NodeId> = seen
                            .iter()
                            .filter(|(_, at)| now.saturating_duration_since(**at) > SILENT_AFTER)
                            .map(|(node, _)| node.clone())
                            .collect();
                        for gone in silent {
                            seen.remove(&gone);
                            tracing::warn!(node = %gone, "a node went silent: its members are forgotten");
                            let _turn = hub.presence_turn();
                            for change in hub.presence.forget(&gone) {
                                chat::announce(&io, &hub, change);
                            }
                        }
                    }
                }
            }
        }
        tracing::warn!("lost the presence subscription; reconnecting to Redis");
        subscriber = loop {
            tokio::time::sleep(RETRY_AFTER).await;
            match resubscribe(&redis).await {
                Ok(subscriber) => break subscriber,
                Err(e) => tracing::warn!(error = %e, "Redis still unreachable"),
            }
        };
        // What the others said meanwhile is lost: ask again, and tell them about this node. Nobody could be heard
        // meanwhile, so silence until now says nothing about the other nodes: their clocks start again.
        let _ = hello.send(());
        hub.presence.report_snapshot();
        let now = Instant::now();
        for heard in seen.values_mut() {
            *heard = now;
        }
        heard_myself = now;
    }
}

async fn resubscribe(redis: &redis::Client) -> anyhow::Result<redis::aio::PubSub> {
    let mut subscriber = redis.get_async_pubsub().await.context("connecting")?;
    subscriber.subscribe(CHANNEL).await.context("subscribing")?;
    Ok(subscriber)
}

async fn receive<A: Adapter>(io: &SocketIo<A>, hub: &Hub, envelope: Envelope) {
    let presence = &hub.presence;
    match envelope.message {
        Message::Hello => presence.report_snapshot(),
        Message::Heartbeat => {}
        Message::Report(Report::Removed { room, member }) => {
            let _turn = hub.presence_turn();
            let (seen, connections) = presence.removed_elsewhere(&room, &member);
            if let Some(member) = seen {
                admin::removed(io, hub, &room, &member, &connections);
            }
        }
        Message::Report(report) => {
            let _turn = hub.presence_turn();
            let applied = presence.apply(&envelope.node, report);
            // Out of the room before the room hears of it: they are not told that they left.
            for lost in applied.names_lost {
                tracing::info!(name = %lost.member.name, room = %lost.room, "a name taken on two nodes at once: lost here");
                let notice = NameTaken { room: lost.room.clone(), name: lost.member.name.clone() };
                send_out(io, &lost.room, &lost.member.id, &lost.connections, &notice);
            }
            for change in applied.changes {
                chat::announce(io, hub, change);
            }
        }
    }
}
