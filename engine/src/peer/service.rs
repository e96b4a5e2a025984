//! The server side of the peer protocol, independent of how bytes travel: it takes a request's
//! bytes and answers from the store. Only verified blocks leave it: the store checks every block
//! as it reads it.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::task::TaskTracker;

use crate::content::{ContentId, native};
use crate::limit::{RateLimit, Share, Shares};
use crate::store::SegmentStore;
use crate::wire::{
    self, ContentKeys, GroupKeys, HaveEntry, HelloReply, LookupKey, NodeId, Reply, Request,
    SegmentKey, WireError,
};

use super::{PeerAddr, PeerResponse, ReplyBody, TailSource};

/// How this node serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The name peers see (host name).
    pub name: String,
    /// A cache node: accepts seeds and says so in hellos.
    pub cache: bool,
    /// For tests of fetchers only: flip a byte of every block before sealing it, as a malicious
    /// node that holds the content information would. Never set in normal use.
    pub corrupt_blocks: bool,
    /// Requests per second one sender may make, in bursts of as many; more are answered 503
    /// (busy). Default [`REQUESTS_PER_SENDER`].
    pub requests_per_sender: u32,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            name: String::new(),
            cache: false,
            corrupt_blocks: false,
            requests_per_sender: REQUESTS_PER_SENDER,
        }
    }
}

/// Byte counters, in total and per peer.
#[derive(Debug, Default)]
pub struct ServiceStats {
    /// Bytes of blocks served.
    pub served: AtomicU64,
    /// Bytes of blocks received by this node's fetches.
    pub received: AtomicU64,
    /// Block streams being served now.
    pub busy: AtomicU32,
    per_peer: Mutex<HashMap<NodeId, (u64, u64)>>,
}

impl ServiceStats {
    /// Counts `n` bytes served to `peer`.
    pub fn add_served(&self, peer: NodeId, n: u64) {
        self.served.fetch_add(n, Ordering::Relaxed);
        self.per_peer
            .lock()
            .expect("stats lock")
            .entry(peer)
            .or_default()
            .0 += n;
    }

    /// Counts `n` bytes received from `peer`.
    pub fn add_received(&self, peer: NodeId, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
        self.per_peer
            .lock()
            .expect("stats lock")
            .entry(peer)
            .or_default()
            .1 += n;
    }

    /// (served to, received from) `peer`.
    pub fn exchanged(&self, peer: &NodeId) -> (u64, u64) {
        self.per_peer
            .lock()
            .expect("stats lock")
            .get(peer)
            .copied()
            .unwrap_or_default()
    }
}

/// Answers peer requests from a store.
#[derive(Debug)]
pub struct PeerService {
    store: Arc<dyn SegmentStore>,
    keys: GroupKeys,
    me: NodeId,
    opts: ServeOptions,
    index: RwLock<HashMap<LookupKey, ContentId>>,
    stats: Arc<ServiceStats>,
    seeds: Option<mpsc::Sender<ContentId>>,
    /// A cache node's key that seeds are sealed to (made at start).
    seed_key: Option<wire::SeedKey>,
    tasks: TaskTracker,
    streams: Arc<tokio::sync::Semaphore>,
    /// Each sender's request rate, and its share of the streams.
    rate: RateLimit<Sender>,
    shares: Shares<Sender>,
    /// Tags of requests seen within the freshness window, with their send times.
    seen: Mutex<Seen>,
    names: RwLock<Option<Arc<dyn super::NameIndex>>>,
    /// What this node wants from an origin, by key: how many fetches want it, and how many of
    /// them lead its download.
    intents: Mutex<HashMap<LookupKey, (u32, u32)>>,
    /// Downloads from an origin that peers may take as they arrive.
    tails: Mutex<HashMap<LookupKey, Arc<TailSource>>>,
}

/// Tags of requests seen, each with its send time, and the latest send time of a tag
/// forgotten because the table was full (requests sent no later than it are refused).
#[derive(Debug, Default)]
struct Seen {
    tags: HashMap<[u8; 16], u64>,
    floor: u64,
}

/// How far a request's send time may be from our clock (seconds); older requests, and
/// requests seen before, are refused as replays.
pub const FRESHNESS_SECS: u64 = 300;
/// Most request tags remembered (older ones are forgotten first).
const MAX_SEEN: usize = 1 << 16;

