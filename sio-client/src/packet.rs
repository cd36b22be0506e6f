//! Socket.IO v5 packets, and the decoder that reassembles binary packets from their attachments.
//!
//! Text form: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]`, where the namespace is omitted for
//! `/`. A binary packet replaces each byte buffer in its data with `{"_placeholder":true,"num":i}` and is followed
//! by that many binary Engine.IO messages, in order.

use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::DecodeError;

/// The most attachments one packet may announce. The reference parser has no limit; an unbounded count would let a
/// peer make the decoder wait for, and buffer, any number of frames.
pub const MAX_ATTACHMENTS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

impl PacketKind {
    fn digit(self) -> char {
        match self {
            PacketKind::Connect => '0',
            PacketKind::Disconnect => '1',
            PacketKind::Event => '2',
            PacketKind::Ack => '3',
            PacketKind::ConnectError => '4',
            PacketKind::BinaryEvent => '5',
            PacketKind::BinaryAck => '6',
        }
    }

    fn from_digit(c: char) -> Result<Self, DecodeError> {
        Ok(match c {
            '0' => PacketKind::Connect,
            '1' => PacketKind::Disconnect,
            '2' => PacketKind::Event,
            '3' => PacketKind::Ack,
            '4' => PacketKind::ConnectError,
            '5' => PacketKind::BinaryEvent,
            '6' => PacketKind::BinaryAck,
            other => return Err(DecodeError::UnknownSocketType(other)),
        })
    }

    fn is_binary(self) -> bool {
        matches!(self, PacketKind::BinaryEvent | PacketKind::BinaryAck)
    }
}

/// One argument of an event or an acknowledgement, kept as its JSON text until someone decodes it, straight into
/// the type they want. (Decoding every payload into a `serde_json::Value` tree first, a map and a string per
/// field, was a third of the load generator's work.) The decoder checks only its JSON syntax: what a tree would
/// also refuse (nesting past 128 levels, a number too large for `f64`, a lone UTF-16 surrogate) is refused by
/// [`Arg::decode`] instead.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct Arg(Box<RawValue>);

impl Arg {
    /// The argument of this value.
    pub fn from_value(value: &Value) -> Self {
        // Serializing a `Value` cannot fail: its map keys are always strings.
        Self(serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }

    /// The argument's JSON text, as it came.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// Decodes the argument as `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.json())
    }

    /// The argument as a JSON tree.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        self.decode()
    }
}

impl From<Value> for Arg {
    fn from(value: Value) -> Self {
        Self::from_value(&value)
    }
}

/// Two arguments are equal when their JSON texts are (this crate writes JSON compactly, so a round trip keeps it).
impl PartialEq for Arg {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

/// A packet's JSON data.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// A CONNECT's auth or answer, or a CONNECT_ERROR's reason: small, and read as a tree.
    Value(Value),
    /// An EVENT's `[name, ...args]` or an ACK's `[...args]`: each element's JSON text.
    Array(Vec<Arg>),
}

/// One Socket.IO packet, with its binary attachments in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: PacketKind,
    pub nsp: String,
    pub id: Option<u64>,
    pub data: Option<Data>,
    pub attachments: Vec<Vec<u8>>,
}

impl Packet {
    /// A CONNECT to `nsp`, with an optional auth payload (which must be a JSON object).
    pub fn connect(nsp: &str, auth: Option<Value>) -> Self {
        let data = auth.map(Data::Value);
        Self { kind: PacketKind::Connect, nsp: nsp.to_owned(), id: None, data, attachments: Vec::new() }
    }

    pub fn disconnect(nsp: &str) -> Self {
        Self { kind: PacketKind::Disconnect, nsp: nsp.to_owned(), id: None, data: None, attachments: Vec::new() }
    }

    /// An EVENT (or BINARY_EVENT when there are attachments): `[event, ...args]`.
    pub fn event(nsp: &str, event: &str, args: Vec<Value>, attachments: Vec<Vec<u8>>, id: Option<u64>) -> Self {
        let mut array = Vec::with_capacity(args.len() + 1);
        array.push(Arg::from_value(&Value::String(event.to_owned())));
        array.extend(args.iter().map(Arg::from_value));
        let kind = if attachments.is_empty() { PacketKind::Event } else { PacketKind::BinaryEvent };
        Self { kind, nsp: nsp.to_owned(), id, data: Some(Data::Array(array)), attachments }
    }

