use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures::{Stream, StreamExt};
use protocol::{AckResult, CHAT_NAMESPACE, ChatAuth, DisplayName, JoinRoom, RoomName};
use server::{Application, Config};
use sio_client::{Client, Socket, SocketEvent};
use tokio::task::JoinHandle;

/// How long any single expected thing may take before the test fails. Generous: CI machines are slow, and a
/// passing test never waits for it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A running server on a free loopback port. Stopped when dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Config::default()).await
}

/// A server with these settings, on a free loopback port whatever `config.addr` says.
pub async fn spawn_app_with(mut config: Config) -> TestApp {
    config.addr = Some("127.0.0.1:0".parse().unwrap());
    let app = Application::build(&config).await.expect("the app starts");
    let addr = app.local_addr().expect("the app has an address");
    let task = tokio::spawn(app.run_until_stopped());
    TestApp { addr, task }
}

impl TestApp {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client connected to the chat namespace as `name`, not yet in any room.
    pub async fn connect(&self, name: &str) -> (Client, Socket) {
        let client = Client::builder(self.base_url()).connect();
        let auth = ChatAuth { name: DisplayName::parse(name).unwrap() };
        let socket = client.socket_with_auth(CHAT_NAMESPACE, &auth).unwrap();
        let mut lifecycle = socket.lifecycle();
        match within("the chat namespace to connect", lifecycle.next()).await {
            Some(SocketEvent::Connected { .. }) => {}
            other => panic!("expected a connection, got {other:?}"),
        }
        (client, socket)
    }

    /// A client connected as `name` and joined to `room`.
    pub async fn member(&self, name: &str, room: &str) -> (Client, Socket) {
        let (client, socket) = self.connect(name).await;
        let join = JoinRoom { room: RoomName::parse(room).unwrap() };
        let joined = within("the join ack", socket.request(&join, PATIENCE)).await.expect("the join is accepted");
        assert_eq!(joined.you.as_str(), name);
        (client, socket)
    }
}

/// Awaits `future`, failing the test with `what` if it takes longer than [`PATIENCE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// The next item of a stream, failing the test if none comes in time.
pub async fn next<S: Stream + Unpin>(what: &str, stream: &mut S) -> S::Item {
    within(what, stream.next()).await.unwrap_or_else(|| panic!("the stream ended while waiting for {what}"))
}

/// An ack decoded as an error body, for requests that must be refused.
pub fn refusal<T: std::fmt::Debug>(ack: AckResult<T>) -> protocol::ErrorBody {
    match ack {
        AckResult::Error(error) => error,
        AckResult::Ok(value) => panic!("expected a refusal, got {value:?}"),
    }
}
