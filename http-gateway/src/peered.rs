//! A miss's first way: LAN peers' claims. A gateway that lacks a URL asks its group's peers for
//! the claim filed under the URL's name key ([`crate::record`]) and confirms the claimed
//! validator with the origin (a conditional request, which sends no body when it holds). What it
//! finds is the content the URL is ([`Known`]); fetching and serving it is [`crate::known`]'s.
//!
//! Trust: a claim is believed only from peers of a group with its own secret
//! ([`crate::gateway::GatewayConfig::trust_peers`]). Every block is checked against the content
//! information, which is checked against the claimed ticket, so a peer can make a client receive
//! only the bytes of the content it named; a group member could name other content for a URL,
//! which is why the open group's claims are never believed. (Following a peer gateway's
//! download in progress, [`crate::followed`], needs more trust: no content ID binds its bytes.)

use std::sync::Arc;
use std::time::SystemTime;

use http::StatusCode;
use http::header::{
    ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
    RANGE,
};

use crate::body::empty;
use crate::decide::Revalidated;
use crate::error::GatewayError;
use crate::known::{Found, Known};
use crate::policy::{self, Policy};
use crate::record::Claim;
use crate::state::Shared;
use crate::upstream::origin_request;

/// What a trusted peer says `url` is, once the origin confirmed the claimed validator.
pub(crate) async fn claimed(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
) -> Result<Option<Known>, GatewayError> {
    if sh.node.peers().fetch_peers().is_empty() {
        return Ok(None);
    }
    let open = |peer, sealed: &[u8]| match Claim::open(&sh.urls, url, sealed) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::info!("peer {peer}: ignoring its record of {url}: {e}");
            None
        }
    };
    let Some((peer, claim)) = sh.node.ask_name(sh.urls.name_key(url), open).await else {
        return Ok(None);
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
    Ok(Some(Known {
        found,
        policy,
        head,
    }))
}

/// Confirms with the origin that the answer a peer has for `url`, whose headers are `stored`,
/// still holds: a conditional request on its validator, answered 304 (no body). The policy and
/// head to serve it under; `None` if it changed, has no validator, or may not be stored.
pub(crate) async fn confirm(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    stored: http::HeaderMap,
) -> Result<Option<(Policy, http::response::Parts)>, GatewayError> {
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
    let sent = SystemTime::now();
    let resp = sh.upstream.send(cond).await?;
    if resp.status() != StatusCode::NOT_MODIFIED {
        tracing::debug!("{url}: the origin did not confirm a peer's answer");
        return Ok(None);
    }
    let now = SystemTime::now();
    let (answer, _) = resp.into_parts();
    let (mut claimed, ()) = http::Response::new(()).into_parts();
    claimed.headers = stored;
    let targeted = sh.setup().reverse;
    let base = Policy::new(req, &claimed, sent, now, targeted);
    let Revalidated::Unchanged(policy, head) =
        crate::decide::revalidated(&base, &answer, sent, now)
    else {
        return Ok(None);
    };
    claimed.headers = policy.headers();
    if policy::storable(req, &claimed, targeted).is_err()
        || crate::decide::one_clients(&head.headers)
    {
        return Ok(None);
    }
    Ok(Some((*policy, head)))
}