    /// An ACK (or BINARY_ACK) answering the server's event `id`.
    pub fn ack(nsp: &str, id: u64, args: Vec<Value>, attachments: Vec<Vec<u8>>) -> Self {
        let kind = if attachments.is_empty() { PacketKind::Ack } else { PacketKind::BinaryAck };
        let data = Some(Data::Array(args.iter().map(Arg::from_value).collect()));
        Self { kind, nsp: nsp.to_owned(), id: Some(id), data, attachments }
    }

    /// Encodes the packet: the text message, then the attachments to send as binary messages after it.
    pub fn encode(&self) -> (String, &[Vec<u8>]) {
        let mut out = String::new();
        out.push(self.kind.digit());
        if self.kind.is_binary() {
            out.push_str(&self.attachments.len().to_string());
            out.push('-');
        }
        if self.nsp != "/" {
            out.push_str(&self.nsp);
            out.push(',');
        }
        if let Some(id) = self.id {
            out.push_str(&id.to_string());
        }
        match &self.data {
            // Serializing a `Value` cannot fail: its map keys are always strings.
            Some(Data::Value(value)) => out.push_str(&serde_json::to_string(value).unwrap_or_default()),
            Some(Data::Array(items)) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(item.json());
                }
                out.push(']');
            }
            None => {}
        }
        (out, &self.attachments)
    }

    /// For an EVENT: the event name and its arguments, taken out of the packet.
    pub fn take_event(&mut self) -> Option<(String, Vec<Arg>)> {
        if !matches!(self.kind, PacketKind::Event | PacketKind::BinaryEvent) {
            return None;
        }
        let Some(Data::Array(mut items)) = self.data.take() else { return None };
        let name = items.first()?.decode::<String>().ok()?;
        items.remove(0);
        Some((name, items))
    }

    /// For an ACK: its arguments, taken out of the packet.
    pub fn take_args(&mut self) -> Vec<Arg> {
        match self.data.take() {
            Some(Data::Array(items)) => items,
            _ => Vec::new(),
        }
    }

    /// The JSON tree of a CONNECT or CONNECT_ERROR packet's data.
    pub fn value(&self) -> Option<&Value> {
        match &self.data {
            Some(Data::Value(value)) => Some(value),
            _ => None,
        }
    }
}

/// Parses the text part of a packet. A binary packet comes back with its expected attachment count.
fn decode_header(text: &str) -> Result<(Packet, usize), DecodeError> {
    let mut rest = text;
    let kind_char = rest.chars().next().ok_or(DecodeError::Empty)?;
    let kind = PacketKind::from_digit(kind_char)?;
    rest = &rest[kind_char.len_utf8()..];

    let mut expected = 0;
    if kind.is_binary() {
        let dash = rest.find('-').ok_or(DecodeError::MissingAttachmentCount)?;
        expected = rest[..dash].parse::<usize>().map_err(|_| DecodeError::MissingAttachmentCount)?;
        if expected > MAX_ATTACHMENTS {
            return Err(DecodeError::TooManyAttachments(expected));
        }
        rest = &rest[dash + 1..];
    }

    let mut nsp = "/";
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        nsp = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
    }

    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id =
        if digits > 0 { Some(rest[..digits].parse::<u64>().map_err(|_| DecodeError::InvalidAckId)?) } else { None };
    rest = &rest[digits..];

    let invalid_json = |e: serde_json::Error| DecodeError::InvalidJson(e.to_string());
    let data = if rest.is_empty() {
        None
    } else if matches!(kind, PacketKind::Event | PacketKind::BinaryEvent | PacketKind::Ack | PacketKind::BinaryAck) {
        if !rest.starts_with('[') {
            return Err(DecodeError::InvalidPayload(kind_char));
        }
        Some(Data::Array(serde_json::from_str::<Vec<Arg>>(rest).map_err(invalid_json)?))
    } else {
        Some(Data::Value(serde_json::from_str::<Value>(rest).map_err(invalid_json)?))
    };

    let valid = match kind {
        PacketKind::Connect => matches!(data, None | Some(Data::Value(Value::Object(_)))),
        PacketKind::Disconnect => data.is_none(),
        PacketKind::ConnectError => matches!(data, Some(Data::Value(Value::Object(_) | Value::String(_)))),
        PacketKind::Event | PacketKind::BinaryEvent => {
            matches!(&data, Some(Data::Array(items)) if items.first().is_some_and(|name| name.decode::<String>().is_ok()))
        }
        PacketKind::Ack | PacketKind::BinaryAck => id.is_some() && matches!(data, Some(Data::Array(_))),
    };
    if !valid {
        return Err(DecodeError::InvalidPayload(kind_char));
    }

    let packet = Packet { kind, nsp: nsp.to_owned(), id, data, attachments: Vec::with_capacity(expected) };
    Ok((packet, expected))
}

