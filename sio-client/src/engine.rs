//! Engine.IO v4 packets: the framing under Socket.IO.
//!
//! Over WebSocket, one packet is one frame: text packets are a type digit then the data, binary packets are raw
//! binary frames. Over HTTP long-polling, several packets travel in one body separated by `\x1e`, and binary
//! packets become `b` followed by base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::DecodeError;

/// Joins packets in a long-polling payload.
pub const RECORD_SEPARATOR: char = '\x1e';

/// A WebSocket message, or one packet of a polling payload after splitting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// The server's handshake, carried by the OPEN packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInfo {
    pub sid: String,
    #[serde(default)]
    pub upgrades: Vec<String>,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong; the client allows the same grace after a missed ping.
    pub ping_timeout: u64,
    /// The largest payload, in bytes, the server accepts in one polling request.
    #[serde(default = "default_max_payload")]
    pub max_payload: u64,
}

fn default_max_payload() -> u64 {
    1_000_000
}

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnginePacket {
    Open(OpenInfo),
    Close,
    /// A heartbeat from the server (or `probe` during an upgrade, from the client).
    Ping(String),
    Pong(String),
    /// A text message: one encoded Socket.IO packet.
    Message(String),
    /// A binary message: one attachment of a binary Socket.IO packet.
    Binary(Vec<u8>),
    Upgrade,
    Noop,
}

impl EnginePacket {
    /// Encodes the packet as one WebSocket frame.
    pub fn to_frame(&self) -> Frame {
        match self {
            EnginePacket::Binary(bytes) => Frame::Binary(bytes.clone()),
            other => {
                let mut text = String::new();
                other.encode_text_into(&mut text);
                Frame::Text(text)
            }
        }
    }

    /// Decodes one WebSocket frame.
    pub fn from_frame(frame: Frame) -> Result<Self, DecodeError> {
        match frame {
            Frame::Binary(bytes) => Ok(EnginePacket::Binary(bytes)),
            Frame::Text(text) => Self::decode_text(&text),
        }
    }

    /// Appends the text form of this packet, as used in polling payloads (binary as `b` + base64).
    fn encode_text_into(&self, out: &mut String) {
        match self {
            EnginePacket::Open(info) => {
                out.push('0');
                // Serializing a struct of strings and integers cannot fail.
                out.push_str(&serde_json::to_string(info).unwrap_or_default());
            }
            EnginePacket::Close => out.push('1'),
            EnginePacket::Ping(data) => {
                out.push('2');
                out.push_str(data);
            }
            EnginePacket::Pong(data) => {
                out.push('3');
                out.push_str(data);
            }
            EnginePacket::Message(data) => {
                out.push('4');
                out.push_str(data);
            }
            EnginePacket::Binary(bytes) => {
                out.push('b');
                BASE64.encode_string(bytes, out);
            }
            EnginePacket::Upgrade => out.push('5'),
            EnginePacket::Noop => out.push('6'),
        }
    }

    /// Decodes the text form of one packet (a WebSocket text frame, or one record of a polling payload).
    pub fn decode_text(text: &str) -> Result<Self, DecodeError> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(DecodeError::Empty)?;
        let rest = chars.as_str();
        Ok(match kind {
            '0' => EnginePacket::Open(
                serde_json::from_str(rest).map_err(|e| DecodeError::InvalidHandshake(e.to_string()))?,
            ),
            '1' => EnginePacket::Close,
            '2' => EnginePacket::Ping(rest.to_owned()),
            '3' => EnginePacket::Pong(rest.to_owned()),
            '4' => EnginePacket::Message(rest.to_owned()),
            '5' => EnginePacket::Upgrade,
            '6' => EnginePacket::Noop,
            'b' => EnginePacket::Binary(BASE64.decode(rest).map_err(|_| DecodeError::InvalidBase64)?),
            other => return Err(DecodeError::UnknownEngineType(other)),
        })
    }
}

/// Encodes packets into one long-polling request body.
pub fn encode_payload(packets: &[EnginePacket]) -> String {
    let mut out = String::new();
    for (i, packet) in packets.iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEPARATOR);
        }
        packet.encode_text_into(&mut out);
    }
    out
}

/// Decodes a long-polling response body into its packets.
pub fn decode_payload(payload: &str) -> Result<Vec<EnginePacket>, DecodeError> {
    payload.split(RECORD_SEPARATOR).map(EnginePacket::decode_text).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_packet_decodes_its_handshake() {
        let packet = EnginePacket::decode_text(
            r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
        )
        .unwrap();
        let EnginePacket::Open(info) = packet else { panic!("not an open packet: {packet:?}") };
        assert_eq!(info.sid, "abc");
        assert_eq!(info.upgrades, vec!["websocket".to_owned()]);
        assert_eq!((info.ping_interval, info.ping_timeout, info.max_payload), (25_000, 20_000, 1_000_000));
    }

    #[test]
    fn text_packets_round_trip_through_frames() {
        for packet in [
            EnginePacket::Close,
            EnginePacket::Ping(String::new()),
            EnginePacket::Ping("probe".into()),
            EnginePacket::Pong("probe".into()),
            EnginePacket::Message("2[\"hi\"]".into()),
            EnginePacket::Upgrade,
            EnginePacket::Noop,
        ] {
            assert_eq!(EnginePacket::from_frame(packet.to_frame()).unwrap(), packet);
        }
    }

    #[test]
    fn a_probe_ping_is_encoded_as_2probe() {
        assert_eq!(EnginePacket::Ping("probe".into()).to_frame(), Frame::Text("2probe".into()));
    }

    #[test]
    fn binary_packets_are_raw_frames_over_websocket() {
        let packet = EnginePacket::Binary(vec![0, 1, 255]);
        assert_eq!(packet.to_frame(), Frame::Binary(vec![0, 1, 255]));
    }

    #[test]
    fn a_polling_payload_joins_packets_with_the_record_separator_and_base64_for_binary() {
        let packets = vec![EnginePacket::Message("hello".into()), EnginePacket::Binary(vec![1, 2, 3, 4])];
        let payload = encode_payload(&packets);
        assert_eq!(payload, "4hello\x1ebAQIDBA==");
        assert_eq!(decode_payload(&payload).unwrap(), packets);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(EnginePacket::decode_text(""), Err(DecodeError::Empty));
        assert_eq!(EnginePacket::decode_text("9"), Err(DecodeError::UnknownEngineType('9')));
        assert_eq!(EnginePacket::decode_text("b!!"), Err(DecodeError::InvalidBase64));
        assert!(matches!(EnginePacket::decode_text("0{"), Err(DecodeError::InvalidHandshake(_))));
        assert!(decode_payload("4a\x1e\x1e4b").is_err());
    }
}
