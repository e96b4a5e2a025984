//! Fetching content from peers (and an HTTP origin): content information first, verified
//! against the ticket, then blocks from several peers at once, each checked before it is stored.
//!
//! [`Fetcher::content_info`] asks peers by lookup key and keeps the first answer that opens
//! under the ticket's key and hashes to the ticket's content ID. [`Fetcher::fetch`] asks every
//! peer which blocks it holds, then runs a few workers per peer that pull units of work from the
//! scheduler ([`sched`]) and, when some blocks are held by no peer, workers that take them from
//! the origin with HTTP range requests. What is already in the store is not fetched again, so an
//! interrupted fetch resumes where it stopped.

mod output;
pub mod sched;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::content::{ContentId, ContentInfo, native};
use crate::peer::{PeerAddr, PeerClient, PeerError, ServiceStats};
use crate::store::{Origin, SegmentStore, StoreError};
use crate::wire::{self, ContentKeys, NodeId};

pub use crate::origin::{OriginClient, OriginError, OriginStream};
pub use output::{ContentReader, PartFile, fill_sink, write_content, write_content_atomically};

/// A peer to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRef {
    /// Its peer protocol endpoint.
    pub addr: PeerAddr,
    /// Its node ID, when known (for byte counts per peer).
    pub node: Option<NodeId>,
    /// A cache node: preferred (deeper pipeline).
    pub cache: bool,
}

/// Where fetched bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A peer.
    Peer(PeerAddr),
    /// The HTTP origin.
    Origin,
}

/// Progress of a fetch, for progress bars and `--json` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// Work is planned.
    Started {
        /// Content length.
        len: u64,
        /// Bytes already in the store.
        present: u64,
        /// Peers that hold some of it.
        peers: usize,
    },
    /// Verified bytes stored.
    Progress {
        /// From where.
        source: Source,
        /// How many bytes.
        bytes: u64,
    },
    /// A peer was dropped from this transfer.
    PeerDropped {
        /// The peer.
        peer: PeerAddr,
        /// Why.
        reason: String,
    },
}

/// A callback for [`FetchEvent`]s.
pub type Events = Arc<dyn Fn(FetchEvent) + Send + Sync>;

/// How a fetch runs.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Blocks per request.
    pub unit_blocks: u32,
    /// Requests in flight per peer.
    pub depth: usize,
    /// Requests in flight per cache node.
    pub cache_depth: usize,
    /// Requests in flight to the origin.
    pub origin_depth: usize,
    /// Longest wait for any chunk of a reply.
    pub chunk_timeout: Duration,
    /// Failed requests in a row after which a peer is dropped.
    pub max_failures: u32,
    /// "Busy" answers in a row after which a peer is dropped (a peer that claims blocks and
    /// then only says it is busy); a worker pauses 200 ms after each.
    pub max_busy: u32,
    /// The HTTP origin for blocks no peer holds.
    pub origin: Option<OriginClient>,
    /// A file every verified run is also written into at its offset (see [`PartFile`]); blocks
    /// that were in the store already are copied into it at the end.
    pub sink: Option<Arc<std::fs::File>>,
    /// Bytes at the start of `sink` that an earlier fetch left there (a resumable output,
    /// [`PartFile::resumable`]): a whole download of content known by its ticket only goes on
    /// from them, hashing them first; if the whole then does not hash to the ticket they are
    /// taken again from the origin. Ignored without a sink and for content peers know.
    pub resumed: u64,
    /// Fetch only the blocks covering these bytes (a range a client asked for); the rest of
    /// the content stays missing. `None`: all of it.
    pub only: Option<std::ops::Range<u64>>,
    /// How long a download followed from a peer may go without a new byte (the peer says it
    /// is downloading but offers nothing, or its offer stops growing) before the peer is
    /// dropped from this download and the election held again without it.
    pub follow_patience: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            unit_blocks: 16,
            depth: 6,
            cache_depth: 8,
            origin_depth: 2,
            chunk_timeout: Duration::from_secs(10),
            max_failures: 3,
            max_busy: sched::BUSY_LIMIT,
            origin: None,
            sink: None,
            resumed: 0,
            only: None,
            follow_patience: Duration::from_secs(15),
        }
    }
}

/// What a fetch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// Bytes that were already in the store.
    pub present: u64,
    /// Bytes by source.
    pub by_source: HashMap<Source, u64>,
    /// Peers dropped, and why.
    pub dropped: Vec<(PeerAddr, String)>,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No peer answered with the content information.
    #[error("no reachable peer has content {} ({asked} asked){}", id.ticket(), none_known(*asked))]
    NoInfo {
        /// The content.
        id: ContentId,
        /// Peers asked.
        asked: usize,
    },
    /// Some blocks are held by no reachable peer and there is no origin.
    #[error(
        "no reachable peer holds segment(s) {} of content {}, and there is no origin to take them from",
        list(segments),
        id.ticket()
    )]
    Unavailable {
        /// The content.
        id: ContentId,
        /// Segments with blocks no peer holds.
        segments: Vec<u32>,
    },
    /// The origin failed.
    #[error(transparent)]
    Origin(#[from] OriginError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The fetch was cancelled.
    #[error("fetch cancelled")]
    Cancelled,
}

