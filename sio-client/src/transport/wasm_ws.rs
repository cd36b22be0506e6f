use futures::{SinkExt, StreamExt};
use gloo_net::websocket::Message;
use gloo_net::websocket::futures::WebSocket;

use super::TransportError;
use crate::Frame;

pub struct WsTransport {
    ws: WebSocket,
    max_incoming: usize,
}

impl WsTransport {
    /// Opens a WebSocket to `url`. The browser has no limit on what it receives, so a message over `max_incoming`
    /// bytes fails the transport once it has arrived, as natively.
    pub async fn connect(url: &str, max_incoming: usize) -> Result<Self, TransportError> {
        // The browser connects in the background; a failure surfaces on the first send or receive, and a hang is
        // caught by the manager's handshake timeout.
        let ws = WebSocket::open(url).map_err(|e| TransportError(e.to_string()))?;
        Ok(Self { ws, max_incoming })
    }

    pub async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        let message = match frame {
            Frame::Text(text) => Message::Text(text),
            Frame::Binary(bytes) => Message::Bytes(bytes),
        };
        self.ws.send(message).await.map_err(|e| TransportError(e.to_string()))
    }

    /// The next frame; `None` once the connection closed.
    pub async fn recv(&mut self) -> Option<Result<Frame, TransportError>> {
        let frame = match self.ws.next().await? {
            Ok(Message::Text(text)) => Frame::Text(text),
            Ok(Message::Bytes(bytes)) => Frame::Binary(bytes),
            Err(e) => return Some(Err(TransportError(e.to_string()))),
        };
        let len = match &frame {
            Frame::Text(text) => text.len(),
            Frame::Binary(bytes) => bytes.len(),
        };
        Some(if len > self.max_incoming { Err(super::too_large(self.max_incoming)) } else { Ok(frame) })
    }

    pub async fn close(self) {
        // Closing a socket that is already closing is harmless; there is nothing to do about a failure.
        let _ = self.ws.close(None, None);
    }
}
