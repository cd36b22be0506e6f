//! Identity and presence: names, sessions, tabs, joined/left notices, the heartbeat, typing and private messages.

use protocol::{
    AckResult, ErrorCode, JoinRoom, Joined, LeaveReason, ListMembers, MessageBody, PrivateAccepted, PrivateMessage,
    SendMessage, SendPrivate, Typing, TypingNotice,
};
use server::Config;

use crate::helpers::{
    PATIENCE, RawSocket, arrivals, departures, join, next, next_names, refusal, room, spawn_app, spawn_app_with, within,
};

#[tokio::test]
async fn a_name_in_use_in_the_room_is_refused_whatever_its_case_but_free_elsewhere() {
    let app = spawn_app().await;
    let (_a, _ada) = app.member("Ada", "general").await;
    let (_i, impostor) = app.connect("ADA").await;
    let ack: AckResult<Joined> =
        within("the ack", impostor.emit_with_ack(&JoinRoom { room: room("general"), since: None }, PATIENCE))
            .await
            .unwrap();
    let error = refusal(ack);
    assert_eq!(error.code, ErrorCode::NameInUse);
    assert!(error.message.starts_with("Name in use"), "{}", error.message);
    join(&impostor, "elsewhere").await;
}

#[tokio::test]
async fn another_tab_of_the_same_session_is_let_in_as_the_same_member() {
    let app = spawn_app().await;
    let session = "ada-session-token-0001";
    let (_t1, tab1) = app.connect_with_session("Ada", Some(session)).await;
    let first = join(&tab1, "general").await;
    let (_t2, tab2) = app.connect_with_session("Ada", Some(session)).await;
    let second = join(&tab2, "general").await;
    assert_eq!(first.you, second.you);
    assert_eq!(second.members, vec![second.you.clone()], "one member, however many tabs");
    assert!(!second.you.id.0.contains(session), "the member id does not give the session away");
}

#[tokio::test]
async fn one_member_cannot_take_a_second_name_in_the_same_room() {
    let app = spawn_app().await;
    let session = "ada-session-token-0001";
    let (_t1, _tab1) = app.tab("Ada", session, "general").await;
    let (_t2, tab2) = app.connect_with_session("Countess", Some(session)).await;
    let ack: AckResult<Joined> =
        within("the ack", tab2.emit_with_ack(&JoinRoom { room: room("general"), since: None }, PATIENCE))
            .await
            .unwrap();
    let error = refusal(ack);
    assert_eq!(error.code, ErrorCode::NameInUse);
    assert!(error.message.contains("already in #general as Ada"), "{}", error.message);
}

#[tokio::test]
async fn others_see_a_person_join_once_and_leave_only_when_their_last_tab_goes() {
    let app = spawn_app().await;
    let (_b, bob) = app.member("Bob", "general").await;
    let mut joins = arrivals(&bob);
    let mut leaves = departures(&bob);

    let session = "ada-session-token-0001";
    let (tab1_client, _tab1) = app.tab("Ada", session, "general").await;
    let joined = next("ada's join notice", &mut joins).await;
    assert_eq!(joined.name.as_str(), "Ada");
    let (tab2_client, _tab2) = app.tab("Ada", session, "general").await;

    // Carol's arrival is announced after Ada's second tab: had that tab been announced, it would come first.
    let (_c, _carol) = app.member("Carol", "general").await;
    assert_eq!(next("carol's join notice", &mut joins).await.name.as_str(), "Carol");

    tab1_client.close();
    // Likewise: Dave's arrival proves that closing one of Ada's tabs announced nothing.
    let (_d, _dave) = app.member("Dave", "general").await;
    assert_eq!(next("dave's join notice", &mut joins).await.name.as_str(), "Dave");
    tab2_client.close();
    let left = next("ada's leave notice", &mut leaves).await;
    assert_eq!((left.0.name.as_str(), left.1), ("Ada", LeaveReason::Left));
    // That notice implies both tabs are gone. Had closing the first tab been announced too, its notice would have
    // come first and the second would be here by now: a room's notices arrive in order, so once Erin's arrival
    // (announced after Ada's departure) is here, nothing announced before it is still on its way.
    let (_e, _erin) = app.member("Erin", "general").await;
    assert_eq!(next("erin's join notice", &mut joins).await.name.as_str(), "Erin");
    let second = futures::FutureExt::now_or_never(futures::StreamExt::next(&mut leaves));
    assert!(second.is_none(), "ada left twice: {second:?}");
}

