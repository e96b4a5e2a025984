//! The cache's decisions, pure: from a request, the stored responses' policies, what the gateway
//! is set up to ask (trusted peers, origins for content information) and the clock, what to do.
//! RFC 9111 for one stored response is [`crate::policy`]'s; this module decides which stored
//! response answers, whether an origin's answer may be stored, what a revalidation's answer
//! means, and the one order in which a miss looks for the body.
//!
//! Nothing here does I/O: the `cache` module carries the plans out, and the tests below are one
//! row per case.

use std::time::SystemTime;

use http::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE, SET_COOKIE};
use http::{HeaderMap, Method, StatusCode};

use crate::policy::{self, Policy};

/// What the decisions depend on besides the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Peers' claims are believed and peer gateways' downloads followed (a group with a secret).
    pub trust_peers: bool,
    /// Some peer of the group is alive now.
    pub peers: bool,
    /// Origins are asked for content information (`x-pdist-info`).
    pub origin_info: bool,
    /// Origin mode (the backend is the origin; it is not asked for content information).
    pub reverse: bool,
}

/// Which stored response may answer a request.
#[derive(Debug)]
pub enum Reuse {
    /// Stored response `variant` is fresh for this request: serve it under `head`.
    Fresh {
        /// Its index among the policies given.
        variant: usize,
        /// The response head to serve (`Age` set).
        head: http::response::Parts,
    },
    /// Stored response `variant` matches but may not be served without asking the origin:
    /// send `request` (its validators added).
    Stale {
        /// Its index among the policies given.
        variant: usize,
        /// The conditional request to send.
        request: http::request::Parts,
    },
    /// None answers this request.
    None,
}

/// The stored response that may answer `req` (a GET, or a HEAD asked as a GET), given their
/// policies in order: the first fresh one; else the first stale one whose `Vary` selection
/// matches, to revalidate.
pub fn reuse<'a>(
    req: &http::request::Parts,
    policies: impl IntoIterator<Item = &'a Policy>,
    now: SystemTime,
) -> Reuse {
    let mut stale = None;
    for (variant, policy) in policies.into_iter().enumerate() {
        match policy.reuse(req, now) {
            policy::Reuse::Fresh(head) => return Reuse::Fresh { variant, head },
            policy::Reuse::Stale(request) if stale.is_none() => {
                stale = Some(Reuse::Stale { variant, request });
            }
            policy::Reuse::Stale(_) | policy::Reuse::Mismatch => {}
        }
    }
    stale.unwrap_or(Reuse::None)
}

/// What a stale response's revalidation found.
#[derive(Debug)]
pub enum Revalidated {
    /// Not modified: serve the stored body under the updated policy and head.
    Unchanged(Box<Policy>, http::response::Parts),
    /// A 304 that does not match what is stored: fetch the body again.
    Refetch,
    /// Changed (or the origin ignored the condition): its answer replaces the stored one.
    Replaced,
}

/// What the origin's answer `resp` to the conditional request made from `policy`'s stored
/// response means, the request sent at `sent` and the answer received at `now`.
pub fn revalidated(
    policy: &Policy,
    resp: &http::response::Parts,
    sent: SystemTime,
    now: SystemTime,
) -> Revalidated {
    if resp.status != StatusCode::NOT_MODIFIED {
        return Revalidated::Replaced;
    }
    if !policy.validated_by(&resp.headers) {
        return Revalidated::Refetch;
    }
    let next = policy.updated(&resp.headers, sent, now);
    let head = next.head(next.age(now).unwrap_or(0));
    Revalidated::Unchanged(Box::new(next), head)
}

/// Whether an origin's answer `resp` to `req` (sent at `sent`, received at `now`) may be
/// stored, and its policy: an answer to a GET (a 200, or another status RFC 9111 lets a cache
/// keep: with explicit freshness, or cacheable by default like a 404), not a range, not longer than `max_object` by its
/// `Content-Length`, not one client's ([`one_clients`]), and storable by RFC 9111 in a shared
/// cache ([`policy::storable`]; `targeted` in origin mode).
pub fn storable(
    req: &http::request::Parts,
    resp: &http::response::Parts,
    max_object: u64,
    targeted: bool,
    (sent, now): (SystemTime, SystemTime),
) -> Option<Policy> {
    if resp.headers.contains_key(CONTENT_RANGE) || one_clients(&resp.headers) {
        return None;
    }
    let too_long = resp
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max_object);
    if too_long || policy::storable(req, resp, targeted).is_err() {
        return None;
    }
    Some(Policy::new(req, resp, sent, now, targeted))
}

/// Whether a response with these headers belongs to the one client it answered, whatever its
/// caching directives: it sets a cookie (RFC 9111 §3, §7.3), and a shared cache that stored
/// it, or took it from a peer, would hand the cookie to others. nginx and Varnish do not store
/// it either.
pub fn one_clients(headers: &HeaderMap) -> bool {
    headers.contains_key(SET_COOKIE)
}

/// What a miss is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The whole body: it is kept when it may be.
    Whole,
    /// A range of a body not stored: only the blocks covering it, when the content is known;
    /// else the origin's answer is passed back unstored.
    Range,
}

/// One way a miss looks for the body, in the order of [`Plan::Miss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A trusted peer's claim that the URL is some content, confirmed with the origin (a
    /// conditional request, no body): the content then comes from peers.
    PeerClaim,
    /// A download of the URL running here: read it as it grows. Else this request leads one,
    /// and the steps after this are its.
    Coalesce,
    /// Peer gateways missing the URL now elect one to download it; the others follow its
    /// download (or take it from a peer that has it meanwhile).
    Elect,
    /// The origin. With `vouch`, also asked for content information: if it sends that, the
    /// bytes come from peers, checked against it. Else its body is spooled and kept (a whole
    /// body) or passed back (a range).
    Origin {
        /// Ask for content information (`x-pdist-info`).
        vouch: bool,
    },
}

/// What to do about a request that nothing stored answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Pass it to the origin and its answer back, unstored.
    Pass,
    /// Look for the body in these ways, in order.
    Miss {
        /// The whole body or a range.
        target: Target,
        /// The ways, in order; the last always answers.
        steps: Vec<Step>,
    },
}

/// Where the body of a request nothing stored answers comes from: a HEAD is passed on; a GET
/// with `Range` looks for the content by a peer's claim, then by the origin's content
/// information; a whole GET looks for a trusted peer's claim, joins a download running here,
/// takes part in the peer gateways' election, and asks the origin (for content information
/// too, unless in origin mode).
pub fn miss(req: &http::request::Parts, setup: &Setup) -> Plan {
    if req.method != Method::GET {
        return Plan::Pass;
    }
    let target = if req.headers.contains_key(RANGE) {
        Target::Range
    } else {
        Target::Whole
    };
    let mut steps = Vec::with_capacity(4);
    if setup.trust_peers && setup.peers {
        steps.push(Step::PeerClaim);
    }
    steps.extend(refetch_steps(target, setup));
    Plan::Miss { target, steps }
}

/// The steps of a miss after asking peers for claims: those of a body fetched again after a
/// revalidation that did not match ([`Revalidated::Refetch`]).
pub fn refetch_steps(target: Target, setup: &Setup) -> Vec<Step> {
    let vouch = setup.origin_info && !setup.reverse;
    match target {
        Target::Whole if setup.trust_peers && setup.peers => {
            vec![Step::Coalesce, Step::Elect, Step::Origin { vouch }]
        }
        Target::Whole => vec![Step::Coalesce, Step::Origin { vouch }],
        Target::Range => vec![Step::Origin { vouch }],
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
