use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

use super::TransportError;
use crate::Frame;

/// How much one read from the socket takes at most. tungstenite zero-fills its read buffer up to this size before
/// every read; its default (128 KiB) made that fill the load generator's biggest cost (15% of its CPU in the connect
/// storm). Chat frames are a few hundred bytes; a larger frame (an image) is still read whole, in more reads.
const READ_BUFFER_BYTES: usize = 8 * 1024;

pub struct WsTransport {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsTransport {
    /// Opens a WebSocket to `url`; a message (or a frame) over `max_incoming` bytes from the server fails it.
    pub async fn connect(url: &str, max_incoming: usize) -> Result<Self, TransportError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .max_message_size(Some(max_incoming))
            .max_frame_size(Some(max_incoming));
        // Nagle off: small frames go out at once instead of waiting for the previous one's ACK.
        let (ws, _response) =
            connect_async_with_config(url, Some(config), true).await.map_err(|e| TransportError(e.to_string()))?;
        Ok(Self { ws })
    }

    pub async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        let message = match frame {
            Frame::Text(text) => Message::text(text),
            Frame::Binary(bytes) => Message::binary(bytes),
        };
        self.ws.send(message).await.map_err(|e| TransportError(e.to_string()))
    }

    /// The next frame; `None` once the peer closed the connection.
    pub async fn recv(&mut self) -> Option<Result<Frame, TransportError>> {
        loop {
            return match self.ws.next().await? {
                Ok(Message::Text(text)) => Some(Ok(Frame::Text(text.as_str().to_owned()))),
                Ok(Message::Binary(bytes)) => Some(Ok(Frame::Binary(bytes.to_vec()))),
                Ok(Message::Close(_)) => None,
                // WebSocket-level pings are answered by tungstenite itself.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Err(e) => Some(Err(TransportError(e.to_string()))),
            };
        }
    }

    pub async fn close(mut self) {
        // The connection is being abandoned: a failed close handshake changes nothing for us.
        let _ = self.ws.close(None).await;
    }
}