#[tokio::test]
async fn arrivals_in_quick_succession_all_reach_the_room_in_order_and_nobody_hears_of_themselves() {
    let app = spawn_app().await;
    let (_b, bob) = app.member("Bob", "general").await;
    let mut arrivals_at_bob = arrivals(&bob);
    // Bob's arrival began a burst of notices in the room: these wait for its end and come together, in more than
    // one event here (an event carries at most 16 changes).
    let names: Vec<String> = (1..=20).map(|i| format!("Guest {i}")).collect();
    let first_guest = app.member(&names[0], "general").await;
    let mut arrivals_at_first_guest = arrivals(&first_guest.1);
    let mut people = vec![first_guest];
    for name in &names[1..] {
        people.push(app.member(name, "general").await);
    }
    assert_eq!(next_names("an arrival", &mut arrivals_at_bob, names.len()).await, names);
    // The first guest's arrival is in the same burst as the others': their copy leaves it out.
    let seen = next_names("an arrival at the first guest's", &mut arrivals_at_first_guest, names.len() - 1).await;
    assert_eq!(seen, names[1..]);
}

#[tokio::test]
async fn someone_back_before_their_departure_was_announced_is_not_told_they_left() {
    let app = spawn_app().await;
    let (_b, bob) = app.member("Bob", "general").await;
    let mut bob_arrivals = arrivals(&bob);
    let mut bob_departures = departures(&bob);
    // Bob's arrival began a burst of notices: Ada's arrival and departure wait for its end...
    let session = "ada-session-token-0001";
    let (first_tab, tab) = app.tab("Ada", session, "general").await;
    let ada = join(&tab, "general").await.you.id;
    first_tab.close();
    // Gone once a private message to her is refused as having nobody to go to (asked until then: the server
    // learns of the closed connection a moment later).
    let whisper = SendPrivate { room: room("general"), to: ada, body: MessageBody::parse("still there?").unwrap() };
    loop {
        let ack: AckResult<PrivateAccepted> = within("the ack", bob.emit_with_ack(&whisper, PATIENCE)).await.unwrap();
        match ack.into_result() {
            Err(error) if error.code == ErrorCode::NotFound => break,
            Err(error) => panic!("unexpected refusal: {error:?}"),
            Ok(_) => {}
        }
    }
    // ...and she is back (a reload) before they go out.
    let (_t, reloaded) = app.tab("Ada", session, "general").await;
    let mut ada_arrivals = arrivals(&reloaded);
    let mut ada_departures = departures(&reloaded);
    let (_c, _cy) = app.member("Cy", "general").await;

    assert_eq!(next_names("an arrival at bob's", &mut bob_arrivals, 3).await, ["Ada", "Ada", "Cy"]);
    assert_eq!(next("ada's departure at bob's", &mut bob_departures).await.0.name.as_str(), "Ada");
    // Cy's arrival came after all of that, to Ada's new tab too: by then it would have had the departure.
    assert_eq!(next("cy's arrival at ada's", &mut ada_arrivals).await.name.as_str(), "Cy");
    let told = futures::FutureExt::now_or_never(futures::StreamExt::next(&mut ada_departures));
    assert!(told.is_none(), "Ada's new tab was told she left: {told:?}");
}

#[tokio::test]
async fn the_join_ack_lists_everyone_in_the_room() {
    let app = spawn_app().await;
    let (_a, _ada) = app.member("Ada", "general").await;
    let (_b, _bob) = app.member("Bob", "general").await;
    let (_c, _cy) = app.member("Cy", "elsewhere").await;
    let (_d, dora) = app.connect("Dora").await;
    let joined = join(&dora, "general").await;
    let names: Vec<&str> = joined.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["Ada", "Bob", "Dora"]);
}

