//! The peer protocol between nodes: the transport-independent service that answers
//! [`crate::wire`] requests from the store ([`PeerService`]), the client that asks them
//! ([`PeerClient`]), the [`Transport`] seam it calls through, its HTTP implementation on hyper ([`http`]) and its in-memory twin ([`mem`]),
//! which the same tests run against.

mod client;
pub mod http;
pub mod mem;
mod service;
mod tail;
pub mod tap;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use client::{Holdings, PeerClient, PeerError, TailChunk};
pub use service::{PeerService, REQUESTS_PER_SENDER, ServeOptions, ServiceStats};
pub use tail::TailSource;

/// Records other components file on a node for its peers to look up by key
/// ([`crate::wire::Request::Name`]): the HTTP gateway files "this URL is that content" here. The
/// node passes records on without reading them; whoever files one seals it.
pub trait NameIndex: Send + Sync + std::fmt::Debug + 'static {
    /// The sealed record filed under `key`, if any (at most [`crate::wire::MAX_NAME_RECORD`]
    /// bytes).
    fn lookup(&self, key: &[u8; 32]) -> Option<Vec<u8>>;
}

/// A boxed future, as the [`Transport`] trait returns (it is used as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a peer's protocol endpoint listens.
pub type PeerAddr = SocketAddr;

/// The HTTP path of the peer protocol (the version is also in every message).
pub const PEER_PATH: &str = "/pdist/v1";

/// What went wrong talking to a peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Could not connect, or the connection broke.
    #[error("peer {peer}: {source}")]
    Io {
        /// The peer.
        peer: PeerAddr,
        /// The cause.
        source: io::Error,
    },
    /// The peer answered with an HTTP error status.
    #[error("peer {peer} answered HTTP {status}")]
    Status {
        /// The peer.
        peer: PeerAddr,
        /// The status.
        status: u16,
    },
    /// The peer sent more than the message limit.
    #[error("peer {peer} sent more than {limit} bytes")]
    TooLarge {
        /// The peer.
        peer: PeerAddr,
        /// The limit.
        limit: usize,
    },
    /// No answer in time.
    #[error("peer {peer} did not answer in time")]
    Timeout {
        /// The peer.
        peer: PeerAddr,
    },
}

/// The body of a peer's reply, read chunk by chunk.
#[derive(Debug)]
pub struct ReplyBody {
    peer: PeerAddr,
    inner: BodyInner,
}

#[derive(Debug)]
enum BodyInner {
    Full(Option<Bytes>),
    Chan(mpsc::Receiver<io::Result<Bytes>>),
    Http(hyper::body::Incoming),
}

impl ReplyBody {
    /// A whole reply of `b` from `peer` (what a [`Transport`] twin or a test peer answers).
    pub fn from_bytes(peer: PeerAddr, b: Bytes) -> ReplyBody {
        ReplyBody::full(peer, b)
    }

    pub(crate) fn full(peer: PeerAddr, b: Bytes) -> ReplyBody {
        ReplyBody {
            peer,
            inner: BodyInner::Full(Some(b)),
        }
    }

    pub(crate) fn chan(peer: PeerAddr, rx: mpsc::Receiver<io::Result<Bytes>>) -> ReplyBody {
        ReplyBody {
            peer,
            inner: BodyInner::Chan(rx),
        }
    }

    pub(crate) fn http(peer: PeerAddr, body: hyper::body::Incoming) -> ReplyBody {
        ReplyBody {
            peer,
            inner: BodyInner::Http(body),
        }
    }

    /// The next chunk, `None` at the end.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, TransportError>> {
        let peer = self.peer;
        let io_err = |source| TransportError::Io { peer, source };
        match &mut self.inner {
            BodyInner::Full(b) => b.take().map(Ok),
            BodyInner::Chan(rx) => rx.recv().await.map(|r| r.map_err(io_err)),
            BodyInner::Http(body) => {
                use http_body_util::BodyExt;
                loop {
                    match body.frame().await? {
                        Ok(f) => {
                            if let Ok(data) = f.into_data() {
                                return Some(Ok(data));
                            }
                        }
                        Err(e) => return Some(Err(io_err(io::Error::other(e)))),
                    }
                }
            }
        }
    }

    /// The whole body, refusing more than `limit` bytes.
    pub async fn collect(mut self, limit: usize) -> Result<Vec<u8>, TransportError> {
        let mut out = Vec::new();
        while let Some(c) = self.chunk().await {
            let c = c?;
            if out.len() + c.len() > limit {
                return Err(TransportError::TooLarge {
                    peer: self.peer,
                    limit,
                });
            }
            out.extend_from_slice(&c);
        }
        Ok(out)
    }
}

/// An HTTP body fed by a channel (frames or content produced on a blocking thread).
pub(crate) struct ChanBody(pub(crate) mpsc::Receiver<io::Result<Bytes>>);

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(hyper::body::Frame::data)))
    }
}

/// A peer's answer: the HTTP status and the body.
#[derive(Debug)]
pub struct PeerResponse {
    /// HTTP status (200 for every authenticated reply).
    pub status: u16,
    /// The body.
    pub body: ReplyBody,
}

/// How a node reaches other nodes' peer protocol.
pub trait Transport: Send + Sync + std::fmt::Debug + 'static {
    /// Sends one encoded request to `peer`; the reply's headers have arrived when this returns.
    fn call(
        &self,
        peer: PeerAddr,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<PeerResponse, TransportError>>;
}
