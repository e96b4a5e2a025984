//! Serving a URL whose content is known by its ID (a trusted peer's claim the origin confirmed,
//! or content information the origin vouched for): the content is fetched with the node's
//! fetcher (from peers; blocks no peer sends from the origin by range, unless that is switched
//! off) and the answer streams in content order as blocks are verified and stored, so the first
//! byte does not wait for the whole file; the URL is recorded when the fetch ends. A range
//! fetches only the blocks covering it and is answered from the store like a hit.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use engine::fetch::{Events, FetchEvent, FetchOptions};
use http::header::{CONTENT_LENGTH, ETAG, LAST_MODIFIED};
use http::{Response, StatusCode};
use http_cache_semantics::CachePolicy;
use tokio::sync::watch;

use crate::body::{Body, channel};
use crate::error::GatewayError;
use crate::headers::{self, CacheStatus, Provenance};
use crate::keep::Kept;
use crate::range::{self, RangePlan, Validators};
use crate::record::selection;
use crate::state::Shared;
use crate::stored::{self, Label};

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

/// Content a URL is, with the policy and head of its answer.
pub(crate) struct Known {
    /// The content.
    pub found: Found,
    /// The answer's caching policy.
    pub policy: CachePolicy,
    /// The answer's head.
    pub head: http::response::Parts,
}

/// How the gateway fetches a URL's content: blocks no peer sends come from the origin by range,
/// unless that is switched off.
pub(crate) fn fetch_options(sh: &Shared, url: &str) -> FetchOptions {
    let origin = sh
        .cfg
        .origin_for_peered
        .then(|| sh.origin_client(url))
        .flatten();
    FetchOptions {
        origin,
        ..FetchOptions::default()
    }
}

/// Fetches the content found in the background (blocks no peer sends come from the origin by
/// range, if allowed), keeps it as `url`'s answer, and streams it to the client in order, each
/// block once it is verified and stored.
pub(crate) fn stream_from_peers(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    known: Known,
) -> Response<Body> {
    let Known {
        found,
        policy,
        mut head,
    } = known;
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
                let kept = Kept {
                    url: &url2,
                    policy,
                    headers: &stored_headers,
                    selection: sel,
                };
                let len = info.layout().content_len();
                if let Err(e) = crate::keep::record_variant(sh2.index.as_ref(), &id, len, kept) {
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

/// Answers a range of a URL not stored from the blocks covering it, fetched now (the rest of
/// the content stays missing until a client asks for all of it). An `If-Range` that does not
/// match asks for the whole body after all: that is fetched and kept ([`stream_from_peers`]).
pub(crate) async fn covering_blocks(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    known: Known,
) -> Result<Response<Body>, GatewayError> {
    let validators = Validators {
        etag: known.head.headers.get(ETAG).and_then(|v| v.to_str().ok()),
        last_modified: known
            .head
            .headers
            .get(LAST_MODIFIED)
            .and_then(|v| v.to_str().ok()),
    };
    let hull = match range::plan(&req.headers, known.found.len, validators) {
        RangePlan::Full => return Ok(stream_from_peers(sh, req, url, known)),
        RangePlan::Unsatisfiable => 0..0,
        RangePlan::Parts(p) => {
            let start = p.iter().map(|r| r.start).min().unwrap_or(0);
            start..p.iter().map(|r| r.end).max().unwrap_or(0)
        }
    };
    let Known { found, head, .. } = known;
    let opts = FetchOptions {
        only: Some(hull.clone()),
        ..fetch_options(sh, url)
    };
    let mut from_peers = false;
    if !hull.is_empty() {
        let events: Events = Arc::new(|_| {});
        let (_, report) = sh
            .node
            .fetch(found.id, opts, events, sh.stop.child_token())
            .await
            .map_err(|source| GatewayError::PeersFailed {
                url: req.uri.clone(),
                source,
            })?;
        from_peers = !report.by_source.is_empty();
    }
    let info = sh
        .node
        .store()
        .content_info(&found.id)?
        .ok_or(GatewayError::ContentGone { id: found.id })?;
    let label = Label {
        status: CacheStatus::Miss,
        fwd: Some(found.fwd),
        detail: Some(found.detail),
        from_peers,
    };
    Ok(stored::respond(sh, req, head, info, label).await)
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
