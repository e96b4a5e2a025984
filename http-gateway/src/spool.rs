//! Downloads from the origin that are being cached, and the clients that share them.
//!
//! The first client to miss a URL leads: its request goes to the origin, and a storable answer
//! is written to a spool file while each block is hashed ([`BlockHasher`]). Every client asking
//! for the same URL meanwhile (request coalescing) reads the spool as it grows, so one origin
//! transfer feeds all of them and the first byte never waits for the whole file. At the end the
//! content information is built, the body goes into the store (checked block by block), the
//! URL record and the peers' claim are written, in that order, and the spool is removed. A
//! transfer that fails or is cut short caches nothing.
//!
//! In a group whose peers are trusted, the download is also offered to peer gateways that miss
//! the same URL meanwhile ([`engine::node::TailOffer`], with the answer's head sealed for those
//! who know the URL as a [`Pending`] record), and a gateway that follows a peer's download
//! spools that instead of an origin's body (`Feed`; see the `followed` module).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use engine::content::{ContentInfo, Hash, Layout, sha256};
use engine::store::Origin;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use http_cache_semantics::CachePolicy;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::body::{Body, channel};
use crate::gateway::Shared;
use crate::headers::Provenance;
use crate::record::{Claim, Pending, UrlRecord, Variant, index_key, name_key};

/// Hashes a stream block by block, whatever its chunking. Pure.
#[derive(Debug)]
pub struct BlockHasher {
    block: usize,
    buf: Vec<u8>,
    hashes: Vec<Hash>,
    total: u64,
}

impl BlockHasher {
    /// A hasher for blocks of `block` bytes.
    pub fn new(block: u32) -> BlockHasher {
        BlockHasher {
            block: block as usize,
            buf: Vec::with_capacity(block as usize),
            hashes: Vec::new(),
            total: 0,
        }
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        while !data.is_empty() {
            if self.buf.is_empty() && data.len() >= self.block {
                let (b, rest) = data.split_at(self.block);
                self.hashes.push(sha256(b));
                data = rest;
                continue;
            }
            let take = (self.block - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.block {
                self.hashes.push(sha256(&self.buf));
                self.buf.clear();
            }
        }
    }

    /// Bytes fed so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The content information of everything fed, under `secret`.
    pub fn finish(
        mut self,
        secret: &engine::ServerSecret,
    ) -> Result<ContentInfo, engine::content::HashError> {
        if !self.buf.is_empty() {
            self.hashes.push(sha256(&self.buf));
        }
        let layout = Layout::new(self.total)?;
        Ok(ContentInfo::build(layout, self.hashes, secret)?)
    }
}

/// What clients of a download see.
#[derive(Debug, Clone, Default)]
pub struct Snap {
    /// The response head, once the origin answered with something storable.
    pub head: Option<Arc<Head>>,
    /// Body bytes in the spool so far.
    pub written: u64,
    /// The end: `Ok` when the whole body is in the spool, `Err` when the transfer failed or
    /// is not shared (the client then asks the origin itself).
    pub done: Option<Result<(), Arc<str>>>,
}

/// A download's response head.
#[derive(Debug)]
pub struct Head {
    /// Its status (200).
    pub status: StatusCode,
    /// Its end-to-end headers.
    pub headers: HeaderMap,
    /// Its caching policy.
    pub policy: CachePolicy,
    /// The spool file (set when spooling starts).
    pub path: PathBuf,
    /// The request headers that select this response (see [`crate::record::selection`]).
    pub selection: String,
}

/// One download in progress, shared by the clients that asked for its URL.
#[derive(Debug)]
pub struct InFlight {
    tx: watch::Sender<Snap>,
}

impl InFlight {
    /// Its current state, and changes to come.
    pub fn subscribe(&self) -> watch::Receiver<Snap> {
        self.tx.subscribe()
    }

