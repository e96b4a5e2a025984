//! The workers of a fetch: a few per peer and a few for the origin, each pulling units from
//! the scheduler, fetching them, opening and checking every block, and storing them.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::sched::{Next, Sched, Unit, Who};
use super::{
    Events, FetchError, FetchEvent, FetchOptions, FetchReport, Fetcher, PeerRef, Source, Tally,
};
use crate::content::{ContentInfo, Layout};
use crate::store::{BlockSet, StoreError};
use crate::wire::{self, ContentKeys, FrameReader, HaveEntry, LookupKey, SealedParts, SegmentKey};

/// Everything the workers of one fetch share.
struct Ctx {
    f: Fetcher,
    info: Arc<ContentInfo>,
    lookup: LookupKey,
    peers: Vec<PeerRef>,
    opts: FetchOptions,
    sched: Mutex<Sched>,
    /// Bumped on every change of the scheduler's state; waiting workers watch it.
    generation: watch::Sender<u64>,
    events: Events,
    tally: Tally,
    dropped: Mutex<Vec<(crate::peer::PeerAddr, String)>>,
    fatal: Mutex<Option<FetchError>>,
    cancel: CancellationToken,
    runs: Arc<RunWriter>,
}

/// Where verified runs go, from peers and from the origin alike: into the store (unsynced)
/// and, with an output file, at their offset into it. It also starts the bytes towards the
/// disk while the fetch runs (a sync every 64 MiB, on the blocking thread that crossed the mark,
/// one at a time), so that the final sync has little left to do.
struct RunWriter {
    written: std::sync::atomic::AtomicU64,
    busy: std::sync::atomic::AtomicBool,
    sink: Option<Arc<std::fs::File>>,
    store: Arc<dyn crate::store::SegmentStore>,
    info: Arc<ContentInfo>,
}

impl RunWriter {
    const EVERY: u64 = 64 << 20;

    /// Stores the run of blocks starting at `first` (checked by the store) and writes it into
    /// the output; returns its length. Called on a blocking thread.
    fn write(&self, first: crate::content::BlockIdx, data: &[u8]) -> Result<u64, StoreError> {
        use std::os::unix::fs::FileExt;
        self.store.put_blocks_lazy(&self.info.id(), first, data)?;
        if let Some(sink) = &self.sink {
            sink.write_all_at(data, self.info.layout().block_offset(first))
                .map_err(|e| StoreError::io("writing the output", e))?;
        }
        self.wrote(data.len() as u64);
        Ok(data.len() as u64)
    }

    fn wrote(&self, n: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let before = self.written.fetch_add(n, Relaxed);
        if before / Self::EVERY == (before + n) / Self::EVERY || self.busy.swap(true, Relaxed) {
            return;
        }
        // Errors surface at the final sync.
        let _ = match &self.sink {
            Some(f) => f
                .sync_data()
                .map_err(|e| StoreError::io("syncing the output", e)),
            None => self.store.sync_content(&self.info.id()),
        };
        self.busy.store(false, Relaxed);
    }
}

/// Why a unit did not arrive from a peer.
enum Miss {
    /// Transport trouble: counts against the peer, which is retried.
    Transport(String),
    /// The peer no longer has the blocks.
    Gone,
    /// The peer is serving as many streams as it will (HTTP 503): try again a little later.
    Busy,
    /// The peer sent bytes that do not verify: dropped at once.
    Bad(String),
    /// Someone else delivered it first.
    Superseded,
    /// The store failed (fatal for the fetch).
    Store(StoreError),
}

impl Ctx {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sched> {
        self.sched.lock().expect("scheduler lock")
    }

