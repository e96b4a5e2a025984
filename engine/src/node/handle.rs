//! A fetch as a handle ([`Node::start_fetch`]): it runs as the node's task, and whoever holds
//! the handle can await its end ([`FetchHandle::done`]) and read the content in order while it
//! arrives ([`FetchHandle::reader`], [`InOrder`]): each run of blocks as soon as it is stored
//! (verified), woken by the fetch's progress, never by a timer.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Node;
use crate::content::{BlockIdx, ContentId, ContentInfo};
use crate::fetch::{Events, FetchError, FetchOptions, FetchReport};
use crate::store::{Lease, SegmentStore, StoreError};

/// Blocks read together by [`InOrder`] (within a segment).
const RUN_BLOCKS: u32 = 16;

/// How a fetch ended: its content information and report, or why it failed.
pub type Outcome = Result<(Arc<ContentInfo>, FetchReport), Arc<FetchError>>;

/// How a fetch stands, as its handle sees it.
#[derive(Debug, Clone, Default)]
struct State {
    /// Bumped on every event (blocks stored, the fetch started).
    events: u64,
    /// The end: its content information and report, or why it failed.
    done: Option<Outcome>,
}

/// A fetch running on a node.
#[derive(Debug)]
pub struct FetchHandle {
    id: ContentId,
    node: Node,
    state: watch::Receiver<State>,
}

/// Why reading a fetch in order stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The fetch failed.
    #[error(transparent)]
    Fetch(Arc<FetchError>),
    /// The store failed, or a block it should hold is gone.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking read did not finish.
    #[error("reading the store: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Node {
    /// Starts fetching `id` (as [`Node::fetch`] does) as a task of the node; the handle awaits
    /// it and reads the content in order as it arrives. `events` get every fetch event too.
    /// The content goes into the store, which the reader reads: an output file
    /// (`opts.sink`) is not written here ([`Node::fetch_into`] writes one).
    pub fn start_fetch(
        &self,
        id: ContentId,
        mut opts: FetchOptions,
        events: Events,
        cancel: CancellationToken,
    ) -> FetchHandle {
        opts.sink = None;
        let (tx, rx) = watch::channel(State::default());
        let tx = Arc::new(tx);
        let progress: Events = {
            let tx = Arc::clone(&tx);
            Arc::new(move |e| {
                events(e);
                tx.send_modify(|s| s.events += 1);
            })
        };
        let node = self.clone();
        self.spawn(async move {
            let r = node.fetch(id, opts, progress, cancel).await;
            tx.send_modify(|s| s.done = Some(r.map_err(Arc::new)));
        });
        FetchHandle {
            id,
            node: self.clone(),
            state: rx,
        }
    }
}

impl FetchHandle {
    /// The content fetched.
    pub fn id(&self) -> ContentId {
        self.id
    }

    /// Waits for the fetch to end: its content information and what came from where.
    pub async fn done(mut self) -> Outcome {
        loop {
            if let Some(r) = self.state.borrow_and_update().done.clone() {
                return r;
            }
            if self.state.changed().await.is_err() {
                return Err(Arc::new(FetchError::Cancelled));
            }
        }
    }

    /// Reads the content from its start, in order, as the fetch stores it (each block checked
    /// by the store as it is read). The content is leased from eviction while the reader lives.
    pub fn reader(&self) -> InOrder {
        InOrder {
            store: Arc::clone(self.node.store()),
            id: self.id,
            state: self.state.clone(),
            info: None,
            next: 0,
            _lease: self.node.lease(self.id),
        }
    }
}

/// The content of a running fetch, in order, as it arrives ([`FetchHandle::reader`]).
#[derive(Debug)]
pub struct InOrder {
    store: Arc<dyn SegmentStore>,
    id: ContentId,
    state: watch::Receiver<State>,
    info: Option<Arc<ContentInfo>>,
    next: u64,
    _lease: Lease,
}

impl InOrder {
    /// The content information, once the fetch has it.
    pub fn info(&self) -> Option<&Arc<ContentInfo>> {
        self.info.as_ref()
    }

    /// The next bytes in content order (a run of blocks); `None` after the last. Waits for the
    /// fetch to store them; fails if the fetch fails first.
    pub async fn next(&mut self) -> Option<Result<Bytes, ReadError>> {
        loop {
            // Seen before looking, so a change made after the look wakes the wait below.
            let done = self.state.borrow_and_update().done.clone();
            match self.ready() {
                Err(e) => return Some(Err(e)),
                Ok(Ready::End) => return None,
                Ok(Ready::Run(first, n)) => return Some(self.read(first, n).await),
                Ok(Ready::Wait) => {}
            }
            match done {
                Some(Err(e)) => return Some(Err(ReadError::Fetch(e))),
                Some(Ok(_)) => {
                    // Ended, yet the next block (or the information) is not there: it went
                    // missing (evicted, or damaged on disk).
                    let (id, block) = (self.id, self.next);
                    let gone = match self.info {
                        None => StoreError::UnknownContent { id },
                        Some(_) => StoreError::MissingBlock { id, block },
                    };
                    return Some(Err(gone.into()));
                }
                None => {
                    if self.state.changed().await.is_err() {
                        let stopped = Arc::new(FetchError::Cancelled);
                        return Some(Err(ReadError::Fetch(stopped)));
                    }
                }
            }
        }
    }

    /// What can be read now.
    fn ready(&mut self) -> Result<Ready, ReadError> {
        if self.info.is_none() {
            self.info = self.store.content_info(&self.id)?;
        }
        let Some(info) = &self.info else {
            return Ok(Ready::Wait);
        };
        let layout = info.layout();
        if self.next >= layout.block_count() {
            return Ok(Ready::End);
        }
        let first = layout.block_at(self.next).map_err(StoreError::Layout)?;
        let present = self.store.present(&self.id, first.segment())?;
        let mut n = 0;
        let in_segment = layout.blocks_in_segment(first.segment()) - first.index_in_segment();
        while n < RUN_BLOCKS.min(in_segment) && present.contains(first.index_in_segment() + n) {
            n += 1;
        }
        Ok(if n == 0 {
            Ready::Wait
        } else {
            Ready::Run(first, n)
        })
    }

    async fn read(&mut self, first: BlockIdx, n: u32) -> Result<Bytes, ReadError> {
        let (store, id) = (Arc::clone(&self.store), self.id);
        let data = tokio::task::spawn_blocking(move || store.get_blocks(&id, first, n)).await??;
        let data = data.ok_or(StoreError::MissingBlock {
            id,
            block: first.global(),
        })?;
        self.next += u64::from(n);
        Ok(Bytes::from(data))
    }
}

/// What a reader can do now.
enum Ready {
    /// Read `n` blocks from this one.
    Run(BlockIdx, u32),
    /// Wait for the fetch.
    Wait,
    /// Nothing more to read.
    End,
}
