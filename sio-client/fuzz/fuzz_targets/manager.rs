//! The connection state machine survives any sequence of frames from a server, at any times.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sio_client::manager::{Config, Manager, TransportKind};
use sio_client::{Frame, Millis};

fuzz_target!(|data: &[u8]| {
    let mut manager = Manager::new(Config::default(), 1);
    manager.open_namespace("/", None);
    manager.open_namespace("/admin", None);
    manager.transport_opened(Millis(0), TransportKind::WebSocket);
    manager.handle_frame(
        Millis(0),
        Frame::Text(r#"0{"sid":"s","upgrades":[],"pingInterval":100,"pingTimeout":100,"maxPayload":1000}"#.into()),
    );
    let mut now = 0;
    for chunk in data.split(|byte| *byte == 0xFF) {
        // The first byte of each chunk moves the clock; the rest is the frame.
        let Some((step, frame)) = chunk.split_first() else { continue };
        now += u64::from(*step);
        let frame = match std::str::from_utf8(frame) {
            Ok(text) => Frame::Text(text.to_owned()),
            Err(_) => Frame::Binary(frame.to_vec()),
        };
        manager.handle_frame(Millis(now), frame);
        manager.handle_timeout(Millis(now));
        while manager.poll_transmit().is_some() || manager.poll_output().is_some() || manager.poll_action().is_some() {}
    }
});
