use std::time::Duration;

use serde_json::{Value, json};

use crate::Millis;
use crate::engine::{EnginePacket, OpenInfo};
use crate::manager::*;

const OPEN: &str = r#"0{"sid":"e1","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#;

fn at(ms: u64) -> Millis {
    Millis(ms)
}

fn no_jitter() -> Config {
    Config { randomization_factor: 0.0, ..Config::default() }
}

/// A manager with its transport open and handshake done, and `/` connected.
fn connected(config: Config) -> Manager {
    let mut m = Manager::new(config, 7);
    m.open_namespace("/", Some(json!({"name": "Ada"})));
    assert_eq!(m.poll_action(), Some(Action::OpenTransport));
    m.transport_opened(at(0), TransportKind::WebSocket);
    m.handle_packet(at(0), EnginePacket::decode_text(OPEN).unwrap());
    assert_eq!(sent(&mut m), vec![r#"40{"name":"Ada"}"#.to_owned()]);
    server(&mut m, 0, r#"0{"sid":"s1"}"#);
    drain_outputs(&mut m);
    m
}

/// A manager whose transport is open and handshake done, with `/` opened (no `auth`) and its CONNECT not yet
/// answered.
fn handshaken() -> Manager {
    let mut m = Manager::new(Config::default(), 1);
    m.open_namespace("/", None);
    m.poll_action();
    m.transport_opened(at(0), TransportKind::WebSocket);
    m.handle_packet(at(0), EnginePacket::decode_text(OPEN).unwrap());
    m
}

fn server(m: &mut Manager, now: u64, socket_packet: &str) {
    m.handle_packet(at(now), EnginePacket::Message(socket_packet.to_owned()));
}

/// The text form of every packet the manager wants sent.
fn sent(m: &mut Manager) -> Vec<String> {
    std::iter::from_fn(|| m.poll_transmit())
        .map(|p| match p.to_frame() {
            crate::Frame::Text(t) => t,
            crate::Frame::Binary(b) => format!("<{} bytes>", b.len()),
        })
        .collect()
}

fn drain_outputs(m: &mut Manager) -> Vec<Output> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

fn states(outputs: &[Output]) -> Vec<ConnectionState> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::State(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_handshake_connects_every_namespace_opened_before_it() {
    let mut m = Manager::new(Config::default(), 1);
    m.open_namespace("/", None);
    m.open_namespace("/admin", Some(json!({"token": "t"})));
    assert_eq!(m.poll_action(), Some(Action::OpenTransport));
    m.transport_opened(at(5), TransportKind::WebSocket);
    assert!(sent(&mut m).is_empty(), "nothing is sent before the server's OPEN");
    m.handle_packet(at(10), EnginePacket::decode_text(OPEN).unwrap());
    assert_eq!(sent(&mut m), vec!["40".to_owned(), r#"40/admin,{"token":"t"}"#.to_owned()]);
    assert_eq!(m.state(), &ConnectionState::Connected { transport: TransportKind::WebSocket });
    assert_eq!(m.open_info().map(|i: &OpenInfo| i.sid.as_str()), Some("e1"));
}

#[test]
fn a_namespace_is_connected_once_the_server_answers_its_connect() {
    let mut m = handshaken();
    assert!(!m.is_connected("/"));
    server(&mut m, 1, r#"0{"sid":"abc"}"#);
    assert!(m.is_connected("/"));
    assert!(drain_outputs(&mut m).contains(&Output::Connected { nsp: "/".into(), sid: Some("abc".into()) }));
}

#[test]
fn a_ping_is_answered_with_a_pong_carrying_the_same_data() {
    let mut m = connected(Config::default());
    m.handle_packet(at(100), EnginePacket::Ping(String::new()));
    assert_eq!(sent(&mut m), vec!["3".to_owned()]);
}

#[test]
fn silence_past_ping_interval_plus_timeout_counts_as_a_dead_server() {
    let mut m = connected(no_jitter());
    // A ping at 250 moves the deadline to 250 + 300 + 200.
    m.handle_packet(at(250), EnginePacket::Ping(String::new()));
    assert_eq!(m.poll_timeout(), Some(at(750)));
    m.handle_timeout(at(749));
    assert!(m.is_connected("/"));
    m.handle_timeout(at(750));
    assert_eq!(m.poll_action(), Some(Action::CloseTransport));
    let outputs = drain_outputs(&mut m);
    assert!(outputs.contains(&Output::Disconnected { nsp: "/".into(), reason: DisconnectReason::PingTimeout }));
    assert_eq!(
        states(&outputs),
        vec![ConnectionState::Reconnecting { attempt: 1, delay: Duration::from_millis(1000) }]
    );
}

#[test]
fn reconnection_backs_off_and_reconnects_every_namespace() {
    let mut m = connected(no_jitter());
    m.open_namespace("/admin", None);
    server(&mut m, 0, r#"0/admin,{"sid":"a1"}"#);
    sent(&mut m);

    m.transport_closed(at(1000), DisconnectReason::TransportClose);
    assert_eq!(m.poll_timeout(), Some(at(2000)));
    m.handle_timeout(at(2000));
    assert_eq!(m.poll_action(), Some(Action::OpenTransport));
    // The attempt fails: the next delay doubles.
    m.transport_closed(at(2100), DisconnectReason::TransportError("refused".into()));
    assert_eq!(m.poll_timeout(), Some(at(4100)));
    assert_eq!(m.state(), &ConnectionState::Reconnecting { attempt: 2, delay: Duration::from_millis(2000) });

    m.handle_timeout(at(4100));
    assert_eq!(m.poll_action(), Some(Action::OpenTransport));
    m.transport_opened(at(4100), TransportKind::WebSocket);
    m.handle_packet(at(4150), EnginePacket::decode_text(OPEN).unwrap());
    assert_eq!(sent(&mut m), vec![r#"40{"name":"Ada"}"#.to_owned(), "40/admin,".to_owned()]);
}

#[test]
fn emits_made_while_offline_are_sent_once_in_order_after_reconnecting() {
    let mut m = connected(no_jitter());
    m.transport_closed(at(10), DisconnectReason::TransportClose);
    for i in 0..3 {
        m.emit(at(20), "/", "send", vec![json!(i)], vec![], EmitOptions::default()).unwrap();
    }
    assert!(sent(&mut m).is_empty());
    m.handle_timeout(at(1010));
    m.transport_opened(at(1010), TransportKind::WebSocket);
    m.handle_packet(at(1010), EnginePacket::decode_text(OPEN).unwrap());
    assert_eq!(sent(&mut m), vec![r#"40{"name":"Ada"}"#.to_owned()]);
    server(&mut m, 1011, r#"0{"sid":"s2"}"#);
    assert_eq!(sent(&mut m), vec![r#"42["send",0]"#, r#"42["send",1]"#, r#"42["send",2]"#]);
    // A second connect answer does not resend them.
    server(&mut m, 1012, r#"0{"sid":"s2"}"#);
    assert!(sent(&mut m).is_empty());
}

#[test]
fn a_volatile_emit_is_dropped_while_offline() {
    let mut m = connected(no_jitter());
    m.transport_closed(at(10), DisconnectReason::TransportClose);
    let options = EmitOptions { volatile: true, ..EmitOptions::default() };
    m.emit(at(20), "/", "typing", vec![], vec![], options).unwrap();
    m.handle_timeout(at(1010));
    m.transport_opened(at(1010), TransportKind::WebSocket);
    m.handle_packet(at(1010), EnginePacket::decode_text(OPEN).unwrap());
    server(&mut m, 1011, r#"0{"sid":"s2"}"#);
    assert_eq!(sent(&mut m), vec![r#"40{"name":"Ada"}"#.to_owned()]);
}

#[test]
fn an_ack_is_matched_to_its_emit_by_id() {
    let mut m = connected(Config::default());
    let options = EmitOptions { ack: Some(Duration::from_millis(500)), ..EmitOptions::default() };
    let id = m.emit(at(0), "/", "join", vec![json!({"room": "r"})], vec![], options).unwrap();
    assert_eq!(id, Some(0));
    assert_eq!(sent(&mut m), vec![r#"420["join",{"room":"r"}]"#.to_owned()]);
    server(&mut m, 5, r#"30[{"ok":true}]"#);
    assert_eq!(
        drain_outputs(&mut m),
        vec![Output::Ack { id: 0, args: vec![json!({"ok": true}).into()], attachments: vec![] }]
    );
}

#[test]
fn an_ack_that_does_not_arrive_in_time_fails_and_a_late_one_is_ignored() {
    let mut m = connected(Config::default());
    let options = EmitOptions { ack: Some(Duration::from_millis(100)), ..EmitOptions::default() };
    m.emit(at(0), "/", "join", vec![], vec![], options).unwrap();
    m.handle_timeout(at(99));
    assert!(drain_outputs(&mut m).is_empty());
    m.handle_timeout(at(100));
    assert_eq!(drain_outputs(&mut m), vec![Output::AckFailed { id: 0, reason: AckFailure::Timeout }]);
    server(&mut m, 150, r#"30[{"ok":true}]"#);
    assert!(drain_outputs(&mut m).is_empty());
}

#[test]
fn a_connect_error_is_surfaced_and_not_retried() {
    let mut m = handshaken();
    sent(&mut m);
    server(&mut m, 1, r#"4{"message":"name in use"}"#);
    let outputs = drain_outputs(&mut m);
    assert!(outputs.contains(&Output::ConnectError {
        nsp: "/".into(),
        message: "name in use".into(),
        data: json!({"message": "name in use"}),
    }));
    assert_eq!(m.state(), &ConnectionState::Disconnected { reason: DisconnectReason::ServerDisconnect });
    assert_eq!(m.poll_action(), Some(Action::CloseTransport));
    assert_eq!(m.poll_timeout(), None, "no reconnection is scheduled");
}

#[test]
fn a_refused_namespace_leaves_the_other_namespaces_connected() {
    let mut m = connected(Config::default());
    m.open_namespace("/admin", Some(json!({"token": "wrong"})));
    server(&mut m, 1, r#"4/admin,{"message":"bad token"}"#);
    assert!(m.is_connected("/"));
    assert_eq!(m.state(), &ConnectionState::Connected { transport: TransportKind::WebSocket });
    assert_eq!(
        m.emit(at(2), "/admin", "x", vec![], vec![], EmitOptions::default()),
        Err(EmitError::NamespaceClosed("/admin".into()))
    );
}

#[test]
fn a_server_side_disconnect_does_not_reconnect() {
    let mut m = connected(Config::default());
    server(&mut m, 5, "1");
    let outputs = drain_outputs(&mut m);
    assert!(outputs.contains(&Output::Disconnected { nsp: "/".into(), reason: DisconnectReason::ServerDisconnect }));
    assert_eq!(m.state(), &ConnectionState::Disconnected { reason: DisconnectReason::ServerDisconnect });
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn reconnection_gives_up_after_the_allowed_attempts() {
    let mut m = connected(Config { reconnection_attempts: Some(2), ..no_jitter() });
    let options = EmitOptions { ack: Some(Duration::MAX), ..EmitOptions::default() };
    m.emit(at(0), "/", "join", vec![], vec![], options).unwrap();
    m.transport_closed(at(0), DisconnectReason::TransportClose);
    m.handle_timeout(at(1000));
    m.transport_closed(at(1000), DisconnectReason::TransportError("refused".into()));
    m.handle_timeout(at(3000));
    m.transport_closed(at(3000), DisconnectReason::TransportError("refused".into()));
    assert_eq!(m.state(), &ConnectionState::Disconnected { reason: DisconnectReason::ReconnectFailed });
    assert!(drain_outputs(&mut m).contains(&Output::AckFailed { id: 0, reason: AckFailure::Closed }));
}

#[test]
fn closing_the_client_disconnects_namespaces_and_fails_pending_acks() {
    let mut m = connected(Config::default());
    let options = EmitOptions { ack: Some(Duration::from_secs(5)), ..EmitOptions::default() };
    m.emit(at(0), "/", "join", vec![], vec![], options).unwrap();
    sent(&mut m);
    m.close(at(1));
    assert_eq!(sent(&mut m), vec!["41".to_owned()]);
    assert_eq!(m.poll_action(), Some(Action::CloseTransport));
    let outputs = drain_outputs(&mut m);
    assert!(outputs.contains(&Output::AckFailed { id: 0, reason: AckFailure::Closed }));
    assert_eq!(m.state(), &ConnectionState::Disconnected { reason: DisconnectReason::ClientClosed });
    assert_eq!(
        m.emit(at(2), "/", "x", vec![], vec![], EmitOptions::default()),
        Err(EmitError::NamespaceClosed("/".into()))
    );
}

#[test]
fn binary_events_arrive_with_their_attachments() {
    let mut m = connected(Config::default());
    server(&mut m, 1, r#"51-["image",{"_placeholder":true,"num":0}]"#);
    assert!(drain_outputs(&mut m).is_empty());
    m.handle_packet(at(2), EnginePacket::Binary(vec![9, 8, 7]));
    assert_eq!(
        drain_outputs(&mut m),
        vec![Output::Event {
            nsp: "/".into(),
            name: "image".into(),
            args: vec![json!({"_placeholder": true, "num": 0}).into()],
            attachments: vec![vec![9, 8, 7]],
            ack_id: None,
        }]
    );
}

#[test]
fn binary_emits_send_the_attachments_after_the_header() {
    let mut m = connected(Config::default());
    let placeholder = json!({"_placeholder": true, "num": 0});
    m.emit(at(0), "/", "image", vec![placeholder], vec![vec![1, 2]], EmitOptions::default()).unwrap();
    assert_eq!(sent(&mut m), vec![r#"451-["image",{"_placeholder":true,"num":0}]"#.to_owned(), "<2 bytes>".to_owned()]);
}

#[test]
fn garbage_from_the_server_closes_the_transport_and_reconnects() {
    let mut m = connected(no_jitter());
    server(&mut m, 1, "9nonsense");
    assert_eq!(m.poll_action(), Some(Action::CloseTransport));
    assert!(matches!(m.state(), ConnectionState::Reconnecting { .. }));
}

#[test]
fn a_handshake_that_never_comes_times_out() {
    let mut m = Manager::new(Config { connect_timeout: Duration::from_millis(50), ..no_jitter() }, 1);
    m.poll_action();
    m.transport_opened(at(0), TransportKind::WebSocket);
    assert_eq!(m.poll_timeout(), Some(at(50)));
    m.handle_timeout(at(50));
    assert_eq!(m.poll_action(), Some(Action::CloseTransport));
    assert!(matches!(m.state(), ConnectionState::Reconnecting { attempt: 1, .. }));
}

#[test]
fn server_events_for_a_connected_namespace_are_delivered_with_their_ack_id() {
    let mut m = connected(Config::default());
    server(&mut m, 1, r#"27["ping?",1]"#);
    assert_eq!(
        drain_outputs(&mut m),
        vec![Output::Event {
            nsp: "/".into(),
            name: "ping?".into(),
            args: vec![Value::from(1).into()],
            attachments: vec![],
            ack_id: Some(7)
        }]
    );
    m.ack("/", 7, vec![json!("pong")], vec![]);
    assert_eq!(sent(&mut m), vec![r#"437["pong"]"#.to_owned()]);
}

#[test]
fn acks_of_emits_already_sent_fail_at_once_when_the_connection_drops_and_buffered_ones_wait_for_the_next() {
    let mut m = connected(no_jitter());
    let options = EmitOptions { ack: Some(Duration::MAX), ..EmitOptions::default() };
    let sent_one = m.emit(at(0), "/", "send", vec![json!("out")], vec![], options).unwrap();
    sent(&mut m);
    m.transport_closed(at(10), DisconnectReason::TransportClose);
    let buffered = m.emit(at(20), "/", "send", vec![json!("later")], vec![], options).unwrap();
    let outputs = drain_outputs(&mut m);
    // The server's socket for the first is gone: no answer can come, even to an ack that waits forever.
    assert!(outputs.contains(&Output::AckFailed { id: sent_one.unwrap(), reason: AckFailure::Closed }));
    assert!(!outputs.iter().any(|o| matches!(o, Output::AckFailed { id, .. } if Some(*id) == buffered)));

    m.handle_timeout(at(1010));
    m.transport_opened(at(1010), TransportKind::WebSocket);
    m.handle_packet(at(1010), EnginePacket::decode_text(OPEN).unwrap());
    server(&mut m, 1011, r#"0{"sid":"s2"}"#);
    assert_eq!(sent(&mut m), vec![r#"40{"name":"Ada"}"#.to_owned(), r#"421["send","later"]"#.to_owned()]);
    // Sent now, over the new connection: it fails if that one drops too.
    m.transport_closed(at(1100), DisconnectReason::TransportClose);
    let outputs = drain_outputs(&mut m);
    assert!(outputs.contains(&Output::AckFailed { id: 1, reason: AckFailure::Closed }));
}

#[test]
fn an_emit_whose_ack_timed_out_while_offline_is_not_sent_after_reconnecting() {
    let mut m = connected(no_jitter());
    m.transport_closed(at(10), DisconnectReason::TransportClose);
    let options = EmitOptions { ack: Some(Duration::from_millis(500)), ..EmitOptions::default() };
    m.emit(at(20), "/", "send", vec![json!("given up")], vec![], options).unwrap();
    m.emit(at(20), "/", "send", vec![json!("kept")], vec![], EmitOptions::default()).unwrap();
    m.handle_timeout(at(520));
    assert!(drain_outputs(&mut m).contains(&Output::AckFailed { id: 0, reason: AckFailure::Timeout }));

    m.handle_timeout(at(1010));
    m.transport_opened(at(1010), TransportKind::WebSocket);
    m.handle_packet(at(1010), EnginePacket::decode_text(OPEN).unwrap());
    server(&mut m, 1011, r#"0{"sid":"s2"}"#);
    // The caller was told it failed and may be sending it again: the first copy stays unsent.
    assert_eq!(sent(&mut m), vec![r#"40{"name":"Ada"}"#.to_owned(), r#"42["send","kept"]"#.to_owned()]);
}

#[test]
fn leaving_a_namespace_fails_its_pending_acks_but_not_another_namespaces() {
    let mut m = connected(no_jitter());
    m.open_namespace("/admin", None);
    server(&mut m, 0, r#"0/admin,{"sid":"a1"}"#);
    let options = EmitOptions { ack: Some(Duration::MAX), ..EmitOptions::default() };
    let admin = m.emit(at(1), "/admin", "stats", vec![], vec![], options).unwrap();
    let chat = m.emit(at(1), "/", "join", vec![], vec![], options).unwrap();
    drain_outputs(&mut m);
    m.close_namespace(at(2), "/admin");
    let outputs = drain_outputs(&mut m);
    assert!(outputs.contains(&Output::AckFailed { id: admin.unwrap(), reason: AckFailure::Closed }));
    assert!(!outputs.iter().any(|o| matches!(o, Output::AckFailed { id, .. } if Some(*id) == chat)));
}

#[test]
fn opening_a_namespace_twice_before_the_server_answers_sends_one_connect() {
    let mut m = handshaken();
    m.open_namespace("/", None);
    // Two CONNECTs would be two sockets on the server, the first left behind in its rooms.
    assert_eq!(sent(&mut m), vec!["40".to_owned()]);
}

#[test]
fn a_namespace_left_before_the_server_answered_its_connect_is_disconnected_when_the_answer_comes() {
    let mut m = connected(no_jitter());
    m.open_namespace("/admin", None);
    assert_eq!(sent(&mut m), vec!["40/admin,".to_owned()]);
    m.close_namespace(at(1), "/admin");
    assert!(sent(&mut m).is_empty(), "nothing to tell a server that has not answered yet");
    server(&mut m, 2, r#"0/admin,{"sid":"a1"}"#);
    assert_eq!(sent(&mut m), vec!["41/admin,".to_owned()]);
    assert!(!m.is_connected("/admin"));
}

#[test]
fn a_namespace_left_and_opened_again_before_the_answer_waits_for_it_instead_of_asking_twice() {
    let mut m = connected(no_jitter());
    m.open_namespace("/admin", None);
    assert_eq!(sent(&mut m), vec!["40/admin,".to_owned()]);
    m.close_namespace(at(1), "/admin");
    m.open_namespace("/admin", None);
    assert!(sent(&mut m).is_empty(), "a second CONNECT would open a second socket on the server");
    drain_outputs(&mut m);

    server(&mut m, 2, r#"0/admin,{"sid":"a1"}"#);
    assert!(sent(&mut m).is_empty(), "the namespace is wanted again: no DISCONNECT");
    assert!(m.is_connected("/admin"));
    assert_eq!(drain_outputs(&mut m), vec![Output::Connected { nsp: "/admin".into(), sid: Some("a1".into()) }]);
}

#[test]
fn a_namespace_left_before_its_answer_asks_again_on_the_next_connection() {
    let mut m = connected(no_jitter());
    m.open_namespace("/admin", None);
    sent(&mut m);
    m.close_namespace(at(1), "/admin");
    // That answer can never come now: the session it was asked on is gone.
    m.transport_closed(at(10), DisconnectReason::TransportClose);
    m.handle_timeout(at(1010));
    m.transport_opened(at(1010), TransportKind::WebSocket);
    m.handle_packet(at(1010), EnginePacket::decode_text(OPEN).unwrap());
    assert_eq!(sent(&mut m), vec![r#"40{"name":"Ada"}"#.to_owned()]);
    m.open_namespace("/admin", None);
    assert_eq!(sent(&mut m), vec!["40/admin,".to_owned()]);
}
