//! The in-memory twin of the HTTP transport: nodes in one process call each other's
//! [`PeerService`] directly, with faults to inject (slow, failing, cut-off peers), so the
//! multi-node tests run fast and deterministic.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{BoxFuture, PeerAddr, PeerResponse, PeerService, ReplyBody, Transport, TransportError};

/// A fault injected on the way to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every chunk of every reply is delayed this long.
    Slow(Duration),
    /// Connections are refused.
    Down,
    /// Block streams break after this many chunks (the peer "disconnects").
    CutAfter(usize),
}

/// A shared switchboard of in-process peers.
#[derive(Debug, Default, Clone)]
pub struct MemNetwork {
    inner: Arc<Mutex<Net>>,
}

#[derive(Debug, Default)]
struct Net {
    peers: HashMap<PeerAddr, Arc<PeerService>>,
    faults: HashMap<PeerAddr, Fault>,
}

impl MemNetwork {
    /// An empty network.
    pub fn new() -> MemNetwork {
        MemNetwork::default()
    }

    /// Attaches a service at `addr`.
    pub fn attach(&self, addr: PeerAddr, svc: Arc<PeerService>) {
        self.inner.lock().expect("net lock").peers.insert(addr, svc);
    }

    /// Detaches the service at `addr` (calls to it are refused).
    pub fn detach(&self, addr: PeerAddr) {
        self.inner.lock().expect("net lock").peers.remove(&addr);
    }

    /// Sets (or with `None` clears) the fault on the way to `addr`.
    pub fn set_fault(&self, addr: PeerAddr, fault: Option<Fault>) {
        let mut n = self.inner.lock().expect("net lock");
        match fault {
            Some(f) => n.faults.insert(addr, f),
            None => n.faults.remove(&addr),
        };
    }
}

impl Transport for MemNetwork {
    fn call(
        &self,
        peer: PeerAddr,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<PeerResponse, TransportError>> {
        Box::pin(async move {
            let (svc, fault) = {
                let n = self.inner.lock().expect("net lock");
                (n.peers.get(&peer).cloned(), n.faults.get(&peer).copied())
            };
            let refused = || TransportError::Io {
                peer,
                source: io::Error::from(io::ErrorKind::ConnectionRefused),
            };
            let svc = svc.ok_or_else(refused)?;
            if fault == Some(Fault::Down) {
                return Err(refused());
            }
            // The caller's address as the server sees it does not matter in memory.
            let resp = svc.handle(peer, &request);
            if resp.status != 200 {
                return Err(TransportError::Status {
                    peer,
                    status: resp.status,
                });
            }
            match fault {
                Some(Fault::Slow(d)) => {
                    tokio::time::sleep(d).await;
                    Ok(relay(resp, peer, Some(d), usize::MAX))
                }
                Some(Fault::CutAfter(n)) => Ok(relay(resp, peer, None, n)),
                _ => Ok(resp),
            }
        })
    }
}

/// Forwards a body chunk by chunk, delaying each or breaking off after `cut` chunks.
fn relay(resp: PeerResponse, peer: PeerAddr, delay: Option<Duration>, cut: usize) -> PeerResponse {
    let (tx, rx) = mpsc::channel(2);
    let mut body = resp.body;
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(c) = body.chunk().await {
            if n == cut {
                let _ = tx
                    .send(Err(io::Error::from(io::ErrorKind::ConnectionReset)))
                    .await;
                return;
            }
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let c: io::Result<Bytes> = c.map_err(io::Error::other);
            if tx.send(c).await.is_err() {
                return;
            }
            n += 1;
        }
    });
    PeerResponse {
        status: resp.status,
        body: ReplyBody::chan(peer, rx),
    }
}
