//! The shared cache (RFC 9111, with `http-cache-semantics` deciding freshness): a GET or HEAD
//! is answered from a stored variant when it is fresh; a stale one is revalidated with its
//! validators; a miss asks the LAN's peers (when they are trusted), else goes to the origin once
//! however many clients ask at the same time ([`crate::spool`]), and a storable answer is kept.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use http::{Method, Request, Response, StatusCode};
use http_cache_semantics::{AfterResponse, BeforeRequest, CachePolicy};
use hyper::body::Incoming;

use crate::body::{Body, Credit, counted, empty};
use crate::error::GatewayError;
use crate::gateway::Shared;
use crate::headers::{self, CacheStatus, Provenance};
use crate::record::{UrlRecord, index_key, selection};
use crate::spool;
use crate::stored;
use crate::upstream::{client_head, origin_request};
use engine::node::Ballot;

/// Answers a GET or HEAD of an absolute `http://` URL.
pub(crate) async fn get(
    sh: &Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let (parts, _) = req.into_parts();
    get_parts(sh, &parts).await
}

/// [`get`], from a request's head.
pub(crate) async fn get_parts(
    sh: &Arc<Shared>,
    parts: &http::request::Parts,
) -> Result<Response<Body>, GatewayError> {
    let url = parts.uri.to_string();
    let key = index_key(&url);
    // Twice at most: a download that finishes between the lookup and joining it is then a hit.
    // A HEAD is answered by a stored GET's head (the policy matches methods exactly).
    let mut as_get = parts.clone();
    as_get.method = Method::GET;
    for _ in 0..2 {
        match lookup(sh, &as_get, &url, &key).await? {
            Lookup::Stored(s) => return Ok(s.respond(sh, parts).await),
            Lookup::Answer(r) => return Ok(r),
            Lookup::Nothing => {}
        }
        if parts.method == Method::HEAD {
            // A HEAD of something not stored: passed on.
            return pass(sh, parts, CacheStatus::Miss).await;
        }
        if parts.headers.contains_key(RANGE) {
            // A range of something not stored: its covering blocks, when the content is known.
            return crate::ranged::get(sh, parts, &url).await;
        }
        if sh.cfg.trust_peers
            && let Some(r) = crate::peered::try_peers(sh, parts, &url).await?
        {
            return Ok(r);
        }
        if let Some(r) = miss(sh, parts, &url, &key).await? {
            return Ok(r);
        }
    }
    pass(sh, parts, CacheStatus::Miss).await
}

/// A stored response that answers a request, before its body is sent.
pub(crate) struct Stored {
    /// The response head the policy gives (`Age` updated).
    pub head: http::response::Parts,
    /// The content holding the body.
    pub info: Arc<engine::ContentInfo>,
    status: CacheStatus,
    fwd: Option<u16>,
}

impl Stored {
    /// The answer with the stored body (or the parts of it the request asks for).
    pub async fn respond(self, sh: &Arc<Shared>, req: &http::request::Parts) -> Response<Body> {
        let label = stored::Label {
            status: self.status,
            fwd: self.fwd,
            detail: None,
            from_peers: false,
        };
        stored::respond(sh, req, self.head, self.info, label).await
    }
}

/// What the store has for a request.
pub(crate) enum Lookup {
    /// A stored response answers it (fresh, or revalidated just now).
    Stored(Stored),
    /// The stored response was stale and had changed: the origin's new answer.
    Answer(Response<Body>),
    /// Nothing stored fits.
    Nothing,
}

