//! Content known only by its ticket, which no peer has the information of yet: the nodes that
//! want it from an origin at once elect one to download it ([`Node::elect_on`]). That one
//! streams it from the origin into a file and offers the file to its peers as it grows; the
//! others follow it ([`super::TailReader`]) at LAN speed, a little behind, instead of waiting
//! for the whole. Every node hashes what it receives as it arrives and keeps the content only if
//! it hashes to the ticket, so nothing a peer says is believed. If the leader goes away, those
//! still wanting the content elect another, which goes on from the origin where it stands, by
//! range.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::repair::Taken;
use super::{Ballot, Node, TailError};
use crate::content::layout::MAX_CONTENT_LEN;
use crate::content::{ContentId, ContentInfo};
use crate::download::{Download, FinishError, PutError, Written};
use crate::fetch::{Events, FetchError, FetchEvent, FetchOptions, FetchReport, PeerRef, Source};
use crate::origin::{Mismatch, OriginError};
use crate::peer::{PeerAddr, TailSource};
use crate::store::StoreError;
use crate::wire::{ContentKeys, TailKey};

/// How long a complete download stays offered to peers: those a little behind finish from it
/// while the content enters the store or the output file is put in place.
const TAIL_LINGER: Duration = Duration::from_secs(60);
/// How long a node whose followed download stopped waits before electing again.
const REELECT_PAUSE: Duration = Duration::from_millis(250);

/// Who downloads content nobody has.
pub(super) type Elected = Ballot<Arc<ContentInfo>>;

/// How a whole download ended.
pub(super) enum Whole {
    /// Downloaded and kept: its content information and what came from where.
    Done(Arc<ContentInfo>, FetchReport),
    /// A peer has the content information now (the leader finished before this node caught
    /// up): the caller fetches the content as content known by its information.
    Known(Arc<ContentInfo>),
}

/// Where the bytes of a whole download come from now.
enum Feed {
    Origin,
    Peer(PeerRef),
}

/// How a source's part of a download ended.
enum Ended {
    /// The content is complete.
    Complete,
    /// The peer followed went away, stopped offering it, or sent what does not open; with
    /// why.
    Gone(PeerAddr, String),
}

/// The receiving end of a whole download ([`Download`]), with what came from where.
struct Intake<'a> {
    download: Download,
    report: FetchReport,
    events: &'a Events,
    /// The byte ranges nothing vouches for until the end: resumed from an earlier fetch, or
    /// taken from each peer followed; in order.
    unverified: Vec<(Taken, Range<u64>)>,
}

impl Intake<'_> {
    /// Takes `data` (the next bytes); false if the writing thread has stopped (finishing says
    /// why). Content longer than pdist describes is refused before it fills the disk.
    async fn put(&mut self, data: Bytes, source: Source) -> Result<bool, FetchError> {
        let n = data.len() as u64;
        match self.download.put(data).await {
            Ok(()) => {}
            Err(PutError::TooLong { limit }) => {
                let too_long = Mismatch::TooLong { max: limit };
                return Err(OriginError::from(too_long).into());
            }
            Err(_) => return Ok(false),
        }
        *self.report.by_source.entry(source).or_default() += n;
        if let Source::Peer(peer) = source {
            let end = self.download.len();
            match self.unverified.last_mut() {
                Some((Taken::Peer(p), r)) if *p == peer && r.end == end - n => r.end = end,
                _ => self.unverified.push((Taken::Peer(peer), end - n..end)),
            }
        }
        (self.events)(FetchEvent::Progress { source, bytes: n });
        Ok(true)
    }

    /// Bytes taken so far.
    fn sent(&self) -> u64 {
        self.download.len()
    }

    /// Whether every byte taken so far was resumed (none arrived in this fetch).
    fn only_resumed(&self) -> bool {
        matches!(self.unverified.as_slice(), [(Taken::Resumed, r)] if r.end == self.sent())
    }

    /// Drops what was resumed and takes everything anew into `download`.
    fn start_over(&mut self, download: Download) {
        self.download = download;
        self.report.present = 0;
        self.unverified.clear();
    }
}

impl Node {
    /// Elects the node that downloads `id` ([`Node::elect_on`] by its lookup key); the check
    /// is whether a peer has its content information now.
    pub(super) async fn elect(
        &self,
        id: ContentId,
        opts: &FetchOptions,
        shun: &[PeerAddr],
        cancel: &CancellationToken,
    ) -> Result<Elected, FetchError> {
        let check = || self.known(id, opts);
        self.elect_on(ContentKeys::new(&id).lookup, shun, check, cancel)
            .await
    }

    /// The content information of `id`, if a peer (or the store) has it now.
    async fn known(&self, id: ContentId, opts: &FetchOptions) -> Option<Arc<ContentInfo>> {
        let peers = self.inner.peers.fetch_peers();
        let fetcher = &self.inner.fetcher;
        fetcher
            .content_info(&id, &peers, opts.chunk_timeout)
            .await
            .ok()
    }

