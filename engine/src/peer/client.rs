//! The client half of the peer protocol, in one place: [`PeerClient`] has one typed method per
//! request ([`crate::wire::Request`]), seals it for the group, sends it through the
//! [`Transport`], and checks that the reply opens, is of the kind that answers the request,
//! and keeps to its limits. Everything that talks to peers (fetch workers, the peer table's
//! hellos, elections, following a download, seeds, name lookups) goes through it; the server
//! half is [`super::PeerService`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{PeerAddr, ReplyBody, Transport, TransportError};
use crate::wire::{
    self, GroupKeys, HaveEntry, HelloReply, Intent, LookupKey, NodeId, Reply, Request, WireError,
};

/// Largest hello reply read (names are short).
const MAX_HELLO_LEN: usize = 4096;

/// Why a request to a peer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The transport failed (connection, HTTP status, size).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// No (complete) answer in time.
    #[error("peer {peer} did not answer within {timeout:?}")]
    Timeout {
        /// The peer.
        peer: PeerAddr,
        /// The time allowed.
        timeout: Duration,
    },
    /// The reply does not open under our group's key, or does not decode.
    #[error("peer {peer}: {source}")]
    Reply {
        /// The peer.
        peer: PeerAddr,
        /// What is wrong with it.
        source: WireError,
    },
    /// A reply of a kind that does not answer the request.
    #[error("peer {peer} answered a {asked} request with {got}")]
    Unexpected {
        /// The peer.
        peer: PeerAddr,
        /// The request's kind.
        asked: &'static str,
        /// The reply's kind.
        got: &'static str,
    },
}

impl PeerError {
    /// The peer serves as many streams as it will (HTTP 503): busy, not failing.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            PeerError::Transport(TransportError::Status { status: 503, .. })
        )
    }
}

/// A have reply: one entry per segment asked for.
pub type Holdings = Vec<HaveEntry>;

/// A piece of a download a peer offers ([`Request::Tail`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailChunk {
    /// Bytes the peer has of the download so far (all of it when `complete`).
    pub have: u64,
    /// Whether the download is complete.
    pub complete: bool,
    /// What the offering component attached, unread.
    pub meta: Vec<u8>,
    /// Bytes from the offset asked for.
    pub data: Vec<u8>,
}

/// Sends peer protocol requests as one node of a group.
#[derive(Debug, Clone)]
pub struct PeerClient {
    transport: Arc<dyn Transport>,
    keys: GroupKeys,
    me: NodeId,
    /// Who answers at each address, from the last hello there: requests name their recipient.
    recipients: Arc<Mutex<HashMap<PeerAddr, NodeId>>>,
}

/// Most addresses whose node is remembered (older ones are forgotten wholesale).
const MAX_RECIPIENTS: usize = 4096;

fn kind(r: &Reply) -> &'static str {
    match r {
        Reply::Hello(_) => "hello",
        Reply::Info { .. } => "info",
        Reply::Have { .. } => "have",
        Reply::NotFound => "not-found",
        Reply::SeedAccepted => "seed-accepted",
        Reply::Refused => "refused",
        Reply::Name { .. } => "name",
        Reply::Intent(_) => "intent",
        Reply::Tail { .. } => "tail",
    }
}

impl PeerClient {
    /// A client for node `me` of the group of `keys`, over `transport`.
    pub fn new(transport: Arc<dyn Transport>, keys: GroupKeys, me: NodeId) -> PeerClient {
        PeerClient {
            transport,
            keys,
            me,
            recipients: Arc::default(),
        }
    }

    /// The node it asks as.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Sends `req` and reads its whole reply (at most `limit` bytes) within `timeout`.
    async fn ask(
        &self,
        peer: PeerAddr,
        req: &Request,
        timeout: Duration,
        limit: usize,
    ) -> Result<Reply, PeerError> {
        let to = self.recipient(peer, req, timeout).await?;
        self.exchange(peer, &to, req, timeout, limit).await
    }

