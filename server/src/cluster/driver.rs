//! The Redis connection under socketioxide's Redis adapter, one that survives Redis restarting.
//!
//! socketioxide-redis's own driver holds one multiplexed connection: once Redis restarts, every broadcast to the
//! other nodes fails until this node restarts too (the multi-node tests showed it). This one sits on redis's
//! `ConnectionManager`, which notices the connection drop, keeps reconnecting (at least once a second) and
//! subscribes again to the channels it had, so broadcasts cross again about a second after Redis is back.
//! Meanwhile a broadcast fails after [`PUBLISH_TIMEOUT`] instead of holding up its handler (and the sender's ack).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;

/// How long a broadcast may wait for Redis.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// Where each subscribed channel's messages go.
type Routes = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// See the module documentation. Clones share the connection and the routes.
#[derive(Clone)]
pub struct ReconnectingDriver {
    connection: ConnectionManager,
    routes: Routes,
}

/// A Redis failure, as the adapter reports it.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis did not answer within {PUBLISH_TIMEOUT:?}")]
    Timeout,
}

impl ReconnectingDriver {
    pub async fn connect(client: &redis::Client) -> redis::RedisResult<Self> {
        let routes: Routes = Arc::default();
        let deliveries = Arc::clone(&routes);
        let config = ConnectionManagerConfig::new()
            .set_push_sender(move |push: PushInfo| {
                deliver(push, &deliveries);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription()
            // Never give up reconnecting, and try at least once a second: a node that only listens has no command
            // of its own that would make it try again.
            .set_number_of_retries(usize::MAX)
            .set_max_delay(Duration::from_secs(1));
        let connection = client.get_connection_manager_with_config(config).await?;
        Ok(Self { connection, routes })
    }

    fn routes(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, mpsc::Sender<ChanItem>>> {
        // Only inserts and removals happen under this lock: a panic cannot leave the map half-changed.
        self.routes.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Hands a published message to its channel's subscriber. Called by redis for every push, on its own task: it must
/// not wait, so a subscriber that falls behind by its whole buffer loses the message (logged).
fn deliver(push: PushInfo, routes: &Routes) {
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
        return;
    }
    let mut data = push.data.into_iter();
    let (Some(channel), Some(payload)) = (data.next(), data.next()) else { return };
    let (Ok(channel), Ok(payload)) =
        (redis::from_redis_value::<String>(channel), redis::from_redis_value::<Vec<u8>>(payload))
    else {
        tracing::warn!("an unreadable message from Redis");
        return;
    };
    let routes = routes.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(subscriber) = routes.get(&channel)
        && let Err(e) = subscriber.try_send((channel, payload))
    {
        tracing::warn!(error = %e, "a Redis message was dropped: its subscriber is behind");
    }
}

impl Driver for ReconnectingDriver {
    type Error = DriverError;

    async fn publish(&self, channel: String, payload: Vec<u8>) -> Result<(), DriverError> {
        let mut connection = self.connection.clone();
        let publish = connection.publish::<_, _, redis::Value>(channel, payload);
        tokio::time::timeout(PUBLISH_TIMEOUT, publish).await.map_err(|_| DriverError::Timeout)??;
        Ok(())
    }

    async fn subscribe(&self, channel: String, size: usize) -> Result<MessageStream<ChanItem>, DriverError> {
        // The route first, so that nothing published right after the SUBSCRIBE is answered is missed.
        let (sender, receiver) = mpsc::channel(size.max(1));
        self.routes().insert(channel.clone(), sender);
        if let Err(e) = self.connection.clone().subscribe(channel.as_str()).await {
            self.routes().remove(&channel);
            return Err(e.into());
        }
        Ok(MessageStream::new(receiver))
    }

    async fn unsubscribe(&self, channel: String) -> Result<(), DriverError> {
        self.routes().remove(&channel);
        self.connection.clone().unsubscribe(channel).await?;
        Ok(())
    }

    async fn num_serv(&self, channel: &str) -> Result<u16, DriverError> {
        let (_, count): (String, u16) =
            redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut self.connection.clone()).await?;
        Ok(count)
    }
}
