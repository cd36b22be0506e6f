//! The socketioxide peer of the conformance tests: the same small protocol as `peers/node/server.js` (see there),
//! served by socketioxide. Environment: PORT, TRANSPORTS, PING_INTERVAL, PING_TIMEOUT; prints `listening <port>`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmpv::Value;
use serde::Deserialize;
use socketioxide::extract::{AckSender, Data, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::{SocketIo, TransportType};

#[derive(Debug, Deserialize)]
struct Auth {
    token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(&'static str);

#[derive(Debug, Deserialize)]
struct Record {
    key: String,
    n: u64,
}

/// What each key's `record` events carried, in arrival order.
#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<HashMap<String, Vec<u64>>>>);

fn token(auth: Result<Auth, impl std::fmt::Debug>) -> Option<String> {
    auth.ok().and_then(|a| a.token)
}

// The handlers are registered by the connect middlewares, before the CONNECT packet goes out: socketioxide runs
// the connect handler itself only after sending it, on a task of its own, and an event that arrives before a
// handler exists is dropped unanswered. A client that emits as soon as it is connected (every scenario does) then
// waited for an answer that never came, about one run of the suite in fifteen.

async fn refuse_reject(socket: SocketRef, TryData(auth): TryData<Auth>) -> Result<(), Refused> {
    if token(auth).as_deref() == Some("reject") {
        return Err(Refused("rejected"));
    }
    handlers(&socket);
    Ok(())
}

async fn require_secret(socket: SocketRef, TryData(auth): TryData<Auth>) -> Result<(), Refused> {
    if token(auth).as_deref() != Some("secret") {
        return Err(Refused("unauthorized"));
    }
    handlers(&socket);
    Ok(())
}

fn handlers(socket: &SocketRef) {
    socket.on("echo", async |socket: SocketRef, Data(value): Data<Value>| {
        // The socket may be gone already; the test then fails on its own.
        let _ = socket.emit("echo", &value);
    });
    socket.on("echo-ack", async |Data(value): Data<Value>, ack: AckSender| {
        let _ = ack.send(&value);
    });
    socket.on("no-ack", async || {});
    socket.on("record", async |Data(record): Data<Record>, State(recorded): State<Recorded>| {
        if let Ok(mut map) = recorded.0.lock() {
            map.entry(record.key).or_default().push(record.n);
        }
    });
    socket.on("recorded", async |Data(key): Data<String>, ack: AckSender, State(recorded): State<Recorded>| {
        let list = recorded.0.lock().map(|map| map.get(&key).cloned().unwrap_or_default()).unwrap_or_default();
        let _ = ack.send(&list);
    });
    socket.on("ask-me", async |socket: SocketRef, Data(question): Data<Value>| {
        let Ok(pending) = socket.timeout(Duration::from_secs(10)).emit_with_ack::<_, Value>("question", &question)
        else {
            return;
        };
        if let Ok(answer) = pending.await {
            let _ = socket.emit("answer", &answer);
        }
    });
    socket.on("disconnect-me", async |socket: SocketRef| {
        let _ = socket.disconnect();
    });
}

/// Nothing left to do once connected: the middlewares registered the handlers.
async fn connected() {}

fn millis(name: &str, default: u64) -> Duration {
    Duration::from_millis(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let transports = std::env::var("TRANSPORTS").unwrap_or_else(|_| "polling,websocket".into());
    let builder = SocketIo::builder()
        .with_state(Recorded::default())
        .ping_interval(millis("PING_INTERVAL", 25_000))
        .ping_timeout(millis("PING_TIMEOUT", 20_000));
    let builder = match (transports.contains("polling"), transports.contains("websocket")) {
        (true, false) => builder.transports([TransportType::Polling]),
        (false, true) => builder.transports([TransportType::Websocket]),
        _ => builder,
    };
    let (layer, io) = builder.build_layer();
    io.ns("/", connected.with(refuse_reject));
    io.ns("/admin", connected.with(require_secret));

    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening {}", listener.local_addr()?.port());
    axum::serve(listener, axum::Router::new().layer(layer)).await
}
