//! Thin adapters between a real WebSocket and the sans-IO core: they move [`Frame`](crate::Frame)s, nothing more.

#[cfg(all(not(target_arch = "wasm32"), feature = "tokio"))]
mod native;
#[cfg(target_arch = "wasm32")]
mod wasm;

#[cfg(all(not(target_arch = "wasm32"), feature = "tokio"))]
pub use native::WsTransport;
#[cfg(target_arch = "wasm32")]
pub use wasm::WsTransport;

/// A transport failed; the text comes from the platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
#[cfg_attr(not(any(target_arch = "wasm32", feature = "tokio")), allow(dead_code))]
pub struct TransportError(pub String);
