//! The lobby and admin namespaces, multiplexed with the chat over one connection.

use protocol::{
    ADMIN_NAMESPACE, AckResult, AdminAuth, CHAT_NAMESPACE, ChatAuth, DisplayName, ErrorCode, JoinRoom, Joined,
    LOBBY_NAMESPACE, LeaveReason, MemberChange, MemberRemoved, MessageBody, RemoveMember, Removed, RoomsSnapshot,
    SendMessage, Stats,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use server::Config;
use sio_client::{Client, SocketEvent};

use crate::helpers::{
    HeldRead, PATIENCE, TestApp, departures, join, next, presence_changes, refusal, room, spawn_app_with,
    spawn_app_with_store, within,
};

const TOKEN: &str = "test-admin-token-123";

async fn app_with_admin() -> TestApp {
    spawn_app_with(Config { admin_token: Some(TOKEN.into()), ..Config::default() }).await
}

#[tokio::test]
async fn the_lobby_lists_active_rooms_with_their_people_live() {
    let app = app_with_admin().await;
    let (_a, _ada) = app.member("Ada", "general").await;
    let client = Client::builder(app.base_url()).connect();
    let mut snapshots = client.socket(LOBBY_NAMESPACE).on::<RoomsSnapshot>();
    let first = next("the first snapshot", &mut snapshots).await;
    assert_eq!(first.rooms.len(), 1);
    assert_eq!((first.rooms[0].room.as_str(), first.rooms[0].online), ("general", 1));

    let (bob_client, _bob) = app.member("Bob", "general").await;
    let counts = |snapshot: &RoomsSnapshot| snapshot.rooms.iter().map(|r| r.online).collect::<Vec<_>>();
    while counts(&next("a snapshot with bob", &mut snapshots).await) != vec![2] {}
    bob_client.close();
    while counts(&next("a snapshot without bob", &mut snapshots).await) != vec![1] {}
}

#[tokio::test]
async fn a_bad_admin_token_is_a_connect_error_and_the_chat_on_the_same_connection_goes_on() {
    let app = app_with_admin().await;
    let (_b, _bob) = app.member("Bob", "general").await;
    // One client, one Engine.IO connection, two namespaces.
    let client = Client::builder(app.base_url()).connect();
    let auth = ChatAuth { name: DisplayName::parse("Ada").unwrap(), session: None };
    let chat = client.socket_with_auth(CHAT_NAMESPACE, &auth).unwrap();
    let mut chat_lifecycle = chat.lifecycle();
    let admin = client.socket_with_auth(ADMIN_NAMESPACE, &AdminAuth { token: "wrong-token-wrong".into() }).unwrap();
    let mut admin_lifecycle = admin.lifecycle();

    assert!(matches!(next("the chat to connect", &mut chat_lifecycle).await, SocketEvent::Connected { .. }));
    match next("the admin refusal", &mut admin_lifecycle).await {
        SocketEvent::ConnectError { message, .. } => assert_eq!(message, "Invalid admin token."),
        other => panic!("expected a connect error, got {other:?}"),
    }
    join(&chat, "general").await;
    let send =
        SendMessage { room: room("general"), body: MessageBody::parse("still chatting").unwrap(), client_id: None };
    within("a message after the refusal", chat.request(&send, PATIENCE)).await.unwrap();
}

#[tokio::test]
async fn without_a_configured_token_the_admin_namespace_refuses_everybody() {
    let app = spawn_app_with(Config::default()).await;
    let client = Client::builder(app.base_url()).connect();
    let admin = client.socket_with_auth(ADMIN_NAMESPACE, &AdminAuth { token: String::new() }).unwrap();
    match next("the admin refusal", &mut admin.lifecycle()).await {
        SocketEvent::ConnectError { message, .. } => assert!(message.contains("--admin-token"), "{message}"),
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn admins_get_live_stats_of_connections_rooms_and_messages() {
    let app = app_with_admin().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let (_b, _bob) = app.member("Bob", "general").await;
    let send = SendMessage { room: room("general"), body: MessageBody::parse("hello").unwrap(), client_id: None };
    within("a message", ada.request(&send, PATIENCE)).await.unwrap();

    let client = Client::builder(app.base_url()).connect();
    let admin = client.socket_with_auth(ADMIN_NAMESPACE, &AdminAuth { token: TOKEN.into() }).unwrap();
    let mut stats = admin.on::<Stats>();
    let first: Stats = next("stats", &mut stats).await;
    assert_eq!(first.connections, 2, "the two chat connections; the admin's own is not chat");
    assert_eq!(first.polling + first.websocket, 2);
    assert_eq!(first.messages_total, 1);
    assert_eq!(first.rooms.len(), 1);
    let names: Vec<&str> = first.rooms[0].members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["Ada", "Bob"]);
    // And again a second later, without asking.
    next("the next stats", &mut stats).await;
}

#[tokio::test]
async fn an_admin_removes_a_member_from_a_room_on_all_their_tabs() {
    let app = app_with_admin().await;
    let session = "ada-session-token-0001";
    let (_a1, tab1) = app.tab("Ada", session, "general").await;
    let (_a2, tab2) = app.tab("Ada", session, "general").await;
    let ada_id = join(&tab1, "general").await.you.id;
    let (_b, bob) = app.member("Bob", "general").await;
    let mut bob_sees = departures(&bob);
    let mut tab1_removed = tab1.on::<Removed>();
    let mut tab2_removed = tab2.on::<Removed>();

    let client = Client::builder(app.base_url()).connect();
    let admin = client.socket_with_auth(ADMIN_NAMESPACE, &AdminAuth { token: TOKEN.into() }).unwrap();
    let remove = RemoveMember { room: room("general"), member: ada_id.clone() };
    let removed: MemberRemoved = within("the removal", admin.request(&remove, PATIENCE)).await.unwrap();
    assert_eq!(removed.member.name.as_str(), "Ada");

    assert_eq!(next("tab 1's notice", &mut tab1_removed).await.room.as_str(), "general");
    assert_eq!(next("tab 2's notice", &mut tab2_removed).await.room.as_str(), "general");
    let left = next("bob's notice", &mut bob_sees).await;
    assert_eq!((left.0.name.as_str(), left.1), ("Ada", LeaveReason::Removed));

    // Out of the room: sending there is refused, and removing again finds nobody.
    let send = SendMessage { room: room("general"), body: MessageBody::parse("I'm back").unwrap(), client_id: None };
    let ack: AckResult<protocol::MessageAccepted> =
        within("the ack", tab2.emit_with_ack(&send, PATIENCE)).await.unwrap();
    assert_eq!(refusal(ack).code, ErrorCode::NotInRoom);
    let again: AckResult<MemberRemoved> = within("the ack", admin.emit_with_ack(&remove, PATIENCE)).await.unwrap();
    assert_eq!(refusal(again).code, ErrorCode::NotFound);
}

#[tokio::test]
async fn a_removal_right_after_an_arrival_reaches_the_room_after_that_arrival() {
    let app = app_with_admin().await;
    let client = Client::builder(app.base_url()).connect();
    let admin = client.socket_with_auth(ADMIN_NAMESPACE, &AdminAuth { token: TOKEN.into() }).unwrap();
    next("the admin connected", &mut admin.on::<Stats>()).await;
    let (_b, bob) = app.member("Bob", "general").await;
    let mut changes = presence_changes(&bob);

    // Bob's own arrival began a burst of notices in the room: Cy's arrival, Ada's and then her removal wait for
    // its end. The removal must not overtake Ada's arrival, or Bob would be left seeing her in the room.
    let (_c, _cy) = app.member("Cy", "general").await;
    let (_a, ada) = app.member("Ada", "general").await;
    let ada_id = join(&ada, "general").await.you.id;
    let remove = RemoveMember { room: room("general"), member: ada_id };
    within("the removal", admin.request(&remove, PATIENCE)).await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(match next("a change at bob's", &mut changes).await {
            MemberChange::Joined { member } => format!("{} joined", member.name),
            MemberChange::Left { member, reason } => format!("{} left: {reason:?}", member.name),
            MemberChange::Unknown => "unknown".to_owned(),
        });
    }
    assert_eq!(seen, ["Cy joined", "Ada joined", "Ada left: Removed"]);
}

#[tokio::test]
async fn a_member_removed_while_their_join_reads_the_history_is_told_so_and_not_answered_as_joined() {
    let store = Arc::new(HeldRead::default());
    let config = Config { admin_token: Some(TOKEN.into()), ..Config::default() };
    let app = spawn_app_with_store(config, store.clone()).await;
    let session = "ada-session-token-0002";
    let (_a1, tab1) = app.tab("Ada", session, "general").await;
    let ada_id = join(&tab1, "general").await.you.id;

    // Ada's second tab joins; the server has put it in the room and is reading the history for its answer.
    let (_a2, tab2) = app.connect_with_session("Ada", Some(session)).await;
    store.armed.store(true, Ordering::SeqCst);
    let request = JoinRoom { room: room("general"), since: None };
    let answer = within("the join's answer", tab2.emit_with_ack::<_, AckResult<Joined>>(&request, PATIENCE));
    let meanwhile = async {
        within("the join's read", store.reached.notified()).await;
        // Meanwhile an admin removes her; then the read goes on.
        let client = Client::builder(app.base_url()).connect();
        let admin = client.socket_with_auth(ADMIN_NAMESPACE, &AdminAuth { token: TOKEN.into() }).unwrap();
        let remove = RemoveMember { room: room("general"), member: ada_id };
        within("the removal", admin.request(&remove, PATIENCE)).await.unwrap();
        store.release.notify_one();
    };
    let (ack, ()) = tokio::join!(answer, meanwhile);

    // The join's answer says she was removed: not "joined" to a room she is not in.
    let ack = ack.unwrap();
    assert_eq!(refusal(ack).code, ErrorCode::NotFound);
}