/// Most block streams served at once; more get 503 and go to other peers.
const MAX_STREAMS: usize = 128;
/// Most of them one sender holds, so that one member of the group cannot take them all.
const STREAMS_PER_SENDER: usize = MAX_STREAMS / 2;
/// Requests per second one sender may make (a burst of as many); more get 503 (busy). A
/// fetcher at full speed makes a few hundred; a busy gateway's lookups, up to one per miss.
pub const REQUESTS_PER_SENDER: u32 = 2000;

/// Who a request counts against for the fair shares: its address, or for a sender on this
/// machine (which shares its loopback address with every node on it) the node it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Sender {
    Addr(std::net::IpAddr),
    Local(NodeId),
}
/// Blocks read from the store at once when serving a segment's blocks.
const SERVE_RUN: u32 = 16;

impl PeerService {
    /// A service for `store`, in the group of `keys`, indexing what the store holds now. Seeds
    /// accepted by a cache node go to `seeds`.
    pub fn new(
        store: Arc<dyn SegmentStore>,
        keys: GroupKeys,
        me: NodeId,
        opts: ServeOptions,
        seeds: Option<mpsc::Sender<ContentId>>,
    ) -> Result<Arc<PeerService>, crate::store::StoreError> {
        let rate = RateLimit::new(opts.requests_per_sender);
        let svc = PeerService {
            store,
            keys,
            me,
            opts,
            index: RwLock::default(),
            stats: Arc::default(),
            seed_key: seeds.as_ref().map(|_| wire::SeedKey::generate()),
            seeds,
            tasks: TaskTracker::new(),
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            rate,
            shares: Shares::new(STREAMS_PER_SENDER),
            seen: Mutex::default(),
            names: RwLock::default(),
            intents: Mutex::default(),
            tails: Mutex::default(),
        };
        for r in svc.store.list()? {
            svc.index(&r.id);
        }
        Ok(Arc::new(svc))
    }

    /// Makes content findable by its lookup key (after it enters the store).
    pub fn index(&self, id: &ContentId) {
        let k = ContentKeys::new(id).lookup;
        self.index.write().expect("index lock").insert(k, *id);
    }

    /// Answers [`Request::Name`] from `names` from now on.
    pub fn set_names(&self, names: Arc<dyn super::NameIndex>) {
        *self.names.write().expect("names lock") = Some(names);
    }

    /// Says (to peers' [`Request::Intent`]) that this node wants what `key` names (content,
    /// or a gateway's URL) from an origin, until [`PeerService::end_intent`].
    pub fn begin_intent(&self, key: &LookupKey) {
        self.intents
            .lock()
            .expect("intents lock")
            .entry(*key)
            .or_insert((0, 0))
            .0 += 1;
    }

    /// Says that one of the fetches that want what `key` names leads its download from the
    /// origin (it was elected), until its [`PeerService::end_intent`].
    pub fn downloading(&self, key: &LookupKey) {
        if let Some(e) = self.intents.lock().expect("intents lock").get_mut(key) {
            e.1 += 1;
        }
    }

    /// Ends one [`PeerService::begin_intent`] (`leading`: one that called
    /// [`PeerService::downloading`]).
    pub fn end_intent(&self, key: &LookupKey, leading: bool) {
        let mut intents = self.intents.lock().expect("intents lock");
        if let Some(e) = intents.get_mut(key) {
            e.0 = e.0.saturating_sub(1);
            if leading {
                e.1 = e.1.saturating_sub(1);
            }
            if e.0 == 0 {
                intents.remove(key);
            }
        }
    }

    fn intent(&self, lookup: &LookupKey) -> Reply {
        if self.tails.lock().expect("tails lock").contains_key(lookup) {
            return Reply::Intent(wire::Intent::Downloading);
        }
        Reply::Intent(
            match self.intents.lock().expect("intents lock").get(lookup) {
                None => wire::Intent::None,
                Some((_, 0)) => wire::Intent::Wants,
                Some(_) => wire::Intent::Downloading,
            },
        )
    }

    /// Lets peers take what `key` names from `tail` as it is downloaded ([`Request::Tail`]);
    /// this node says it is downloading it while it does.
    pub fn begin_tail(&self, key: &LookupKey, tail: Arc<TailSource>) {
        self.tails.lock().expect("tails lock").insert(*key, tail);
    }

