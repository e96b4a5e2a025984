//! Spooling a download: a storable answer's body is written to a spool file as it arrives and
//! hashed on the way (the engine's [`Download`], as a node's whole downloads are), while every client of the download (the
//! leader and those that joined, [`crate::downloads`]) reads the spool as it grows ([`tail`]),
//! so one origin transfer feeds all of them and the first byte never waits for the whole. At
//! the end the body is kept ([`crate::keep`]) and the spool removed. A transfer that fails or
//! is cut short keeps nothing. A spool that cannot be written (a full disk) does not cut its
//! clients off: the rest of the body passes through to them from memory ([`crate::relay`]),
//! uncached, and a body that cannot be kept was still served whole.
//!
//! The body comes from the origin, or from a peer gateway's download of the same URL followed
//! as it arrives ([`Feed::Peer`], see [`crate::followed`]). In a group whose peers are trusted,
//! a download from the origin is also offered to peer gateways ([`engine::node::TailOffer`],
//! with the answer's head sealed for those who know the URL as a [`Pending`] record).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use engine::download::{Download, FinishError, PutError, Written};
use http_body_util::BodyExt;
use tokio::sync::watch;

use crate::body::{Body, channel};
use crate::downloads::{DownloadError, Head, InFlight, Led, Snap};
use crate::headers::Provenance;
use crate::keep::Kept;
use crate::record::{Pending, UrlKeys};
use crate::state::Shared;

/// Where a download's body comes from.
pub(crate) enum Feed {
    /// The origin's answer.
    Origin(Body),
    /// A peer gateway's download of the same URL, taken as it arrives: its first bytes, and,
    /// when allowed, the origin and the validator to finish from by range (only while the
    /// validator holds) if the peer goes away.
    Peer {
        reader: Box<engine::node::TailReader>,
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
    ) -> Option<Result<Bytes, DownloadError>> {
        loop {
            match self {
                Feed::Origin(body) => loop {
                    match body.frame().await? {
                        Err(e) => return Some(Err(DownloadError::OriginBody(e))),
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
                        return Some(Err(e.into()));
                    };
                    tracing::info!("{e}: taking the rest from the origin");
                    match origin.stream_if(reader.at(), Some(&validator)).await {
                        Ok(rest) => *self = Feed::Rest(rest),
                        Err(o) => {
                            return Some(Err(DownloadError::PeerThenOrigin {
                                peer: Box::new(e),
                                origin: Box::new(o),
                            }));
                        }
                    }
                }
                Feed::Rest(rest) => return rest.next().await.map(|r| r.map_err(Into::into)),
            }
        }
    }
}

/// A download offered to peer gateways: its offer, which lingers once the download is complete,
/// and the election's guard, if this gateway was elected to download it.
struct Offer {
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
fn offerable(keys: &UrlKeys, url: &str, head: &Head) -> Option<Vec<u8>> {
    let meta = Pending::new(&head.headers, &head.selection).seal(keys, url);
    (meta.len() <= engine::wire::MAX_TAIL_META).then_some(meta)
}

/// A new, empty spool file.
pub(crate) struct SpoolFile {
    path: std::path::PathBuf,
    file: std::fs::File,
}

/// Creates a spool file; if that fails (a full or failing disk), the gateway's disk state
/// hears of it and the caller passes its answer through uncached.
pub(crate) fn create(sh: &Shared) -> Result<SpoolFile, std::io::Error> {
    let path = sh.cfg.spool.join(format!("{:016x}.part", rand_u64()));
    let made = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path);
    match made {
        Ok(file) => Ok(SpoolFile { path, file }),
        Err(e) => {
            sh.disk
                .failed(&format_args!("creating {}: {e}", path.display()));
            Err(e)
        }
    }
}