/// The stored variant that answers `req` (revalidated first when stale), if one fits.
pub(crate) async fn lookup(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    key: &[u8],
) -> Result<Lookup, GatewayError> {
    let Some(bytes) = sh.index.get(key)? else {
        return Ok(Lookup::Nothing);
    };
    let mut record = UrlRecord::from_bytes(&bytes);
    // Variants whose content is no longer complete in the store (evicted) are forgotten first,
    // each checked once.
    let mut infos = Vec::with_capacity(record.variants.len());
    let before = record.variants.len();
    record.variants.retain(|v| {
        let info = v.content().and_then(|id| stored::complete(sh, &id));
        infos.extend(info.clone());
        info.is_some()
    });
    if record.variants.len() != before {
        sh.index.put(key, &record.to_bytes())?;
    }
    let now = SystemTime::now();
    let mut found = None;
    for (i, (v, info)) in record.variants.iter().zip(infos).enumerate() {
        match v.policy.before_request(req, now) {
            BeforeRequest::Fresh(head) => {
                return Ok(Lookup::Stored(Stored {
                    head,
                    info,
                    status: CacheStatus::Hit,
                    fwd: None,
                }));
            }
            BeforeRequest::Stale {
                request,
                matches: true,
            } => {
                found = Some((i, request, info));
                break;
            }
            BeforeRequest::Stale { matches: false, .. } => {}
        }
    }
    let Some((i, cond, info)) = found else {
        return Ok(Lookup::Nothing);
    };
    // Stale: ask the origin whether it changed.
    let mut resp = sh.upstream.send(origin_request(&cond, empty())).await?;
    let policy = record.variants[i].policy.clone();
    if resp.status() == StatusCode::NOT_MODIFIED {
        // Some origins leave the validators out of a 304; it still answers the validators we
        // sent, which are this stored response's.
        let sent = [
            (http::header::ETAG, http::header::IF_NONE_MATCH),
            (http::header::LAST_MODIFIED, http::header::IF_MODIFIED_SINCE),
        ];
        for (name, cond_name) in sent {
            if !resp.headers().contains_key(&name)
                && let Some(v) = cond.headers.get(&cond_name)
            {
                resp.headers_mut().insert(name, v.clone());
            }
        }
    }
    match policy.after_response(req, &resp, SystemTime::now()) {
        AfterResponse::NotModified(new_policy, head) => {
            record.variants[i].policy = new_policy;
            sh.index.put(key, &record.to_bytes())?;
            Ok(Lookup::Stored(Stored {
                head,
                info,
                status: CacheStatus::Revalidated,
                fwd: Some(304),
            }))
        }
        AfterResponse::Modified(..) if resp.status() == StatusCode::NOT_MODIFIED => {
            // A 304 that does not match what is stored: fetch the whole body again.
            drop(resp);
            Ok(miss(sh, req, url, key)
                .await?
                .map_or(Lookup::Nothing, Lookup::Answer))
        }
        AfterResponse::Modified(..) => {
            // Changed (or the origin ignored the condition): this answer replaces the stored one.
            let (f, lead) = spool::join_or_lead(sh, key);
            if !lead {
                let (head, body) = resp.into_parts();
                return Ok(Lookup::Answer(passed(sh, head, body, CacheStatus::Miss)));
            }
            let _led = spool::Led::new(sh, key, &f);
            lead_with(
                sh,
                req,
                url,
                (key, &f),
                resp,
                CacheStatus::StaleChanged,
                None,
            )
            .await
            .map(Lookup::Answer)
        }
    }
}

/// Whether an origin's answer to `req` may be stored (and its policy).
pub(crate) fn storable(
    sh: &Shared,
    req: &http::request::Parts,
    resp: &http::response::Parts,
) -> Option<CachePolicy> {
    if req.method != Method::GET
        || resp.status != StatusCode::OK
        || resp.headers.contains_key(CONTENT_RANGE)
    {
        return None;
    }
    let too_long = resp
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > sh.cfg.max_object);
    let policy = CachePolicy::new(req, resp);
    (!too_long && policy.is_storable()).then_some(policy)
}

/// A miss: join the download of this URL if one runs (and answers this request), else lead
/// one. `None` when the download to join ended before its head could be used.
async fn miss(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    key: &[u8],
) -> Result<Option<Response<Body>>, GatewayError> {
    let (f, lead) = spool::join_or_lead(sh, key);
    if !lead {
        return join(sh, req, &f, None).await;
    }
    let _led = spool::Led::new(sh, key, &f);
    // A peer gateway may be downloading it now, or about to: follow it, or be elected.
    let wanting = match crate::followed::elect(sh, req, url).await {
        None => None,
        Some(Ballot::Lead(w)) => Some(w),
        Some(Ballot::Found((found, policy, head))) => {
            spool::abandon(sh, key, &f, "a peer has it now");
            let r = crate::peered::stream_from_peers(sh, req, url, found, policy, head);
            return Ok(Some(r));
        }
        Some(Ballot::Follow(_, peer)) => {
            match crate::followed::follow(sh, req, url, (key, &f), peer).await? {
                Some(r) => return Ok(Some(r)),
                // Not followed after all: download it ourselves.
                None => None,
            }
        }
    };
    // The client's own preconditions are answered here, from the whole response kept.
    let mut plain = req.clone();
    crate::conditional::strip(&mut plain.headers);
    let vouch = sh.cfg.origin_info && sh.cfg.reverse.is_none();
    if vouch {
        crate::vouched::ask(&mut plain.headers);
    }
    let resp = match sh.upstream.send(origin_request(&plain, empty())).await {
        Ok(r) => r,
        Err(e) => {
            spool::abandon(sh, key, &f, "the origin failed");
            return Err(e);
        }
    };
    if vouch && crate::vouched::is_info(&resp) {
        // The origin vouched for the content: its bytes come from peers.
        spool::abandon(sh, key, &f, "the origin sent content information");
        return match crate::vouched::serve(sh, req, url, resp).await? {
            Some(r) => Ok(Some(r)),
            None => pass(sh, req, CacheStatus::Miss).await.map(Some),
        };
    }
    lead_with(
        sh,
        req,
        url,
        (key, &f),
        resp,
        CacheStatus::MissStored,
        wanting,
    )
    .await
    .map(Some)
}

