use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use protocol::{
    AckResult, CHAT_NAMESPACE, ChatAuth, DisplayName, JoinRoom, Joined, LeaveReason, Member, MemberChange,
    PresenceChanged, RoomName, SessionToken,
};
use server::store::{Appended, MemoryStore, MessageStore, NewMessage, Page, StoreError, StoreFuture, StoredImage};
use server::{Application, Config};
use sio_client::{Client, Socket, SocketEvent};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long any single expected thing may take before the test fails. Generous: CI machines are slow, and a
/// passing test never waits for it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A running server on a free loopback port. Stopped when dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    task: JoinHandle<anyhow::Result<()>>,
    /// The database this helper made up for the test, removed with the app.
    temporary_database: Option<std::path::PathBuf>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(path) = &self.temporary_database {
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                // Best effort: a file that is not there is as good as removed.
                let _ = std::fs::remove_file(file);
            }
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Config::default()).await
}

/// A server with these settings, on a free loopback port whatever `config.addr` says.
pub async fn spawn_app_with(mut config: Config) -> TestApp {
    config.addr = Some("127.0.0.1:0".parse().unwrap());
    let mut temporary_database = None;
    if config.database == Config::default().database {
        // A database of its own per test, in the system's temporary directory.
        config.database = std::env::temp_dir().join(format!("causerie-test-{}.db", uuid::Uuid::new_v4()));
        temporary_database = Some(config.database.clone());
    }
    let app = Application::build(&config).await.expect("the app starts");
    serve(app, temporary_database)
}

/// A server with these settings that keeps its messages in `store`, on a free loopback port.
pub async fn spawn_app_with_store(mut config: Config, store: Arc<dyn MessageStore>) -> TestApp {
    config.addr = Some("127.0.0.1:0".parse().unwrap());
    let app = Application::build_with_store(&config, store).await.expect("the app starts");
    serve(app, None)
}

fn serve(app: Application, temporary_database: Option<std::path::PathBuf>) -> TestApp {
    let addr = app.local_addr().expect("the app has an address");
    let task = tokio::spawn(app.run_until_stopped());
    TestApp { addr, task, temporary_database }
}

