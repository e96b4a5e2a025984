//! A range of a URL that is not stored: when the content is known (a trusted peer's claim the
//! origin confirmed, or content information the origin vouched for), only the blocks covering
//! the range are fetched, from peers (else from the origin by range), and the range is answered
//! from them; the rest of the content stays missing until a client asks for all of it. When the
//! content is not known, the request goes to the origin as it came (with a request for content
//! information added), and a plain answer is passed back unstored.

use std::sync::Arc;

use engine::fetch::FetchOptions;
use http::Response;
use http::header::{ETAG, LAST_MODIFIED};

use crate::body::{Body, empty};
use crate::cache::{self, passed};
use crate::error::GatewayError;
use crate::gateway::Shared;
use crate::headers::CacheStatus;
use crate::peered::{self, Known};
use crate::range::{self, RangePlan, Validators};
use crate::stored::{self, Label};
use crate::upstream::origin_request;

/// Answers a GET with `Range` for a URL not stored.
pub(crate) async fn get(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
) -> Result<Response<Body>, GatewayError> {
    let mut known = None;
    if sh.cfg.trust_peers {
        known = peered::claimed(sh, req, url).await?;
    }
    if known.is_none() && sh.cfg.origin_info && sh.cfg.reverse.is_none() {
        let mut ask = req.clone();
        crate::vouched::ask(&mut ask.headers);
        let resp = sh.upstream.send(origin_request(&ask, empty())).await?;
        if !crate::vouched::is_info(&resp) {
            // The origin answered the range itself.
            let (head, body) = resp.into_parts();
            return Ok(passed(sh, head, body, CacheStatus::Miss));
        }
        known = crate::vouched::vouched_for(sh, req, url, resp).await?;
    }
    match known {
        Some(k) => from_covering_blocks(sh, req, url, k).await,
        None => cache::pass(sh, req, CacheStatus::Miss).await,
    }
}

async fn from_covering_blocks(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    (found, policy, head): Known,
) -> Result<Response<Body>, GatewayError> {
    let validators = Validators {
        etag: head.headers.get(ETAG).and_then(|v| v.to_str().ok()),
        last_modified: head
            .headers
            .get(LAST_MODIFIED)
            .and_then(|v| v.to_str().ok()),
    };
    let hull = match range::plan(&req.headers, found.len, validators) {
        // The whole body after all (an If-Range that does not match): from peers, kept.
        RangePlan::Full => {
            return Ok(peered::stream_from_peers(sh, req, url, found, policy, head));
        }
        RangePlan::Unsatisfiable => 0..0,
        RangePlan::Parts(p) => {
            let start = p.iter().map(|r| r.start).min().unwrap_or(0);
            start..p.iter().map(|r| r.end).max().unwrap_or(0)
        }
    };
    let opts = FetchOptions {
        only: Some(hull.clone()),
        ..peered::fetch_options(sh, url)
    };
    let mut from_peers = false;
    if !hull.is_empty() {
        let events: engine::fetch::Events = Arc::new(|_| {});
        let (_, report) = sh
            .node
            .fetch(found.id, opts, events, sh.stop.child_token())
            .await
            .map_err(|e| GatewayError::PeersFailed {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        from_peers = !report.by_source.is_empty();
    }
    let info = sh
        .node
        .store()
        .content_info(&found.id)?
        .ok_or_else(|| GatewayError::Store("the content information went missing".into()))?;
    let label = Label {
        status: CacheStatus::Miss,
        fwd: Some(found.fwd),
        detail: Some(found.detail),
        from_peers,
    };
    Ok(stored::respond(sh, req, head, info, label).await)
}