    fn finish(&self, r: Result<(), Arc<str>>) {
        self.tx.send_modify(|s| s.done = Some(r));
    }
}

/// Where a download's body comes from.
pub(crate) enum Feed {
    /// The origin's answer.
    Origin(Incoming),
    /// A peer gateway's download of the same URL, taken as it arrives: its first bytes, and,
    /// when allowed, the origin and the validator to finish from by range (only while the
    /// validator holds) if the peer goes away.
    Peer {
        reader: engine::node::TailReader,
        first: Option<Bytes>,
        fallback: Option<(engine::fetch::OriginClient, String)>,
    },
    /// The origin, from where a followed peer stopped.
    Rest(engine::fetch::OriginStream),
}

impl Feed {
    /// The next bytes of the body; `None` at its end.
    async fn next(
        &mut self,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Option<Result<Bytes, String>> {
        loop {
            match self {
                Feed::Origin(body) => loop {
                    match body.frame().await? {
                        Err(e) => return Some(Err(format!("the origin's body broke off: {e}"))),
                        Ok(f) => {
                            if let Ok(data) = f.into_data() {
                                return Some(Ok(data));
                            }
                        }
                    }
                },
                Feed::Peer {
                    reader,
                    first,
                    fallback,
                } => {
                    if let Some(b) = first.take() {
                        return Some(Ok(b));
                    }
                    let e = match reader.next(stop).await {
                        Ok(b) => return b.map(Ok),
                        Err(e) => e,
                    };
                    let Some((origin, validator)) = fallback.take() else {
                        return Some(Err(e.to_string()));
                    };
                    tracing::info!("{e}: taking the rest from the origin");
                    match origin.stream_if(reader.at(), Some(&validator)).await {
                        Ok(rest) => *self = Feed::Rest(rest),
                        Err(o) => return Some(Err(format!("{e}; then {o}"))),
                    }
                }
                Feed::Rest(rest) => return rest.next().await.map(|r| r.map_err(|e| e.to_string())),
            }
        }
    }
}

/// A download offered to peer gateways: its offer, which lingers once the download is complete,
/// and the election's guard, if this gateway was elected to download it.
pub(crate) struct Offer {
    tail: Arc<engine::peer::TailSource>,
    offer: engine::node::TailOffer,
    _wanting: Option<engine::node::Wanting>,
}

/// Whether peer gateways may follow a download.
pub(crate) enum Share {
    /// They may not (peers are not trusted).
    No,
    /// They may; with the election's guard if this gateway was elected to download it (held
    /// until the download ends).
    Offer(Option<engine::node::Wanting>),
}

/// How long a complete download stays offered to peer gateways that are a little behind.
const OFFER_LINGER: std::time::Duration = std::time::Duration::from_secs(60);

/// The sealed record a download is offered under, if it fits an offer's metadata.
fn offerable(url: &str, head: &Head) -> Option<Vec<u8>> {
    let meta = Pending::new(&head.headers, &head.selection).seal(url);
    (meta.len() <= engine::wire::MAX_TAIL_META).then_some(meta)
}

/// Joins the download of `key`, or registers a new one that the caller leads (`true`).
pub(crate) fn join_or_lead(sh: &Shared, key: &[u8]) -> (Arc<InFlight>, bool) {
    let mut map = sh.inflight.lock().expect("inflight lock");
    if let Some(f) = map.get(key) {
        return (Arc::clone(f), false);
    }
    let f = Arc::new(InFlight {
        tx: watch::Sender::new(Snap::default()),
    });
    map.insert(key.to_vec(), Arc::clone(&f));
    (f, true)
}

/// Ends a led download that will not be shared (the answer was not storable, or the origin
/// failed): waiting clients go to the origin themselves.
pub(crate) fn abandon(sh: &Shared, key: &[u8], f: &InFlight, why: &str) {
    let mut map = sh.inflight.lock().expect("inflight lock");
    if map.get(key).is_some_and(|g| std::ptr::eq(g.as_ref(), f)) {
        map.remove(key);
    }
    drop(map);
    f.finish(Err(why.into()));
}

/// Held by the request that leads a download until it has started spooling or given up: if
/// that request goes away first (its client disconnected, or an error returned early), the
/// download is abandoned, so that clients waiting on it do not wait for ever.
pub(crate) struct Led<'a> {
    sh: &'a Shared,
    key: &'a [u8],
    f: &'a InFlight,
}

impl<'a> Led<'a> {
    pub(crate) fn new(sh: &'a Shared, key: &'a [u8], f: &'a InFlight) -> Self {
        Led { sh, key, f }
    }
}

impl Drop for Led<'_> {
    fn drop(&mut self) {
        let snap = self.f.tx.borrow().clone();
        if snap.head.is_none() && snap.done.is_none() {
            abandon(self.sh, self.key, self.f, "the leading request went away");
        }
    }
}

