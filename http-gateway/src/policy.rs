//! RFC 9111 for one stored response, pure: what the gateway remembers of a response it keeps
//! ([`Policy`]: status, headers, the request fields its `Vary` names, when it was asked for and
//! received), and what follows from that: its freshness lifetime (§4.2.1, heuristics §4.2.2), its
//! age (§4.2.3), whether it answers a request (§4, §4.1, the request's directives §5.2.1), the
//! conditional request that revalidates it (§4.3.1), and how a `304` updates it (§4.3.4).
//! Whether a response may be stored at all is [`storable`] (§3, §3.5).
//!
//! Header parsing is [`crate::directives`]'s. What is read strictly, and why: a `Cache-Control`
//! directive given twice with different values, an `Expires` that is not an HTTP-date, and an
//! `Age` that is not one non-negative integer all make a response stale: it is revalidated,
//! never served on a guess (§4.2.1, §5.1, §5.3).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{AGE, AUTHORIZATION, DATE, ETAG, LAST_MODIFIED, VARY};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use serde::{Deserialize, Serialize};

use crate::directives::{self, Directives, Seconds};

/// The most heuristic freshness a response gets (Squid's default `refresh_pattern` allows three
/// days; a day keeps a branch office's view of a changing origin recent).
pub const MAX_HEURISTIC: u64 = 24 * 3600;

/// The device token this gateway answers to in `Surrogate-Control` (Edge Architecture 1.0):
/// in origin mode it says so to the backend in `Surrogate-Capability`
/// ([`SURROGATE_CAPABILITY`]), and obeys directives targeted at it.
pub const SURROGATE_TOKEN: &str = "pdist";

/// The `Surrogate-Capability` that origin mode sends.
pub const SURROGATE_CAPABILITY: &str = "pdist=\"Surrogate/1.0\"";

/// Fields a `304` does not update: they describe the stored body's bytes, which a `304` does
/// not send (`Content-Length`, RFC 9111 §3.2; the others by the same reasoning, as Squid and
/// the HTTP caching tests hold), or the validator it matched.
const NOT_UPDATED: [&str; 5] = [
    "content-length",
    "content-encoding",
    "content-md5",
    "content-range",
    "etag",
];

/// Status codes whose responses may be reused with heuristic freshness (RFC 9110 §15.1).
const HEURISTIC: [u16; 11] = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414];
const HEURISTIC_501: u16 = 501;

/// What the cache knows of a stored response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Its status code.
    status: u16,
    /// Its stored header fields, in order: lowercase names, values as Latin-1 (lossless).
    headers: Vec<(String, String)>,
    /// The fields its `Vary` names (lowercase) and the request's values of them.
    vary: Vec<(String, Option<String>)>,
    /// When the request that fetched it was sent, in milliseconds since the epoch.
    request_time: u64,
    /// When it was received, in milliseconds since the epoch.
    response_time: u64,
    /// Targeted fields (`CDN-Cache-Control`, `Surrogate-Control`) are obeyed (origin mode).
    #[serde(default)]
    targeted: bool,
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unstorable {
    /// Only GET responses are stored.
    #[error("not a GET")]
    Method,
    /// Interim, partial, not-modified or unknown status codes are not stored whole.
    #[error("status {0} is not stored")]
    Status(u16),
    /// `no-store` in the request or the response.
    #[error("no-store")]
    NoStore,
    /// `private`: for one user's cache only.
    #[error("private")]
    Private,
    /// The request carried credentials and the response did not allow sharing it (§3.5).
    #[error("authorization without public, s-maxage or must-revalidate")]
    Authorization,
    /// `Vary: *`: no later request can be known to match.
    #[error("Vary: *")]
    VaryAll,
    /// No explicit freshness and a status code not cacheable by default.
    #[error("no freshness information for status {0}")]
    NoFreshness(u16),
}

