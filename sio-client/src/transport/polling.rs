use std::collections::VecDeque;

use super::{Http, TransportError, engine_url};
use crate::engine::{EnginePacket, decode_payload, encode_payload};
use crate::{DecodeError, TransportKind};

#[cfg(target_arch = "wasm32")]
type PollFuture = futures::future::LocalBoxFuture<'static, Result<String, TransportError>>;
#[cfg(not(target_arch = "wasm32"))]
type PollFuture = futures::future::BoxFuture<'static, Result<String, TransportError>>;

/// What a transport produced.
#[derive(Debug)]
pub enum Received {
    Packet(EnginePacket),
    Invalid(DecodeError),
    Failed(TransportError),
    Closed,
}

/// HTTP long-polling: a `GET` that waits for the server's packets, and a `POST` for each batch of ours.
pub struct Polling {
    http: Http,
    url: String,
    /// Packets of the last response not handed out yet.
    inbox: VecDeque<EnginePacket>,
    /// The `GET` under way. Kept here, not in `recv`'s future, so that a `recv` dropped by a `select!` loses nothing.
    in_flight: Option<PollFuture>,
    /// Set during an upgrade: no new `GET` starts, so that the last one can finish before the switch.
    paused: bool,
    requests: u64,
}

impl Polling {
    /// The handshake: a first `GET` without a session id. Returns the transport and that response's packets,
    /// which start with the OPEN packet.
    pub async fn open(http: Http, base: &str, path: &str) -> Result<(Self, Vec<EnginePacket>), TransportError> {
        let body = http.get(engine_url(base, path, TransportKind::Polling, None)).await?;
        let packets = decode_payload(&body).map_err(|e| TransportError(format!("invalid handshake: {e}")))?;
        let sid = match packets.first() {
            Some(EnginePacket::Open(info)) => info.sid.clone(),
            _ => return Err(TransportError("the server's first answer is not a handshake".into())),
        };
        let url = engine_url(base, path, TransportKind::Polling, Some(&sid));
        Ok((Self { http, url, inbox: VecDeque::new(), in_flight: None, paused: false, requests: 0 }, packets))
    }

    /// Sends packets in one `POST`.
    pub async fn send(&mut self, packets: &[EnginePacket]) -> Result<(), TransportError> {
        let url = self.next_url();
        self.http.post(url, encode_payload(packets)).await.map(|_| ())
    }

    /// The next packet from the server; waits forever while paused with nothing left.
    pub async fn recv(&mut self) -> Received {
        loop {
            if let Some(packet) = self.inbox.pop_front() {
                return Received::Packet(packet);
            }
            if self.in_flight.is_none() {
                if self.paused {
                    return std::future::pending().await;
                }
                let url = self.next_url();
                self.in_flight = Some(Box::pin(self.http.get(url)));
            }
            let Some(poll) = self.in_flight.as_mut() else { continue };
            let result = poll.await;
            self.in_flight = None;
            match result {
                Err(e) => return Received::Failed(e),
                Ok(body) => match decode_payload(&body) {
                    Ok(packets) => self.inbox.extend(packets),
                    Err(e) => return Received::Invalid(e),
                },
            }
        }
    }

    /// Stops polling once the current `GET` returns, for an upgrade.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Paused, with no `GET` under way and nothing left to hand out: safe to switch transports.
    pub fn is_drained(&self) -> bool {
        self.paused && self.in_flight.is_none() && self.inbox.is_empty()
    }

    /// Each request gets a distinct URL, so that no cache between us and the server answers it.
    fn next_url(&mut self) -> String {
        self.requests += 1;
        format!("{}&t={}", self.url, self.requests)
    }
}

/// Splits packets into batches whose polling payload stays within `max_payload` bytes (a single larger packet
/// still travels alone: the server decides what to do with it).
pub fn batches(packets: Vec<EnginePacket>, max_payload: u64) -> Vec<Vec<EnginePacket>> {
    let max = usize::try_from(max_payload).unwrap_or(usize::MAX).max(1);
    let mut out: Vec<Vec<EnginePacket>> = Vec::new();
    let mut size = 0;
    for packet in packets {
        let len = encode_payload(std::slice::from_ref(&packet)).len() + 1;
        match out.last_mut() {
            Some(batch) if size + len <= max => {
                size += len;
                batch.push(packet);
            }
            _ => {
                size = len;
                out.push(vec![packet]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_the_servers_max_payload() {
        let packets: Vec<EnginePacket> = (0..5).map(|i| EnginePacket::Message(format!("{i}xxxxxxxx"))).collect();
        // Each record is 11 bytes ("4" + 10) plus its separator.
        let split = batches(packets.clone(), 24);
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert_eq!(split.concat(), packets);
        assert_eq!(batches(packets.clone(), 1_000_000).len(), 1);
    }

    #[test]
    fn a_packet_larger_than_the_limit_travels_alone() {
        let big = EnginePacket::Message("y".repeat(100));
        assert_eq!(batches(vec![big.clone()], 10), vec![vec![big]]);
    }
}
