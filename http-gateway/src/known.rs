//! Serving a URL whose content is known by its ID (a trusted peer's claim the origin confirmed,
//! or content information the origin vouched for): the content is fetched with the node's
//! fetcher (from peers; blocks no peer sends from the origin by range, unless that is switched
//! off) and the answer streams in content order as blocks are verified and stored, so the first
//! byte does not wait for the whole file; the URL is recorded when the fetch ends. A range
//! fetches only the blocks covering it and is answered from the store like a hit.

use crate::policy::Policy;
use engine::fetch::{Events, FetchOptions};
use engine::node::InOrder;
use http::header::{CONTENT_LENGTH, ETAG, LAST_MODIFIED};
use http::{Response, StatusCode};
use std::sync::Arc;

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
    pub policy: Policy,
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
/// range, if allowed), keeps it as `url`'s answer, and streams it to the client under `head`
/// in content order, each run of blocks once it is verified and stored.
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
    let opts = fetch_options(sh, url);
    let events: Events = Arc::new(|_| {});
    let fetch = sh.node.start_fetch(id, opts, events, sh.stop.child_token());
    let reader = fetch.reader();
    let sel = selection(&req.headers, &head.headers);
    let (sh2, url2, stored_headers) = (Arc::clone(sh), url.to_string(), head.headers.clone());
    let busy = sh.busy();
    sh.tasks.spawn(async move {
        let _busy = busy;
        if let Ok((info, _)) = fetch.done().await {
            let kept = Kept {
                url: url2,
                policy,
                headers: stored_headers,
                selection: sel,
                claim: sh2.cfg.trust_peers.then(|| sh2.urls.clone()),
            };
            let len = info.layout().content_len();
            let index = Arc::clone(&sh2.index);
            let recorded = tokio::task::spawn_blocking(move || {
                let url = kept.url.clone();
                crate::keep::record_variant(index.as_ref(), &id, len, kept).map_err(|e| (url, e))
            })
            .await;
            if let Ok(Err((url, e))) = recorded {
                tracing::warn!("recording {url}: {e}");
            }
        }
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
    Response::from_parts(head, in_order(sh, reader, len))
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

/// The content's bytes in order, each run of blocks sent once it is in the store (verified);
/// the body breaks off if the fetch fails or the content is not `len` bytes long.
fn in_order(sh: &Arc<Shared>, mut reader: InOrder, len: u64) -> Body {
    let (tx, body) = channel(4);
    let metrics = Arc::clone(&sh.metrics);
    sh.tasks.spawn(async move {
        while let Some(read) = reader.next().await {
            let read = read.map_err(std::io::Error::other).and_then(|b| {
                match reader.info().map(|i| i.layout().content_len()) {
                    Some(l) if l != len => Err(std::io::Error::other(
                        "the content is not the claimed length",
                    )),
                    _ => Ok(b),
                }
            });
            let ok = read.is_ok();
            if let Ok(b) = &read {
                metrics.sent(Provenance {
                    peers: b.len() as u64,
                    ..Default::default()
                });
            }
            if tx.send(read).await.is_err() || !ok {
                return;
            }
        }
    });
    body
}