#[tokio::test]
async fn a_join_to_a_big_room_lists_its_first_members_and_the_rest_come_page_by_page_to_members_only() {
    let app = spawn_app().await;
    let max = Joined::MAX_MEMBERS;
    let mut people = Vec::new();
    for i in 0..max + 8 {
        people.push(app.member(&format!("P{i:02}"), "big").await);
    }
    let (_n, newcomer) = app.connect("Newcomer").await;
    let joined = join(&newcomer, "big").await;
    assert_eq!(joined.members.len(), max, "one page with the join");
    let mut names: Vec<String> = joined.members.iter().map(|m| m.name.as_str().to_owned()).collect();
    let mut after = joined.more_members.expect("the list goes on");
    loop {
        let request = ListMembers { room: room("big"), after };
        let page = within("a page of members", newcomer.request(&request, PATIENCE)).await.unwrap();
        names.extend(page.members.iter().map(|m| m.name.as_str().to_owned()));
        match page.more {
            Some(next) => after = next,
            None => break,
        }
    }
    names.sort();
    let mut everyone: Vec<String> = (0..max + 8).map(|i| format!("P{i:02}")).collect();
    everyone.push("Newcomer".to_owned());
    everyone.sort();
    assert_eq!(names, everyone, "everyone, once each");

    // Someone outside the room is not told who is in it; a request that is not one is told what is wrong.
    let (_o, outsider) = app.connect("Outsider").await;
    let request = ListMembers { room: room("big"), after: protocol::MemberId(String::new()) };
    let ack: AckResult<protocol::MembersPage> =
        within("the outsider's answer", outsider.emit_with_ack(&request, PATIENCE)).await.unwrap();
    assert_eq!(refusal(ack).code, ErrorCode::NotInRoom);
    let garbled: AckResult<protocol::MembersPage> =
        within("the answer to a garbled request", newcomer.emit_with_ack(&NoCursor { room: "big".into() }, PATIENCE))
            .await
            .unwrap();
    let error = refusal(garbled);
    assert_eq!(error.code, ErrorCode::InvalidPayload);
    assert!(error.message.contains("after"), "{}", error.message);
}

#[tokio::test]
async fn pages_of_members_spend_the_reading_budget() {
    let app = spawn_app_with(Config { read_burst: 1, reads_per_second: 0.001, ..Config::default() }).await;
    // The join spends the one read there is.
    let (_a, ada) = app.member("Ada", "general").await;
    let request = ListMembers { room: room("general"), after: protocol::MemberId(String::new()) };
    let ack: AckResult<protocol::MembersPage> =
        within("the members page", ada.emit_with_ack(&request, PATIENCE)).await.unwrap();
    assert_eq!(refusal(ack).code, ErrorCode::RateLimited);
}

/// A members request without its `after`.
#[derive(serde::Serialize, serde::Deserialize)]
struct NoCursor {
    room: String,
}

impl protocol::Event for NoCursor {
    const NAME: &'static str = ListMembers::NAME;
}

#[tokio::test]
async fn a_join_whose_history_cannot_be_read_is_undone_and_leaves_nobody_behind_in_the_room() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let mut ada_hears = crate::helpers::presence_changes(&ada);
    // The server's reads now fail, as on a database that has gone wrong under it.
    let database = rusqlite::Connection::open(app.database().expect("a SQLite database")).unwrap();
    database.execute_batch("ALTER TABLE messages RENAME TO messages_away").unwrap();

    let (_b, bob) = app.connect("Bob").await;
    let request = JoinRoom { room: room("general"), since: None };
    let ack: AckResult<Joined> = within("bob's join ack", bob.emit_with_ack(&request, PATIENCE)).await.unwrap();
    let refused = refusal(ack);
    assert_eq!(refused.code, ErrorCode::Internal);

    // Ada saw Bob try and go; nobody who joins later finds him there.
    let first = next("bob's arrival", &mut ada_hears).await;
    assert_eq!(first.joined().map(|m| m.name.as_str().to_owned()).as_deref(), Some("Bob"));
    let second = next("bob's departure", &mut ada_hears).await;
    assert_eq!(second.left().map(|(m, _)| m.name.as_str().to_owned()).as_deref(), Some("Bob"));
    database.execute_batch("ALTER TABLE messages_away RENAME TO messages").unwrap();
    let (_c, cy) = app.connect("Cy").await;
    let joined = join(&cy, "general").await;
    let names: Vec<&str> = joined.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["Ada", "Cy"]);
    // And Bob, once reads work again, can join as himself rather than as a second tab of a ghost.
    let again = join(&bob, "general").await;
    assert_eq!(again.members.len(), 3);
}

#[tokio::test]
async fn a_repeated_join_that_fails_leaves_the_earlier_one_in_place() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let (_b, bob) = app.member("Bob", "general").await;
    let database = rusqlite::Connection::open(app.database().expect("a SQLite database")).unwrap();
    database.execute_batch("ALTER TABLE messages RENAME TO messages_away").unwrap();
    let request = JoinRoom { room: room("general"), since: None };
    let ack: AckResult<Joined> = within("bob's second join", bob.emit_with_ack(&request, PATIENCE)).await.unwrap();
    assert_eq!(refusal(ack).code, ErrorCode::Internal);
    database.execute_batch("ALTER TABLE messages_away RENAME TO messages").unwrap();
    // Bob is still in the room: he can send there, and Ada gets it.
    let mut inbox = ada.on::<protocol::ChatMessage>();
    let send = SendMessage { room: room("general"), body: MessageBody::parse("still here").unwrap(), client_id: None };
    within("bob's message", bob.request(&send, PATIENCE)).await.unwrap();
    assert_eq!(next("bob's message at ada's", &mut inbox).await.body.as_str(), "still here");
}