    /// Downloads `id` whole, known by its ticket only: from the origin when this node was
    /// elected, else behind the peer downloading it; from the origin where it stands if it is
    /// elected later. Written into the fetch's sink (or a scratch file) and hashed as it
    /// arrives, then kept only if it hashes to the ticket; or [`Whole::Known`].
    pub(super) async fn whole(
        &self,
        id: ContentId,
        elected: Elected,
        opts: &FetchOptions,
        events: &Events,
        cancel: &CancellationToken,
    ) -> Result<Whole, FetchError> {
        let origin = opts.origin.as_ref().expect("only elected with an origin");
        let (file, _scratch) = match &opts.sink {
            Some(sink) => (Arc::clone(sink), None),
            None => {
                let scratch = &self.inner.cfg.scratch;
                let err = |e| StoreError::io_at("creating a file in", scratch, e);
                std::fs::create_dir_all(scratch).map_err(err)?;
                let tmp = tempfile::Builder::new()
                    .prefix("origin-")
                    .tempfile_in(scratch)
                    .map_err(err)?;
                let file = tmp.reopen().map_err(err)?;
                (Arc::new(file), Some(tmp))
            }
        };
        let tail = TailSource::new(Arc::clone(&file), 0, TailKey::for_content(&id));
        let offered = Arc::clone(&tail);
        let secret = self.inner.cfg.secret.clone();
        let written: Written = Arc::new(move |n| offered.advance(n));
        let fresh = || {
            let written = Arc::clone(&written);
            Download::new(Arc::clone(&file), secret.clone(), MAX_CONTENT_LEN, written)
        };
        // What an earlier fetch into the same output left: gone on from (checked at the end
        // like everything else).
        let have = opts.sink.as_ref().map_or(0, |_| opts.resumed);
        let resumed = Download::resume(
            Arc::clone(&file),
            secret.clone(),
            MAX_CONTENT_LEN,
            Arc::clone(&written),
            have,
        );
        let (download, have) = match resumed.await {
            Ok(d) => (d, have),
            Err(e) => {
                tracing::info!("not going on from what the output holds ({e}): starting over");
                (fresh(), 0)
            }
        };
        if have > 0 {
            tracing::info!("{}: going on from byte {have}", id.ticket());
        }
        (events)(FetchEvent::Started {
            len: 0,
            present: have,
            peers: 0,
        });
        let mut intake = Intake {
            download,
            report: FetchReport {
                present: have,
                ..FetchReport::default()
            },
            events,
            unverified: Vec::new(),
        };
        if have > 0 {
            intake.unverified.push((Taken::Resumed, 0..have));
        }
        let (mut from, mut _wanting) = match elected {
            Ballot::Lead(w) => (Feed::Origin, w),
            Ballot::Follow(w, p) => (Feed::Peer(p), w),
            Ballot::Found(_) => unreachable!("the caller fetches known content itself"),
        };
        let key = ContentKeys::new(&id).lookup;
        let mut offer = None;
        // Peers followed that failed this download: not followed again.
        let mut shun = Vec::new();
        let fed: Result<Option<Whole>, FetchError> = async {
            loop {
                let ended = match &from {
                    Feed::Origin => {
                        if offer.is_none() {
                            offer = Some(self.offer_tail(key, Arc::clone(&tail)));
                        }
                        match self.take_origin(origin, &mut intake, cancel).await {
                            // An origin that will not go on from where the output stands (no
                            // ranges, or the output is longer than the content now): start over.
                            Err(FetchError::Origin(e)) if intake.only_resumed() => {
                                tracing::info!(
                                    "the origin cannot go on from byte {}: {e}",
                                    intake.sent()
                                );
                                intake.start_over(fresh());
                                continue;
                            }
                            r => r?,
                        }
                    }
                    Feed::Peer(p) => {
                        let p = p.clone();
                        self.follow_peer(id, p, &mut intake, opts, cancel).await?
                    }
                };
                match ended {
                    Ended::Complete => break Ok(None),
                    Ended::Gone(peer, why) => {
                        tracing::info!(
                            "the download followed from {peer} stopped ({why}): electing again"
                        );
                        intake.report.dropped.push((peer, why));
                        shun.push(peer);
                        tokio::select! {
                            _ = tokio::time::sleep(REELECT_PAUSE) => {}
                            _ = cancel.cancelled() => return Err(FetchError::Cancelled),
                        }
                        // The leader may have finished: then the content is known.
                        if let Some(info) = self.known(id, opts).await {
                            return Ok(Some(Whole::Known(info)));
                        }
                        match self.elect(id, opts, &shun, cancel).await? {
                            Ballot::Lead(w) => (from, _wanting) = (Feed::Origin, w),
                            Ballot::Follow(w, p) => (from, _wanting) = (Feed::Peer(p), w),
                            Ballot::Found(info) => return Ok(Some(Whole::Known(info))),
                        }
                    }
                }
            }
        }
        .await;
        match fed {
            Ok(None) => {}
            // Stopped, failed, or known now: the file keeps what was written (a resumable
            // output goes on from it), with no write still in flight.
            Ok(Some(known)) => {
                intake.download.stop().await;
                return Ok(known);
            }
            Err(e) => {
                intake.download.stop().await;
                return Err(e);
            }
        }
        let sent = intake.sent();
        let Intake {
            download,
            mut report,
            unverified,
            ..
        } = intake;
        let mut info = match download.finish().await {
            Ok(info) => info,
            Err(FinishError::Io(e)) => {
                return Err(StoreError::io("writing the download", e).into());
            }
            Err(FinishError::Hash(e)) => return Err(OriginError::from(Mismatch::from(e)).into()),
            Err(e) => return Err(StoreError::io("hashing", io::Error::other(e)).into()),
        };
        if info.id() != id && !unverified.is_empty() {
            // A peer followed sent other bytes than the origin's (its tail is sealed under a
            // key every holder of the ticket has, so only the hash at the end can tell), or what
            // an earlier fetch left is not what the origin has now.
            let repair = super::repair::Repair {
                origin,
                file: &file,
                len: sent,
                secret: &self.inner.cfg.secret,
            };
            if let Some(repaired) = repair.run(&unverified, &mut report, cancel).await? {
                info = repaired;
            }
        }
        if info.id() != id {
            let from_origin = report.by_source.get(&Source::Origin).copied();
            let other = Mismatch::OtherContent {
                got: info.id(),
                from_origin: from_origin.unwrap_or(0),
                total: sent,
            };
            return Err(OriginError::from(other).into());
        }
        tail.finish();
        let info = Arc::new(info);
        self.keep_whole(&info, &tail, opts).await?;
        if let Some(offer) = offer {
            // Peers a little behind finish from the file; then it is served as stored content.
            offer.linger(self, TAIL_LINGER);
        }
        Ok(Whole::Done(info, report))
    }