/// Whether `resp` to `req` may be stored by a shared cache (RFC 9111 §3, §3.5). `targeted`: the
/// gateway is the origin's own cache (origin mode), which obeys `CDN-Cache-Control` first.
pub fn storable(
    req: &http::request::Parts,
    resp: &http::response::Parts,
    targeted: bool,
) -> Result<(), Unstorable> {
    if req.method != Method::GET {
        return Err(Unstorable::Method);
    }
    let code = resp.status.as_u16();
    if !(200..600).contains(&code) || code == 206 || code == 304 {
        return Err(Unstorable::Status(code));
    }
    let cc = response_directives(&resp.headers, targeted);
    let req_cc = Directives::of(&req.headers, http::header::CACHE_CONTROL);
    // `must-understand` (§5.2.2.3): stored only with a status code whose caching rules this
    // cache knows, and then in spite of the `no-store` that older caches are sent with it.
    let must_understand = cc.has("must-understand");
    if must_understand && !understood(code) {
        return Err(Unstorable::Status(code));
    }
    if (cc.has("no-store") && !must_understand) || req_cc.has("no-store") {
        return Err(Unstorable::NoStore);
    }
    if cc.value("private").is_some_and(|v| v.is_none()) {
        return Err(Unstorable::Private);
    }
    if req.headers.contains_key(AUTHORIZATION)
        && !(cc.has("public") || cc.has("s-maxage") || cc.has("must-revalidate"))
    {
        return Err(Unstorable::Authorization);
    }
    if vary_names(&resp.headers).iter().any(|n| n == "*") {
        return Err(Unstorable::VaryAll);
    }
    let explicit = cc.has("public")
        || cc.has("max-age")
        || cc.has("s-maxage")
        || resp.headers.contains_key(http::header::EXPIRES);
    if !explicit && !heuristic_status(code) {
        return Err(Unstorable::NoFreshness(code));
    }
    Ok(())
}

/// The final status codes RFC 9110 defines, whose caching rules this cache follows.
fn understood(code: u16) -> bool {
    matches!(code, 200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505)
}

fn heuristic_status(code: u16) -> bool {
    HEURISTIC.contains(&code) || code == HEURISTIC_501
}

/// The directives that govern a response: when targeted, its `CDN-Cache-Control` (RFC 9213)
/// or else its `Surrogate-Control` directives for every surrogate or for this one (Edge
/// Architecture 1.0), if it has any; else its `Cache-Control`.
fn response_directives(h: &HeaderMap, targeted: bool) -> Directives {
    if targeted {
        if h.contains_key("cdn-cache-control") {
            return Directives::of(h, "cdn-cache-control");
        }
        let ours = Directives::targeted(h, "surrogate-control", SURROGATE_TOKEN);
        if !ours.is_empty() {
            return ours;
        }
    }
    Directives::of(h, http::header::CACHE_CONTROL)
}

/// The field names a `Vary` lists, lowercase.
fn vary_names(h: &HeaderMap) -> Vec<String> {
    directives::list(h, VARY)
        .into_iter()
        .map(|n| n.to_ascii_lowercase())
        .collect()
}

/// A request's value of a field: its lines joined, as a list is.
fn field_value(h: &HeaderMap, name: &str) -> Option<String> {
    let vals: Vec<String> = h.get_all(name).iter().map(latin1).collect();
    (!vals.is_empty()).then(|| vals.join(", "))
}