impl TestApp {
    /// The SQLite database this helper made up for the test (none when the test chose its own store).
    pub fn database(&self) -> Option<&std::path::Path> {
        self.temporary_database.as_deref()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client connected to the chat namespace as `name`, a person of its own, not yet in any room.
    pub async fn connect(&self, name: &str) -> (Client, Socket) {
        self.connect_with_session(name, None).await
    }

    /// A client connected as `name` with this session token: every connection with the same token is one person.
    pub async fn connect_with_session(&self, name: &str, session: Option<&str>) -> (Client, Socket) {
        let client = Client::builder(self.base_url()).connect();
        let session = session.map(|token| SessionToken::parse(token).unwrap());
        let auth = ChatAuth { name: DisplayName::parse(name).unwrap(), session };
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
        join(&socket, room).await;
        (client, socket)
    }

    /// Another tab of the person holding `session`, joined to `room` as `name`.
    pub async fn tab(&self, name: &str, session: &str, room: &str) -> (Client, Socket) {
        let (client, socket) = self.connect_with_session(name, Some(session)).await;
        join(&socket, room).await;
        (client, socket)
    }
}

/// A room name the tests know to be valid.
pub fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

/// Joins `room`, failing the test if the server refuses.
pub async fn join(socket: &Socket, room: &str) -> Joined {
    let request = JoinRoom { room: RoomName::parse(room).unwrap(), since: None };
    within("the join ack", socket.request(&request, PATIENCE)).await.expect("the join is accepted")
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

/// A hand-driven Engine.IO connection over WebSocket: it does only what the test makes it do, and in
/// particular never answers a heartbeat by itself.
pub struct RawSocket {
    pub stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl RawSocket {
    pub async fn open(app: &TestApp) -> Self {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
        let (stream, _) = within("the WebSocket handshake", tokio_tungstenite::connect_async(url)).await.unwrap();
        let mut raw = Self { stream };
        let open = raw.recv_text().await;
        assert!(open.starts_with("0{"), "expected an Engine.IO open packet, got {open}");
        raw
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        use futures::SinkExt as _;
        let message = tokio_tungstenite::tungstenite::Message::text(text.into());
        within("a WebSocket send", self.stream.send(message)).await.unwrap();
    }

    /// The next text frame, failing on anything else.
    pub async fn recv_text(&mut self) -> String {
        match next("a WebSocket frame", &mut self.stream).await {
            Ok(tokio_tungstenite::tungstenite::Message::Text(text)) => text.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text frame that is not a heartbeat ping (which this socket leaves unanswered).
    pub async fn recv_skipping_pings(&mut self) -> String {
        loop {
            let text = self.recv_text().await;
            if text != "2" {
                return text;
            }
        }
    }

    /// Waits until the server closes the connection, failing if it does not within [`PATIENCE`].
    pub async fn closed_by_server(&mut self) {
        within("the server to close the connection", async {
            while let Some(frame) = self.stream.next().await {
                match frame {
                    Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

/// One HTTP/1.1 request on its own connection, with these extra headers; the whole response as text.
pub async fn http_request(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = within("a TCP connection", tokio::net::TcpStream::connect(app.addr)).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", app.addr);
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request
        .push_str(&format!("Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    within("the request to go out", stream.write_all(request.as_bytes())).await.unwrap();
    let mut response = Vec::new();
    within("the response", stream.read_to_end(&mut response)).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// Every presence change `socket` hears of, one by one, however the server grouped them into events.
pub fn presence_changes(socket: &Socket) -> impl Stream<Item = MemberChange> + Unpin + use<> {
    socket.on::<PresenceChanged>().flat_map(|event| futures::stream::iter(event.changes))
}

/// The members whose arrival `socket` hears of, in order.
pub fn arrivals(socket: &Socket) -> impl Stream<Item = Member> + Unpin + use<> {
    presence_changes(socket).filter_map(|change| futures::future::ready(change.joined()))
}

/// The names of the next `count` members `arrivals` yields, in order.
pub async fn next_names(what: &str, arrivals: &mut (impl Stream<Item = Member> + Unpin), count: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(count);
    while names.len() < count {
        names.push(next(what, arrivals).await.name.as_str().to_owned());
    }
    names
}

/// The members whose departure `socket` hears of, in order, with why they left.
pub fn departures(socket: &Socket) -> impl Stream<Item = (Member, LeaveReason)> + Unpin + use<> {
    presence_changes(socket).filter_map(|change| futures::future::ready(change.left()))
}

/// A store that holds the next read of a room's latest messages until the test lets it go on, and can make that
/// read fail then.
#[derive(Default)]
pub struct HeldRead {
    messages: MemoryStore,
    /// The next read of a room's latest messages is held.
    pub armed: AtomicBool,
    /// The held read fails once let go.
    pub fails: AtomicBool,
    /// Notified when the held read has begun.
    pub reached: Notify,
    /// Lets the held read go on.
    pub release: Notify,
}

impl MessageStore for HeldRead {
    fn append(&self, message: NewMessage) -> StoreFuture<'_, Appended> {
        self.messages.append(message)
    }

    fn latest(&self, room: RoomName, limit: usize) -> StoreFuture<'_, Page> {
        Box::pin(async move {
            if self.armed.swap(false, Ordering::SeqCst) {
                self.reached.notify_one();
                self.release.notified().await;
                if self.fails.load(Ordering::SeqCst) {
                    return Err(StoreError::Worker("the test failed this read".into()));
                }
            }
            self.messages.latest(room, limit).await
        })
    }

    fn after(&self, room: RoomName, seq: u64, limit: usize) -> StoreFuture<'_, Page> {
        self.messages.after(room, seq, limit)
    }

    fn before(&self, room: RoomName, seq: u64, limit: usize) -> StoreFuture<'_, Page> {
        self.messages.before(room, seq, limit)
    }

    fn image(&self, id: String) -> StoreFuture<'_, Option<StoredImage>> {
        self.messages.image(id)
    }
}
