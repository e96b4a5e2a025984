//! Misses of a URL that a peer gateway is downloading now. Gateways of a group whose peers are
//! trusted that miss the same URL at once elect one to download it from the origin
//! ([`engine::node::Node::elect_on`], under the URL's name key); the others take its download
//! as it arrives ([`engine::node::TailReader`]), so the origin sends the body once however many
//! branch gateways ask for it at the same time. A follower spools what it takes like an origin's
//! body (hashed as it arrives, then kept and claimed), and streams it to its clients meanwhile.
//!
//! Trust: more than claims need. The leader's record of the answer ([`crate::record::Pending`])
//! is sealed for those who know the URL and believed only from a trusted group, and its
//! validator is confirmed with the origin (a conditional request that sends no body) before
//! anything is served; but no content ID binds the bytes, so a lying group member could send
//! other bytes than the origin's, which the follower would serve and keep. A follower notices
//! when the leader's offer changes under it (another download of the URL began) and stops
//! taking from it. If the leader goes away mid-way, the follower takes the rest from the origin
//! by range, only while a strong validator holds (`If-Range`), for answers that do not vary, and
//! only when blocks may come from the origin at all.

use std::sync::Arc;

use bytes::Bytes;
use engine::fetch::PeerRef;
use engine::node::Ballot;
use engine::wire::LookupKey;
use http::Response;
use http::header::{ETAG, LAST_MODIFIED};

use crate::body::Body;
use crate::downloads::{Head, Led};
use crate::error::GatewayError;
use crate::headers::{self, CacheStatus, Provenance};
use crate::known::Known;
use crate::record::{Pending, selection};
use crate::spool;
use crate::state::Shared;

/// What the rest of an answer with `headers` may be asked for by range with (`If-Range`): a
/// strong entity tag, else the last-modified date; none for an answer that varies (the
/// origin client cannot repeat the selecting request headers).
fn range_validator(headers: &http::HeaderMap) -> Option<String> {
    if headers.contains_key(http::header::VARY) {
        return None;
    }
    match headers.get(ETAG).and_then(|v| v.to_str().ok()) {
        Some(etag) if etag.starts_with('"') => Some(etag.to_string()),
        Some(_) => None,
        None => headers
            .get(LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

/// Elects the gateway that downloads `url` among the peer gateways missing it now; the check
/// while waiting is whether a peer has it stored now ([`crate::peered::claimed`]). `None` when
/// peers are not trusted or there are none.
pub(crate) async fn elect(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
) -> Option<Ballot<Known>> {
    if !sh.cfg.trust_peers || sh.node.peers().fetch_peers().is_empty() {
        return None;
    }
    let check = || async { crate::peered::claimed(sh, req, url).await.ok().flatten() };
    let key = LookupKey(sh.urls.name_key(url));
    let shun = sh.shunned.now();
    sh.node.elect_on(key, &shun, check, &sh.stop).await.ok()
}

/// Follows `peer`'s download of `url` for the clients waiting on this gateway's download of it,
/// which `led` leads: spooled and kept as if it came from the origin. `None` when it cannot be
/// followed (gone already, another answer than this request needs, or the origin does not
/// confirm it or fails): the caller downloads it itself.
pub(crate) async fn follow(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    led: &Led<'_>,
    peer: PeerRef,
) -> Result<Option<Response<Body>>, GatewayError> {
    let addr = peer.addr;
    // A full disk: the caller passes the origin's answer through.
    let Ok(file) = spool::create(sh) else {
        return Ok(None);
    };
    let lookup = LookupKey(sh.urls.name_key(url));
    let seal = sh.urls.tail_key(url);
    // A peer whose download gives no new byte for as long as a stalled origin may is given up.
    let mut reader = sh
        .node
        .follow_tail(lookup, seal, peer, 0, sh.cfg.origin_timeout)
        .with_patience(sh.cfg.origin_read_timeout);
    let first: Option<Bytes> = match reader.next(&sh.stop).await {
        Ok(b) => b,
        Err(e) => {
            tracing::info!(
                "{url}: not following peer {addr}, and leaving it out of elections for a while: {e}"
            );
            sh.shunned.add(addr);
            return Ok(None);
        }
    };
    let pending = match reader.meta().map(|m| Pending::open(&sh.urls, url, m)) {
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            tracing::info!("{url}: peer {addr}'s download, left out of elections for a while: {e}");
            sh.shunned.add(addr);
            return Ok(None);
        }
        None => return Ok(None),
    };
    let Ok(stored) = pending.header_map() else {
        return Ok(None);
    };
    if pending.selection != selection(&req.headers, &stored) {
        // Another variant than this request selects.
        return Ok(None);
    }
    let validator = range_validator(&stored);
    let (policy, head) = match crate::peered::confirm(sh, req, url, stored).await {
        Ok(Some(confirmed)) => confirmed,
        Ok(None) => return Ok(None),
        Err(e) => {
            tracing::info!("{url}: not following peer {addr}: {e}");
            return Ok(None);
        }
    };
    tracing::info!("{url}: following peer {addr}'s download");
    let fallback = validator
        .filter(|_| sh.cfg.origin_for_peered)
        .and_then(|v| Some((sh.origin_client(url)?, v)));
    let mut h = head.headers;
    headers::strip_hop_by_hop(&mut h);
    let spooled = Head {
        status: http::StatusCode::OK,
        headers: h,
        policy,
        path: Default::default(),
        selection: pending.selection,
    };
    let feed = spool::Feed::Peer {
        reader: Box::new(reader),
        first,
        fallback,
    };
    if let Err(source) = spool::start(sh, led, url, spooled, feed, spool::Share::No, file) {
        led.abandon("no spool");
        return Err(GatewayError::Spool {
            dir: sh.cfg.spool.clone(),
            source,
        });
    }
    let from_peers = |n| Provenance {
        peers: n,
        ..Default::default()
    };
    let status = CacheStatus::MissStored;
    crate::answers::join_crediting(sh, req, led.flight(), Some(status), from_peers).await
}
