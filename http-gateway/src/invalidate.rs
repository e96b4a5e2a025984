//! Invalidation after unsafe requests (RFC 9111 §4.4): a non-error answer to a method that may
//! change the origin's state (anything but GET, HEAD, OPTIONS and TRACE) makes the cache forget
//! the target URL, and the URLs its `Location` and `Content-Location` name on the same origin
//! (only there: a response must not make the cache forget another origin's responses). The
//! URLs are pure ([`targets`]); forgetting them (`forget`) removes their records from the
//! index, the claims offered to peers, and any download in flight from being kept.

use http::header::{CONTENT_LOCATION, LOCATION};
use http::{HeaderMap, Method, StatusCode, Uri};

use crate::record::index_key;
use crate::state::Shared;

/// Whether `m` is safe (RFC 9110 §9.2.1): it asks for nothing to change.
pub fn is_safe(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The URLs (as the cache keys them) that the answer `status`/`resp` to a `method` request
/// for `target` invalidates. `alias`: another authority that names the same origin (in origin
/// mode, the one clients use, as their `Host` says), whose URLs are rewritten to `target`'s.
pub fn targets(
    method: &Method,
    target: &Uri,
    alias: Option<&str>,
    status: StatusCode,
    resp: &HeaderMap,
) -> Vec<String> {
    if is_safe(method) || !(status.is_success() || status.is_redirection()) {
        return Vec::new();
    }
    let (Some(scheme), Some(authority)) = (target.scheme_str(), target.authority()) else {
        return Vec::new();
    };
    let origin = format!("{scheme}://{authority}");
    let mut out = vec![format!("{origin}{}", path_and_query(target))];
    for name in [LOCATION, CONTENT_LOCATION] {
        let Some(v) = resp.get(name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let Some(u) = resolve(target, v.trim()) else {
            continue;
        };
        let same = u.scheme_str() == Some(scheme)
            && u.authority().is_some_and(|a| {
                a.as_str().eq_ignore_ascii_case(authority.as_str())
                    || alias.is_some_and(|al| a.as_str().eq_ignore_ascii_case(al))
            });
        let url = format!("{origin}{}", path_and_query(&u));
        if same && !out.contains(&url) {
            out.push(url);
        }
    }
    out
}

fn path_and_query(u: &Uri) -> &str {
    u.path_and_query().map_or("/", |p| p.as_str())
}

/// `reference` (a URI reference) resolved against `base` (RFC 3986 §5.2, without dot segments:
/// enough to compare origins and paths).
fn resolve(base: &Uri, reference: &str) -> Option<Uri> {
    if reference.contains("://") {
        return reference.parse().ok();
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    let joined = if let Some(rest) = reference.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if reference.starts_with('/') {
        format!("{scheme}://{authority}{reference}")
    } else if reference.starts_with('?') {
        format!("{scheme}://{authority}{}{reference}", base.path())
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
        format!("{scheme}://{authority}{dir}/{reference}")
    };
    joined.parse().ok()
}

/// Forgets `urls`: their records, their claims, and the keeping of their downloads in flight.
/// An index that fails to forget is logged (the next fetch of the URL replaces its record).
pub(crate) fn forget(sh: &Shared, urls: &[String]) {
    for url in urls {
        let key = index_key(url);
        sh.downloads.invalidate(&key);
        if let Err(e) = sh.index.delete(&key) {
            tracing::warn!("{url}: not invalidated: {e}");
        }
        if sh.cfg.trust_peers
            && let Err(e) = crate::index::withdraw_claim(sh.index.as_ref(), &sh.urls.name_key(url))
        {
            tracing::warn!("{url}: its claim not withdrawn: {e}");
        }
        tracing::debug!("{url}: invalidated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn which_urls_an_answer_invalidates() {
        let t: Uri = "http://o.example:8000/a/b?q=1".parse().unwrap();
        let ok = StatusCode::OK;
        type Row<'a> = (
            &'a str,
            Method,
            StatusCode,
            HeaderMap,
            Option<&'a str>,
            Vec<&'a str>,
        );
        let rows: Vec<Row> = vec![
            ("a GET: nothing", Method::GET, ok, h(&[]), None, vec![]),
            ("OPTIONS is safe", Method::OPTIONS, ok, h(&[]), None, vec![]),
            (
                "a failed POST: nothing",
                Method::POST,
                StatusCode::INTERNAL_SERVER_ERROR,
                h(&[]),
                None,
                vec![],
            ),
            (
                "a POST: its target",
                Method::POST,
                ok,
                h(&[]),
                None,
                vec!["http://o.example:8000/a/b?q=1"],
            ),
            (
                "an unknown method too",
                Method::from_bytes(b"M-SEARCH").unwrap(),
                StatusCode::SEE_OTHER,
                h(&[]),
                None,
                vec!["http://o.example:8000/a/b?q=1"],
            ),
            (
                "Location and Content-Location on the same origin",
                Method::PUT,
                ok,
                h(&[("location", "/x"), ("content-location", "c")]),
                None,
                vec![
                    "http://o.example:8000/a/b?q=1",
                    "http://o.example:8000/x",
                    "http://o.example:8000/a/c",
                ],
            ),
            (
                "not another origin's",
                Method::DELETE,
                ok,
                h(&[
                    ("location", "http://other.example/x"),
                    ("content-location", "https://o.example:8000/y"),
                ]),
                None,
                vec!["http://o.example:8000/a/b?q=1"],
            ),
            (
                "the clients' name for the origin (origin mode)",
                Method::POST,
                ok,
                h(&[("location", "http://gw.example:7480/x")]),
                Some("gw.example:7480"),
                vec!["http://o.example:8000/a/b?q=1", "http://o.example:8000/x"],
            ),
        ];
        for (what, m, status, resp, alias, want) in rows {
            assert_eq!(targets(&m, &t, alias, status, &resp), want, "{what}");
        }
    }
}
