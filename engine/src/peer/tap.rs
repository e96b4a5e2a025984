//! A transport that records every message both ways, as an observer of the wire would see
//! them: for tests that check what an outsider learns from a capture (nothing of the content,
//! no ticket). It wraps any other transport.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{BoxFuture, PeerAddr, PeerResponse, ReplyBody, Transport, TransportError};

/// One request and its reply, byte for byte.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The peer asked.
    pub peer: PeerAddr,
    /// The request's bytes.
    pub request: Vec<u8>,
    /// The reply's status (0: no reply).
    pub status: u16,
    /// The reply's bytes, as far as the caller read them.
    pub reply: Arc<Mutex<Vec<u8>>>,
}

/// A recording transport around `inner`.
#[derive(Debug, Clone)]
pub struct Tap {
    inner: Arc<dyn Transport>,
    log: Arc<Mutex<Vec<Exchange>>>,
}

impl Tap {
    /// Records what goes through `inner`.
    pub fn new(inner: Arc<dyn Transport>) -> Tap {
        Tap {
            inner,
            log: Arc::default(),
        }
    }

    /// Records into `log` (shared by several taps, to capture a whole network).
    pub fn with_log(inner: Arc<dyn Transport>, log: Arc<Mutex<Vec<Exchange>>>) -> Tap {
        Tap { inner, log }
    }

    /// Everything captured so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.log.lock().expect("tap lock").clone()
    }
}

impl Transport for Tap {
    fn call(
        &self,
        peer: PeerAddr,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<PeerResponse, TransportError>> {
        Box::pin(async move {
            let reply = Arc::new(Mutex::new(Vec::new()));
            let r = self.inner.call(peer, request.clone()).await;
            let status = r.as_ref().map_or(0, |resp| resp.status);
            self.log.lock().expect("tap lock").push(Exchange {
                peer,
                request,
                status,
                reply: Arc::clone(&reply),
            });
            let resp = r?;
            let (tx, rx) = mpsc::channel(2);
            let mut body = resp.body;
            // Ends with the body, or when the caller stops reading.
            tokio::spawn(async move {
                while let Some(c) = body.chunk().await {
                    if let Ok(b) = &c {
                        reply.lock().expect("tap lock").extend_from_slice(b);
                    }
                    let c = c.map_err(std::io::Error::other);
                    if tx.send(c).await.is_err() {
                        return;
                    }
                }
            });
            Ok(PeerResponse {
                status: resp.status,
                body: ReplyBody::chan(peer, rx),
            })
        })
    }
}
