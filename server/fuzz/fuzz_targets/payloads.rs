//! What the server does with an event's payload never panics, whatever the client sends: the JSON arguments
//! decoded (and validated) as each request type, as socketioxide's `TryData` does before a handler runs, and the
//! bytes of an image attachment checked as each kind it could claim to be.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{
    AdminAuth, ChatAuth, ImageKind, JoinRoom, LoadHistory, RemoveMember, SendImage, SendMessage, SendPrivate, Typing,
};

fn decode_all(value: &serde_json::Value) {
    let _ = serde_json::from_value::<ChatAuth>(value.clone());
    let _ = serde_json::from_value::<AdminAuth>(value.clone());
    let _ = serde_json::from_value::<JoinRoom>(value.clone());
    let _ = serde_json::from_value::<SendMessage>(value.clone());
    let _ = serde_json::from_value::<SendImage>(value.clone());
    let _ = serde_json::from_value::<Typing>(value.clone());
    let _ = serde_json::from_value::<SendPrivate>(value.clone());
    let _ = serde_json::from_value::<LoadHistory>(value.clone());
    let _ = serde_json::from_value::<RemoveMember>(value.clone());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        decode_all(&value);
        // An event's arguments arrive as an array: each one alone too.
        if let serde_json::Value::Array(arguments) = &value {
            arguments.iter().for_each(decode_all);
        }
    }
    for kind in ImageKind::ALL {
        let _ = server::realtime::chat::checked_image(kind, bytes::Bytes::copy_from_slice(data));
    }
});
