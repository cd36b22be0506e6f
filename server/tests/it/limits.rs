//! Frames over the size limit, over WebSocket and long-polling: the offender is cut off, everyone else goes on.

use protocol::{MessageBody, RoomName, SendMessage};
use server::Config;

use crate::helpers::{PATIENCE, RawSocket, http_request, spawn_app_with, within};

fn small_limit() -> Config {
    Config { max_payload: 4096, ..Config::default() }
}

#[tokio::test]
async fn an_oversized_websocket_frame_closes_that_connection_only() {
    let app = spawn_app_with(small_limit()).await;
    let (_a, ada) = app.member("Ada", "general").await;
    let mut attacker = RawSocket::open(&app).await;
    attacker.send_text(r#"40{"name":"Mallory"}"#).await;
    let connected = attacker.recv_skipping_pings().await;
    assert!(connected.starts_with("40"), "{connected}");
    attacker.send_text(format!(r#"42["send",{{"room":"general","body":"{}"}}]"#, "x".repeat(10_000))).await;
    attacker.closed_by_server().await;

    let send = SendMessage {
        room: RoomName::parse("general").unwrap(),
        body: MessageBody::parse("fine").unwrap(),
        client_id: None,
    };
    within("ada's message", ada.request(&send, PATIENCE)).await.unwrap();
}

#[tokio::test]
async fn an_oversized_polling_request_is_refused_with_413_and_ends_the_session() {
    let app = spawn_app_with(small_limit()).await;
    let handshake = http_request(&app, "GET", "/socket.io/?EIO=4&transport=polling", &[], "").await;
    let sid = handshake
        .split(r#""sid":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no sid in {handshake}"))
        .to_owned();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let huge = format!("4{}", "x".repeat(10_000));
    let response = http_request(&app, "POST", &path, &[], &huge).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let after = http_request(&app, "GET", &path, &[], "").await;
    assert!(after.starts_with("HTTP/1.1 400"), "the session is gone: {after}");
}
