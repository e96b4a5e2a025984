//! Misses served by LAN peers. A gateway that lacks a URL asks its group's peers for the claim
//! filed under the URL's name key ([`crate::record`]); it confirms the claimed validator with
//! the origin (a conditional request, which sends no body when it holds), then fetches the
//! content from peers (blocks no peer can send come from the origin by range, unless that is
//! switched off) and streams it to the client in order as blocks are verified, so the first
//! byte does not wait for the whole file.
//!
//! Trust: a claim is believed only from peers of a group with its own secret
//! ([`crate::gateway::GatewayConfig::trust_peers`]). Every block is checked against the content
//! information, which is checked against the claimed ticket, so a peer can make a client receive
//! only the bytes of the content it named; a group member could name other content for a URL,
//! which is why the open group's claims are never believed. (Following a peer gateway's
//! download in progress, [`crate::followed`], needs more trust: no content ID binds its bytes.)

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use engine::fetch::{Events, FetchEvent, FetchOptions, OriginClient};
use http::header::{
    CONTENT_LENGTH, ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    IF_UNMODIFIED_SINCE, LAST_MODIFIED, RANGE,
};
use http::{Response, StatusCode};
use http_cache_semantics::{AfterResponse, CachePolicy};
use tokio::sync::watch;

use crate::body::{Body, channel, empty};
use crate::error::GatewayError;
use crate::gateway::Shared;
use crate::headers::{self, CacheStatus, Provenance};
use crate::record::{Claim, name_key, selection};
use crate::upstream::origin_request;

/// The answer from peers, if a trusted peer has the URL and the origin confirms it unchanged.
pub(crate) async fn try_peers(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
) -> Result<Option<Response<Body>>, GatewayError> {
    Ok(claimed(sh, req, url)
        .await?
        .map(|(found, policy, head)| stream_from_peers(sh, req, url, found, policy, head)))
}

/// Content a URL is, with the policy and head of its answer.
pub(crate) type Known = (Found, CachePolicy, http::response::Parts);

/// What a trusted peer says `url` is, once the origin confirmed the claimed validator.
pub(crate) async fn claimed(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
) -> Result<Option<Known>, GatewayError> {
    if sh.node.peers().fetch_peers().is_empty() {
        return Ok(None);
    }
    let Some((peer, sealed)) = sh.node.ask_name(name_key(url)).await else {
        return Ok(None);
    };
    let claim = match Claim::open(url, &sealed) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!("peer {peer}: ignoring its record of {url}: {e}");
            return Ok(None);
        }
    };
    let (Some(id), Ok(stored)) = (claim.content_id(), claim.header_map()) else {
        return Ok(None);
    };
    let Some((policy, head)) = confirm(sh, req, url, stored).await? else {
        tracing::info!("{url} changed since peer {peer} fetched it: going to the origin");
        return Ok(None);
    };
    tracing::info!("{url}: from peers ({})", id.ticket());
    let found = Found {
        id,
        len: claim.len,
        fwd: 304,
        detail: "peers",
    };
    Ok(Some((found, policy, head)))
}

/// Confirms with the origin that the answer a peer has for `url`, whose headers are `stored`,
/// still holds: a conditional request on its validator, answered 304 (no body). The policy and
/// head to serve it under; `None` if it changed, has no validator, or may not be stored.
pub(crate) async fn confirm(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    stored: http::HeaderMap,
) -> Result<Option<(CachePolicy, http::response::Parts)>, GatewayError> {
    let mut cond = origin_request(req, empty());
    let h = cond.headers_mut();
    for n in [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
        RANGE,
    ] {
        h.remove(n);
    }
    if let Some(etag) = stored.get(ETAG) {
        h.insert(IF_NONE_MATCH, etag.clone());
    } else if let Some(lm) = stored.get(LAST_MODIFIED) {
        h.insert(IF_MODIFIED_SINCE, lm.clone());
    } else {
        return Ok(None);
    }
    let resp = sh.upstream.send(cond).await?;
    if resp.status() != StatusCode::NOT_MODIFIED {
        tracing::debug!("{url}: the origin did not confirm a peer's answer");
        return Ok(None);
    }
    let mut claimed = Response::new(());
    *claimed.headers_mut() = stored;
    let base = CachePolicy::new(req, &claimed);
    let (policy, head) = match base.after_response(req, &resp, SystemTime::now()) {
        AfterResponse::NotModified(p, head) => (p, head),
        AfterResponse::Modified(..) => return Ok(None),
    };
    if !policy.is_storable() {
        return Ok(None);
    }
    Ok(Some((policy, head)))
}

/// Content found for a URL, to fetch from peers.
pub(crate) struct Found {
    /// The content.
    pub id: engine::ContentId,
    /// Its length.
    pub len: u64,
    /// The origin's status when it was confirmed (`Cache-Status` `fwd-status`).
    pub fwd: u16,
    /// How it was found (`Cache-Status` `detail`).
    pub detail: &'static str,
}

