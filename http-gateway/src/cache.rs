//! The shared cache (RFC 9111) carrying out [`crate::decide`]'s plans: a GET or HEAD is
//! answered from a stored variant when one is fresh; a stale one is revalidated with its
//! validators; a miss looks for the body in the plan's order (a trusted peer's claim, a
//! download running here, the peer gateways' election, the origin, which may vouch for content
//! that peers then send), and a storable answer is kept.
//!
//! Each way of finding the body is its own module ([`crate::peered`], [`crate::followed`],
//! [`crate::vouched`]) and returns what it found; serving what was found is
//! [`crate::known`]'s, [`crate::stored`]'s, [`crate::answers`]' and [`crate::spool`]'s.

use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::answers::{join, pass, passed};
use crate::body::{Body, empty};
use crate::decide::{self, Plan, Reuse, Revalidated, Step, Target};
use crate::downloads::{Head, Led, Role};
use crate::error::GatewayError;
use crate::headers::{self, CacheStatus};
use crate::record::{UrlRecord, index_key, selection};
use crate::spool;
use crate::state::Shared;
use crate::stored;
use crate::upstream::origin_request;
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
        let seen = match lookup(sh, &as_get, &url, &key).await? {
            Lookup::Stored(s) => return Ok(s.respond(sh, parts).await),
            Lookup::Answer(r) => return Ok(r),
            Lookup::Nothing(seen) => seen,
        };
        if only_if_cached(parts) {
            return Ok(gateway_timeout(sh, parts));
        }
        let answer = match decide::miss(parts, &sh.setup()) {
            Plan::Pass => return pass(sh, parts, CacheStatus::Miss).await,
            Plan::Miss {
                target: Target::Range,
                steps,
            } => return miss_range(sh, parts, &url, &steps).await,
            Plan::Miss {
                target: Target::Whole,
                steps,
            } => miss_whole(sh, parts, &url, &key, &steps, Some(&seen)).await?,
        };
        if let Some(r) = answer {
            return Ok(r);
        }
    }
    pass(sh, parts, CacheStatus::Miss).await
}

/// Whether the client wants only a stored response (RFC 9111 §5.2.1.7).
fn only_if_cached(req: &http::request::Parts) -> bool {
    crate::directives::Directives::of(&req.headers, http::header::CACHE_CONTROL)
        .has("only-if-cached")
}

/// The answer to `only-if-cached` when nothing stored fits: 504.
fn gateway_timeout(sh: &Shared, req: &http::request::Parts) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = http::StatusCode::GATEWAY_TIMEOUT;
    r.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("0"),
    );
    sh.metrics.request(CacheStatus::Miss);
    crate::upstream::client_head(r.headers_mut(), req.version, CacheStatus::Miss, None);
    r
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
    /// Nothing stored fits; the URL's record as it was read (`None`: there was none).
    Nothing(Option<Vec<u8>>),
}