/// Checks that every placeholder in `value` points at an attachment that exists.
fn placeholders_are_valid(value: &Value, count: usize, depth: usize) -> bool {
    // The JSON parser already bounds nesting (128 levels); this bound keeps the walk's own stack small too.
    if depth > 128 {
        return false;
    }
    match value {
        Value::Array(items) => items.iter().all(|v| placeholders_are_valid(v, count, depth + 1)),
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                // Compared as u64: on wasm32 `usize` is 32 bits, and 2³² would wrap to attachment 0.
                map.get("num").and_then(Value::as_u64).is_some_and(|n| usize::try_from(n).is_ok_and(|n| n < count))
            } else {
                map.values().all(|v| placeholders_are_valid(v, count, depth + 1))
            }
        }
        _ => true,
    }
}

/// Turns Engine.IO messages into Socket.IO packets, holding a binary packet back until all its attachments arrived.
#[derive(Debug, Default)]
pub struct Decoder {
    partial: Option<(Packet, usize)>,
}

impl Decoder {
    /// Feeds one text message. Returns a packet when one is complete.
    pub fn decode_text(&mut self, text: &str) -> Result<Option<Packet>, DecodeError> {
        if self.partial.is_some() {
            self.partial = None;
            return Err(DecodeError::UnexpectedText);
        }
        let (packet, expected) = decode_header(text)?;
        if expected == 0 {
            return Self::finish(packet);
        }
        self.partial = Some((packet, expected));
        Ok(None)
    }

    /// Feeds one binary message, which must be an attachment of the packet under reassembly.
    pub fn decode_binary(&mut self, bytes: Vec<u8>) -> Result<Option<Packet>, DecodeError> {
        let Some((mut packet, expected)) = self.partial.take() else {
            return Err(DecodeError::UnexpectedBinary);
        };
        packet.attachments.push(bytes);
        if packet.attachments.len() < expected {
            self.partial = Some((packet, expected));
            return Ok(None);
        }
        Self::finish(packet)
    }

    fn finish(packet: Packet) -> Result<Option<Packet>, DecodeError> {
        // Only binary packets have placeholders; in a text packet such an object is plain data, and walking every
        // chat message's tree for nothing cost the load generator a few percent.
        let binary = matches!(packet.kind, PacketKind::BinaryEvent | PacketKind::BinaryAck);
        if binary && let Some(Data::Array(items)) = &packet.data {
            for item in items {
                let value = item.to_value().map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
                if !placeholders_are_valid(&value, packet.attachments.len(), 0) {
                    return Err(DecodeError::InvalidPlaceholder);
                }
            }
        }
        Ok(Some(packet))
    }

