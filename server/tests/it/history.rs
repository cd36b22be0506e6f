//! Durable messages: numbering, history on join, resuming after a gap, retries stored once, restarts.

use protocol::{
    AckResult, ChatMessage, ClientId, ErrorCode, HistoryFrom, HistoryPage, JoinRoom, Joined, LoadHistory,
    MessageAccepted, MessageBody, SendMessage,
};
use server::Config;

use crate::helpers::{PATIENCE, join, next, refusal, room, spawn_app, spawn_app_with, within};

fn send(body: &str, client_id: Option<&str>) -> SendMessage {
    SendMessage {
        room: room("general"),
        body: MessageBody::parse(body).unwrap(),
        client_id: client_id.map(|id| ClientId::parse(id).unwrap()),
    }
}

fn older_than(seq: u64) -> LoadHistory {
    LoadHistory { room: room("general"), from: HistoryFrom::Before(seq) }
}

fn bodies(messages: &[ChatMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.body.as_str()).collect()
}

#[tokio::test]
async fn messages_are_numbered_in_their_room_and_come_back_with_a_join() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    for (i, body) in ["one", "two", "three"].into_iter().enumerate() {
        let accepted: MessageAccepted = within("the ack", ada.request(&send(body, None), PATIENCE)).await.unwrap();
        assert_eq!(accepted.message.seq, i as u64 + 1);
    }
    let (_b, bob) = app.connect("Bob").await;
    let joined = join(&bob, "general").await;
    assert_eq!(bodies(&joined.history), vec!["one", "two", "three"]);
    assert!(!joined.has_more);
}

#[tokio::test]
async fn a_rejoin_with_since_gets_exactly_what_was_missed_in_order() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    for body in ["seen 1", "seen 2", "missed 3", "missed 4"] {
        within("the ack", ada.request(&send(body, None), PATIENCE)).await.unwrap();
    }
    let (_b, bob) = app.connect("Bob").await;
    let request = JoinRoom { room: room("general"), since: Some(2) };
    let joined = within("the join", bob.request(&request, PATIENCE)).await.unwrap();
    assert_eq!(bodies(&joined.history), vec!["missed 3", "missed 4"]);
    assert_eq!(joined.history.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3, 4]);
}

#[tokio::test]
async fn a_retried_send_is_stored_once_acknowledged_with_the_original_and_sent_to_the_room_again() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let (_b, bob) = app.member("Bob", "general").await;
    let mut inbox = bob.on::<ChatMessage>();

    let first: MessageAccepted = within("the ack", ada.request(&send("once", Some("c-42")), PATIENCE)).await.unwrap();
    let retry: MessageAccepted = within("the retry", ada.request(&send("once", Some("c-42")), PATIENCE)).await.unwrap();
    assert_eq!(retry.message, first.message);
    let marker: MessageAccepted = within("a marker", ada.request(&send("marker", None), PATIENCE)).await.unwrap();
    assert_eq!(marker.message.seq, 2, "the retry took no number");

    // The retry goes to the room again, under its original number (the first broadcast may not have happened);
    // Bob's connection is in order, so the two copies come before the marker.
    let original = next("the message", &mut inbox).await;
    assert_eq!((original.body.as_str(), original.seq), ("once", 1));
    assert_eq!(next("the retry's copy", &mut inbox).await, original);
    assert_eq!(next("the marker", &mut inbox).await.body.as_str(), "marker");
    let (_c, carol) = app.connect("Carol").await;
    assert_eq!(bodies(&join(&carol, "general").await.history), vec!["once", "marker"]);
}

