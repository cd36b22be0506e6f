//! The Engine.IO and Socket.IO decoders never panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sio_client::engine::{EnginePacket, decode_payload};
use sio_client::packet::Decoder;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = EnginePacket::decode_text(text);
        let _ = decode_payload(text);
        let _ = Decoder::default().decode_text(text);
    }
    // A sequence of messages, split at 0xFF (never valid UTF-8): text where it is UTF-8, binary attachments where
    // it is not, as a WebSocket would deliver them.
    let mut decoder = Decoder::default();
    for chunk in data.split(|byte| *byte == 0xFF) {
        let _ = match std::str::from_utf8(chunk) {
            Ok(text) => decoder.decode_text(text),
            Err(_) => decoder.decode_binary(chunk.to_vec()),
        };
    }
});