    fn changed(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    fn fail(&self, e: FetchError) {
        self.fatal.lock().expect("fatal lock").get_or_insert(e);
        self.cancel.cancel();
    }

    fn report_dropped(&self, p: usize, why: String) {
        let addr = self.peers[p].addr;
        tracing::warn!("dropping peer {addr} from this transfer: {why}");
        self.dropped
            .lock()
            .expect("dropped lock")
            .push((addr, why.clone()));
        (self.events)(FetchEvent::PeerDropped {
            peer: addr,
            reason: why,
        });
    }

    fn stored(&self, who: Who, bytes: u64) {
        let source = match who {
            Who::Peer(p) => {
                let peer = &self.peers[p];
                if let Some(n) = peer.node {
                    self.f.stats.add_received(n, bytes);
                }
                Source::Peer(peer.addr)
            }
            Who::Origin => Source::Origin,
        };
        self.tally.add(source, bytes);
        (self.events)(FetchEvent::Progress { source, bytes });
    }

    /// Waits for a change of the scheduler's state (or cancellation).
    async fn wait(&self, rx: &mut watch::Receiver<u64>) -> bool {
        tokio::select! {
            r = rx.changed() => r.is_ok(),
            _ = self.cancel.cancelled() => false,
        }
    }
}

pub(super) async fn run(
    f: &Fetcher,
    info: Arc<ContentInfo>,
    peers: &[PeerRef],
    opts: &FetchOptions,
    events: Events,
    cancel: CancellationToken,
) -> Result<FetchReport, FetchError> {
    let id = info.id();
    let layout = *info.layout();
    let present: Vec<BlockSet> = layout
        .segments()
        .map(|s| f.store.present(&id, s))
        .collect::<Result<_, _>>()?;
    let present_blocks: u64 = present.iter().map(|s| u64::from(s.count())).sum();
    let present_bytes = if present_blocks == layout.block_count() {
        layout.content_len()
    } else {
        present_blocks * u64::from(layout.block_size())
    };
    let lookup = ContentKeys::new(&id).lookup;
    // Blocks outside `only` are not wanted: to the scheduler they are as good as present.
    let wanted_done = match &opts.only {
        Some(r) => outside(&layout, &present, r),
        None => present.clone(),
    };
    let mut sched = Sched::new(
        &layout,
        &wanted_done,
        opts.unit_blocks,
        opts.max_failures,
        opts.origin.is_some(),
    );
    sched.set_max_busy(opts.max_busy);
    // What each peer holds.
    let mut haves = JoinSet::new();
    for (i, p) in peers.iter().enumerate() {
        let f = f.clone();
        let addr = p.addr;
        let timeout = opts.chunk_timeout;
        haves.spawn(async move { (i, have_map(&f, addr, lookup, &layout, timeout).await) });
    }
    let mut have_of = vec![None; peers.len()];
    // Peers that did not say what they hold (stalled, or answered what does not open): left
    // out of this fetch, and named in its report.
    let mut silent = Vec::new();
    while let Some(r) = haves.join_next().await {
        if let Ok((i, r)) = r {
            match r {
                Ok(h) => have_of[i] = Some(h),
                Err(HaveError::NotHere) => {}
                Err(e) => {
                    tracing::info!("peer {}: {e}", peers[i].addr);
                    silent.push((i, format!("did not say what it holds: {e}")));
                }
            }
        }
    }
    let mut holding = 0;
    for h in have_of {
        let h = h.unwrap_or_else(|| {
            layout
                .segments()
                .map(|s| BlockSet::new(layout.blocks_in_segment(s)))
                .collect()
        });
        if h.iter().any(|s| s.count() > 0) {
            holding += 1;
        }
        sched.add_peer(h);
    }
    let mut dropped = Vec::new();
    for (i, why) in silent {
        sched.drop_peer(i, why.clone());
        dropped.push((peers[i].addr, why));
    }
    sched.split_for_partial_holders();
    (events)(FetchEvent::Started {
        len: layout.content_len(),
        present: present_bytes,
        peers: holding,
    });
    if sched.is_empty() {
        finish(f, &info, opts, Some(present)).await?;
        return Ok(FetchReport {
            present: present_bytes,
            dropped,
            ..FetchReport::default()
        });
    }
    let unheld = sched.unheld_segments();
    if opts.origin.is_none() && !unheld.is_empty() {
        return Err(FetchError::Unavailable {
            id,
            segments: unheld,
        });
    }
    let (generation, _) = watch::channel(0u64);
    let ctx = Arc::new(Ctx {
        f: f.clone(),
        info: Arc::clone(&info),
        lookup,
        peers: peers.to_vec(),
        opts: opts.clone(),
        sched: Mutex::new(sched),
        generation,
        events,
        tally: Tally::default(),
        dropped: Mutex::new(dropped),
        fatal: Mutex::default(),
        cancel: cancel.child_token(),
        runs: Arc::new(RunWriter {
            written: Default::default(),
            busy: Default::default(),
            sink: opts.sink.clone(),
            store: Arc::clone(&f.store),
            info,
        }),
    });
    // With an origin, every unit can always be fetched, so waiting for holdings to change
    // cannot hang (without one, a fetch that runs out of holders fails instead).
    let refresh = opts.origin.is_some() && !peers.is_empty();
    if refresh {
        let start = u64::from_le_bytes(f.client.me().0[..8].try_into().expect("8 bytes"));
        let mut sched = ctx.lock();
        sched.set_refreshing();
        sched.set_origin_start(start as usize);
    }
    let mut workers = JoinSet::new();
    for (p, peer) in peers.iter().enumerate() {
        let depth = if peer.cache {
            opts.cache_depth
        } else {
            opts.depth
        };
        for _ in 0..depth {
            workers.spawn(peer_worker(Arc::clone(&ctx), p));
        }
    }
    if opts.origin.is_some() {
        for _ in 0..opts.origin_depth {
            workers.spawn(origin_worker(Arc::clone(&ctx)));
        }
    }
    if refresh {
        workers.spawn(refresh_holdings(Arc::clone(&ctx)));
    }
    while workers.join_next().await.is_some() {}
    if let Some(e) = ctx.fatal.lock().expect("fatal lock").take() {
        return Err(e);
    }
    if cancel.is_cancelled() {
        return Err(FetchError::Cancelled);
    }
    {
        let sched = ctx.lock();
        if !sched.finished() {
            return Err(FetchError::Unavailable {
                id,
                segments: sched.unheld_segments(),
            });
        }
    }
    finish(f, &ctx.info, opts, Some(present)).await?;
    Ok(FetchReport {
        present: present_bytes,
        by_source: ctx.tally.0.lock().expect("tally lock").clone(),
        dropped: ctx.dropped.lock().expect("dropped lock").clone(),
    })
}

/// `present` with every block that holds none of the bytes of `only` added.
fn outside(layout: &Layout, present: &[BlockSet], only: &std::ops::Range<u64>) -> Vec<BlockSet> {
    let bs = u64::from(layout.block_size());
    let (first, end) = (only.start / bs, only.end.div_ceil(bs));
    layout
        .segments()
        .zip(present)
        .map(|(seg, have)| {
            let mut s = have.clone();
            let base = layout.segment_offset(seg) / bs;
            for i in 0..layout.blocks_in_segment(seg) {
                let g = base + u64::from(i);
                if g < first || g >= end {
                    s.insert(i);
                }
            }
            s
        })
        .collect()
}

/// Without an output file, makes the fetched blocks durable; with one, copies into it the
/// blocks that were already in the store.
async fn finish(
    f: &Fetcher,
    info: &Arc<ContentInfo>,
    opts: &FetchOptions,
    present: Option<Vec<BlockSet>>,
) -> Result<(), FetchError> {
    let store = Arc::clone(&f.store);
    let info = Arc::clone(info);
    let sink = opts.sink.clone();
    tokio::task::spawn_blocking(move || {
        if sink.is_none() {
            store.sync_content(&info.id())?;
        }
        // With an output file, the stored copies are dropped once the file is in place (see
        // `Node::keep_in_place`), so they are not synced.
        if let Some(sink) = &sink {
            // Only blocks that were present before this fetch began are not in the sink yet.
            let done: Option<Vec<BlockSet>> = present.map(|p| {
                p.iter()
                    .zip(info.layout().segments())
                    .map(|(had, seg)| {
                        let n = info.layout().blocks_in_segment(seg);
                        let mut fetched = BlockSet::full(n);
                        for i in had.iter() {
                            fetched.remove(i);
                        }
                        fetched
                    })
                    .collect()
            });
            super::fill_sink(store.as_ref(), &info, sink, done.as_deref())?;
        }
        Ok::<(), StoreError>(())
    })
    .await
    .map_err(|e| StoreError::io("finishing the fetch", std::io::Error::other(e)))??;
    Ok(())
}

/// Why a peer's holdings are not known.
#[derive(Debug, thiserror::Error)]
enum HaveError {
    #[error(transparent)]
    Peer(#[from] crate::peer::PeerError),
    #[error("does not have it")]
    NotHere,
    #[error("sent a bitmap that does not fit segment {0}")]
    Bitmap(u32),
}

/// Asks a peer which blocks it holds, in batches of segments.
async fn have_map(
    f: &Fetcher,
    addr: crate::peer::PeerAddr,
    lookup: LookupKey,
    layout: &crate::content::Layout,
    timeout: std::time::Duration,
) -> Result<Vec<BlockSet>, HaveError> {
    let mut out = Vec::with_capacity(layout.segment_count() as usize);
    while (out.len() as u32) < layout.segment_count() {
        let first = out.len() as u32;
        let count = (layout.segment_count() - first).min(wire::MAX_HAVE_SEGMENTS);
        let entries = f
            .client
            .have(addr, lookup, first, count, timeout)
            .await?
            .ok_or(HaveError::NotHere)?;
        for (i, e) in entries.into_iter().enumerate() {
            let seg = layout
                .segment(u64::from(first) + i as u64)
                .expect("in range");
            let n = layout.blocks_in_segment(seg);
            out.push(match e {
                HaveEntry::None => BlockSet::new(n),
                HaveEntry::All => BlockSet::full(n),
                HaveEntry::Some(bits) => {
                    BlockSet::from_bytes(&bits, n).ok_or(HaveError::Bitmap(seg.get()))?
                }
            });
        }
    }
    Ok(out)
}

impl Ctx {
    /// The next unit for a worker, `ask` being its question to the scheduler; waits while
    /// there is nothing now; `None` when the worker is done.
    async fn next_unit(
        &self,
        rx: &mut watch::Receiver<u64>,
        ask: impl Fn(&mut Sched) -> Next,
    ) -> Option<usize> {
        loop {
            rx.borrow_and_update();
            let next = ask(&mut self.lock());
            match next {
                Next::Fetch(u) => return Some(u),
                Next::Wait if self.wait(rx).await => continue,
                Next::Wait | Next::Exit => return None,
            }
        }
    }
}

/// How often peers are asked again what they hold during a fetch.
const HAVE_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Asks every peer still in the fetch what it holds, every [`HAVE_REFRESH`], until the fetch
/// ends: peers fetching the same content hold more of it as they go, and units they hold are
/// then taken from them (not the origin), rarest first, so a swarm shares its work.
async fn refresh_holdings(ctx: Arc<Ctx>) {
    let layout = *ctx.info.layout();
    let mut rx = ctx.generation.subscribe();
    let mut next = tokio::time::Instant::now() + HAVE_REFRESH;
    loop {
        // Woken by every change too, so that it ends as soon as the fetch does.
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            r = rx.changed() => {
                if r.is_err() || ctx.lock().finished() {
                    return;
                }
                continue;
            }
            _ = ctx.cancel.cancelled() => return,
        }
        next = tokio::time::Instant::now() + HAVE_REFRESH;
        if ctx.lock().finished() {
            return;
        }
        let mut asks = JoinSet::new();
        for (i, p) in ctx.peers.iter().enumerate() {
            let f = ctx.f.clone();
            let (addr, lookup, timeout) = (p.addr, ctx.lookup, ctx.opts.chunk_timeout);
            asks.spawn(async move { (i, have_map(&f, addr, lookup, &layout, timeout).await) });
        }
        while let Some(r) = asks.join_next().await {
            if let Ok((i, Ok(have))) = r {
                ctx.lock().update_peer(i, have);
            }
        }
        ctx.changed();
    }
}

/// How long a worker waits after its peer said it was busy.
const BUSY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

async fn peer_worker(ctx: Arc<Ctx>, p: usize) {
    let mut rx = ctx.generation.subscribe();
    loop {
        let Some(u) = ctx
            .next_unit(&mut rx, |s| s.next_for_peer(p, Instant::now()))
            .await
        else {
            return;
        };
        let unit = ctx.lock().unit(u);
        let who = Who::Peer(p);
        // A whole unit gets a deadline too, so a peer that trickles bytes cannot hold it: the
        // chunk timeout, plus the unit at no less than 256 KiB/s.
        let bytes = u64::from(unit.count) * u64::from(ctx.info.layout().block_size());
        let deadline = ctx.opts.chunk_timeout + std::time::Duration::from_millis(bytes / 256);
        let result = tokio::select! {
            r = tokio::time::timeout(deadline, fetch_from_peer(&ctx, p, u, unit)) => {
                r.unwrap_or_else(|_| Err(Miss::Transport("too slow for the unit".into())))
            }
            _ = ctx.cancel.cancelled() => return,
        };
        match result {
            Ok(bytes) => {
                if ctx.lock().done(u, who) {
                    ctx.stored(who, bytes);
                }
            }
            Err(Miss::Superseded) => {
                ctx.lock().done(u, who);
            }
            Err(Miss::Gone) => {
                ctx.lock().failed(u, who, false);
            }
            Err(Miss::Busy) => {
                let dropped = ctx.lock().busy(u, who);
                if let Some(why) = dropped {
                    ctx.report_dropped(p, why);
                    ctx.changed();
                    continue;
                }
                ctx.changed();
                tokio::select! {
                    _ = tokio::time::sleep(BUSY_BACKOFF) => {}
                    _ = ctx.cancel.cancelled() => return,
                }
                continue;
            }
            Err(Miss::Transport(e)) => {
                tracing::debug!("peer {}: {e}", ctx.peers[p].addr);
                let dropped = ctx.lock().failed(u, who, true);
                if let Some(why) = dropped {
                    ctx.report_dropped(p, format!("{why} (last: {e})"));
                }
            }
            Err(Miss::Bad(why)) => {
                let newly = ctx.lock().drop_peer(p, why.clone());
                if newly {
                    ctx.report_dropped(p, why);
                }
            }
            Err(Miss::Store(e)) => ctx.fail(e.into()),
        }
        ctx.changed();
    }
}

/// Fetches one unit from peer `p`, opens and stores it; returns the bytes stored.
async fn fetch_from_peer(ctx: &Ctx, p: usize, u: usize, unit: Unit) -> Result<u64, Miss> {
    let addr = ctx.peers[p].addr;
    let t = ctx.opts.chunk_timeout;
    let which = (unit.seg.get(), unit.first, unit.count);
    let mut body = match ctx.f.client.blocks(addr, ctx.lookup, which, t).await {
        Ok(b) => b,
        Err(e) if e.is_busy() => return Err(Miss::Busy),
        Err(e) => return Err(Miss::Transport(e.to_string())),
    };
    let mut frames = FrameReader::new();
    // Ciphertexts go straight into the run's buffer and are opened there in place.
    let layout = *ctx.info.layout();
    let mut data = Vec::with_capacity(unit.count as usize * layout.block_size() as usize);
    let mut parts = Vec::with_capacity(unit.count as usize);
    while (parts.len() as u32) < unit.count {
        let chunk = match tokio::time::timeout(t, body.chunk()).await {
            Ok(Some(Ok(c))) => c,
            Ok(Some(Err(e))) => return Err(Miss::Transport(e.to_string())),
            Ok(None) => return Err(Miss::Transport("reply ended early".into())),
            Err(_) => return Err(Miss::Transport("reply stalled".into())),
        };
        frames.push(&chunk);
        loop {
            let frame = match frames.next_ref() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(Miss::Bad(format!("malformed block frame: {e}"))),
            };
            let want = unit.first + parts.len() as u32;
            if frame.block != want || parts.len() as u32 >= unit.count {
                return Err(Miss::Bad(format!(
                    "sent block {} where {want} was due",
                    frame.block
                )));
            }
            let Some(sealed) = frame.sealed else {
                return Err(Miss::Gone);
            };
            let block = layout
                .block(unit.seg, want)
                .expect("units lie within their segment");
            let expected = layout.block_len(block) as usize;
            match SealedParts::take(sealed, &mut data) {
                Some((p, len)) if len == expected => parts.push(p),
                _ => return Err(Miss::Bad(format!("sent block {want} of the wrong length"))),
            }
        }
        if ctx.lock().is_done(u) {
            return Err(Miss::Superseded);
        }
    }
    open_and_store(ctx, unit, parts, data).await
}