    /// Stops offering `tail` (if it is still the one offered under `key`).
    pub fn end_tail(&self, key: &LookupKey, tail: &Arc<TailSource>) {
        let mut tails = self.tails.lock().expect("tails lock");
        if tails.get(key).is_some_and(|t| Arc::ptr_eq(t, tail)) {
            tails.remove(key);
        }
    }

    /// Answers a tail request on a blocking thread (a reply is up to
    /// [`wire::MAX_TAIL_CHUNK`] bytes read and sealed).
    fn tail(
        self: &Arc<Self>,
        (from, sender): (PeerAddr, Sender),
        env: &wire::RequestEnvelope,
        lookup: LookupKey,
        offset: u64,
    ) -> PeerResponse {
        let Some(tail) = self.tails.lock().expect("tails lock").get(&lookup).cloned() else {
            return self.reply(from, &env.mac, &Reply::NotFound);
        };
        if self.tasks.is_closed() {
            return status(from, 503);
        }
        // Counted with the block streams, so that at most MAX_STREAMS replies are being read
        // and sealed at once.
        let Some(permit) = self.stream(sender) else {
            return status(from, 503);
        };
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(1);
        let (svc, mac, peer) = (Arc::clone(self), env.mac, env.from);
        self.tasks.spawn_blocking(move || {
            let _permit = permit;
            let reply = match tail.read(offset) {
                Some(r) => r,
                None => Reply::NotFound,
            };
            if let Reply::Tail { data, .. } = &reply {
                svc.stats.add_served(peer, data.len() as u64);
            }
            let bytes = wire::encode_reply(&svc.keys, &mac, &reply);
            let _ = tx.blocking_send(Ok(Bytes::from(bytes)));
        });
        PeerResponse {
            status: 200,
            body: ReplyBody::chan(from, rx),
        }
    }

    /// One of the streams for `sender`, if any is free and it holds less than its share.
    fn stream(&self, sender: Sender) -> Option<(OwnedSemaphorePermit, Share<Sender>)> {
        let share = self.shares.take(sender)?;
        let permit = Arc::clone(&self.streams).try_acquire_owned().ok()?;
        Some((permit, share))
    }

    fn reply(&self, from: PeerAddr, mac: &[u8; 16], reply: &Reply) -> PeerResponse {
        let bytes = wire::encode_reply(&self.keys, mac, reply);
        PeerResponse {
            status: 200,
            body: ReplyBody::full(from, Bytes::from(bytes)),
        }
    }

    fn name(&self, key: &LookupKey) -> Reply {
        let names = self.names.read().expect("names lock").clone();
        match names.and_then(|n| n.lookup(&key.0)) {
            Some(sealed) if sealed.len() <= wire::MAX_NAME_RECORD => Reply::Name { sealed },
            _ => Reply::NotFound,
        }
    }

    /// Forgets content (after it leaves the store).
    pub fn unindex(&self, id: &ContentId) {
        let k = ContentKeys::new(id).lookup;
        self.index.write().expect("index lock").remove(&k);
    }

    /// This node's ID.
    pub fn node_id(&self) -> NodeId {
        self.me
    }

    /// The group keys.
    pub fn keys(&self) -> &GroupKeys {
        &self.keys
    }

    /// Byte counters.
    pub fn stats(&self) -> &Arc<ServiceStats> {
        &self.stats
    }

    /// How this node serves.
    pub fn options(&self) -> &ServeOptions {
        &self.opts
    }

    /// Stops accepting block streams and waits for those running to end.
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// What this node says in a hello.
    pub fn hello(&self) -> HelloReply {
        HelloReply {
            node: self.me,
            name: self.opts.name.clone(),
            cache: self.opts.cache,
            contents: self.index.read().expect("index lock").len() as u32,
            served: self.stats.served.load(Ordering::Relaxed),
            received: self.stats.received.load(Ordering::Relaxed),
            busy: self.stats.busy.load(Ordering::Relaxed),
            seed_key: self
                .seed_key
                .as_ref()
                .filter(|_| self.opts.cache)
                .map(wire::SeedKey::public),
        }
    }

