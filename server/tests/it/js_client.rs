//! The JavaScript example of docs/events.md, run with node and npm's socket.io-client against the real server.

use std::path::Path;
use std::process::Stdio;

use protocol::{ChatMessage, MessageBody, RoomName, SendMessage};

use crate::helpers::{PATIENCE, next, spawn_app, within};

#[tokio::test]
async fn the_documented_javascript_example_joins_a_room_and_chats_through_socket_io_client() {
    let app = spawn_app().await;
    let (_b, bob) = app.member("Bob", "general").await;
    let mut inbox = bob.on::<ChatMessage>();

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples");
    assert!(
        example.join("node_modules/socket.io-client").is_dir(),
        "socket.io-client is not installed in docs/examples: run scripts/setup.sh (or npm ci there)"
    );
    let child = tokio::process::Command::new("node")
        .arg("chat.mjs")
        .args([&app.base_url(), "Eve", "general", "hello from JS"])
        .current_dir(&example)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (it is installed by scripts/setup.sh)");

    let message = next("eve's message", &mut inbox).await;
    assert_eq!((message.from.name.as_str(), message.body.as_str()), ("Eve", "hello from JS"));
    let bye = SendMessage {
        room: RoomName::parse("general").unwrap(),
        body: MessageBody::parse("bye").unwrap(),
        client_id: None,
    };
    within("bob's goodbye", bob.request(&bye, PATIENCE)).await.unwrap();

    let output = within("the example to finish", child.wait_with_output()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the example failed: {stdout}{stderr}");
    assert!(stdout.contains("joined #general as Eve with Bob, Eve"), "{stdout}");
    assert!(stdout.contains("Bob: bye"), "{stdout}");
}