/// Opens the sealed blocks of a unit and stores them (the store checks every block's hash) on
/// a blocking thread.
async fn open_and_store(
    ctx: &Ctx,
    unit: Unit,
    parts: Vec<SealedParts>,
    mut data: Vec<u8>,
) -> Result<u64, Miss> {
    let info = Arc::clone(&ctx.info);
    let lookup = ctx.lookup;
    let runs = Arc::clone(&ctx.runs);
    let joined = tokio::task::spawn_blocking(move || {
        let key = SegmentKey::new(&info.descriptor(unit.seg).kp);
        let layout = info.layout();
        let mut at = 0;
        for (i, p) in parts.iter().enumerate() {
            let block = unit.first + i as u32;
            let b = layout
                .block(unit.seg, block)
                .expect("units lie within their segment");
            let len = layout.block_len(b) as usize;
            p.open_in_place(
                &key,
                &lookup,
                unit.seg.get(),
                block,
                &mut data[at..at + len],
            )
            .map_err(|_| {
                Miss::Bad(format!(
                    "block {block} of segment {} did not decrypt",
                    unit.seg.get()
                ))
            })?;
            at += len;
        }
        let first = info
            .layout()
            .block(unit.seg, unit.first)
            .expect("units lie within their segment");
        match runs.write(first, &data) {
            Ok(n) => Ok(n),
            Err(StoreError::Verify(e)) => Err(Miss::Bad(format!(
                "sent a block that failed verification: {e}"
            ))),
            Err(e) => Err(Miss::Store(e)),
        }
    })
    .await;
    joined.unwrap_or_else(|e| Err(Miss::Transport(format!("worker failed: {e}"))))
}