    /// Whether a request is recent (by the sender's clock against ours) and not seen before.
    fn fresh(&self, env: &wire::RequestEnvelope) -> bool {
        let now = wire::unix_now();
        if env.sent_at.abs_diff(now) > FRESHNESS_SECS {
            return false;
        }
        let mut seen = self.seen.lock().expect("seen lock");
        if env.sent_at <= seen.floor {
            // Sent no later than a tag forgotten: it may be a replay of it.
            return false;
        }
        if seen.tags.len() >= MAX_SEEN {
            seen.tags.retain(|_, t| t.abs_diff(now) <= FRESHNESS_SECS);
            if seen.tags.len() >= MAX_SEEN {
                // Still full of fresh tags: forget the oldest half, and from now on refuse
                // whatever was sent no later than they were (the window shrinks to what is
                // remembered; requests sent now pass).
                let mut times: Vec<u64> = seen.tags.values().copied().collect();
                times.sort_unstable();
                let cut = times[times.len() / 2];
                seen.tags.retain(|_, t| *t > cut);
                seen.floor = seen.floor.max(cut);
                if env.sent_at <= seen.floor {
                    return false;
                }
            }
        }
        seen.tags.insert(env.mac, env.sent_at).is_none()
    }

    fn lookup(&self, k: &LookupKey) -> Option<ContentId> {
        self.index.read().expect("index lock").get(k).copied()
    }

    /// Answers one request's bytes. `from` is only for error messages.
    pub fn handle(self: &Arc<Self>, from: PeerAddr, body: &[u8]) -> PeerResponse {
        let env = match wire::decode_request(&self.keys, body) {
            Ok(env) => env,
            Err(WireError::NotInGroup) => return status(from, 403),
            Err(_) => return status(from, 400),
        };
        // Every request but a first hello names this node: one captured on its way to another
        // node is refused here, however fresh.
        let for_me = env.to == self.me
            || (env.to == wire::NodeId::ANY && matches!(env.request, Request::Hello));
        if !for_me {
            tracing::debug!("refused a request from {from} meant for another node");
            return status(from, 403);
        }
        if !self.fresh(&env) {
            tracing::debug!("refused a stale or replayed request from {from}");
            return status(from, 403);
        }
        let sender = match from.ip() {
            ip if ip.is_loopback() => Sender::Local(env.from),
            ip => Sender::Addr(ip),
        };
        if !self.rate.take(sender, std::time::Instant::now()) {
            tracing::debug!("{from} asks faster than the requests a second it may make");
            return status(from, 503);
        }
        let reply = match env.request {
            Request::Hello => Reply::Hello(self.hello()),
            Request::Info { lookup } => self.info(&lookup),
            Request::Have {
                lookup,
                first,
                count,
            } => self.have(&lookup, first, count),
            Request::Blocks {
                lookup,
                seg,
                first,
                count,
            } => return self.blocks((from, sender), env.from, lookup, seg, first, count),
            Request::Seed { sealed_id } => self.seed(&sealed_id),
            Request::Name { key } => self.name(&key),
            Request::Intent { lookup } => self.intent(&lookup),
            Request::Tail { lookup, offset } => {
                return self.tail((from, sender), &env, lookup, offset);
            }
        };
        self.reply(from, &env.mac, &reply)
    }

    fn info(&self, lookup: &LookupKey) -> Reply {
        let Some(id) = self.lookup(lookup) else {
            return Reply::NotFound;
        };
        match self.store.content_info(&id) {
            Ok(Some(info)) => {
                let encoded = native::encode_content_info(&info);
                Reply::Info {
                    sealed: ContentKeys::new(&id).seal_info(&encoded),
                }
            }
            _ => Reply::NotFound,
        }
    }

    fn have(&self, lookup: &LookupKey, first: u32, count: u32) -> Reply {
        let Some(id) = self.lookup(lookup) else {
            return Reply::NotFound;
        };
        let Ok(Some(info)) = self.store.content_info(&id) else {
            return Reply::NotFound;
        };
        let layout = info.layout();
        let end = first.saturating_add(count).min(layout.segment_count());
        let mut entries = Vec::new();
        for s in first..end {
            let seg = layout.segment(s.into()).expect("below the segment count");
            let entry = match self.store.present(&id, seg) {
                Ok(set) if set.count() == layout.blocks_in_segment(seg) => HaveEntry::All,
                Ok(set) if set.count() == 0 => HaveEntry::None,
                Ok(set) => HaveEntry::Some(set.to_bytes()),
                Err(_) => HaveEntry::None,
            };
            entries.push(entry);
        }
        Reply::Have { first, entries }
    }