/// Starts spooling a storable answer whose head is `head` (its spool path is set here) from
/// `feed`; clients (the leader included) then [`tail`] it; peer gateways may follow it too if
/// `share` says so.
pub(crate) fn start(
    sh: &Arc<Shared>,
    key: Vec<u8>,
    url: String,
    f: Arc<InFlight>,
    mut head: Head,
    feed: Feed,
    share: Share,
) -> Result<(), std::io::Error> {
    let path = sh.cfg.spool.join(format!("{:016x}.part", rand_u64()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let meta = match &share {
        Share::Offer(_) => offerable(&url, &head),
        Share::No => None,
    };
    let offer = match (share, meta) {
        (Share::Offer(wanting), Some(meta)) => {
            let tail = engine::peer::TailSource::with_meta(Arc::new(file.try_clone()?), 0, meta);
            let key = engine::wire::LookupKey(name_key(&url));
            Some(Offer {
                offer: sh.node.offer_tail(key, Arc::clone(&tail)),
                tail,
                _wanting: wanting,
            })
        }
        _ => None,
    };
    head.path = path.clone();
    let head = Arc::new(head);
    f.tx.send_modify(|s| s.head = Some(Arc::clone(&head)));
    let sh2 = Arc::clone(sh);
    let busy = sh.busy();
    sh.tasks.spawn(async move {
        let _busy = busy;
        let tail = offer.as_ref().map(|o| Arc::clone(&o.tail));
        let r = download(&sh2, &url, &f, &head, feed, file, tail.as_deref()).await;
        // A complete body stays offered for a while, even if keeping it here failed.
        if let Some(o) = offer.filter(|o| o.tail.is_complete()) {
            o.offer.linger(&sh2.node, OFFER_LINGER);
        }
        sh2.inflight.lock().expect("inflight lock").remove(&key);
        if let Err(e) = &r {
            tracing::info!("not caching {url}: {e}");
        }
        f.finish(r.map_err(|e| e.into()));
        // Clients reading the spool keep their open handles.
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source");
    u64::from_le_bytes(b)
}

async fn download(
    sh: &Arc<Shared>,
    url: &str,
    f: &InFlight,
    head: &Head,
    mut feed: Feed,
    file: std::fs::File,
    offered: Option<&engine::peer::TailSource>,
) -> Result<(), String> {
    let expected = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut hasher = BlockHasher::new(engine::content::layout::BLOCK_SIZE);
    let mut out = tokio::fs::File::from_std(file.try_clone().map_err(|e| e.to_string())?);
    loop {
        let next = tokio::select! {
            _ = sh.stop.cancelled() => return Err("the gateway is stopping".into()),
            next = feed.next(&sh.stop) => next,
        };
        let Some(data) = next else { break };
        let data = data?;
        hasher.update(&data);
        if hasher.total() > sh.cfg.max_object || expected.is_some_and(|e| hasher.total() > e) {
            return Err("the body is longer than announced or allowed".into());
        }
        // tokio's file writes complete in the background: flush, so that readers of the
        // spool find every byte `written` promises.
        out.write_all(&data)
            .await
            .map_err(|e| format!("writing the spool: {e}"))?;
        out.flush()
            .await
            .map_err(|e| format!("writing the spool: {e}"))?;
        let n = hasher.total();
        f.tx.send_modify(|s| s.written = n);
        if let Some(t) = offered {
            t.advance(n);
        }
    }
    out.flush().await.map_err(|e| e.to_string())?;
    if let Some(e) = expected
        && e != hasher.total()
    {
        return Err(format!("the origin sent {} of {e} bytes", hasher.total()));
    }
    if let Some(t) = offered {
        t.finish();
    }
    let sh2 = Arc::clone(sh);
    let url = url.to_string();
    let policy = head.policy.clone();
    let headers = head.headers.clone();
    let selection = head.selection.clone();
    tokio::task::spawn_blocking(move || {
        keep(&sh2, &url, hasher, &file, policy, &headers, selection)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Puts a complete spooled body into the store, then records the URL and files its claim.
fn keep(
    sh: &Shared,
    url: &str,
    hasher: BlockHasher,
    file: &std::fs::File,
    policy: CachePolicy,
    headers: &HeaderMap,
    selection: String,
) -> Result<(), String> {
    let info = hasher.finish(sh.node.secret()).map_err(|e| e.to_string())?;
    let id = info.id();
    let len = info.layout().content_len();
    let store = sh.node.store();
    let _lease = sh.node.lease(id);
    store
        .put_content(&info, &display_name(url), Origin::Fetched)
        .map_err(|e| e.to_string())?;
    engine::store::copy_file_blocks(store.as_ref(), &info, file).map_err(|e| e.to_string())?;
    sh.node.announce(&id);
    record_variant(sh, url, &id, len, policy, headers, selection)?;
    Ok(())
}

/// Adds a stored body to `url`'s record (replacing the variant its request selects) and,
/// when the response has a validator, files the claim peers look up.
pub(crate) fn record_variant(
    sh: &Shared,
    url: &str,
    id: &engine::ContentId,
    len: u64,
    policy: CachePolicy,
    headers: &HeaderMap,
    selection: String,
) -> Result<(), String> {
    let key = index_key(url);
    let mut record = sh
        .index
        .get(&key)
        .map_err(|e| e.to_string())?
        .map(|b| UrlRecord::from_bytes(&b))
        .unwrap_or_default();
    record.add(Variant {
        policy,
        ticket: id.ticket().to_string(),
        len,
        selection,
    });
    sh.index
        .put(&key, &record.to_bytes())
        .map_err(|e| e.to_string())?;
    if headers.contains_key(http::header::ETAG) || headers.contains_key(http::header::LAST_MODIFIED)
    {
        let claim = Claim::new(id, len, StatusCode::OK, headers);
        crate::index::file_claim(sh.index.as_ref(), &name_key(url), &claim.seal(url))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn display_name(url: &str) -> String {
    let mut s: String = url.chars().take(200).collect();
    if s.len() < url.len() {
        s.push('…');
    }
    s
}

/// A body that streams the spool of `head` from its start as it grows, until the download
/// ends; it fails if the download fails. Bytes are credited as `credit`.
pub(crate) fn tail(
    sh: &Arc<Shared>,
    head: &Head,
    mut rx: watch::Receiver<Snap>,
    credit: fn(u64) -> Provenance,
) -> Result<Body, std::io::Error> {
    let file = std::fs::File::open(&head.path)?;
    let (tx, body) = channel(4);
    let metrics = Arc::clone(&sh.metrics);
    sh.tasks.spawn(async move {
        let file = Arc::new(file);
        let mut off = 0u64;
        loop {
            let snap = rx.borrow_and_update().clone();
            if off < snap.written {
                let n = (snap.written - off).min(1 << 20) as usize;
                let f = Arc::clone(&file);
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; n];
                    std::os::unix::fs::FileExt::read_exact_at(f.as_ref(), &mut buf, off)
                        .map(|()| Bytes::from(buf))
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                let ok = read.is_ok();
                if ok {
                    metrics.sent(credit(n as u64));
                    off += n as u64;
                }
                if tx.send(read).await.is_err() || !ok {
                    return;
                }
                continue;
            }
            match snap.done {
                Some(Ok(())) => return,
                Some(Err(e)) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
                None => {
                    if rx.changed().await.is_err() {
                        let _ = tx.send(Err(std::io::Error::other("download ended"))).await;
                        return;
                    }
                }
            }
        }
    });
    Ok(body)
}

/// Removes spool files a previous run left (a crash mid-download).
pub(crate) fn clean(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "part") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::content::{HashOptions, ServerSecret, hash_reader};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn block_hasher_matches_the_engine_whatever_the_chunking(
            len in 0usize..300_000,
            cuts in proptest::collection::vec(1usize..100_000, 0..8),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let secret = ServerSecret::open_group();
            let mut h = BlockHasher::new(engine::content::layout::BLOCK_SIZE);
            let mut rest = &data[..];
            for c in cuts {
                let (a, b) = rest.split_at(c.min(rest.len()));
                h.update(a);
                rest = b;
            }
            h.update(rest);
            let ours = h.finish(&secret).unwrap();
            let theirs = hash_reader(&data[..], &secret, &HashOptions::default(), &mut |_| {}).unwrap();
            prop_assert_eq!(ours.id(), theirs.id());
        }
    }
}
