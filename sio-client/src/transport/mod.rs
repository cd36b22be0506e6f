//! Thin adapters between the network and the sans-IO core. A transport moves Engine.IO packets and nothing more;
//! every protocol decision is taken by the [`Manager`](crate::manager::Manager) or the driver.
//!
//! - WebSocket: one packet per frame, on `wasm32` through the browser's WebSocket (gloo-net), natively through
//!   tokio-tungstenite.
//! - HTTP long-polling: one `GET` waiting for packets and one `POST` carrying them, on `wasm32` through `fetch`
//!   (gloo-net), natively through hyper. It is the first transport, because it passes proxies that block
//!   WebSocket; the driver then upgrades to WebSocket when it can.

#![cfg_attr(not(any(target_arch = "wasm32", feature = "tokio")), allow(dead_code))]

#[cfg(all(not(target_arch = "wasm32"), feature = "tokio"))]
mod native_http;
#[cfg(all(not(target_arch = "wasm32"), feature = "tokio"))]
mod native_ws;
#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
mod polling;
#[cfg(target_arch = "wasm32")]
mod wasm_http;
#[cfg(target_arch = "wasm32")]
mod wasm_ws;

#[cfg(all(not(target_arch = "wasm32"), feature = "tokio"))]
pub use native_http::Http;
#[cfg(all(not(target_arch = "wasm32"), feature = "tokio"))]
pub use native_ws::WsTransport;
#[cfg(any(target_arch = "wasm32", feature = "tokio"))]
pub use polling::{Polling, Received, batches};
#[cfg(target_arch = "wasm32")]
pub use wasm_http::Http;
#[cfg(target_arch = "wasm32")]
pub use wasm_ws::WsTransport;

use crate::TransportKind;

/// A transport failed; the text comes from the platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// How much the server may send in one WebSocket message or one polling response, by default: five times the
/// largest payload a Socket.IO server accepts by default (Node's `maxHttpBufferSize`, 1 MB, and Causerie's 3 MB
/// images fit), and small enough that a broken or hostile server cannot make the client hold gigabytes.
pub const DEFAULT_MAX_INCOMING_BYTES: usize = 16 * 1024 * 1024;

/// The error for a message or response over the client's limit.
pub fn too_large(max_incoming: usize) -> TransportError {
    TransportError(format!("the server sent more than {max_incoming} bytes at once (the client's limit)"))
}

/// The Engine.IO URL of a transport: `<base><path>?EIO=4&transport=<kind>[&sid=<sid>]`, with `ws(s)` for WebSocket.
/// A query in `path` (`/socket.io/?key=value`, see `ClientBuilder::query`) goes on every URL, after the others.
pub fn engine_url(base: &str, path: &str, kind: TransportKind, sid: Option<&str>) -> String {
    let (path, extra) = path.split_once('?').unwrap_or((path, ""));
    // Each transport has its own URL scheme; the base may be written with either.
    let swaps: [(&str, &str); 2] = match kind {
        TransportKind::WebSocket => [("https://", "wss://"), ("http://", "ws://")],
        TransportKind::Polling => [("wss://", "https://"), ("ws://", "http://")],
    };
    let base = base.trim_end_matches('/');
    let base = swaps
        .iter()
        .find_map(|(from, to)| base.strip_prefix(from).map(|rest| format!("{to}{rest}")))
        .unwrap_or_else(|| base.to_owned());
    let path = path.trim_matches('/');
    let mut url = format!("{base}/{path}/?EIO=4&transport={}", kind.as_str());
    if let Some(sid) = sid {
        url.push_str("&sid=");
        url.push_str(sid);
    }
    if !extra.is_empty() {
        url.push('&');
        url.push_str(extra);
    }
    url
}

/// `text` with every byte but the unreserved ones (RFC 3986) percent-encoded, for a query.
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_in_the_path_goes_on_every_url_escaped() {
        let path = format!("/socket.io/?sticky={}", query_escape("a b&c=é"));
        assert_eq!(
            engine_url("http://h:1", &path, TransportKind::Polling, Some("s1")),
            "http://h:1/socket.io/?EIO=4&transport=polling&sid=s1&sticky=a%20b%26c%3D%C3%A9"
        );
    }

    #[test]
    fn urls_name_the_protocol_version_the_transport_and_the_session() {
        assert_eq!(
            engine_url("http://h:1/", "/socket.io/", TransportKind::Polling, None),
            "http://h:1/socket.io/?EIO=4&transport=polling"
        );
        assert_eq!(
            engine_url("https://h", "socket.io", TransportKind::WebSocket, Some("abc")),
            "wss://h/socket.io/?EIO=4&transport=websocket&sid=abc"
        );
        assert_eq!(
            engine_url("ws://h", "/socket.io/", TransportKind::Polling, Some("x")),
            "http://h/socket.io/?EIO=4&transport=polling&sid=x"
        );
    }
}
