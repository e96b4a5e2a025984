//! Who downloads what nobody on the LAN has yet, and how the others take it from that download.
//!
//! Nodes that want the same thing from an origin at once (content known by its ticket, or a
//! gateway's URL) say so to each other ([`crate::wire::Request::Intent`], by lookup key) and
//! elect one to download it ([`Node::elect_on`]); the others follow its download as it arrives
//! ([`TailReader`], over [`crate::wire::Request::Tail`]), which it offers while it lasts
//! ([`TailOffer`]). Every node computes the same answer from the same answers, so there is one
//! download without a coordinator.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::Node;
use crate::fetch::{FetchError, PeerRef};
use crate::peer::{PeerAddr, PeerError, PeerService, TailChunk, TailSource};
use crate::wire::{Intent, LookupKey, TailKey};

/// How long a node that wants something others want too waits for all of them to say so before
/// the election.
const ELECTION_WAIT: Duration = Duration::from_millis(500);
/// How often a node waiting for another's download checks again.
const ELECTION_POLL: Duration = Duration::from_millis(250);
/// How long a follower waits for the next [`FOLLOW_STEP`] of the download before giving up on
/// the peer it follows.
const FOLLOW_PATIENCE: Duration = Duration::from_secs(15);
/// The progress a followed download must make within the patience: a peer that trickles a byte
/// now and then holds nobody.
const FOLLOW_STEP: u64 = 64 << 10;
/// How long a peer that outranks this node in an election may say it wants the content without
/// downloading it, times one more than the wanting peers that outrank it (those it may itself
/// be waiting for), before this node leaves it out of the election. An honest one leads within
/// a poll or two of seeing itself first.
const WANTING_PATIENCE: Duration = Duration::from_secs(3);
/// How long a node that has caught up with the download it follows waits before asking again.
const TAIL_POLL: Duration = Duration::from_millis(40);

/// Says to peers that this node wants what a lookup key names from an origin (and, once it
/// leads, that it is downloading it), until dropped.
#[derive(Debug)]
pub struct Wanting {
    svc: Arc<PeerService>,
    key: LookupKey,
    leading: bool,
}

impl Wanting {
    fn new(svc: Arc<PeerService>, key: LookupKey) -> Self {
        svc.begin_intent(&key);
        Wanting {
            svc,
            key,
            leading: false,
        }
    }

    fn lead(mut self) -> Self {
        self.svc.downloading(&self.key);
        self.leading = true;
        self
    }
}

impl Drop for Wanting {
    fn drop(&mut self) {
        self.svc.end_intent(&self.key, self.leading);
    }
}

/// The outcome of an election ([`Node::elect_on`]).
#[derive(Debug)]
pub enum Ballot<T> {
    /// This node downloads it (and says so while the guard lives).
    Lead(Wanting),
    /// This peer is downloading it: follow its download ([`Node::follow_tail`]).
    Follow(Wanting, PeerRef),
    /// The check found it meanwhile (a peer has it now).
    Found(T),
}

/// Offers a download to peers ([`crate::wire::Request::Tail`]) until dropped.
#[derive(Debug)]
pub struct TailOffer {
    svc: Arc<PeerService>,
    key: LookupKey,
    tail: Arc<TailSource>,
}

impl TailOffer {
    /// Keeps offering the (complete) download for `linger` more, so that peers a little behind
    /// finish from it, or until the node stops.
    pub fn linger(self, node: &Node, linger: Duration) {
        let stop = node.stopping();
        node.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(linger) => {}
                _ = stop.cancelled() => {}
            }
            drop(self);
        });
    }
}

impl Drop for TailOffer {
    fn drop(&mut self) {
        self.svc.end_tail(&self.key, &self.tail);
    }
}

/// Why following a download stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TailError {
    /// The peer went away, stopped offering the download, or answered out of turn.
    #[error("peer {peer} stopped offering the download: {why}")]
    Gone {
        /// The peer.
        peer: PeerAddr,
        /// What happened.
        why: Stopped,
    },
    /// The caller cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// What ended a followed download.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Stopped {
    /// Asking the peer failed.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// It offers no such download (any more).
    #[error("it has no such download now")]
    NoDownload,
    /// It offers another download under the same key now (the one followed ended, and a new
    /// one began): its bytes are not the continuation of those taken.
    #[error("it offers another download now")]
    Replaced,
    /// Its bytes do not open under the download's key (it does not have the ticket, or the URL
    /// and the group secret, or it tampered with them).
    #[error("its bytes do not open: {0}")]
    Sealed(crate::wire::WireError),
    /// It sent less than 64 KiB in this long (it says it is downloading and offers nothing,
    /// its offer stopped growing, or it trickles).
    #[error("less than 64 KiB in {secs} s")]
    NoProgress {
        /// The wait, in seconds.
        secs: f64,
    },
    /// It says the download is complete at another length than this node has taken.
    #[error("it has {have} bytes in all, this node {at}")]
    Length {
        /// Its length.
        have: u64,
        /// Bytes taken here.
        at: u64,
    },
}

