//! Issue #7's attack at scale: while people chat, attackers on raw WebSocket and HTTP send malformed packets,
//! invalid UTF-8, deep JSON and absurd attachment counts, flood events, and open handshakes they abandon. Measures
//! whether the people noticed (every message delivered), how the attackers were answered, and whether the server
//! gave its memory back afterwards. The small version of each attack is a server integration test
//! (`server/tests/it/attack.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::target::{Launcher, Server, Target};
use crate::users::{Probe, Recorder, User, now_micros, receive, wait_until};

#[derive(Debug, Clone, Serialize)]
pub struct AttackConfig {
    /// People chatting meanwhile: rooms of `per_room`, each room's first member sending one message a second.
    pub people: u32,
    pub per_room: u32,
    /// Attacker connections sending malformed packets, each one packet per connection, this many times.
    pub malformed_connections: u32,
    pub malformed_rounds: u32,
    /// Attacker connections flooding well-formed events (typing and messages), and how many each.
    pub flooders: u32,
    pub flood_events: u32,
    /// Long-polling handshakes opened and never used.
    pub abandoned_handshakes: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttackResult {
    pub config: AttackConfig,
    pub seconds: f64,
    /// Malformed packets sent, and how many of them ended their connection (the rest were answered or ignored).
    pub malformed_sent: u64,
    pub malformed_cut_off: u64,
    pub flood_events_sent: u64,
    pub handshakes_opened: u64,
    /// The people's messages: acknowledged, and delivered to the rest of their room (expected, got).
    pub people_acknowledged: u64,
    pub people_expected: u64,
    pub people_delivered: u64,
    pub people_p99_ms: f64,
    /// The server's memory with the people connected, and 12 s after each wave of attackers, when their sessions
    /// have ended (the server runs with a 1 s + 1 s heartbeat here, and closes sessions that connect no namespace
    /// within 10 s).
    pub rss_before: u64,
    pub rss_after_waves: Vec<u64>,
    /// Lines of the server's log that say it panicked.
    pub panics: u64,
}

pub fn config(smoke: bool) -> AttackConfig {
    if smoke {
        AttackConfig {
            people: 6,
            per_room: 3,
            malformed_connections: 4,
            malformed_rounds: 13,
            flooders: 2,
            flood_events: 500,
            abandoned_handshakes: 50,
        }
    } else {
        AttackConfig {
            people: 100,
            per_room: 10,
            malformed_connections: 100,
            malformed_rounds: 130,
            flooders: 20,
            flood_events: 20_000,
            abandoned_handshakes: 5_000,
        }
    }
}

/// The packets of [`malformed`], round-robin.
fn malformed(round: u32) -> Message {
    let text = |s: &str| Message::text(s.to_owned());
    match round % 13 {
        0 => text(""),
        1 => text("9hello"),
        2 => text("49[]"),
        3 => text(r#"42["send","#),
        4 => text(r#"42{"not":"an array"}"#),
        5 => text("42[]"),
        6 => text("42[123]"),
        7 => text(r#"4599999999999-["send"]"#),
        8 => text(r#"45184467440737095516160-["send"]"#),
        9 => Message::binary(vec![1, 2, 3]),
        10 => Message::Frame(Frame::message(vec![b'4', b'2', 0xff, 0xfe], OpCode::Data(Data::Text), true)),
        11 => text(&format!(r#"42["send",{}{}]"#, "[".repeat(50_000), "]".repeat(50_000))),
        _ => text(r#"451-["image",{"_placeholder":true,"num":0}]"#),
    }
}

/// Waves of attackers in one run.
pub const WAVES: usize = 2;

/// The wait after each wave before the server's memory is read.
const COOL_DOWN: Duration = Duration::from_secs(12);

pub async fn attack(launcher: &Launcher, config: &AttackConfig) -> anyhow::Result<AttackResult> {
    let fast_heartbeat = ["--ping-interval", "1000", "--ping-timeout", "1000"].map(str::to_owned).to_vec();
    let server = Server::start_with(launcher, Target::CauserieSqlite, &fast_heartbeat).await?;
    let url = server.url();
    let ws_url = format!("ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket", server.port);

    // The people, talking throughout.
    let recorder = Arc::new(Recorder::default());
    let mut people = Vec::new();
    let mut tasks = Vec::new();
    for index in 0..config.people {
        let room = protocol::RoomName::parse(&format!("people-{}", index / config.per_room.max(1)))?;
        let mut user = User::open(&url, index, &room, &[sio_client::TransportKind::WebSocket])?;
        user.join(None).await.with_context(|| format!("person {index} joining"))?;
        tasks.extend(receive(&mut user, recorder.clone()));
        people.push(Arc::new(user));
    }
    let rss_before = server.usage()?.rss_bytes;
    let started = Instant::now();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let talking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    for person in people.iter().filter(|p| p.index % config.per_room.max(1) == 0) {
        let (person, acknowledged, talking) = (person.clone(), acknowledged.clone(), talking.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while talking.load(Ordering::SeqCst) {
                let probe = Probe { step: 0, sent_micros: now_micros(), sender: person.index, n };
                if person.send(probe.body()).await.is_ok() {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }

    // The attackers, all at once; twice, so that memory kept by a leak (which grows with each wave) can be told
    // from memory the allocator keeps for reuse (which does not).
    let malformed_sent = Arc::new(AtomicU64::new(0));
    let cut_off = Arc::new(AtomicU64::new(0));
    let flood_sent = Arc::new(AtomicU64::new(0));
    let handshakes = Arc::new(AtomicU64::new(0));
    let mut rss_after_waves = Vec::new();
    for _wave in 0..WAVES {
        let mut attackers = Vec::new();
        for connection in 0..config.malformed_connections {
            let (ws_url, sent, cut_off) = (ws_url.clone(), malformed_sent.clone(), cut_off.clone());
            let rounds = config.malformed_rounds;
            attackers.push(tokio::spawn(async move {
                for round in 0..rounds {
                    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&ws_url).await else { continue };
                    let signed_in = ws.send(Message::text(r#"40{"name":"Mallory"}"#)).await.is_ok();
                    if !signed_in || ws.send(malformed(round + connection)).await.is_err() {
                        cut_off.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    // A request the server answers if the connection survived; otherwise the server closes it.
                    let _ = ws.send(Message::text(r#"421["history",{}]"#)).await;
                    let ended = tokio::time::timeout(Duration::from_secs(10), async {
                        while let Some(frame) = ws.next().await {
                            match frame {
                                Ok(Message::Text(t)) if t.starts_with("431") => return false,
                                Ok(Message::Close(_)) | Err(_) => return true,
                                Ok(_) => {}
                            }
                        }
                        true
                    })
                    .await
                    .unwrap_or(false);
                    if ended {
                        cut_off.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for flooder in 0..config.flooders {
            let (ws_url, sent, events) = (ws_url.clone(), flood_sent.clone(), config.flood_events);
            attackers.push(tokio::spawn(async move {
                let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&ws_url).await else { return };
                let auth = format!(r#"40{{"name":"Flood{flooder}"}}"#);
                if ws.send(Message::text(auth)).await.is_err() {
                    return;
                }
                let _ = ws.send(Message::text(r#"42["join",{"room":"people-0"}]"#)).await;
                // Read whatever comes back, so that the server's writes to this connection never block on it.
                let (mut sink, mut stream) = ws.split();
                let drain = tokio::spawn(async move { while stream.next().await.is_some() {} });
                for i in 0..events {
                    let event = if i % 4 == 0 {
                        format!(r#"42{i}["send",{{"room":"people-0","body":"flood {i}"}}]"#)
                    } else {
                        r#"42["typing",{"room":"people-0"}]"#.to_owned()
                    };
                    if sink.feed(Message::text(event)).await.is_err() {
                        break;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                let _ = sink.flush().await;
                let _ = sink.close().await;
                drain.abort();
            }));
        }
        {
            let (port, opened, count) = (server.port, handshakes.clone(), config.abandoned_handshakes);
            attackers.push(tokio::spawn(async move {
                for _ in 0..count {
                    let Ok(mut tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { continue };
                    let request =
                        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
                    if tcp.write_all(request.as_bytes()).await.is_ok() {
                        let mut response = Vec::new();
                        if tcp.read_to_end(&mut response).await.is_ok() && response.starts_with(b"HTTP/1.1 200") {
                            opened.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for attacker in attackers {
            attacker.await.context("an attacker task")?;
        }
        // The attackers' sessions end: with the fast heartbeat, and for handshakes that never connected a
        // namespace, with the server's 10 s namespace-connect timeout.
        tokio::time::sleep(COOL_DOWN).await;
        rss_after_waves.push(server.usage()?.rss_bytes);
    }
    talking.store(false, Ordering::SeqCst);
    let seconds = started.elapsed().as_secs_f64();

    // Every message the people sent should reach the rest of their room; the flooders' messages in people-0 are
    // not probes and are not counted.
    let expected = acknowledged.load(Ordering::Relaxed) * u64::from(config.per_room.saturating_sub(1));
    wait_until(Duration::from_secs(10), || recorder.unique(0) >= expected).await;
    let received = recorder.take(0);
    drop(people);
    for task in tasks {
        task.abort();
    }
    let log = std::fs::read_to_string(server.log()).unwrap_or_default();
    Ok(AttackResult {
        config: config.clone(),
        seconds,
        malformed_sent: malformed_sent.load(Ordering::Relaxed),
        malformed_cut_off: cut_off.load(Ordering::Relaxed),
        flood_events_sent: flood_sent.load(Ordering::Relaxed),
        handshakes_opened: handshakes.load(Ordering::Relaxed),
        people_acknowledged: acknowledged.load(Ordering::Relaxed),
        people_expected: expected,
        people_delivered: received.unique,
        people_p99_ms: received.latencies.summary().p99,
        rss_before,
        rss_after_waves,
        panics: log.lines().filter(|line| line.contains("panicked")).count() as u64,
    })
}

/// The attack's section of `docs/reliability.md`.
pub fn markdown(result: &AttackResult) -> String {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    format!(
        "## Attack\n\nWhile {people} people chat in rooms of {per_room} (each room's first member sending a message \
         a second), attackers on raw WebSocket and HTTP, all at once: {mconn} connections each sending {mrounds} \
         malformed packets, one per connection (empty frames, unknown packet types, truncated JSON, events that \
         are not arrays or have no name, attachment counts of 10¹³ and 2⁶⁴+, binary frames with no packet, \
         invalid UTF-8, JSON nested 50,000 deep, a binary event whose attachment never comes); {flooders} \
         connections each flooding {flood} events (typing, and a message in four) as fast as they are taken; and \
         {handshakes} long-polling handshakes opened and abandoned; all of it twice, one wave after the other, so that \
         memory a leak keeps (more after each wave) can be told from memory the allocator keeps for reuse. \
         The server runs with SQLite, no rate limit \
         (the hardest case: every flooded message is stored) and a 1 s + 1 s heartbeat, so that abandoned \
         sessions expire during the run.\n\n\
         | | |\n|---|---|\n\
         | time, both waves and 12 s after each | {seconds:.1} s |\n\
         | malformed packets sent / connections the server then closed | {msent} / {mcut} |\n\
         | flood events sent | {fsent} |\n\
         | handshakes opened and abandoned | {hopened} |\n\
         | the people's messages: acknowledged, delivered to their rooms | {pack}; {pdel}/{pexp} |\n\
         | the people's p99 latency during the attack | {p99:.1} ms |\n\
         | server RSS: before, 12 s after each wave of attackers | {before:.1} MiB; {waves} |\n\
         | panics in the server's log | {panics} |\n",
        people = result.config.people,
        per_room = result.config.per_room,
        mconn = result.config.malformed_connections,
        mrounds = result.config.malformed_rounds,
        flooders = result.config.flooders,
        flood = result.config.flood_events,
        handshakes = result.config.abandoned_handshakes,
        seconds = result.seconds,
        msent = result.malformed_sent,
        mcut = result.malformed_cut_off,
        fsent = result.flood_events_sent,
        hopened = result.handshakes_opened,
        pack = result.people_acknowledged,
        pdel = result.people_delivered,
        pexp = result.people_expected,
        p99 = result.people_p99_ms,
        before = mib(result.rss_before),
        waves = result.rss_after_waves.iter().map(|&rss| format!("{:.1} MiB", mib(rss))).collect::<Vec<_>>().join(", "),
        panics = result.panics,
    )
}
