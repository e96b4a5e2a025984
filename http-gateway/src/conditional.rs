//! Conditional requests answered by the cache (RFC 9110 §13.2.2): a client that already holds
//! a response (curl's `--etag-compare`, wget's `-N`, a browser's revalidation) gets a `304`
//! from the stored or downloading response instead of its body; a failed `If-Match` or
//! `If-Unmodified-Since` gets a `412`. Pure: the request's and the response's headers in, the
//! outcome out.
//!
//! The origin never sees a client's own preconditions on a miss ([`strip`]): the gateway needs
//! the whole answer to keep, and evaluates them itself.

use std::time::SystemTime;

use http::header::{
    ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
};
use http::{HeaderMap, Method};

/// What the preconditions say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Answer the request as if it were unconditional.
    Proceed,
    /// `304 Not Modified`.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

/// Evaluates `req`'s preconditions against a response with headers `resp`, in RFC 9110's
/// order (§13.2.2), for a GET or HEAD.
pub fn evaluate(method: &Method, req: &HeaderMap, resp: &HeaderMap) -> Precondition {
    let etag = header(resp, &ETAG);
    let modified = header(resp, &LAST_MODIFIED).and_then(date);
    if let Some(cond) = header(req, &IF_MATCH) {
        if !list_matches(cond, etag, true) {
            return Precondition::Failed;
        }
    } else if let Some(since) = header(req, &IF_UNMODIFIED_SINCE).and_then(date)
        && modified.is_none_or(|m| m > since)
    {
        return Precondition::Failed;
    }
    let get = method == Method::GET || method == Method::HEAD;
    if let Some(cond) = header(req, &IF_NONE_MATCH) {
        if list_matches(cond, etag, false) {
            return if get {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if get
        && let Some(since) = header(req, &IF_MODIFIED_SINCE).and_then(date)
        && modified.is_some_and(|m| m <= since)
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// The answer `req`'s preconditions call for instead of the body (`304` or `412`), with the
/// response's `headers` as the client's (no `Content-Length`, and no `Content-Type` on a 412),
/// if any.
pub fn answer_instead(
    req: &http::request::Parts,
    headers: &HeaderMap,
) -> Option<http::Response<crate::body::Body>> {
    let code = match evaluate(&req.method, &req.headers, headers) {
        Precondition::Proceed => return None,
        Precondition::NotModified => http::StatusCode::NOT_MODIFIED,
        Precondition::Failed => http::StatusCode::PRECONDITION_FAILED,
    };
    let mut r = http::Response::new(crate::body::empty());
    *r.status_mut() = code;
    *r.headers_mut() = headers.clone();
    r.headers_mut().remove(http::header::CONTENT_LENGTH);
    if code == http::StatusCode::PRECONDITION_FAILED {
        r.headers_mut().remove(http::header::CONTENT_TYPE);
    }
    Some(r)
}

/// Removes a client's preconditions (and `Range`, which `If-Range` qualifies) from a request
/// the gateway sends to fill its cache.
pub fn strip(h: &mut HeaderMap) {
    for name in [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
        http::header::RANGE,
    ] {
        h.remove(name);
    }
}

fn header<'a>(h: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s).ok()
}

/// Whether `*` or a comma-separated list of entity tags matches `etag`: strongly (neither tag
/// weak, same opaque tag) or weakly (same opaque tag).
fn list_matches(cond: &str, etag: Option<&str>, strong: bool) -> bool {
    let Some(etag) = etag else {
        return false;
    };
    if cond == "*" {
        return true;
    }
    let (weak, tag) = split_weak(etag);
    if strong && weak {
        return false;
    }
    cond.split(',').map(str::trim).any(|c| {
        let (cw, ct) = split_weak(c);
        ct == tag && !(strong && cw)
    })
}

fn split_weak(t: &str) -> (bool, &str) {
    match t.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    const LM: &str = "Tue, 24 Nov 2026 03:00:00 GMT";

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    fn resp() -> HeaderMap {
        h(&[("etag", "\"abc\""), ("last-modified", LM)])
    }

    fn eval(req: &[(&'static str, &str)]) -> Precondition {
        evaluate(&Method::GET, &h(req), &resp())
    }

    #[test]
    fn if_none_match_is_weak() {
        use Precondition::*;
        assert_eq!(eval(&[("if-none-match", "\"abc\"")]), NotModified);
        assert_eq!(eval(&[("if-none-match", "W/\"abc\"")]), NotModified);
        assert_eq!(eval(&[("if-none-match", "\"x\", \"abc\"")]), NotModified);
        assert_eq!(eval(&[("if-none-match", "*")]), NotModified);
        assert_eq!(eval(&[("if-none-match", "\"x\"")]), Proceed);
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            eval(&[("if-none-match", "\"x\""), ("if-modified-since", LM)]),
            Proceed
        );
        let post = evaluate(&Method::DELETE, &h(&[("if-none-match", "*")]), &resp());
        assert_eq!(post, Failed);
    }

    #[test]
    fn if_modified_since_compares_dates() {
        use Precondition::*;
        assert_eq!(eval(&[("if-modified-since", LM)]), NotModified);
        let later = "Wed, 25 Nov 2026 03:00:00 GMT";
        let earlier = "Mon, 23 Nov 2026 03:00:00 GMT";
        assert_eq!(eval(&[("if-modified-since", later)]), NotModified);
        assert_eq!(eval(&[("if-modified-since", earlier)]), Proceed);
        assert_eq!(eval(&[("if-modified-since", "yesterday")]), Proceed);
        // No Last-Modified: never "not modified" by date.
        let bare = evaluate(&Method::GET, &h(&[("if-modified-since", later)]), &h(&[]));
        assert_eq!(bare, Proceed);
    }

    #[test]
    fn if_match_is_strong_and_first() {
        use Precondition::*;
        assert_eq!(eval(&[("if-match", "\"abc\"")]), Proceed);
        assert_eq!(eval(&[("if-match", "W/\"abc\"")]), Failed);
        assert_eq!(eval(&[("if-match", "\"x\"")]), Failed);
        assert_eq!(
            eval(&[("if-match", "\"x\""), ("if-none-match", "\"abc\"")]),
            Failed
        );
        let weak = h(&[("etag", "W/\"abc\"")]);
        let r = evaluate(&Method::GET, &h(&[("if-match", "\"abc\"")]), &weak);
        assert_eq!(r, Failed);
        assert_eq!(
            eval(&[("if-unmodified-since", "Mon, 23 Nov 2026 03:00:00 GMT")]),
            Failed
        );
        assert_eq!(eval(&[("if-unmodified-since", LM)]), Proceed);
    }

    #[test]
    fn strip_leaves_other_fields() {
        let mut m = h(&[
            ("if-none-match", "\"a\""),
            ("if-modified-since", LM),
            ("range", "bytes=0-1"),
            ("accept", "*/*"),
        ]);
        strip(&mut m);
        assert_eq!(m.len(), 1);
        assert!(m.contains_key("accept"));
    }

    proptest! {
        /// Without preconditions every response is sent; with its own ETag it never is.
        #[test]
        fn own_etag_always_matches(tag in "[a-zA-Z0-9]{1,20}", weak in any::<bool>()) {
            let etag = if weak { format!("W/\"{tag}\"") } else { format!("\"{tag}\"") };
            let resp = h(&[("etag", &etag)]);
            prop_assert_eq!(evaluate(&Method::GET, &h(&[]), &resp), Precondition::Proceed);
            let req = h(&[("if-none-match", &etag)]);
            prop_assert_eq!(evaluate(&Method::GET, &req, &resp), Precondition::NotModified);
        }
    }
}
