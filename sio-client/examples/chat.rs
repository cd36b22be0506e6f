//! A terminal client for Causerie, on the native (tokio) transports.
//!
//! ```sh
//! scripts/run &                     # a server on http://127.0.0.1:3000
//! cargo run -p sio-client --features tokio --example chat -- http://127.0.0.1:3000 Ada general
//! ```
//!
//! Lines typed on stdin are sent to the room; the room's messages are printed on stdout, and the connection's
//! state changes on stderr.

use std::time::Duration;

use futures::StreamExt;
use protocol::{CHAT_NAMESPACE, ChatAuth, ChatMessage, DisplayName, JoinRoom, MessageBody, RoomName, SendMessage};
use sio_client::{Client, SocketEvent};
use tokio::io::{AsyncBufReadExt, BufReader};

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(name), Some(room)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: chat <server-url> <display-name> <room>");
        std::process::exit(2);
    };
    let name = DisplayName::parse(&name)?;
    let room = RoomName::parse(&room)?;

    let client = Client::builder(url).connect();
    let mut states = client.state_changes();
    let chat = client.socket_with_auth(CHAT_NAMESPACE, &ChatAuth { name, session: None })?;
    let mut lifecycle = chat.lifecycle();
    let mut messages = chat.on::<ChatMessage>();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();

    loop {
        tokio::select! {
            Some(state) = states.next() => eprintln!("[{state:?}]"),
            Some(event) = lifecycle.next() => match event {
                // Rooms belong to the server's socket, which is new after each reconnection: join every time.
                SocketEvent::Connected { .. } => match chat.request(&JoinRoom { room: room.clone(), since: None }, TIMEOUT).await {
                    Ok(joined) => eprintln!("joined #{} as {}", joined.room, joined.you.name),
                    Err(e) => eprintln!("could not join: {e}"),
                },
                SocketEvent::ConnectError { message, .. } => {
                    eprintln!("refused: {message}");
                    break;
                }
                SocketEvent::Disconnected { reason } => eprintln!("disconnected: {reason}"),
            },
            Some(message) = messages.next() => println!("{}: {}", message.from.name, message.body),
            line = stdin.next_line() => match line? {
                None => break,
                Some(text) => match MessageBody::parse(&text) {
                    Err(e) => eprintln!("{e}"),
                    Ok(body) => match chat.request(&SendMessage { room: room.clone(), body, client_id: None }, TIMEOUT).await {
                        Ok(accepted) => println!("{}: {}", accepted.message.from.name, accepted.message.body),
                        Err(e) => eprintln!("not sent: {e}"),
                    },
                },
            },
        }
    }
    client.close();
    Ok(())
}