/// Takes a peer's download as it arrives, from an offset ([`Node::follow_tail`]).
#[derive(Debug)]
pub struct TailReader {
    node: Node,
    key: LookupKey,
    seal: TailKey,
    peer: PeerRef,
    at: u64,
    meta: Option<Vec<u8>>,
    timeout: Duration,
    /// Longest time without [`FOLLOW_STEP`] new bytes before giving up on the peer.
    patience: Duration,
    last_progress: tokio::time::Instant,
    /// Where the download stood at `last_progress`.
    mark: u64,
}

impl TailReader {
    /// The same reader, giving up on its peer after `patience` without 64 KiB more of its
    /// download (15 s by default).
    pub fn with_patience(mut self, patience: Duration) -> TailReader {
        self.patience = patience;
        self
    }

    /// Waits before asking again, unless the peer has sent nothing new for too long.
    async fn pause(&self, cancel: &CancellationToken) -> Result<(), TailError> {
        if self.last_progress.elapsed() >= self.patience {
            return Err(TailError::Gone {
                peer: self.peer.addr,
                why: Stopped::NoProgress {
                    secs: self.patience.as_secs_f64(),
                },
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(TAIL_POLL) => Ok(()),
            _ = cancel.cancelled() => Err(TailError::Cancelled),
        }
    }

    /// Bytes taken so far (the next offset asked for).
    pub fn at(&self) -> u64 {
        self.at
    }

    /// The peer followed.
    pub fn peer(&self) -> &PeerRef {
        &self.peer
    }

    /// The metadata the peer's download carries, once an answer came.
    pub fn meta(&self) -> Option<&[u8]> {
        self.meta.as_deref()
    }

    /// The next bytes, waiting for the peer to have them; `None` once the download is
    /// complete and all of it taken.
    pub async fn next(&mut self, cancel: &CancellationToken) -> Result<Option<Bytes>, TailError> {
        let gone = |why: Stopped| TailError::Gone {
            peer: self.peer.addr,
            why,
        };
        loop {
            let client = &self.node.inner.client;
            let reply = tokio::select! {
                r = client.tail(self.peer.addr, self.key, self.at, self.timeout) => r,
                _ = cancel.cancelled() => return Err(TailError::Cancelled),
            };
            let TailChunk {
                have,
                complete,
                meta,
                data,
            } = match reply {
                Ok(Some(chunk)) => chunk,
                Ok(None) if self.still_downloading().await => {
                    // Elected, and not offering its download yet (its origin has not answered).
                    self.pause(cancel).await?;
                    continue;
                }
                Ok(None) => return Err(gone(Stopped::NoDownload)),
                Err(e) => return Err(gone(e.into())),
            };
            if self.meta.as_ref().is_some_and(|m| *m != meta) {
                return Err(gone(Stopped::Replaced));
            }
            self.meta = Some(meta);
            if !data.is_empty() {
                let data = self
                    .seal
                    .open(self.at, &data)
                    .map_err(|e| gone(Stopped::Sealed(e)))?;
                self.at += data.len() as u64;
                if self.at - self.mark >= FOLLOW_STEP {
                    self.last_progress = tokio::time::Instant::now();
                    self.mark = self.at;
                } else if self.last_progress.elapsed() >= self.patience {
                    // It answers at once, with next to nothing each time.
                    let secs = self.patience.as_secs_f64();
                    return Err(gone(Stopped::NoProgress { secs }));
                }
                if let Some(node) = self.peer.node {
                    let stats = self.node.inner.service.stats();
                    stats.add_received(node, data.len() as u64);
                }
                return Ok(Some(Bytes::from(data)));
            }
            if complete {
                return if have == self.at {
                    Ok(None)
                } else {
                    Err(gone(Stopped::Length { have, at: self.at }))
                };
            }
            self.pause(cancel).await?;
        }
    }
}

impl TailReader {
    /// Whether the peer still says it is downloading.
    async fn still_downloading(&self) -> bool {
        let client = &self.node.inner.client;
        matches!(
            client.intent(self.peer.addr, self.key, self.timeout).await,
            Ok(Intent::Downloading)
        )
    }
}

impl Node {
    /// Elects, among the nodes that want what `key` names from an origin now (those whose peer
    /// service says so to [`crate::wire::Request::Intent`]), the one that downloads it. This node says it
    /// wants it and asks its peers at once: if none wants it or is downloading it, this node
    /// leads at once (two nodes asking each other at the same time cannot both miss the
    /// other). Otherwise it waits 500 ms for all of them to say so, then every 250 ms
    /// runs `check` (a peer has it now: [`Ballot::Found`]) and asks again: if
    /// one is downloading it, this node follows that download (a later arrival never
    /// overtakes); if this node has the lowest rank, a hash of node ID and key, among those
    /// still wanting it, it leads. A leader that stops or dies stops saying so, and the next
    /// one takes over. Peers in `shun` (ones that failed this node's download before: said
    /// they were downloading and offered nothing, or sent what does not open) are not asked.
    pub async fn elect_on<T, F, Fut>(
        &self,
        key: LookupKey,
        shun: &[PeerAddr],
        mut check: F,
        cancel: &CancellationToken,
    ) -> Result<Ballot<T>, FetchError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let wanting = Wanting::new(Arc::clone(&self.inner.service), key);
        let rank = |node: &[u8]| {
            let mut b = node.to_vec();
            b.extend_from_slice(&key.0);
            crate::content::sha256(&b).0
        };
        let mine = rank(&self.inner.id.0);
        // When each peer that outranks this node was first seen wanting it, and those left
        // out of the election for wanting it too long without downloading it.
        let mut wanting_since = std::collections::HashMap::new();
        let mut left_out = Vec::new();
        for round in 0u64.. {
            let first = round == 0;
            if !first {
                let wait = if round == 1 {
                    ELECTION_WAIT
                } else {
                    ELECTION_POLL
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => return Err(FetchError::Cancelled),
                }
                if let Some(found) = check().await {
                    return Ok(Ballot::Found(found));
                }
            }
            let mut asks = tokio::task::JoinSet::new();
            for p in self.inner.peers.fetch_peers() {
                if shun.contains(&p.addr) {
                    continue;
                }
                let node = self.clone();
                asks.spawn(async move {
                    let timeout = node.inner.cfg.hello_timeout;
                    match node.inner.client.intent(p.addr, key, timeout).await {
                        Ok(i) => Some((i, p)),
                        _ => None,
                    }
                });
            }
            let (mut wants, mut downloading) = (Vec::new(), None);
            while let Some(r) = asks.join_next().await {
                match r {
                    Ok(Some((Intent::Downloading, p))) => downloading = Some(p),
                    Ok(Some((Intent::Wants, p))) => {
                        let who = p
                            .node
                            .map_or_else(|| p.addr.to_string().into_bytes(), |n| n.0.to_vec());
                        wants.push((p.addr, rank(&who)));
                    }
                    _ => {}
                }
            }
            if let Some(p) = downloading {
                return Ok(Ballot::Follow(wanting, p));
            }
            let others = !wants.is_empty();
            wants.retain(|(p, r)| *r < mine && !left_out.contains(p));
            let now = tokio::time::Instant::now();
            let ranks: Vec<[u8; 32]> = wants.iter().map(|(_, r)| *r).collect();
            let mut lowest = mine;
            for (p, r) in wants {
                let since = *wanting_since.entry(p).or_insert(now);
                let ahead = ranks.iter().filter(|o| **o < r).count() as u32;
                if now - since > WANTING_PATIENCE * (1 + ahead) {
                    tracing::warn!(
                        "peer {p} has wanted {key:?} for {:?} without downloading it: leaving \
                         it out of the election",
                        now - since
                    );
                    left_out.push(p);
                    continue;
                }
                lowest = lowest.min(r);
            }
            if (first && !others) || (!first && lowest == mine) {
                return Ok(Ballot::Lead(wanting.lead()));
            }
        }
        unreachable!("the rounds do not run out")
    }

    /// Offers `tail` to peers under `key` until the offer is dropped (or lingers).
    pub fn offer_tail(&self, key: LookupKey, tail: Arc<TailSource>) -> TailOffer {
        self.inner.service.begin_tail(&key, Arc::clone(&tail));
        TailOffer {
            svc: Arc::clone(&self.inner.service),
            key,
            tail,
        }
    }

    /// Follows `peer`'s download of what `key` names, from byte `at`, its bytes opened with
    /// `seal`; each answer waits at most `timeout`.
    pub fn follow_tail(
        &self,
        key: LookupKey,
        seal: TailKey,
        peer: PeerRef,
        at: u64,
        timeout: Duration,
    ) -> TailReader {
        TailReader {
            node: self.clone(),
            key,
            seal,
            peer,
            at,
            meta: None,
            timeout,
            patience: FOLLOW_PATIENCE,
            last_progress: tokio::time::Instant::now(),
            mark: at,
        }
    }
}