/// How the gateway fetches a URL's content: blocks no peer sends come from the origin by range,
/// unless that is switched off.
pub(crate) fn fetch_options(sh: &Shared, url: &str) -> FetchOptions {
    let origin = sh
        .cfg
        .origin_for_peered
        .then(|| OriginClient::new(url, sh.cfg.origin_timeout).ok())
        .flatten();
    FetchOptions {
        origin,
        ..FetchOptions::default()
    }
}

/// Fetches the content found from peers in the background (blocks no peer sends come from the
/// origin by range, if allowed), keeps it as `url`'s answer with `policy`, and streams it to the
/// client under `head` in order, each block once it is verified and stored.
pub(crate) fn stream_from_peers(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    found: Found,
    policy: CachePolicy,
    mut head: http::response::Parts,
) -> Response<Body> {
    let (id, len) = (found.id, found.len);
    let (progress_tx, progress_rx) = watch::channel(Progress::default());
    let events: Events = {
        let tx = progress_tx.clone();
        Arc::new(move |e| {
            if let FetchEvent::Progress { .. } = e {
                tx.send_modify(|p| p.stored += 1);
            }
        })
    };
    let opts = fetch_options(sh, url);
    let sel = selection(&req.headers, &head.headers);
    let (sh2, url2, stored_headers) = (Arc::clone(sh), url.to_string(), head.headers.clone());
    let cancel = sh.stop.child_token();
    let busy = sh.busy();
    sh.tasks.spawn(async move {
        let _busy = busy;
        let r = sh2.node.fetch(id, opts, events, cancel).await;
        let done = match r {
            Ok((info, _)) => {
                let kept = crate::spool::record_variant(
                    &sh2,
                    &url2,
                    &id,
                    info.layout().content_len(),
                    policy,
                    &stored_headers,
                    sel,
                );
                if let Err(e) = kept {
                    tracing::warn!("recording {url2}: {e}");
                }
                Ok(())
            }
            Err(e) => Err(Arc::<str>::from(e.to_string())),
        };
        progress_tx.send_modify(|p| p.done = Some(done));
    });
    let status = CacheStatus::MissStored;
    sh.metrics.request(status);
    let h = &mut head.headers;
    headers::strip_hop_by_hop(h);
    headers::add_via(h, req.version);
    headers::add_cache_status(h, &status.entry(Some(found.fwd), Some(found.detail)));
    h.insert(CONTENT_LENGTH, len.into());
    h.insert(
        headers::BYTES_HEADER,
        Provenance {
            peers: len,
            ..Default::default()
        }
        .header_value(),
    );
    head.status = StatusCode::OK;
    Response::from_parts(head, in_order(sh, id, len, progress_rx))
}

#[derive(Debug, Clone, Default)]
struct Progress {
    stored: u64,
    done: Option<Result<(), Arc<str>>>,
}

fn failure(rx: &watch::Receiver<Progress>) -> Option<String> {
    match &rx.borrow().done {
        Some(Err(e)) => Some(e.to_string()),
        _ => None,
    }
}

/// The content's bytes in order, each block sent once it is in the store (verified).
fn in_order(
    sh: &Arc<Shared>,
    id: engine::ContentId,
    len: u64,
    mut rx: watch::Receiver<Progress>,
) -> Body {
    let (tx, body) = channel(4);
    let store = Arc::clone(sh.node.store());
    let metrics = Arc::clone(&sh.metrics);
    let lease = sh.node.lease(id);
    sh.tasks.spawn(async move {
        let _lease = lease;
        let fail = |m: String| Err(std::io::Error::other(m));
        // The content information arrives with the fetch's first step.
        let info = loop {
            if let Ok(Some(info)) = store.content_info(&id) {
                break info;
            }
            if let Some(e) = failure(&rx) {
                let _ = tx.send(fail(e)).await;
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
        };
        if info.layout().content_len() != len {
            let _ = tx
                .send(fail("the content is not the claimed length".into()))
                .await;
            return;
        }
        let layout = *info.layout();
        for g in 0..layout.block_count() {
            let Ok(block) = layout.block_at(g) else {
                return;
            };
            loop {
                let present = store
                    .present(&id, block.segment())
                    .map(|s| s.contains(block.index_in_segment()))
                    .unwrap_or(false);
                if present {
                    break;
                }
                if let Some(e) = failure(&rx) {
                    let _ = tx.send(fail(e)).await;
                    return;
                }
                // Woken by progress; the timeout covers blocks stored before we looked.
                let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
            }
            let st = Arc::clone(&store);
            let read = tokio::task::spawn_blocking(move || st.get_block(&id, block))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r.map_err(std::io::Error::other))
                .and_then(|b| b.ok_or_else(|| std::io::Error::other("a block went missing")));
            let ok = read.is_ok();
            if let Ok(b) = &read {
                metrics.sent(Provenance {
                    peers: b.len() as u64,
                    ..Default::default()
                });
            }
            if tx.send(read.map(Bytes::from)).await.is_err() || !ok {
                return;
            }
        }
    });
    body
}