async fn origin_worker(ctx: Arc<Ctx>) {
    let origin = ctx
        .opts
        .origin
        .clone()
        .expect("origin workers run only with an origin");
    let mut rx = ctx.generation.subscribe();
    loop {
        let Some(u) = ctx
            .next_unit(&mut rx, |s| s.next_for_origin(Instant::now()))
            .await
        else {
            return;
        };
        let unit = ctx.lock().unit(u);
        let layout = ctx.info.layout();
        let first = layout.block(unit.seg, unit.first).expect("in range");
        let last = layout
            .block(unit.seg, unit.first + unit.count - 1)
            .expect("in range");
        let range = layout.block_offset(first)..layout.block_range(last).end;
        let got = tokio::select! {
            r = origin.get_range(range) => r,
            _ = ctx.cancel.cancelled() => return,
        };
        match got {
            Ok(data) => {
                let runs = Arc::clone(&ctx.runs);
                let put = tokio::task::spawn_blocking(move || runs.write(first, &data))
                    .await
                    .unwrap_or_else(|e| {
                        Err(StoreError::io("storing a run", std::io::Error::other(e)))
                    });
                match put {
                    Ok(n) => {
                        if ctx.lock().done(u, Who::Origin) {
                            ctx.stored(Who::Origin, n);
                        }
                    }
                    Err(StoreError::Verify(e)) => ctx.fail(
                        crate::origin::OriginError::from(crate::origin::Mismatch::Block(e)).into(),
                    ),
                    Err(e) => ctx.fail(e.into()),
                }
            }
            Err(e) => {
                let mut s = ctx.lock();
                s.failed(u, Who::Origin, true);
                if s.origin_failures() >= ctx.opts.max_failures * 2 {
                    drop(s);
                    ctx.fail(e.into());
                } else {
                    tracing::warn!("origin: {e}; retrying");
                }
            }
        }
        ctx.changed();
    }
}