/// Leads the download of `key` (whose clients wait on `f`) with the origin's answer `resp`:
/// spools and keeps it when it is storable (and reads it back as it grows), else passes it
/// through and lets waiting clients ask the origin themselves. In a group whose peers are
/// trusted the download is offered to peer gateways (holding `wanting` until it ends).
async fn lead_with(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    (key, f): (&[u8], &Arc<spool::InFlight>),
    resp: Response<Incoming>,
    status: CacheStatus,
    wanting: Option<engine::node::Wanting>,
) -> Result<Response<Body>, GatewayError> {
    let (head, body) = resp.into_parts();
    let Some(policy) = storable(sh, req, &head) else {
        spool::abandon(sh, key, f, "not storable");
        return Ok(passed(sh, head, body, CacheStatus::Miss));
    };
    let mut headers = head.headers.clone();
    headers::strip_hop_by_hop(&mut headers);
    let sel = selection(&req.headers, &headers);
    let spooled = spool::Head {
        status: head.status,
        headers,
        policy,
        path: Default::default(),
        selection: sel,
    };
    let share = if sh.cfg.trust_peers {
        spool::Share::Offer(wanting)
    } else {
        spool::Share::No
    };
    let feed = spool::Feed::Origin(body);
    if let Err(e) = spool::start(
        sh,
        key.to_vec(),
        url.to_string(),
        Arc::clone(f),
        spooled,
        feed,
        share,
    ) {
        spool::abandon(sh, key, f, "no spool");
        return Err(GatewayError::Store(format!("creating a spool file: {e}")));
    }
    match join(sh, req, f, Some(status)).await? {
        Some(r) => Ok(r),
        None => pass(sh, req, CacheStatus::Miss).await,
    }
}

/// Reads a download as it grows, if its answer fits this request. The leader says what it did
/// (`lead`); others coalesced into its transfer, and their bytes did not cross the WAN again.
pub(crate) async fn join(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    f: &spool::InFlight,
    lead: Option<CacheStatus>,
) -> Result<Option<Response<Body>>, GatewayError> {
    join_crediting(sh, req, f, lead, |n| Provenance {
        origin: n,
        ..Default::default()
    })
    .await
}

/// [`join`], the leader's bytes credited as `credit` says (a follower's came from a peer).
pub(crate) async fn join_crediting(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    f: &spool::InFlight,
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
    // The answer is fresh from the origin: it serves every request it was selected for (its
    // `Vary` fields agree), whatever its lifetime.
    if head.selection != selection(&req.headers, &head.headers) {
        return pass(sh, req, CacheStatus::Miss).await.map(Some);
    }
    let (status, credit): (CacheStatus, fn(u64) -> Provenance) = match lead {
        Some(st) => (st, lead_credit),
        None => (CacheStatus::Coalesced, |n| Provenance {
            store: n,
            ..Default::default()
        }),
    };
    if let Some(r) = stored::unless_preconditions(req, &head.headers) {
        sh.metrics.request(status);
        let mut r = r;
        client_head(
            r.headers_mut(),
            req.version,
            status,
            Some(head.status.as_u16()),
        );
        return Ok(Some(r));
    }
    let body = match spool::tail(sh, &head, rx, credit) {
        Ok(b) => b,
        // Finished and removed meanwhile: it is in the store now.
        Err(_) => return Ok(None),
    };
    sh.metrics.request(status);
    let mut h = head.headers.clone();
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

/// Sends `req` to the origin and its answer back, not stored.
pub(crate) async fn pass(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    status: CacheStatus,
) -> Result<Response<Body>, GatewayError> {
    let resp = sh.upstream.send(origin_request(req, empty())).await?;
    let (head, body) = resp.into_parts();
    Ok(passed(sh, head, body, status))
}

pub(crate) fn passed(
    sh: &Arc<Shared>,
    mut head: http::response::Parts,
    body: Incoming,
    status: CacheStatus,
) -> Response<Body> {
    sh.metrics.request(status);
    let code = head.status.as_u16();
    client_head(&mut head.headers, head.version, status, Some(code));
    add_provenance(&mut head.headers, |n| Provenance {
        origin: n,
        ..Default::default()
    });
    Response::from_parts(head, counted(body, Arc::clone(&sh.metrics), Credit::Origin))
}
