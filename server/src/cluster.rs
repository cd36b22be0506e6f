//! Presence across nodes, over Redis pub/sub.
//!
//! socketioxide's Redis adapter carries broadcasts (messages, typing, private messages) from node to node, but
//! who is in which room lives in each node's [`Presence`]. Each node publishes the changes to its own part as
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
use serde::{Deserialize, Serialize};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub mod driver;

use crate::presence::{NodeId, Presence, Report};
use crate::realtime::{Hub, admin, chat};

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
            // Reports were lost with Redis: the queued ones are older than a snapshot taken now, which replaces
            // them all. The ConnectionManager reconnects by itself; this only waits for it.
            match send(&mut redis, &node, Message::Heartbeat).await {
                Ok(()) => {
                    lost = false;
                    while reports.try_recv().is_ok() {}
                    hub.presence.report_snapshot();
                    tracing::info!("Redis is back: a presence snapshot goes out next");
                }
                Err(_) => {
                    tokio::time::sleep(RETRY_AFTER).await;
                    continue;
                }
            }
            // A report taken from the queue before Redis came back is older than that snapshot: drop it too.
            if matches!(message, Message::Report(_)) {
                continue;
            }
        }
        if let Err(e) = send(&mut redis, &node, message).await {
            tracing::warn!(error = %e, "presence not published: Redis unreachable");
            lost = true;
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
                                seen.insert(envelope.node.clone(), Instant::now());
                                receive(&io, &hub.presence, envelope).await;
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "invalid presence message ignored"),
                        }
                    }
                    _ = sweeps.tick() => {
                        let now = Instant::now();
                        let silent: Vec<NodeId> = seen
                            .iter()
                            .filter(|(_, at)| now.saturating_duration_since(**at) > SILENT_AFTER)
                            .map(|(node, _)| node.clone())
                            .collect();
                        for gone in silent {
                            seen.remove(&gone);
                            tracing::warn!(node = %gone, "a node went silent: its members are forgotten");
                            for change in hub.presence.forget(&gone) {
                                chat::announce(chat_local(&io), change).await;
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
    }
}

async fn resubscribe(redis: &redis::Client) -> anyhow::Result<redis::aio::PubSub> {
    let mut subscriber = redis.get_async_pubsub().await.context("connecting")?;
    subscriber.subscribe(CHANNEL).await.context("subscribing")?;
    Ok(subscriber)
}

async fn receive<A: Adapter>(io: &SocketIo<A>, presence: &Presence, envelope: Envelope) {
    match envelope.message {
        Message::Hello => presence.report_snapshot(),
        Message::Heartbeat => {}
        Message::Report(Report::Removed { room, member }) => {
            let (seen, connections) = presence.removed_elsewhere(&room, &member);
            if let Some(member) = seen {
                admin::removed(io, &room, &member, &connections).await;
            }
        }
        Message::Report(report) => {
            for change in presence.apply(&envelope.node, report) {
                chat::announce(chat_local(io), change).await;
            }
        }
    }
}

/// This node's connections to the chat namespace.
fn chat_local<A: Adapter>(io: &SocketIo<A>) -> socketioxide::operators::BroadcastOperators<A> {
    match io.of(protocol::CHAT_NAMESPACE) {
        Some(chat) => chat.local(),
        // The chat namespace is registered before the cluster starts; should it be missing, the main namespace.
        None => io.local(),
    }
}