fn latin1(v: &HeaderValue) -> String {
    v.as_bytes().iter().map(|&b| b as char).collect()
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Which stored response answers a request, and how.
#[derive(Debug)]
pub enum Reuse {
    /// Fresh for this request: serve it under this head (`Age` set).
    Fresh(http::response::Parts),
    /// It matches, but may not be served without asking the origin: send this conditional
    /// request.
    Stale(http::request::Parts),
    /// Its `Vary` selection does not match this request.
    Mismatch,
}

impl Policy {
    /// The policy of `resp`, an answer to `req` sent at `request_time` and received at
    /// `response_time`. The caller has removed hop-by-hop fields; a response without `Date` gets
    /// one, the time it was received (RFC 9110 §6.6.1).
    pub fn new(
        req: &http::request::Parts,
        resp: &http::response::Parts,
        request_time: SystemTime,
        response_time: SystemTime,
        targeted: bool,
    ) -> Policy {
        let mut kept = resp.headers.clone();
        crate::headers::strip_hop_by_hop(&mut kept);
        let mut headers: Vec<(String, String)> = kept
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), latin1(v)))
            .collect();
        if !resp.headers.contains_key(DATE) {
            headers.push(("date".into(), httpdate::fmt_http_date(response_time)));
        }
        // `private="f"` and `no-cache="f"` name fields a shared cache does not keep (§5.2.2.4,
        // §5.2.2.7); the rest of the response may be reused.
        let cc = response_directives(&resp.headers, targeted);
        let mut dropped = cc.field_names("private");
        dropped.extend(cc.field_names("no-cache"));
        headers.retain(|(n, _)| !dropped.iter().any(|d| d.eq_ignore_ascii_case(n)));
        let vary = vary_names(&resp.headers)
            .into_iter()
            .map(|n| {
                let v = field_value(&req.headers, &n);
                (n, v)
            })
            .collect();
        Policy {
            status: resp.status.as_u16(),
            headers,
            vary,
            request_time: millis(request_time),
            response_time: millis(response_time.max(request_time)),
            targeted,
        }
    }

    /// Its status code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK)
    }

    /// Its stored header fields.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(self.headers.len());
        for (n, v) in &self.headers {
            let bytes: Vec<u8> = v.chars().map(|c| c as u32 as u8).collect();
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_bytes(&bytes),
            ) {
                h.append(n, v);
            }
        }
        h
    }

    /// Its headers and the directives that govern it, read once for a decision.
    fn read(&self) -> Read {
        let h = self.headers();
        let cc = response_directives(&h, self.targeted);
        Read { h, cc }
    }

    /// Its freshness lifetime in seconds, as a shared cache computes it (§4.2.1): `s-maxage`,
    /// `max-age`, `Expires` minus `Date`, or a tenth of the time since `Last-Modified` (capped at
    /// [`MAX_HEURISTIC`]) when the status code allows heuristics. Conflicting or invalid
    /// explicit values give 0.
    pub fn lifetime(&self) -> u64 {
        self.lifetime_of(&self.read())
    }

    fn lifetime_of(&self, Read { h, cc }: &Read) -> u64 {
        let from_cc = |name| match cc.seconds(name) {
            Seconds::Absent => None,
            Seconds::Valid(n) => Some(n),
            Seconds::Invalid => Some(0),
        };
        if let Some(n) = from_cc("s-maxage") {
            return n;
        }
        if let Some(n) = from_cc("max-age") {
            return n;
        }
        let date = self.date(h);
        if h.contains_key(http::header::EXPIRES) {
            return match directives::one_date(h, http::header::EXPIRES) {
                Some(exp) => secs_between(date, exp),
                None => 0,
            };
        }
        if !(heuristic_status(self.status) || cc.has("public")) {
            return 0;
        }
        match directives::one_date(h, LAST_MODIFIED) {
            Some(lm) => (secs_between(lm, date) / 10).min(MAX_HEURISTIC),
            None => 0,
        }
    }

    /// Its `Date`, or when it was received if that is missing or invalid.
    fn date(&self, h: &HeaderMap) -> SystemTime {
        directives::one_date(h, DATE).unwrap_or_else(|| at(self.response_time))
    }

    /// Its current age in seconds at `now` (§4.2.3), `None` when its `Age` cannot be read as one
    /// non-negative integer (then its age is unknown and it is stale).
    pub fn age(&self, now: SystemTime) -> Option<u64> {
        self.age_of(&self.headers(), now)
    }

    fn age_of(&self, h: &HeaderMap, now: SystemTime) -> Option<u64> {
        let age_value = match h.get_all(AGE).iter().count() {
            0 => 0,
            1 => directives::delta_seconds(h.get(AGE)?.as_bytes())?,
            _ => return None,
        };
        let response_time = at(self.response_time);
        let apparent = secs_between(self.date(h), response_time);
        let delay = self.response_time.saturating_sub(self.request_time) / 1000;
        let initial = apparent.max(age_value.saturating_add(delay));
        let resident = secs_between(response_time, now);
        Some(initial.saturating_add(resident))
    }

    /// Whether it may be served stale at all (§4.2.4): not under `must-revalidate`,
    /// `proxy-revalidate`, `s-maxage` or `no-cache`.
    pub fn may_serve_stale(&self) -> bool {
        stale_allowed(&self.read().cc)
    }

    /// The head to serve it under when its origin failed (§4.2.4), if it may be: it may be
    /// served stale at all ([`Policy::may_serve_stale`]) and is no staler than the response's
    /// or the request's `stale-if-error` (RFC 5861), or else `max_stale`, allow.
    pub fn stale_on_error(
        &self,
        req: &HeaderMap,
        now: SystemTime,
        max_stale: Duration,
    ) -> Option<http::response::Parts> {
        let r = self.read();
        if !stale_allowed(&r.cc) {
            return None;
        }
        let age = self.age_of(&r.h, now)?;
        let stale_for = age.saturating_sub(self.lifetime_of(&r));
        let window = |d: &Directives| match d.seconds("stale-if-error") {
            Seconds::Valid(n) => Some(n),
            _ => None,
        };
        let rcc = Directives::of(req, http::header::CACHE_CONTROL);
        let bound = window(&rcc)
            .or_else(|| window(&r.cc))
            .unwrap_or(max_stale.as_secs());
        (stale_for <= bound).then(|| self.head_from(r.h, age))
    }

    /// The head to serve it under, stale, while it is revalidated in the background (RFC 5861
    /// `stale-while-revalidate`), if it may be: it may be served stale at all, is no staler
    /// than the directive allows, and the request asks for nothing fresher (no `no-cache`,
    /// `max-age`, `min-fresh` or `Pragma: no-cache`).
    pub fn while_revalidating(
        &self,
        req: &HeaderMap,
        now: SystemTime,
    ) -> Option<http::response::Parts> {
        let r = self.read();
        let Seconds::Valid(window) = r.cc.seconds("stale-while-revalidate") else {
            return None;
        };
        let rcc = Directives::of(req, http::header::CACHE_CONTROL);
        let pragma = directives::list(req, http::header::PRAGMA)
            .iter()
            .any(|d| d.eq_ignore_ascii_case("no-cache"));
        if !stale_allowed(&r.cc)
            || pragma
            || ["no-cache", "max-age", "min-fresh"]
                .iter()
                .any(|d| rcc.has(d))
        {
            return None;
        }
        let age = self.age_of(&r.h, now)?;
        (age.saturating_sub(self.lifetime_of(&r)) <= window).then(|| self.head_from(r.h, age))
    }

    /// Whether the request's values of the fields its `Vary` names are those it was selected
    /// by (§4.1).
    pub fn matches(&self, req: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(n, v)| n != "*" && field_value(req, n) == *v)
    }

    /// Whether it answers `req` at `now` (§4): the `Vary` selection matches, and it is fresh
    /// enough for both its own and the request's directives (`no-cache`, `max-age`,
    /// `min-fresh`, `max-stale`; `Pragma: no-cache` when the request has no `Cache-Control`).
    pub fn reuse(&self, req: &http::request::Parts, now: SystemTime) -> Reuse {
        if !self.matches(&req.headers) {
            return Reuse::Mismatch;
        }
        let stale = || Reuse::Stale(self.revalidation(req));
        let r = self.read();
        let cc = &r.cc;
        let rcc = Directives::of(&req.headers, http::header::CACHE_CONTROL);
        let pragma = !req.headers.contains_key(http::header::CACHE_CONTROL)
            && directives::list(&req.headers, http::header::PRAGMA)
                .iter()
                .any(|d| d.eq_ignore_ascii_case("no-cache"));
        // A qualified `no-cache="f"` only kept `f` out of the store (see `new`).
        if cc.value("no-cache").is_some_and(|v| v.is_none()) || rcc.has("no-cache") || pragma {
            return stale();
        }
        let Some(age) = self.age_of(&r.h, now) else {
            return stale();
        };
        let life = self.lifetime_of(&r);
        // `max-age=0` asks for a response validated now, whatever part of a second old.
        if let Seconds::Valid(max) = rcc.seconds("max-age")
            && (max == 0 || age > max)
        {
            return stale();
        }
        if let Seconds::Valid(min) = rcc.seconds("min-fresh")
            && life.saturating_sub(age) < min
        {
            return stale();
        }
        let fresh = life > age;
        let stale_ok = !fresh
            && stale_allowed(cc)
            && match rcc.seconds("max-stale") {
                Seconds::Valid(n) => age - life <= n,
                Seconds::Invalid => rcc.value("max-stale").is_some_and(|v| v.is_none()),
                Seconds::Absent => false,
            };
        if fresh || stale_ok {
            Reuse::Fresh(self.head_from(r.h, age))
        } else {
            stale()
        }
    }

    /// The head to serve it under, `age` seconds old: its status and headers, `Age` set, `Date`
    /// as the origin sent it.
    pub fn head(&self, age: u64) -> http::response::Parts {
        self.head_from(self.headers(), age)
    }

    /// [`Policy::head`] with its headers already read.
    fn head_from(&self, headers: HeaderMap, age: u64) -> http::response::Parts {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = self.status();
        parts.headers = headers;
        let age = age.min(directives::MAX_DELTA);
        parts.headers.insert(
            AGE,
            HeaderValue::from_str(&age.to_string()).expect("digits"),
        );
        parts
    }

    /// The request that asks the origin whether it changed (§4.3.1): `req` without its own
    /// preconditions or range, with this response's validators.
    pub fn revalidation(&self, req: &http::request::Parts) -> http::request::Parts {
        let mut r = req.clone();
        r.method = Method::GET;
        crate::conditional::strip(&mut r.headers);
        r.headers.remove(http::header::RANGE);
        r.headers.remove(http::header::IF_RANGE);
        let h = self.headers();
        if let Some(etag) = h.get(ETAG) {
            r.headers.insert(http::header::IF_NONE_MATCH, etag.clone());
        }
        if let Some(lm) = h.get(LAST_MODIFIED) {
            r.headers
                .insert(http::header::IF_MODIFIED_SINCE, lm.clone());
        }
        r
    }

    /// Whether a `304` with headers `h` is about this response (§4.3.4): its strong entity tag
    /// matches, or, without one, its `Last-Modified`; a `304` naming no validator answers the
    /// conditional request this response's validators made.
    pub fn validated_by(&self, h: &HeaderMap) -> bool {
        let mine = self.headers();
        match (h.get(ETAG), mine.get(ETAG)) {
            (Some(theirs), Some(ours)) => {
                return !theirs.as_bytes().starts_with(b"W/") && theirs == ours;
            }
            (Some(_), None) => return false,
            _ => {}
        }
        match (h.get(LAST_MODIFIED), mine.get(LAST_MODIFIED)) {
            (Some(theirs), Some(ours)) => theirs == ours,
            (Some(_), None) => false,
            (None, _) => true,
        }
    }

    /// This response updated by a `304` (`h`, sent at `request_time`, received at
    /// `response_time`) that [`Policy::validated_by`] accepted: every field of the `304`
    /// replaces the stored ones of its name, except those that describe the stored bytes
    /// (`Content-Length`, `Content-Encoding`, `Content-MD5`, `Content-Range`, `ETag`), and the
    /// times are the `304`'s.
    pub fn updated(
        &self,
        h: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Policy {
        let mut next = self.clone();
        let mut incoming = h.clone();
        crate::headers::strip_hop_by_hop(&mut incoming);
        for name in NOT_UPDATED {
            incoming.remove(name);
        }
        let names: Vec<String> = incoming.keys().map(|n| n.as_str().to_owned()).collect();
        next.headers.retain(|(n, _)| !names.contains(n));
        next.headers.extend(
            incoming
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), latin1(v))),
        );
        if !incoming.contains_key(DATE) {
            next.headers.retain(|(n, _)| n != "date");
            next.headers
                .push(("date".into(), httpdate::fmt_http_date(response_time)));
        }
        next.request_time = millis(request_time);
        next.response_time = millis(response_time.max(request_time));
        next
    }
}

/// A stored response's headers and governing directives, read once for one decision.
struct Read {
    h: HeaderMap,
    cc: Directives,
}

/// Whether directives `cc` let a response be served stale at all (§4.2.4): not under
/// `must-revalidate`, `proxy-revalidate`, `s-maxage` or `no-cache`.
fn stale_allowed(cc: &Directives) -> bool {
    ![
        "must-revalidate",
        "proxy-revalidate",
        "s-maxage",
        "no-cache",
    ]
    .iter()
    .any(|d| cc.has(d))
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Whole seconds from `a` to `b`, 0 if `b` is earlier.
fn secs_between(a: SystemTime, b: SystemTime) -> u64 {
    b.duration_since(a).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