fn none_known(asked: usize) -> &'static str {
    if asked == 0 {
        "; no peers are known"
    } else {
        ""
    }
}

fn list(segments: &[u32]) -> String {
    const SHOW: usize = 10;
    let mut s: Vec<String> = segments.iter().take(SHOW).map(u32::to_string).collect();
    if segments.len() > SHOW {
        s.push(format!("and {} more", segments.len() - SHOW));
    }
    s.join(", ")
}

/// Fetches content for one node.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: PeerClient,
    store: Arc<dyn SegmentStore>,
    stats: Arc<ServiceStats>,
}

/// Why a peer's content information was not taken.
#[derive(Debug, thiserror::Error)]
enum InfoRefused {
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("does not have it")]
    NotHere,
    #[error("its content information does not open: {0}")]
    Sealed(#[from] wire::WireError),
    #[error("its content information is malformed: {0}")]
    Decode(#[from] crate::DecodeError),
    #[error("sent content information for other content")]
    Other,
    #[error("content with a layout the peer protocol cannot carry")]
    Layout,
    #[error("decoding failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Fetcher {
    /// A fetcher asking peers through `client`, storing into `store`, counting bytes in
    /// `stats`.
    pub fn new(
        client: PeerClient,
        store: Arc<dyn SegmentStore>,
        stats: Arc<ServiceStats>,
    ) -> Fetcher {
        Fetcher {
            client,
            store,
            stats,
        }
    }

    /// The store fetched blocks go to.
    pub fn store(&self) -> &Arc<dyn SegmentStore> {
        &self.store
    }

    /// How it asks peers.
    pub fn client(&self) -> &PeerClient {
        &self.client
    }

    /// The content information of `id`: from the store, else from the first peer whose answer
    /// verifies. The answer is stored (as fetched content).
    pub async fn content_info(
        &self,
        id: &ContentId,
        peers: &[PeerRef],
        timeout: Duration,
    ) -> Result<Arc<ContentInfo>, FetchError> {
        if let Some(info) = self.store.content_info(id)? {
            return Ok(info);
        }
        let keys = ContentKeys::new(id);
        let mut asks = JoinSet::new();
        for p in peers {
            let client = self.client.clone();
            let addr = p.addr;
            let keys = keys.clone();
            let id = *id;
            asks.spawn(async move {
                let sealed = client
                    .info(addr, keys.lookup, timeout)
                    .await?
                    .ok_or(InfoRefused::NotHere)?;
                let plain = keys.open_info(&sealed)?;
                let info = tokio::task::spawn_blocking(move || native::decode_content_info(&plain))
                    .await??;
                if info.id() != id {
                    return Err(InfoRefused::Other);
                }
                let l = info.layout();
                if l.block_size() as usize > wire::MAX_FRAME_LEN - 64
                    || l.blocks_per_segment() > wire::MAX_BITMAP_BITS
                {
                    return Err(InfoRefused::Layout);
                }
                Ok::<_, InfoRefused>(info)
            });
        }
        while let Some(r) = asks.join_next().await {
            match r {
                Ok(Ok(info)) => {
                    self.store
                        .put_content(&info, &id.ticket().to_string(), Origin::Fetched)?;
                    return self
                        .store
                        .content_info(id)?
                        .ok_or(FetchError::NoInfo { id: *id, asked: 0 });
                }
                Ok(Err(e)) => tracing::debug!("content information for {id}: {e}"),
                Err(e) => tracing::warn!("content information task failed: {e}"),
            }
        }
        Err(FetchError::NoInfo {
            id: *id,
            asked: peers.len(),
        })
    }

    /// Fetches every block of `info` not in the store from `peers` (and the origin in `opts`),
    /// until all are stored, `cancel` fires, or it cannot go on.
    pub async fn fetch(
        &self,
        info: Arc<ContentInfo>,
        peers: &[PeerRef],
        opts: &FetchOptions,
        events: Events,
        cancel: CancellationToken,
    ) -> Result<FetchReport, FetchError> {
        worker::run(self, info, peers, opts, events, cancel).await
    }
}

/// Byte counts of a running fetch, by source.
#[derive(Debug, Default)]
struct Tally(Mutex<HashMap<Source, u64>>);

impl Tally {
    fn add(&self, s: Source, n: u64) {
        *self.0.lock().expect("tally lock").entry(s).or_default() += n;
    }
}