    /// [`PeerClient::ask`] of node `to`.
    async fn exchange(
        &self,
        peer: PeerAddr,
        to: &NodeId,
        req: &Request,
        timeout: Duration,
        limit: usize,
    ) -> Result<Reply, PeerError> {
        let (bytes, mac) = wire::encode_request(&self.keys, &self.me, to, req);
        let call = async {
            let resp = self.transport.call(peer, bytes).await?;
            resp.body.collect(limit).await
        };
        let body = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| PeerError::Timeout { peer, timeout })??;
        wire::decode_reply(&self.keys, &mac, &body)
            .map_err(|source| PeerError::Reply { peer, source })
    }

    /// The node a request to `peer` is for: any for a hello (which learns who is there);
    /// else the node that last answered a hello there, asked first if none has.
    async fn recipient(
        &self,
        peer: PeerAddr,
        req: &Request,
        timeout: Duration,
    ) -> Result<NodeId, PeerError> {
        if matches!(req, Request::Hello) {
            return Ok(NodeId::ANY);
        }
        let known = self
            .recipients
            .lock()
            .expect("recipients lock")
            .get(&peer)
            .copied();
        match known {
            Some(n) => Ok(n),
            None => Ok(self.hello(peer, timeout).await?.node),
        }
    }

    fn unexpected(peer: PeerAddr, asked: &'static str, got: &Reply) -> PeerError {
        PeerError::Unexpected {
            peer,
            asked,
            got: kind(got),
        }
    }

    /// Who the peer is, if it is a member of our group (its reply opens under our key).
    pub async fn hello(&self, peer: PeerAddr, timeout: Duration) -> Result<HelloReply, PeerError> {
        match self
            .exchange(peer, &NodeId::ANY, &Request::Hello, timeout, MAX_HELLO_LEN)
            .await?
        {
            Reply::Hello(h) => {
                let mut known = self.recipients.lock().expect("recipients lock");
                if known.len() >= MAX_RECIPIENTS {
                    known.clear();
                }
                known.insert(peer, h.node);
                Ok(h)
            }
            other => Err(Self::unexpected(peer, "hello", &other)),
        }
    }

    /// The content information `lookup` names, sealed under its info key; `None` if the peer
    /// does not know it.
    pub async fn info(
        &self,
        peer: PeerAddr,
        lookup: LookupKey,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, PeerError> {
        let req = Request::Info { lookup };
        match self.ask(peer, &req, timeout, wire::MAX_REPLY_LEN).await? {
            Reply::Info { sealed } => Ok(Some(sealed)),
            Reply::NotFound => Ok(None),
            other => Err(Self::unexpected(peer, "info", &other)),
        }
    }

    /// Which blocks of segments `first..first+count` (at most
    /// [`wire::MAX_HAVE_SEGMENTS`]) the peer holds, one entry per segment; `None` if it does
    /// not know the content.
    pub async fn have(
        &self,
        peer: PeerAddr,
        lookup: LookupKey,
        first: u32,
        count: u32,
        timeout: Duration,
    ) -> Result<Option<Holdings>, PeerError> {
        let req = Request::Have {
            lookup,
            first,
            count,
        };
        match self.ask(peer, &req, timeout, wire::MAX_REPLY_LEN).await? {
            Reply::Have { first: f0, entries }
                if f0 == first && entries.len() == count as usize =>
            {
                Ok(Some(entries))
            }
            Reply::NotFound => Ok(None),
            other => Err(Self::unexpected(peer, "have", &other)),
        }
    }

    /// Asks for blocks `first..first+count` of segment `seg`; the reply's head must come within
    /// `timeout`, and its body is a stream of block frames ([`wire::FrameReader`]) that the
    /// caller reads (and times) itself.
    pub async fn blocks(
        &self,
        peer: PeerAddr,
        lookup: LookupKey,
        (seg, first, count): (u32, u32, u32),
        timeout: Duration,
    ) -> Result<ReplyBody, PeerError> {
        let req = Request::Blocks {
            lookup,
            seg,
            first,
            count,
        };
        let to = self.recipient(peer, &req, timeout).await?;
        let (bytes, _) = wire::encode_request(&self.keys, &self.me, &to, &req);
        let resp = tokio::time::timeout(timeout, self.transport.call(peer, bytes))
            .await
            .map_err(|_| PeerError::Timeout { peer, timeout })??;
        Ok(resp.body)
    }

    /// Asks a cache node to fetch and keep the content whose ID `sealed_id` seals; whether it
    /// accepted.
    pub async fn seed(
        &self,
        peer: PeerAddr,
        sealed_id: Vec<u8>,
        timeout: Duration,
    ) -> Result<bool, PeerError> {
        let req = Request::Seed { sealed_id };
        match self.ask(peer, &req, timeout, wire::MAX_REPLY_LEN).await? {
            Reply::SeedAccepted => Ok(true),
            Reply::Refused => Ok(false),
            other => Err(Self::unexpected(peer, "seed", &other)),
        }
    }

    /// The record filed under `key` (sealed by whoever filed it); `None` if there is none.
    pub async fn name(
        &self,
        peer: PeerAddr,
        key: LookupKey,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, PeerError> {
        let req = Request::Name { key };
        match self.ask(peer, &req, timeout, wire::MAX_REPLY_LEN).await? {
            Reply::Name { sealed } => Ok(Some(sealed)),
            Reply::NotFound => Ok(None),
            other => Err(Self::unexpected(peer, "name", &other)),
        }
    }

    /// Whether the peer wants, or is downloading, what `lookup` names from an origin.
    pub async fn intent(
        &self,
        peer: PeerAddr,
        lookup: LookupKey,
        timeout: Duration,
    ) -> Result<Intent, PeerError> {
        let req = Request::Intent { lookup };
        match self.ask(peer, &req, timeout, wire::MAX_REPLY_LEN).await? {
            Reply::Intent(i) => Ok(i),
            other => Err(Self::unexpected(peer, "intent", &other)),
        }
    }

    /// The download the peer offers under `lookup`, from byte `offset`; `None` if it offers
    /// none (now).
    pub async fn tail(
        &self,
        peer: PeerAddr,
        lookup: LookupKey,
        offset: u64,
        timeout: Duration,
    ) -> Result<Option<TailChunk>, PeerError> {
        let req = Request::Tail { lookup, offset };
        match self.ask(peer, &req, timeout, wire::MAX_REPLY_LEN).await? {
            Reply::Tail {
                have,
                complete,
                meta,
                data,
            } => Ok(Some(TailChunk {
                have,
                complete,
                meta,
                data,
            })),
            Reply::NotFound => Ok(None),
            other => Err(Self::unexpected(peer, "tail", &other)),
        }
    }
}