/// The stored variant that answers `req` (revalidated first when stale), if one fits.
pub(crate) async fn lookup(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    key: &[u8],
) -> Result<Lookup, GatewayError> {
    let Some(bytes) = sh.index.get(key)? else {
        return Ok(Lookup::Nothing(None));
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
    let (i, cond) = match reuse(&record, req) {
        Reuse::Fresh { variant, head } => {
            return Ok(Lookup::Stored(Stored {
                head,
                info: infos.swap_remove(variant),
                status: CacheStatus::Hit,
                fwd: None,
            }));
        }
        Reuse::Stale { variant, request } => (variant, request),
        Reuse::None => return Ok(Lookup::Nothing(Some(record.to_bytes()))),
    };
    // Stale, but within its stale-while-revalidate window: served now, revalidated meanwhile.
    if let Some(head) = record.variants[i]
        .policy
        .while_revalidating(&req.headers, SystemTime::now())
    {
        revalidate_later(sh, req, key);
        return Ok(Lookup::Stored(Stored {
            head,
            info: infos.swap_remove(i),
            status: CacheStatus::StaleRevalidating,
            fwd: None,
        }));
    }
    // Stale: ask the origin whether it changed. If it cannot say (unreachable, or a server
    // error), the stored response is served stale where that is allowed (RFC 9111 §4.2.4).
    let sent = SystemTime::now();
    let policy = &record.variants[i].policy;
    let resp = match sh.upstream.send(origin_request(&cond, empty())).await {
        Ok(r) if !r.status().is_server_error() => r,
        failed => {
            let now = SystemTime::now();
            let Some(head) = policy.stale_on_error(&req.headers, now, sh.cfg.max_stale) else {
                return Ok(Lookup::Answer(passed(sh, failed?, CacheStatus::Miss)));
            };
            let fwd = failed.as_ref().ok().map(|r| r.status().as_u16());
            match &failed {
                Ok(r) => tracing::info!("{url}: the origin answered {}: served stale", r.status()),
                Err(e) => tracing::info!("{url}: the origin failed ({e}): served stale"),
            }
            return Ok(Lookup::Stored(Stored {
                head,
                info: infos.swap_remove(i),
                status: CacheStatus::StaleOnError,
                fwd,
            }));
        }
    };
    let (head, body) = resp.into_parts();
    match decide::revalidated(policy, &head, sent, SystemTime::now()) {
        Revalidated::Unchanged(new_policy, head) => {
            record.variants[i].policy = *new_policy;
            sh.index.put(key, &record.to_bytes())?;
            Ok(Lookup::Stored(Stored {
                head,
                info: infos.swap_remove(i),
                status: CacheStatus::Revalidated,
                fwd: Some(304),
            }))
        }
        Revalidated::Refetch => {
            // A 304 that does not match what is stored: fetch the whole body again.
            drop(body);
            let steps = decide::refetch_steps(Target::Whole, &sh.setup());
            Ok(miss_whole(sh, req, url, key, &steps, None)
                .await?
                .map_or(Lookup::Nothing(None), Lookup::Answer))
        }
        Revalidated::Replaced => {
            // Changed (or the origin ignored the condition): this answer replaces the stored one.
            let resp = Response::from_parts(head, body);
            let led = match sh.downloads.join_or_lead(key) {
                Role::Lead(led) => led,
                Role::Join(_) => return Ok(Lookup::Answer(passed(sh, resp, CacheStatus::Miss))),
            };
            lead_with(sh, req, url, &led, resp, CacheStatus::StaleChanged, None)
                .await
                .map(Lookup::Answer)
        }
    }
}

/// Revalidates the URL of `req` in the background, once at a time per URL: the same request
/// with `no-cache` goes through the cache (a 304 updates the record, a new answer replaces it),
/// and its answer is read to the end and dropped.
fn revalidate_later(sh: &Arc<Shared>, req: &http::request::Parts, key: &[u8]) {
    if !sh
        .revalidating
        .lock()
        .expect("revalidating lock")
        .insert(key.to_vec())
    {
        return;
    }
    let mut again = req.clone();
    again.method = Method::GET;
    // Its answers are for nobody: nothing is written to the client that caused it.
    again.extensions = http::Extensions::new();
    again.headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    again.headers.remove(http::header::RANGE);
    crate::conditional::strip(&mut again.headers);
    let (sh2, key) = (Arc::clone(sh), key.to_vec());
    // Boxed: this future is part of `get_parts`'s own.
    let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
        Box::pin(async move { get_parts(&sh2, &again).await });
    let sh3 = Arc::clone(sh);
    sh.tasks.spawn(async move {
        match fut.await {
            Ok(r) => {
                let mut body = r.into_body();
                while let Some(Ok(_)) = http_body_util::BodyExt::frame(&mut body).await {}
            }
            Err(e) => tracing::info!("revalidating in the background: {e}"),
        }
        sh3.revalidating
            .lock()
            .expect("revalidating lock")
            .remove(&key);
    });
}

/// Which of `record`'s variants answers `req` now.
fn reuse(record: &UrlRecord, req: &http::request::Parts) -> Reuse {
    let policies = record.variants.iter().map(|v| &v.policy);
    decide::reuse(req, policies, SystemTime::now())
}

/// A miss of a whole body, looked for in the order of `steps`. `None` when the download it
/// joined ended before its head could be used, or when the URL's record is no longer `seen`
/// (the record the lookup found wanting) once this request would lead a download: a download
/// kept its answer meanwhile, and the caller looks again.
async fn miss_whole(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    key: &[u8],
    steps: &[Step],
    seen: Option<&Option<Vec<u8>>>,
) -> Result<Option<Response<Body>>, GatewayError> {
    let mut led: Option<Led<'_>> = None;
    let mut wanting = None;
    for step in steps {
        match step {
            Step::PeerClaim => {
                if let Some(k) = crate::peered::claimed(sh, req, url).await? {
                    return Ok(Some(crate::known::stream_from_peers(sh, req, url, k)));
                }
            }
            Step::Coalesce => match sh.downloads.join_or_lead(key) {
                Role::Join(f) => return join(sh, req, &f, None).await,
                Role::Lead(l) => {
                    // A download may have been kept, and left the registry, since the lookup.
                    if seen.is_some_and(|s| sh.index.get(key).ok().as_ref() != Some(s)) {
                        l.abandon("kept meanwhile");
                        return Ok(None);
                    }
                    led = Some(l);
                }
            },
            Step::Elect => {
                let Some(l) = &led else { continue };
                // A peer gateway may be downloading it now, or about to: follow it, or lead.
                match crate::followed::elect(sh, req, url).await {
                    None => {}
                    Some(Ballot::Lead(w)) => wanting = Some(w),
                    Some(Ballot::Found(k)) => {
                        l.abandon("a peer has it now");
                        return Ok(Some(crate::known::stream_from_peers(sh, req, url, k)));
                    }
                    Some(Ballot::Follow(_, peer)) => {
                        if let Some(r) = crate::followed::follow(sh, req, url, l, peer).await? {
                            return Ok(Some(r));
                        }
                        // Not followed after all: download it ourselves.
                    }
                }
            }
            Step::Origin { vouch } => {
                let led = match led.take() {
                    Some(l) => l,
                    // A plan that did not register the download: do it now.
                    None => match sh.downloads.join_or_lead(key) {
                        Role::Join(f) => return join(sh, req, &f, None).await,
                        Role::Lead(l) => l,
                    },
                };
                return from_origin(sh, req, url, &led, *vouch, wanting).await;
            }
        }
    }
    Ok(None)
}

/// The last way of a whole miss: the origin's answer, spooled and kept when it may be; or, when
/// it vouches for the content with its content information, the content from peers.
async fn from_origin(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    led: &Led<'_>,
    vouch: bool,
    wanting: Option<engine::node::Wanting>,
) -> Result<Option<Response<Body>>, GatewayError> {
    // The client's own preconditions are answered here, from the whole response kept.
    let mut plain = req.clone();
    crate::conditional::strip(&mut plain.headers);
    if vouch {
        crate::vouched::ask(&mut plain.headers);
    }
    let resp = match sh
        .upstream
        .send_for(req, origin_request(&plain, empty()))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            led.abandon("the origin failed");
            return Err(e);
        }
    };
    if vouch && crate::vouched::is_info(&resp) {
        // The origin vouched for the content: its bytes come from peers.
        led.abandon("the origin sent content information");
        return match crate::vouched::vouched_for(sh, req, url, resp).await? {
            Some(k) => Ok(Some(crate::known::stream_from_peers(sh, req, url, k))),
            None => pass(sh, req, CacheStatus::Miss).await.map(Some),
        };
    }
    let status = CacheStatus::MissStored;
    lead_with(sh, req, url, led, resp, status, wanting)
        .await
        .map(Some)
}