    /// Drops a half-received binary packet, as when the transport closes.
    pub fn reset(&mut self) {
        self.partial = None;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode_one(text: &str) -> Result<Packet, DecodeError> {
        Decoder::default().decode_text(text).map(|p| p.expect("a text packet completes at once"))
    }

    #[test]
    fn a_connect_to_the_main_namespace_has_no_namespace_field() {
        assert_eq!(Packet::connect("/", None).encode().0, "0");
        assert_eq!(Packet::connect("/", Some(json!({"name": "Ada"}))).encode().0, r#"0{"name":"Ada"}"#);
        assert_eq!(Packet::connect("/admin", Some(json!({"t": 1}))).encode().0, r#"0/admin,{"t":1}"#);
    }

    #[test]
    fn an_event_with_an_ack_id_encodes_the_id_before_the_data() {
        let packet = Packet::event("/", "send", vec![json!({"body": "hi"})], vec![], Some(12));
        assert_eq!(packet.encode().0, r#"212["send",{"body":"hi"}]"#);
        let packet = Packet::event("/chat", "send", vec![], vec![], Some(1));
        assert_eq!(packet.encode().0, r#"2/chat,1["send"]"#);
    }

    #[test]
    fn every_kind_of_packet_round_trips() {
        for packet in [
            Packet::connect("/", Some(json!({"sid": "x"}))),
            Packet::disconnect("/admin"),
            Packet::event("/", "message", vec![json!(1), json!("two")], vec![], None),
            Packet::ack("/admin", 7, vec![json!({"ok": true})], vec![]),
        ] {
            assert_eq!(decode_one(&packet.encode().0).unwrap(), packet);
        }
    }

    #[test]
    fn a_server_ack_decodes_with_namespace_and_id() {
        let packet = decode_one(r#"3/admin,42[{"ok":1}]"#).unwrap();
        assert_eq!(packet.kind, PacketKind::Ack);
        assert_eq!(packet.nsp, "/admin");
        assert_eq!(packet.id, Some(42));
        assert_eq!(packet.data, Some(Data::Array(vec![json!({"ok": 1}).into()])));
    }

    #[test]
    fn a_connect_error_carries_the_server_message() {
        let packet = decode_one(r#"4{"message":"bad token"}"#).unwrap();
        assert_eq!(packet.kind, PacketKind::ConnectError);
        assert_eq!(packet.data, Some(Data::Value(json!({"message": "bad token"}))));
    }

    #[test]
    fn a_binary_event_is_complete_only_after_its_attachments() {
        let placeholder = json!({"_placeholder": true, "num": 0});
        let sent = Packet::event("/", "image", vec![json!({"data": placeholder})], vec![vec![1, 2, 3]], None);
        let (text, attachments) = sent.encode();
        assert_eq!(text, r#"51-["image",{"data":{"_placeholder":true,"num":0}}]"#);

        let mut decoder = Decoder::default();
        assert_eq!(decoder.decode_text(&text).unwrap(), None);
        let received = decoder.decode_binary(attachments[0].clone()).unwrap().unwrap();
        assert_eq!(received, sent);
    }

    #[test]
    fn the_decoder_rejects_malformed_packets() {
        for bad in [
            "",
            "9",
            "2",
            "2{}",
            "2[1]",
            "3[1]",
            "1{}",
            "0[]",
            "2[\"x\"",
            "5[\"x\"]",
            "5x-[\"x\"]",
            "299999999999999999999999[\"x\"]",
            r#"2["\ud800"]"#,
            r#"2"x""#,
        ] {
            assert!(decode_one(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn a_huge_attachment_count_is_rejected_before_buffering() {
        assert_eq!(decode_one("5100000-[\"x\"]"), Err(DecodeError::TooManyAttachments(100_000)));
    }

    #[test]
    fn a_placeholder_pointing_past_the_attachments_is_rejected() {
        let mut decoder = Decoder::default();
        assert_eq!(decoder.decode_text(r#"51-["x",{"_placeholder":true,"num":3}]"#).unwrap(), None);
        assert_eq!(decoder.decode_binary(vec![0]), Err(DecodeError::InvalidPlaceholder));
    }

    #[test]
    fn an_object_that_looks_like_a_placeholder_is_plain_data_in_a_text_event() {
        let mut packet = decode_one(r#"2["x",{"_placeholder":true,"num":3}]"#).unwrap();
        let (_, args) = packet.take_event().unwrap();
        assert_eq!(args, [json!({"_placeholder": true, "num": 3}).into()]);
    }

    #[test]
    fn binary_data_without_a_binary_packet_is_rejected() {
        assert_eq!(Decoder::default().decode_binary(vec![1]), Err(DecodeError::UnexpectedBinary));
    }

    #[test]
    fn an_event_is_taken_apart_into_its_name_and_arguments() {
        let mut packet = decode_one(r#"2["message",{"a":1},2]"#).unwrap();
        let (name, args) = packet.take_event().unwrap();
        assert_eq!(name, "message");
        assert_eq!(args, [json!({"a": 1}).into(), json!(2).into()]);
        assert_eq!(args[0].decode::<std::collections::HashMap<String, u32>>().unwrap()["a"], 1);
    }

    #[test]
    fn an_argument_is_checked_for_syntax_on_arrival_and_for_its_values_when_decoded() {
        let mut packet = decode_one(r#"2["x",1e400]"#).unwrap();
        let (_, args) = packet.take_event().unwrap();
        assert!(args[0].decode::<Value>().is_err(), "1e400 does not fit a number");
        assert!(decode_one(r#"2["x",1e400"#).is_err(), "unbalanced");
    }

    #[test]
    fn an_ack_is_no_event() {
        let mut packet = decode_one(r#"31["message"]"#).unwrap();
        assert_eq!(packet.take_event(), None);
    }
}