    /// Keeps verified whole content: in the store (copied from the file) unless it went into a
    /// fetch's output file, which is registered in place when it is committed
    /// ([`Node::keep_in_place`]); a cache node keeps a copy either way.
    async fn keep_whole(
        &self,
        info: &Arc<ContentInfo>,
        tail: &Arc<TailSource>,
        opts: &FetchOptions,
    ) -> Result<(), FetchError> {
        if opts.sink.is_none() || self.inner.cfg.cache {
            let name = info.id().ticket().to_string();
            self.keep_file(info, &name, tail.file()).await?;
        } else {
            self.announce(&info.id());
        }
        Ok(())
    }

    /// Streams the origin from where the download stands to its end.
    async fn take_origin(
        &self,
        origin: &crate::origin::OriginClient,
        intake: &mut Intake<'_>,
        cancel: &CancellationToken,
    ) -> Result<Ended, FetchError> {
        let mut stream = tokio::select! {
            r = origin.stream(intake.sent()) => r?,
            _ = cancel.cancelled() => return Err(FetchError::Cancelled),
        };
        loop {
            let chunk = tokio::select! {
                c = stream.next() => c,
                _ = cancel.cancelled() => return Err(FetchError::Cancelled),
            };
            match chunk {
                Some(data) => {
                    if !intake.put(data?, Source::Origin).await? {
                        return Ok(Ended::Complete);
                    }
                }
                None => break,
            }
        }
        if let Some(len) = stream.total_len().filter(|len| *len != intake.sent()) {
            let short = Mismatch::Length {
                got: intake.sent(),
                want: len,
            };
            return Err(OriginError::from(short).into());
        }
        Ok(Ended::Complete)
    }

    /// Takes the download `peer` is making of the content `key` names, from where this node
    /// stands, until it is complete or the peer stops offering it.
    async fn follow_peer(
        &self,
        id: ContentId,
        peer: PeerRef,
        intake: &mut Intake<'_>,
        opts: &FetchOptions,
        cancel: &CancellationToken,
    ) -> Result<Ended, FetchError> {
        let addr = peer.addr;
        let (key, seal) = (ContentKeys::new(&id).lookup, TailKey::for_content(&id));
        let mut reader = self
            .follow_tail(key, seal, peer, intake.sent(), opts.chunk_timeout)
            .with_patience(opts.follow_patience);
        loop {
            match reader.next(cancel).await {
                Ok(Some(data)) => {
                    if !intake.put(data, Source::Peer(addr)).await? {
                        return Ok(Ended::Complete);
                    }
                }
                Ok(None) => return Ok(Ended::Complete),
                Err(TailError::Cancelled) => return Err(FetchError::Cancelled),
                Err(e) => return Ok(Ended::Gone(addr, e.to_string())),
            }
        }
    }
}