/// Starts spooling into `spool` a storable answer whose head is `head` (its spool path is set
/// here) from `feed`, for the download `led` leads; its clients (the leader included) then
/// [`tail`] it; peer gateways may follow it too if `share` says so.
pub(crate) fn start(
    sh: &Arc<Shared>,
    led: &Led<'_>,
    url: &str,
    mut head: Head,
    feed: Feed,
    share: Share,
    spool: SpoolFile,
) -> Result<(), std::io::Error> {
    let SpoolFile { path, file } = spool;
    let meta = match &share {
        Share::Offer(_) => offerable(&sh.urls, url, &head),
        Share::No => None,
    };
    let offer = match (share, meta) {
        (Share::Offer(wanting), Some(meta)) => {
            let seal = sh.urls.tail_key(url);
            let file = Arc::new(file.try_clone()?);
            let tail = engine::peer::TailSource::with_meta(file, 0, meta, seal);
            let key = engine::wire::LookupKey(sh.urls.name_key(url));
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
    let f = Arc::clone(led.flight());
    f.started(Arc::clone(&head));
    let (sh2, key, url) = (Arc::clone(sh), led.key().to_vec(), url.to_string());
    let busy = sh.busy();
    sh.tasks.spawn(async move {
        let _busy = busy;
        let mut offer = offer;
        let r = download(&sh2, &url, &f, &head, feed, file, &mut offer).await;
        // A complete body stays offered for a while, even if keeping it here failed.
        if let Some(o) = offer.filter(|o| o.tail.is_complete()) {
            o.offer.linger(&sh2.node, OFFER_LINGER);
        }
        sh2.downloads.remove(&key, &f);
        if let Err(e) = &r {
            tracing::info!("not caching {url}: {e}");
        }
        f.finish(r.map_err(Arc::new));
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

/// Takes the body from `feed` into the spool `file` through the engine's [`Download`] (each
/// piece written and hashed on a blocking task while the next arrives, each byte announced to
/// the download's clients and to the offer as it is written, except that clients get the last
/// byte only once the body is kept, so that the answer is in the store the moment a client has
/// all of it); then keeps it. If the spool
/// cannot be written, the offer ends and the rest passes through ([`relay`]); if the body
/// cannot be kept, its clients were served all the same.
async fn download(
    sh: &Arc<Shared>,
    url: &str,
    f: &Arc<InFlight>,
    head: &Head,
    mut feed: Feed,
    file: std::fs::File,
    offer: &mut Option<Offer>,
) -> Result<(), DownloadError> {
    let offered = offer.as_ref().map(|o| Arc::clone(&o.tail));
    let expected = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limit = expected.map_or(sh.cfg.max_object, |e| e.min(sh.cfg.max_object));
    let file = Arc::new(file);
    let (f2, t2) = (Arc::clone(f), offered.clone());
    // Clients get the last byte only once the body is kept (see the end): a client that has a
    // whole answer and asks again finds it in the store.
    let written: Written = Arc::new(move |n| {
        f2.written(n.saturating_sub(1));
        if let Some(t) = &t2 {
            t.advance(n);
        }
    });
    let secret = sh.node.secret().clone();
    let mut body = Download::new(Arc::clone(&file), secret, limit, written);
    // The piece handed to the writer last: if writing it fails, it is relayed.
    let mut last = Bytes::new();
    let stopped = loop {
        let Some(data) = next_piece(sh, &mut feed).await? else {
            break None;
        };
        match body.put(data.clone()).await {
            Ok(()) => last = data,
            Err(PutError::TooLong { limit }) => return Err(DownloadError::TooLong { limit }),
            // Writing the last piece failed: it and this one go on from memory.
            Err(_) => break Some(data),
        }
    };
    let got = body.len();
    let at = got - last.len() as u64;
    let info = match (stopped, body.finish().await) {
        (None, Ok(info)) => info,
        (stopped, r) => {
            let why = match r {
                Err(FinishError::Io(e)) => e.to_string(),
                Err(e) => e.to_string(),
                Ok(_) => "a write failed".to_string(),
            };
            sh.disk
                .failed(&format_args!("writing {}: {why}", head.path.display()));
            // Peers following this download cannot get the rest from here.
            *offer = None;
            let pieces = [Some(last), stopped].into_iter().flatten();
            return relay(sh, f, &mut feed, at, pieces, limit, expected).await;
        }
    };
    if let Some(e) = expected
        && e != got
    {
        return Err(DownloadError::Short { got, expected: e });
    }
    if let Some(t) = offered {
        t.finish();
    }
    let kept = Kept {
        url: url.to_string(),
        policy: head.policy.clone(),
        headers: head.headers.clone(),
        selection: head.selection.clone(),
        claim: sh.cfg.trust_peers.then(|| sh.urls.clone()),
    };
    if !f.invalidated() {
        let index = Arc::clone(&sh.index);
        match crate::keep::keep(&sh.node, index, info, file, kept).await {
            Ok(()) if f.invalidated() => {
                // Invalidated while it was being kept: forgotten after all.
                crate::invalidate::forget(sh, &[url.to_string()]);
                sh.disk.wrote();
            }
            Ok(()) => sh.disk.wrote(),
            // Every client is served from the spool all the same: only the cache lost it.
            Err(e) => sh.disk.failed(&format_args!("keeping {url}: {e}")),
        }
    }
    f.written(got);
    Ok(())
}

/// The next piece of the body, within the gateway's patience for a stalled feed.
async fn next_piece(sh: &Shared, feed: &mut Feed) -> Result<Option<Bytes>, DownloadError> {
    let idle = sh.cfg.origin_read_timeout;
    tokio::select! {
        _ = sh.stop.cancelled() => Err(DownloadError::Stopping),
        next = tokio::time::timeout(idle, feed.next(&sh.stop)) => match next {
            Err(_) => Err(DownloadError::Stalled { secs: idle.as_secs().max(1) }),
            Ok(None) => Ok(None),
            Ok(Some(r)) => r.map(Some),
        },
    }
}

/// Passes the rest of a body whose spool failed after `at` bytes to the download's clients
/// from memory: first `pieces` (taken but not written), then the rest of `feed`. Nothing is
/// kept; the body is still checked against its length and the largest allowed.
async fn relay(
    sh: &Shared,
    f: &InFlight,
    feed: &mut Feed,
    at: u64,
    pieces: impl Iterator<Item = Bytes>,
    limit: u64,
    expected: Option<u64>,
) -> Result<(), DownloadError> {
    let relay = f.relay();
    relay.begin(at);
    let patience = sh.cfg.origin_read_timeout;
    let mut end = at;
    let mut pieces = pieces.filter(|p| !p.is_empty());
    loop {
        let data = match pieces.next() {
            Some(p) => p,
            None => match next_piece(sh, feed).await? {
                Some(p) => p,
                None => break,
            },
        };
        if end + data.len() as u64 > limit {
            return Err(DownloadError::TooLong { limit });
        }
        // Clients that joined hold a subscription until their reading ends.
        if f.clients() == 0 {
            return Err(crate::relay::RelayError::NoReaders.into());
        }
        end = relay.push(data, patience).await;
        f.written(end);
    }
    if let Some(e) = expected
        && e != end
    {
        return Err(DownloadError::Short {
            got: end,
            expected: e,
        });
    }
    Ok(())
}

/// A body that streams the spool of `head` from its start as it grows, until the download
/// ends; it fails if the download fails. Bytes are credited as `credit`.
pub(crate) fn tail(
    sh: &Arc<Shared>,
    head: &Head,
    f: &InFlight,
    mut rx: watch::Receiver<Snap>,
    credit: fn(u64) -> Provenance,
) -> Result<Body, std::io::Error> {
    let relay = f.relay();
    let file = std::fs::File::open(&head.path)?;
    let Some(reader) = relay.reader() else {
        return Err(std::io::Error::other(
            "the download passed the disk by already",
        ));
    };
    let (tx, body) = channel(4);
    let metrics = Arc::clone(&sh.metrics);
    sh.tasks.spawn(async move {
        let file = Arc::new(file);
        let mut off = 0u64;
        loop {
            let snap = rx.borrow_and_update().clone();
            let from = relay.from();
            if let Some(from) = from.filter(|&from| off >= from && off < snap.written) {
                let Some(b) = reader.read(off, 1 << 20) else {
                    let e = "fell behind a download passed through uncached";
                    let _ = tx.send(Err(std::io::Error::other(e))).await;
                    return;
                };
                debug_assert!(!b.is_empty() && off >= from);
                let n = b.len() as u64;
                metrics.sent(credit(n));
                off += n;
                reader.passed(off);
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
                continue;
            }
            if off < snap.written {
                let n = (snap.written.min(from.unwrap_or(u64::MAX)) - off).min(1 << 20) as usize;
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
                    reader.passed(off);
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