#[tokio::test]
async fn a_retry_of_an_old_message_is_answered_but_not_sent_to_the_room_again() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let (_b, bob) = app.member("Bob", "general").await;
    let mut inbox = bob.on::<ChatMessage>();
    let first: MessageAccepted =
        within("the ack", ada.request(&send("long ago", Some("c-7")), PATIENCE)).await.unwrap();
    assert_eq!(next("the message", &mut inbox).await.body.as_str(), "long ago");
    // As if it had been sent an hour ago.
    let database = rusqlite::Connection::open(app.database().expect("a SQLite database")).unwrap();
    database.execute("UPDATE messages SET sent_at = sent_at - 3600000", []).unwrap();

    let retry: MessageAccepted =
        within("the retry", ada.request(&send("long ago", Some("c-7")), PATIENCE)).await.unwrap();
    assert_eq!(retry.message.id, first.message.id);
    within("a marker", ada.request::<SendMessage>(&send("marker", None), PATIENCE)).await.unwrap();
    // Bob's connection is in order: a repeat would come before the marker.
    assert_eq!(next("the marker", &mut inbox).await.body.as_str(), "marker");
}

#[tokio::test]
async fn acknowledged_messages_survive_a_restart_of_the_server() {
    let database = std::env::temp_dir().join(format!("causerie-restart-{}.db", uuid::Uuid::new_v4()));
    let config = Config { database: database.clone(), ..Config::default() };
    {
        let app = spawn_app_with(config.clone()).await;
        let (_a, ada) = app.member("Ada", "general").await;
        within("the ack", ada.request(&send("before the restart", Some("c-1")), PATIENCE)).await.unwrap();
    }
    let app = spawn_app_with(config).await;
    let (_a, ada) = app.member("Ada", "general").await;
    let accepted: MessageAccepted = within("the ack", ada.request(&send("after", None), PATIENCE)).await.unwrap();
    assert_eq!(accepted.message.seq, 2, "numbering goes on where it stopped");
    let (_b, bob) = app.connect("Bob").await;
    assert_eq!(bodies(&join(&bob, "general").await.history), vec!["before the restart", "after"]);
    drop(app);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
}

#[tokio::test]
async fn older_messages_load_page_by_page_for_members_only() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    for i in 1..=3 {
        within("the ack", ada.request(&send(&format!("m{i}"), None), PATIENCE)).await.unwrap();
    }
    let older: HistoryPage = within("a page", ada.request(&older_than(3), PATIENCE)).await.unwrap();
    assert_eq!((bodies(&older.messages), older.has_more), (vec!["m1", "m2"], false));

    let (_e, eve) = app.connect("Eve").await;
    let ack: AckResult<HistoryPage> = within("the ack", eve.emit_with_ack(&older_than(3), PATIENCE)).await.unwrap();
    assert_eq!(refusal(ack).code, ErrorCode::NotInRoom);
}

#[tokio::test]
async fn a_member_asking_for_history_in_a_loop_is_slowed_down_in_words_and_nobody_else_is() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let (_b, bob) = app.member("Bob", "general").await;
    let budget = server::realtime::DEFAULT_READS;
    let started = std::time::Instant::now();
    let mut answered = 1; // the join
    let refused = loop {
        let ack: AckResult<HistoryPage> = within("a page", ada.emit_with_ack(&older_than(1), PATIENCE)).await.unwrap();
        match ack {
            AckResult::Ok(_) => answered += 1,
            AckResult::Error(error) => break error,
        }
        // The burst, and what the sustained rate refilled meanwhile (however slow this machine is).
        let refilled = (started.elapsed().as_secs_f64() * budget.per_second).ceil() as u32;
        assert!(answered <= budget.burst + refilled + 1, "still answered after {answered} reads");
    };
    assert!(answered >= budget.burst, "refused after only {answered} reads");
    assert_eq!(refused.code, ErrorCode::RateLimited);
    assert!(refused.message.starts_with("You are joining rooms or loading history too fast."), "{}", refused.message);
    // Bob's budget is his own.
    let page: HistoryPage = within("bob's page", bob.request(&older_than(1), PATIENCE)).await.unwrap();
    assert!(page.messages.is_empty());
}