#[tokio::test]
async fn a_client_dropped_right_after_an_emit_closes_its_connection_instead_of_lingering() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let mut ada_departures = departures(&ada);
    for round in 0..5 {
        let name = format!("Bob{round}");
        let (client, bob) = app.member(&name, "general").await;
        // The emit and the end of every handle reach the client's driver together: it must still see the end
        // (it would otherwise answer the server's pings for ever, a ghost in the room).
        bob.emit(&Typing { room: room("general") }).unwrap();
        drop(bob);
        drop(client);
        let (gone, reason) = next("bob's departure", &mut ada_departures).await;
        assert_eq!((gone.name.as_str(), reason), (name.as_str(), LeaveReason::Left));
    }
}

#[tokio::test]
async fn a_tab_that_stops_answering_the_heartbeat_is_dropped_and_announced_as_left() {
    let config = Config { ping_interval: 200, ping_timeout: 200, ..Config::default() };
    let app = spawn_app_with(config).await;
    let (_b, bob) = app.member("Bob", "general").await;
    let mut leaves = departures(&bob);

    // A raw client joins, then goes silent: it never answers a ping.
    let mut zed = RawSocket::open(&app).await;
    zed.send_text(r#"40{"name":"Zed"}"#).await;
    assert!(zed.recv_skipping_pings().await.starts_with("40"), "the namespace connects");
    zed.send_text(r#"421["join",{"room":"general"}]"#).await;
    let ack = zed.recv_skipping_pings().await;
    assert!(ack.starts_with(r#"431[{"ok""#), "the join is accepted: {ack}");

    let left = next("zed's leave notice", &mut leaves).await;
    assert_eq!(left.0.name.as_str(), "Zed");
    zed.closed_by_server().await;
}

#[tokio::test]
async fn typing_reaches_the_others_in_the_room_but_not_the_typist_or_other_rooms() {
    let app = spawn_app().await;
    let session = "ada-session-token-0001";
    let (_a, ada) = app.tab("Ada", session, "general").await;
    let (_a2, ada_other_tab) = app.tab("Ada", session, "general").await;
    let (_b, bob) = app.member("Bob", "general").await;
    let (_c, carol) = app.member("Carol", "elsewhere").await;
    let mut bob_sees = bob.on::<TypingNotice>();
    let mut ada_sees = ada_other_tab.on::<TypingNotice>();
    let mut carol_sees = carol.on::<TypingNotice>();

    ada.emit(&Typing { room: room("general") }).unwrap();
    let notice = next("bob to see ada typing", &mut bob_sees).await;
    assert_eq!((notice.member.name.as_str(), notice.room.as_str()), ("Ada", "general"));

    // Bob types too: Ada's other tab must see Bob first (not herself), and Carol sees Dora in her own room only.
    bob.emit(&Typing { room: room("general") }).unwrap();
    assert_eq!(next("ada to see bob typing", &mut ada_sees).await.member.name.as_str(), "Bob");
    let (_d, dora) = app.member("Dora", "elsewhere").await;
    dora.emit(&Typing { room: room("elsewhere") }).unwrap();
    assert_eq!(next("carol to see dora typing", &mut carol_sees).await.member.name.as_str(), "Dora");
}

#[tokio::test]
async fn a_private_message_reaches_the_recipient_and_the_senders_other_tabs_only() {
    let app = spawn_app().await;
    let session = "ada-session-token-0001";
    let (_a, ada) = app.tab("Ada", session, "general").await;
    let (_a2, ada_other_tab) = app.tab("Ada", session, "general").await;
    let (_b, bob) = app.member("Bob", "general").await;
    let bob_id = join(&bob, "general").await.you.id;
    let (_c, carol) = app.member("Carol", "general").await;
    let mut bob_inbox = bob.on::<PrivateMessage>();
    let mut ada_inbox = ada_other_tab.on::<PrivateMessage>();
    let mut carol_private = carol.on::<PrivateMessage>();
    let mut carol_public = carol.on::<protocol::ChatMessage>();

    let request = SendPrivate { room: room("general"), to: bob_id, body: MessageBody::parse("psst").unwrap() };
    let accepted: PrivateAccepted = within("the ack", ada.request(&request, PATIENCE)).await.unwrap();
    assert_eq!((accepted.message.from.name.as_str(), accepted.message.to.name.as_str()), ("Ada", "Bob"));
    assert_eq!(next("bob's copy", &mut bob_inbox).await, accepted.message);
    assert_eq!(next("ada's other tab's copy", &mut ada_inbox).await, accepted.message);

    // Carol's connection is in order: a leaked private message would arrive before this public one.
    let public = SendMessage { room: room("general"), body: MessageBody::parse("hello all").unwrap(), client_id: None };
    within("the public ack", bob.request(&public, PATIENCE)).await.unwrap();
    assert_eq!(next("carol's public message", &mut carol_public).await.body.as_str(), "hello all");
    // The client dispatches in arrival order, so anything that arrived before that message is already queued.
    let stray = futures::FutureExt::now_or_never(futures::StreamExt::next(&mut carol_private));
    assert!(stray.is_none(), "carol got a private message: {stray:?}");
}

#[tokio::test]
async fn a_private_message_to_someone_absent_or_to_oneself_is_refused() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let me = join(&ada, "general").await.you.id;
    let (bob_client, bob) = app.member("Bob", "general").await;
    let bob_id = join(&bob, "general").await.you.id;
    let mut leaves = departures(&ada);
    bob_client.close();
    next("bob's leave notice", &mut leaves).await;

    let body = MessageBody::parse("are you there?").unwrap();
    let to_bob = SendPrivate { room: room("general"), to: bob_id, body: body.clone() };
    let ack: AckResult<PrivateAccepted> = within("the ack", ada.emit_with_ack(&to_bob, PATIENCE)).await.unwrap();
    assert_eq!(refusal(ack).code, ErrorCode::NotFound);

    let to_me = SendPrivate { room: room("general"), to: me, body };
    let ack: AckResult<PrivateAccepted> = within("the ack", ada.emit_with_ack(&to_me, PATIENCE)).await.unwrap();
    assert_eq!(refusal(ack).code, ErrorCode::InvalidPayload);
}

#[tokio::test]
async fn typing_right_after_sending_a_message_is_shown_again() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let (_b, bob) = app.member("Bob", "general").await;
    let mut bob_sees = bob.on::<TypingNotice>();
    let mut bob_inbox = bob.on::<protocol::ChatMessage>();

    ada.emit(&Typing { room: room("general") }).unwrap();
    next("the first notice", &mut bob_sees).await;
    let send = SendMessage { room: room("general"), body: MessageBody::parse("done").unwrap(), client_id: None };
    within("the message", ada.request(&send, PATIENCE)).await.unwrap();
    // At once, well inside the server's typing throttle: a new message starts a new notice regardless.
    ada.emit(&Typing { room: room("general") }).unwrap();
    next("bob's message", &mut bob_inbox).await;
    next("the second notice", &mut bob_sees).await;
}

#[tokio::test]
async fn a_burst_of_arrivals_reaches_the_room_in_order_in_events_of_at_most_a_few_changes() {
    let max = server::realtime::chat::CHANGES_PER_EVENT;
    let app = spawn_app().await;
    let (_b, bob) = app.member("Bob", "general").await;
    let mut events = bob.on::<protocol::PresenceChanged>();
    // Bob's arrival began a burst: the arrivals right after it wait for its end and then come together, in
    // events of at most `max` changes each, since each recipient keeps a write buffer the size of its largest.
    let mut people = Vec::new();
    let count = 2 * max + 3;
    for i in 0..count {
        people.push(app.member(&format!("P{i:02}"), "general").await);
    }
    let mut names = Vec::new();
    let mut largest = 0;
    while names.len() < count {
        let event = next("a presence event at Bob's", &mut events).await;
        assert!(event.changes.len() <= max, "{} changes in one event", event.changes.len());
        largest = largest.max(event.changes.len());
        names.extend(
            event.changes.iter().filter_map(|change| change.clone().joined()).map(|m| m.name.as_str().to_owned()),
        );
    }
    let expected: Vec<String> = (0..count).map(|i| format!("P{i:02}")).collect();
    assert_eq!(names, expected, "every arrival, once, in order");
    assert!(largest > 1, "the arrivals came together, not one event each");
}
