//! A hostile client on raw WebSocket and HTTP (issue #7): malformed Engine.IO and Socket.IO packets, invalid UTF-8,
//! deeply nested JSON, absurd attachment counts and floods. The server must not panic, must answer with a clear
//! error or a disconnect, and the people chatting alongside must not notice.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use futures::StreamExt as _;
use protocol::{ChatMessage, MessageBody, RoomName, SendMessage};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::helpers::{PATIENCE, RawSocket, TestApp, http_request, next, spawn_app, within};

/// Panics anywhere in this test process since it started: the server runs in-process, and a panicking handler
/// task would otherwise go unnoticed (tokio catches it). A test that fails elsewhere counts too, which is fine: a
/// failing run is a failing run.
fn panics() -> usize {
    static COUNT: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    COUNT
        .get_or_init(|| {
            let count = Arc::new(AtomicUsize::new(0));
            let seen = count.clone();
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                seen.fetch_add(1, Ordering::SeqCst);
                previous(info);
            }));
            count
        })
        .load(Ordering::SeqCst)
}

/// What became of a hostile connection.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The server closed it.
    Closed,
    /// It is still open and still answers a heartbeat: the input was ignored.
    Ignored,
}

/// Opens a raw connection signed in to the chat namespace, sends `frames`, and sees what the server does.
async fn attack(app: &TestApp, frames: Vec<Message>) -> Outcome {
    use futures::SinkExt as _;
    let mut raw = mallory(app).await;
    for frame in frames {
        if raw.stream.send(frame).await.is_err() {
            return Outcome::Closed;
        }
    }
    // A probe the server must answer if the connection is still usable: an event it acknowledges.
    if raw.stream.send(Message::text(r#"421["history",{}]"#)).await.is_err() {
        return Outcome::Closed;
    }
    within("the server to answer the probe or close", async {
        while let Some(frame) = raw.stream.next().await {
            match frame {
                Ok(Message::Text(text)) if text.starts_with("431") => return Outcome::Ignored,
                Ok(Message::Close(_)) | Err(_) => return Outcome::Closed,
                Ok(_) => {}
            }
        }
        Outcome::Closed
    })
    .await
}

fn text(s: impl Into<String>) -> Message {
    Message::text(s.into())
}

/// A text frame whose payload is not UTF-8, which a well-behaved WebSocket library refuses to build.
fn invalid_utf8_text() -> Message {
    Message::Frame(Frame::message(vec![b'4', b'2', 0xff, 0xfe, 0xfd], OpCode::Data(Data::Text), true))
}

fn send(room: &str, body: &str) -> SendMessage {
    SendMessage { room: RoomName::parse(room).unwrap(), body: MessageBody::parse(body).unwrap(), client_id: None }
}

/// Ada and Bob in #general: the people whose chat an attack must not disturb.
struct Bystanders {
    _clients: (sio_client::Client, sio_client::Client),
    ada: sio_client::Socket,
    bob_inbox: std::pin::Pin<Box<dyn futures::Stream<Item = ChatMessage> + Send>>,
}

impl Bystanders {
    async fn join(app: &TestApp) -> Self {
        let (a, ada) = app.member("Ada", "general").await;
        let (b, bob) = app.member("Bob", "general").await;
        let bob_inbox = Box::pin(bob.on::<ChatMessage>());
        Self { _clients: (a, b), ada, bob_inbox }
    }

    /// Ada tells Bob something and Bob hears it: the room still works.
    async fn still_chatting(&mut self) {
        within("ada's ack", self.ada.request(&send("general", "still here?"), PATIENCE)).await.unwrap();
        assert_eq!(next("bob to hear ada", &mut self.bob_inbox).await.body.as_str(), "still here?");
    }
}

/// A raw connection signed in to the chat namespace as Mallory.
async fn mallory(app: &TestApp) -> RawSocket {
    let mut raw = RawSocket::open(app).await;
    raw.send_text(r#"40{"name":"Mallory"}"#).await;
    let connected = raw.recv_skipping_pings().await;
    assert!(connected.starts_with("40{"), "the attacker is signed in first: {connected}");
    raw
}

#[tokio::test]
async fn malformed_packets_end_the_attackers_connection_and_never_the_server_or_the_room() {
    let panics_before = panics();
    let app = spawn_app().await;
    let mut bystanders = Bystanders::join(&app).await;
    let cases: Vec<(&str, Vec<Message>)> = vec![
        ("an empty frame", vec![text("")]),
        ("an unknown Engine.IO packet type", vec![text("9hello")]),
        ("an unknown Socket.IO packet type", vec![text("49[]")]),
        ("truncated JSON", vec![text(r#"42["send","#)]),
        ("an event that is not an array", vec![text(r#"42{"not":"an array"}"#)]),
        ("an event without a name", vec![text("42[]")]),
        ("an event whose name is a number", vec![text("42[123]")]),
        ("a binary event whose attachment never comes", vec![text(r#"451-["send",{"_placeholder":true,"num":0}]"#)]),
        ("a huge attachment count", vec![text(r#"4599999999999-["send"]"#)]),
        ("an attachment count that overflows", vec![text(r#"45184467440737095516160-["send"]"#)]),
        ("an attachment with no binary packet", vec![Message::binary(vec![1, 2, 3])]),
        ("invalid UTF-8 in a text frame", vec![invalid_utf8_text()]),
    ];
    for (name, frames) in cases {
        assert_eq!(attack(&app, frames).await, Outcome::Closed, "{name}");
    }
    bystanders.still_chatting().await;
    assert_eq!(panics(), panics_before, "the server panicked");
}

#[tokio::test]
async fn well_formed_nonsense_is_answered_with_an_error_or_ignored_and_the_connection_goes_on() {
    use futures::SinkExt as _;
    let panics_before = panics();
    let app = spawn_app().await;
    let mut raw = mallory(&app).await;

    // Nested far deeper than any JSON parser's recursion limit: a typed error, no stack overflow.
    let nested = format!(r#"427["send",{}{}]"#, "[".repeat(100_000), "]".repeat(100_000));
    raw.send_text(nested).await;
    let answer = raw.recv_skipping_pings().await;
    assert!(answer.starts_with(r#"437[{"error":{"code":"invalid_payload""#), "{answer}");

    // A namespace nobody serves: refused in words, on that namespace only.
    raw.send_text("40/nowhere,").await;
    let answer = raw.recv_skipping_pings().await;
    assert!(answer.starts_with("44/nowhere,"), "{answer}");

    // An ack for a request the server never made, and an event nobody handles: ignored.
    raw.send_text(r#"43999["x"]"#).await;
    raw.send_text(r#"42["no-such-event",{}]"#).await;
    raw.stream.send(Message::text(r#"421["history",{}]"#)).await.unwrap();
    let answer = raw.recv_skipping_pings().await;
    assert!(answer.starts_with("431["), "the connection still answers: {answer}");
    assert_eq!(panics(), panics_before, "the server panicked");
}

#[tokio::test]
async fn a_flood_of_events_is_rate_limited_and_the_room_keeps_talking() {
    use futures::SinkExt as _;
    let app = spawn_app().await;
    let mut bystanders = Bystanders::join(&app).await;
    let mut raw = mallory(&app).await;
    raw.send_text(r#"420["join",{"room":"general"}]"#).await;
    within("mallory's join", async { while !raw.recv_skipping_pings().await.starts_with(r#"430[{"ok""#) {} }).await;

    // Thousands of typing notices and messages, as fast as the socket takes them, each message asking for an ack.
    const SENDS: u32 = 500;
    for i in 0..2_000 {
        raw.stream.feed(text(r#"42["typing",{"room":"general"}]"#)).await.unwrap();
        if i % 4 == 0 {
            let id = 1 + i / 4;
            raw.stream.feed(text(format!(r#"42{id}["send",{{"room":"general","body":"spam {id}"}}]"#))).await.unwrap();
        }
    }
    raw.stream.flush().await.unwrap();
    let (mut accepted, mut limited) = (0, 0);
    within("an answer to every message", async {
        while accepted + limited < SENDS {
            let frame = raw.recv_skipping_pings().await;
            if frame.starts_with("43") {
                if frame.contains(r#""code":"rate_limited""#) {
                    limited += 1;
                } else if frame.contains(r#""ok""#) {
                    accepted += 1;
                }
            }
        }
    })
    .await;
    let burst = server::Config::default().message_burst;
    assert!(accepted <= burst + 5, "at most the burst gets through: {accepted} accepted");
    assert!(limited >= SENDS - burst - 5, "the rest is refused as rate-limited: {limited}");

    // Bob received Mallory's few accepted messages; Ada's next one still reaches him.
    bystanders.ada.request(&send("general", "still here?"), PATIENCE).await.unwrap();
    within("bob to hear ada through the spam", async {
        loop {
            if next("a message for bob", &mut bystanders.bob_inbox).await.body.as_str() == "still here?" {
                return;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_flood_of_abandoned_handshakes_does_not_stop_the_room() {
    let app = spawn_app().await;
    let mut bystanders = Bystanders::join(&app).await;
    let handshakes = (0..300).map(|_| http_request(&app, "GET", "/socket.io/?EIO=4&transport=polling", &[], ""));
    for response in futures::future::join_all(handshakes).await {
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    // Nonsense on the HTTP side too: a session that does not exist, a transport that does not, a protocol version
    // that is not served.
    for path in [
        "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
        "/socket.io/?EIO=4&transport=carrier-pigeon",
        "/socket.io/?EIO=99&transport=polling",
    ] {
        let response = http_request(&app, "GET", path, &[], "").await;
        assert!(response.starts_with("HTTP/1.1 400"), "{path}: {response}");
    }
    bystanders.still_chatting().await;
}

#[tokio::test]
async fn a_payload_that_claims_another_identity_is_sent_as_its_real_sender_and_other_rooms_stay_closed() {
    let app = spawn_app().await;
    let (_a, ada) = app.member("Ada", "general").await;
    let (_b, bob) = app.member("Bob", "general").await;
    let (_c, carol) = app.member("Carol", "secret").await;
    let ada_id = within(
        "ada's id",
        ada.request(&protocol::JoinRoom { room: RoomName::parse("general").unwrap(), since: None }, PATIENCE),
    )
    .await
    .unwrap()
    .you
    .id;
    let mut bob_inbox = bob.on::<ChatMessage>();
    let mut raw = mallory(&app).await;
    raw.send_text(r#"420["join",{"room":"general"}]"#).await;
    within("mallory's join", async { while !raw.recv_skipping_pings().await.starts_with(r#"430[{"ok""#) {} }).await;

    // Fields naming someone else, in a message and in a private message: the connection says who sends.
    let forged = format!(r#""from":{{"id":"{}","name":"Ada"}},"sender":"Ada""#, ada_id.0);
    raw.send_text(format!(r#"421["send",{{"room":"general","body":"I am Ada",{forged}}}]"#)).await;
    let message = next("bob to get mallory's message", &mut bob_inbox).await;
    assert_eq!(message.body.as_str(), "I am Ada");
    assert_eq!(message.from.name.as_str(), "Mallory");
    assert_ne!(message.from.id, ada_id);

    // A room Mallory is not in: nothing to read, nothing to post, no history.
    raw.send_text(r#"422["send",{"room":"secret","body":"hello carol"}]"#).await;
    raw.send_text(r#"423["history",{"room":"secret","before":1000}]"#).await;
    let mut refusals = Vec::new();
    within("both refusals", async {
        while refusals.len() < 2 {
            let frame = raw.recv_skipping_pings().await;
            if frame.starts_with("432[") || frame.starts_with("433[") {
                refusals.push(frame);
            }
        }
    })
    .await;
    for refusal in &refusals {
        assert!(refusal.contains(r#""code":"not_in_room""#), "{refusal}");
    }
    // Carol's messages arrive in order: had Mallory's reached her, it would come before Dave's.
    let mut carol_inbox = carol.on::<ChatMessage>();
    let (_d, dave) = app.member("Dave", "secret").await;
    within("dave's ack", dave.request(&send("secret", "only us"), PATIENCE)).await.unwrap();
    assert_eq!(next("carol's first message", &mut carol_inbox).await.body.as_str(), "only us");
}

/// A small fuzzer against the live server, for the test command (the long runs are the `cargo fuzz` targets):
/// valid events with random bytes changed, inserted or removed, sent as a client would, some asking for an ack.
#[tokio::test]
async fn random_mutations_of_valid_events_never_panic_the_server() {
    let panics_before = panics();
    let app = spawn_app().await;
    let mut bystanders = Bystanders::join(&app).await;
    let seeds = [
        r#"["join",{"room":"general","since":3}]"#,
        r#"["send",{"room":"general","body":"hello","clientId":"a-1"}]"#,
        r#"["history",{"room":"general","before":10}]"#,
        r#"["history",{"room":"general","after":0}]"#,
        r#"["private",{"room":"general","to":"0123456789abcdef0123","body":"psst"}]"#,
        r#"["typing",{"room":"general"}]"#,
        r#"["image",{"room":"general","contentType":"image/png","caption":"x"},{"_placeholder":true,"num":0}]"#,
    ];
    // Bytes that matter to JSON and to Socket.IO, and a few that do not.
    const ALPHABET: &[u8] = br#"{}[]",:0123456789-_/\ aeznul\u"#;
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut random = move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below.max(1) as u64) as usize
    };
    let mut raw = None;
    let mut closed = 0;
    for i in 0..1_500 {
        let mut event = seeds[i % seeds.len()].as_bytes().to_vec();
        for _ in 0..1 + random(4) {
            let at = random(event.len() + 1);
            match random(3) {
                0 if at < event.len() => event[at] = ALPHABET[random(ALPHABET.len())],
                1 => event.insert(at, ALPHABET[random(ALPHABET.len())]),
                _ if at < event.len() => {
                    event.remove(at);
                }
                _ => {}
            }
        }
        let event = String::from_utf8_lossy(&event).into_owned();
        let ack = if random(2) == 0 { String::new() } else { (i + 1).to_string() };
        if raw.is_none() {
            raw = Some(mallory(&app).await);
        }
        let Some(socket) = raw.as_mut() else { unreachable!() };
        use futures::SinkExt as _;
        if socket.stream.send(text(format!("42{ack}{event}"))).await.is_err() {
            // Cut off for a packet it could not parse: a new connection for the next one.
            raw = None;
            closed += 1;
        }
    }
    // Whatever is still queued for the server is read before the checks: an answer to a last request, or the end.
    if let Some(mut socket) = raw {
        use futures::SinkExt as _;
        if socket.stream.send(text(r#"4299999["history",{}]"#)).await.is_ok() {
            within("the last answer or the end of the connection", async {
                while let Some(Ok(frame)) = socket.stream.next().await {
                    if matches!(&frame, Message::Text(t) if t.starts_with("4399999[")) || frame.is_close() {
                        return;
                    }
                }
            })
            .await;
        }
    }
    eprintln!("{closed} connections cut off along the way");
    bystanders.still_chatting().await;
    assert_eq!(panics(), panics_before, "the server panicked");
}