#[tokio::test]
async fn a_client_that_missed_more_than_a_join_carries_pages_forward_to_the_newest() {
    let app = spawn_app_with(Config { message_burst: 500, ..Config::default() }).await;
    let (_a, ada) = app.member("Ada", "general").await;
    for i in 1..=130 {
        within("the ack", ada.request(&send(&format!("m{i}"), None), PATIENCE)).await.unwrap();
    }
    let (_b, bob) = app.connect("Bob").await;
    let joined: Joined =
        within("the join", bob.request(&JoinRoom { room: room("general"), since: Some(5) }, PATIENCE)).await.unwrap();
    assert!(joined.has_more, "130 messages do not fit in one answer");
    assert!(json_bytes(&joined.history) <= HistoryPage::MAX_BYTES);
    let mut seqs: Vec<u64> = joined.history.iter().map(|m| m.seq).collect();

    let mut pages = 0;
    loop {
        let after = *seqs.last().expect("the join brought the first missed messages");
        let forward = LoadHistory { room: room("general"), from: HistoryFrom::After(after) };
        let page: HistoryPage = within("the next page", bob.request(&forward, PATIENCE)).await.unwrap();
        assert!(!page.messages.is_empty() && json_bytes(&page.messages) <= HistoryPage::MAX_BYTES);
        seqs.extend(page.messages.iter().map(|m| m.seq));
        pages += 1;
        if !page.has_more {
            break;
        }
        assert!(pages < 130, "pages never ended");
    }
    assert_eq!(seqs, (6..=130).collect::<Vec<_>>(), "everything missed, once, in order");
}

/// The size of `messages` on the wire, as the server counts it.
fn json_bytes(messages: &[ChatMessage]) -> usize {
    messages.iter().map(|m| serde_json::to_vec(m).unwrap().len()).sum()
}

#[tokio::test]
async fn a_join_in_a_room_of_long_messages_brings_the_newest_that_fit_and_older_pages_bring_the_rest() {
    let app = spawn_app_with(Config { message_burst: 500, ..Config::default() }).await;
    let (_a, ada) = app.member("Ada", "general").await;
    for i in 1..=50 {
        let body = format!("{i:>3} {}", "a long line of chat ".repeat(15));
        within("the ack", ada.request(&send(&body, None), PATIENCE)).await.unwrap();
    }
    let (_b, bob) = app.connect("Bob").await;
    let joined = join(&bob, "general").await;
    let mut seqs: Vec<u64> = joined.history.iter().map(|m| m.seq).collect();
    assert!(joined.has_more && json_bytes(&joined.history) <= HistoryPage::MAX_BYTES);
    assert!(seqs.len() > 1 && seqs.len() < 50, "{} messages of 300 characters came with the join", seqs.len());
    assert_eq!(seqs.last(), Some(&50), "the newest come first");

    while let Some(&oldest) = seqs.first().filter(|&&seq| seq > 1) {
        let page: HistoryPage = within("an older page", bob.request(&older_than(oldest), PATIENCE)).await.unwrap();
        assert!(!page.messages.is_empty() && json_bytes(&page.messages) <= HistoryPage::MAX_BYTES);
        assert_eq!(page.has_more, page.messages[0].seq > 1);
        seqs.splice(0..0, page.messages.iter().map(|m| m.seq));
    }
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>(), "every message, once, in order");
}

#[tokio::test]
async fn a_message_longer_than_a_page_still_comes_alone() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let longest = "é".repeat(protocol::MAX_MESSAGE_CHARS);
    for body in ["before it", longest.as_str()] {
        within("the ack", ada.request(&send(body, None), PATIENCE)).await.unwrap();
    }
    let (_b, bob) = app.connect("Bob").await;
    let joined = join(&bob, "general").await;
    assert!(json_bytes(&joined.history) > HistoryPage::MAX_BYTES);
    assert_eq!((bodies(&joined.history), joined.has_more), (vec![longest.as_str()], true));
    let page: HistoryPage = within("the page before it", bob.request(&older_than(2), PATIENCE)).await.unwrap();
    assert_eq!((bodies(&page.messages), page.has_more), (vec!["before it"], false));
}