/// A range of a body not stored, looked for in the order of `steps`: the blocks covering it
/// when the content is known (a peer's claim, or the origin's content information), else the
/// origin's answer passed back unstored.
async fn miss_range(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    steps: &[Step],
) -> Result<Response<Body>, GatewayError> {
    for step in steps {
        let known = match step {
            Step::PeerClaim => crate::peered::claimed(sh, req, url).await?,
            Step::Origin { vouch: true } => {
                let mut ask = req.clone();
                crate::vouched::ask(&mut ask.headers);
                let resp = sh.upstream.send(origin_request(&ask, empty())).await?;
                if !crate::vouched::is_info(&resp) {
                    // The origin answered the range itself.
                    return Ok(passed(sh, resp, CacheStatus::Miss));
                }
                crate::vouched::vouched_for(sh, req, url, resp).await?
            }
            Step::Origin { vouch: false } => break,
            Step::Coalesce | Step::Elect => None,
        };
        if let Some(k) = known {
            return crate::known::covering_blocks(sh, req, url, k).await;
        }
    }
    pass(sh, req, CacheStatus::Miss).await
}

/// Leads the download `led` registered with the origin's answer `resp`: spools and keeps it
/// when it is storable (and reads it back as it grows), else passes it through and lets waiting
/// clients ask the origin themselves. In a group whose peers are trusted the download is offered
/// to peer gateways (holding `wanting` until it ends).
async fn lead_with(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    led: &Led<'_>,
    resp: Response<Body>,
    status: CacheStatus,
    wanting: Option<engine::node::Wanting>,
) -> Result<Response<Body>, GatewayError> {
    let (head, body) = resp.into_parts();
    let now = SystemTime::now();
    let targeted = sh.setup().reverse;
    let Some(policy) = decide::storable(req, &head, sh.cfg.max_object, targeted, (now, now)) else {
        led.abandon("not storable");
        return Ok(passed(
            sh,
            Response::from_parts(head, body),
            CacheStatus::Miss,
        ));
    };
    let Ok(file) = spool::create(sh) else {
        // A full disk: served all the same.
        led.abandon("no spool");
        return Ok(passed(
            sh,
            Response::from_parts(head, body),
            CacheStatus::Miss,
        ));
    };
    let mut headers = head.headers.clone();
    headers::strip_hop_by_hop(&mut headers);
    let sel = selection(&req.headers, &headers);
    let spooled = Head {
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
    if let Err(source) = spool::start(sh, led, url, spooled, feed, share, file) {
        led.abandon("no spool");
        return Err(GatewayError::Spool {
            dir: sh.cfg.spool.clone(),
            source,
        });
    }
    match join(sh, req, led.flight(), Some(status)).await? {
        Some(r) => Ok(r),
        None => pass(sh, req, CacheStatus::Miss).await,
    }
}