    fn seed(&self, sealed_id: &[u8]) -> Reply {
        let Some(tx) = self.seeds.as_ref().filter(|_| self.opts.cache) else {
            return Reply::Refused;
        };
        let Some(key) = &self.seed_key else {
            return Reply::Refused;
        };
        let Ok(id) = key.open(&self.me, sealed_id) else {
            return Reply::Refused;
        };
        match tx.try_send(id) {
            Ok(()) => Reply::SeedAccepted,
            Err(_) => Reply::Refused,
        }
    }

    /// Streams the requested blocks, one sealed frame each, read and sealed on a blocking
    /// thread; the stream ends early if the receiver goes away.
    fn blocks(
        self: &Arc<Self>,
        (from, sender): (PeerAddr, Sender),
        peer: NodeId,
        lookup: LookupKey,
        seg: u32,
        first: u32,
        count: u32,
    ) -> PeerResponse {
        let Some(id) = self.lookup(&lookup) else {
            return status(from, 404);
        };
        let Ok(Some(info)) = self.store.content_info(&id) else {
            return status(from, 404);
        };
        let layout = *info.layout();
        let Ok(segment) = layout.segment(seg.into()) else {
            return status(from, 400);
        };
        if first.saturating_add(count) > layout.blocks_in_segment(segment) {
            return status(from, 400);
        }
        if self.tasks.is_closed() {
            return status(from, 503);
        }
        let Some(permit) = self.stream(sender) else {
            return status(from, 503);
        };
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
        let svc = Arc::clone(self);
        let key = SegmentKey::new(&info.descriptor(segment).kp);
        let rt = tokio::runtime::Handle::current();
        let rt2 = rt.clone();
        self.stats.busy.fetch_add(1, Ordering::Relaxed);
        // A reader that takes the stream slowly holds its slot for a bounded time: 30 s, plus
        // a second a block (64 KiB/s).
        let deadline =
            std::time::Instant::now() + FRAME_WAIT + std::time::Duration::from_secs(count.into());
        self.tasks.spawn_blocking_on(
            move || {
                let _permit = permit;
                // Runs of blocks are read together (one read, one checksum per block); in a
                // run with a block missing, each is read alone, to say which.
                let (mut run, mut run_at, mut run_end) = (None, first, first);
                for i in first..first + count {
                    let block = layout.block(segment, i).expect("checked above");
                    if i >= run_end {
                        let n = SERVE_RUN.min(first + count - i);
                        run = svc.store.get_blocks(&id, block, n).ok().flatten();
                        (run_at, run_end) = (i, i + n);
                    }
                    let len = layout.block_len(block) as usize;
                    let off = (i - run_at) as usize * layout.block_size() as usize;
                    let got = match run.as_deref().and_then(|r| r.get(off..off + len)) {
                        Some(data) => Ok(Some(std::borrow::Cow::Borrowed(data))),
                        None => svc.store.get_block(&id, block).map(|b| b.map(Into::into)),
                    };
                    let mut out = Vec::with_capacity(len + 64);
                    match got {
                        Ok(Some(mut data)) => {
                            if svc.opts.corrupt_blocks {
                                data.to_mut()[0] ^= 0x5a;
                            }
                            wire::encode_frame(&key, &lookup, seg, i, &data, &mut out);
                            svc.stats.add_served(peer, data.len() as u64);
                        }
                        Ok(None) => wire::encode_missing_frame(i, &mut out),
                        Err(e) => {
                            let _ = tx.blocking_send(Err(io::Error::other(e)));
                            break;
                        }
                    }
                    if !send_bounded(&rt2, &tx, Bytes::from(out), deadline) {
                        break;
                    }
                }
                svc.stats.busy.fetch_sub(1, Ordering::Relaxed);
            },
            &rt,
        );
        PeerResponse {
            status: 200,
            body: ReplyBody::chan(from, rx),
        }
    }
}

/// Longest a served stream waits for the peer to take a frame.
const FRAME_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends a frame, giving up (the stream ends) if the peer has not taken it within
/// [`FRAME_WAIT`] or by the stream's `deadline`.
fn send_bounded(
    rt: &tokio::runtime::Handle,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    frame: Bytes,
    deadline: std::time::Instant,
) -> bool {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    if left.is_zero() {
        return false;
    }
    rt.block_on(async {
        tx.send_timeout(Ok(frame), FRAME_WAIT.min(left))
            .await
            .is_ok()
    })
}

fn status(from: PeerAddr, code: u16) -> PeerResponse {
    PeerResponse {
        status: code,
        body: ReplyBody::full(from, Bytes::new()),
    }
}
