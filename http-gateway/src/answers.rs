//! Building answers that do not come from the store: an origin's answer passed back unstored,
//! and a download in flight read as it grows (by the request that leads it and by those that
//! join it). Each says what the cache did (`Cache-Status`) and where its bytes came from
//! (`Pdist-Bytes`, and the figures).

use std::sync::Arc;

use http::Response;
use http::header::CONTENT_LENGTH;

use crate::body::{Body, Credit, counted, empty};
use crate::conditional;
use crate::downloads::InFlight;
use crate::error::GatewayError;
use crate::headers::{self, CacheStatus, Provenance};
use crate::policy::Reuse;
use crate::record::selection;
use crate::state::Shared;
use crate::upstream::{client_head, origin_request};

/// Sends `req` to the origin and its answer back, not stored.
pub(crate) async fn pass(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    status: CacheStatus,
) -> Result<Response<Body>, GatewayError> {
    let resp = sh
        .upstream
        .send_for(req, origin_request(req, empty()))
        .await?;
    Ok(passed(sh, resp, status))
}

/// An origin's answer `resp`, passed back unstored.
pub(crate) fn passed(sh: &Shared, resp: Response<Body>, status: CacheStatus) -> Response<Body> {
    let (mut head, body) = resp.into_parts();
    sh.metrics.request(status);
    let code = head.status.as_u16();
    client_head(&mut head.headers, head.version, status, Some(code));
    add_provenance(&mut head.headers, |n| Provenance {
        origin: n,
        ..Default::default()
    });
    Response::from_parts(head, counted(body, Arc::clone(&sh.metrics), Credit::Origin))
}

/// Reads a download as it grows, if its answer fits this request. The leader says what it did
/// (`lead`); others coalesced into its transfer, and their bytes did not cross the WAN again.
/// `None` when the download ended and was removed before it could be read (it is in the store
/// now).
pub(crate) async fn join(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    f: &InFlight,
    lead: Option<CacheStatus>,
) -> Result<Option<Response<Body>>, GatewayError> {
    join_crediting(sh, req, f, lead, |n| Provenance {
        origin: n,
        ..Default::default()
    })
    .await
}

/// [`join`], the leader's bytes credited as `lead_credit` says (a follower's came from a peer).
pub(crate) async fn join_crediting(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    f: &InFlight,
    lead: Option<CacheStatus>,
    lead_credit: fn(u64) -> Provenance,
) -> Result<Option<Response<Body>>, GatewayError> {
    let mut rx = f.subscribe();
    let head = loop {
        let snap = rx.borrow_and_update().clone();
        if let Some(h) = snap.head {
            break h;
        }
        if snap.done.is_some() || rx.changed().await.is_err() {
            // Not shared (not storable, or the origin failed): ask the origin ourselves.
            return pass(sh, req, CacheStatus::Miss).await.map(Some);
        }
    };
    // The answer is the leader's own. Another request may use it only as it could use the
    // stored response (RFC 9111 §4): its `Vary` selection, and its own and the request's
    // directives, decide; else that request asks the origin itself.
    let mut served = head.headers.clone();
    if lead.is_none() {
        let mut as_get = req.clone();
        as_get.method = http::Method::GET;
        match head.policy.reuse(&as_get, std::time::SystemTime::now()) {
            Reuse::Fresh(h) if head.selection == selection(&req.headers, &head.headers) => {
                served = h.headers;
            }
            _ => return pass(sh, req, CacheStatus::Miss).await.map(Some),
        }
    }
    let (status, credit): (CacheStatus, fn(u64) -> Provenance) = match lead {
        Some(st) => (st, lead_credit),
        None => (CacheStatus::Coalesced, |n| Provenance {
            store: n,
            ..Default::default()
        }),
    };
    if head.status == http::StatusCode::OK
        && let Some(mut r) = conditional::answer_instead(req, &served)
    {
        sh.metrics.request(status);
        client_head(
            r.headers_mut(),
            req.version,
            status,
            Some(head.status.as_u16()),
        );
        return Ok(Some(r));
    }
    let body = match crate::spool::tail(sh, &head, f, rx, credit) {
        Ok(b) => b,
        // Finished and removed meanwhile: it is in the store now.
        Err(_) => return Ok(None),
    };
    sh.metrics.request(status);
    let mut h = served;
    client_head(&mut h, req.version, status, Some(head.status.as_u16()));
    add_provenance(&mut h, credit);
    let mut r = Response::new(body);
    *r.status_mut() = head.status;
    *r.headers_mut() = h;
    Ok(Some(r))
}

/// `Pdist-Bytes` for a body of the length the head says, credited as `credit` says (a body of
/// unknown length gets none).
fn add_provenance(h: &mut http::HeaderMap, credit: fn(u64) -> Provenance) {
    let len = h
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = len {
        h.insert(headers::BYTES_HEADER, credit(n).header_value());
    }
}
