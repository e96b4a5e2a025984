//! Origin-vouched content information: on a miss, a gateway asks the origin for the URL's
//! content information as well as its body (pdist's `Accept-Encoding: x-pdist-info`, which
//! origin mode answers once it has hashed the body). An origin that has it sends the
//! information instead of the body; the gateway then takes the bytes from whichever peers hold
//! that content, each block checked against what the origin vouched for, so no claim of a peer
//! needs believing and an open group shares as safely as a private one. Blocks no peer sends
//! come from the origin by range. An origin that does not speak it sends the body, which is
//! cached like any miss. What it finds is the content the URL is ([`Known`]); fetching and
//! serving it is [`crate::known`]'s.

use std::sync::Arc;

use engine::content::native;
use engine::store::Origin;
use http::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, TRANSFER_ENCODING, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::Body;
use crate::error::GatewayError;
use crate::headers::PDIST_INFO_CODING;
use crate::known::{Found, Known};
use crate::state::Shared;

/// Adds pdist's content-information coding to a request for the origin.
pub(crate) fn ask(h: &mut HeaderMap) {
    let v = match h.get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok()) {
        Some(v) if !v.trim().is_empty() => format!("{v}, {PDIST_INFO_CODING}"),
        _ => PDIST_INFO_CODING.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&v) {
        h.insert(ACCEPT_ENCODING, v);
    }
}

/// Whether the origin answered with content information instead of the body.
pub(crate) fn is_info(resp: &Response<Body>) -> bool {
    resp.status() == StatusCode::OK
        && resp.headers().get(CONTENT_ENCODING).is_some_and(|v| {
            v.as_bytes()
                .eq_ignore_ascii_case(PDIST_INFO_CODING.as_bytes())
        })
}

/// The head of the body's response, from the head of the information's: the coding, our
/// headers and the `Vary` origin mode added are taken off, the body's length put on.
pub(crate) fn body_head(h: &HeaderMap, len: u64) -> HeaderMap {
    let mut out = h.clone();
    for name in [CONTENT_ENCODING, CONTENT_RANGE, TRANSFER_ENCODING] {
        out.remove(name);
    }
    for name in ["pdist-ticket", "pdist-content-length", "cache-status"] {
        out.remove(name);
    }
    let mut vary: Vec<HeaderValue> = h.get_all(VARY).iter().cloned().collect();
    if vary
        .last()
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"accept-encoding"))
    {
        vary.pop();
    }
    out.remove(VARY);
    for v in vary {
        out.append(VARY, v);
    }
    out.insert(CONTENT_LENGTH, len.into());
    out
}

/// The content the origin vouched for in `resp`, checked and its information stored.
pub(crate) async fn vouched_for(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    url: &str,
    resp: Response<Body>,
) -> Result<Option<Known>, GatewayError> {
    let (mut head, body) = resp.into_parts();
    let bytes = match crate::body::read_to_end(body, native::MAX_NATIVE_LEN).await {
        Ok(b) => b,
        Err(e) => {
            tracing::info!("{url}: the origin's content information did not arrive: {e}");
            return Ok(None);
        }
    };
    let info = match tokio::task::spawn_blocking(move || native::decode_content_info(&bytes))
        .await
        .map_err(GatewayError::task)?
    {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!("{url}: the origin's content information is bad: {e}");
            return Ok(None);
        }
    };
    let len = info.layout().content_len();
    let said = |k: &str| head.headers.get(k).and_then(|v| v.to_str().ok());
    let ticket = info.id().ticket().to_string();
    if said("pdist-ticket").is_some_and(|t| t != ticket)
        || said("pdist-content-length").is_some_and(|l| l != len.to_string())
    {
        tracing::warn!("{url}: the origin's headers disagree with its content information");
        return Ok(None);
    }
    head.headers = body_head(&head.headers, len);
    let now = std::time::SystemTime::now();
    let Some(policy) = crate::decide::storable(
        req,
        &head,
        sh.cfg.max_object,
        sh.setup().reverse,
        (now, now),
    ) else {
        return Ok(None);
    };
    let store = Arc::clone(sh.node.store());
    let (info, name) = (Arc::new(info), url.to_string());
    let info2 = Arc::clone(&info);
    tokio::task::spawn_blocking(move || store.put_content(&info2, &name, Origin::Fetched))
        .await
        .map_err(GatewayError::task)??;
    tracing::info!("{url}: the origin vouched for {ticket}; from peers");
    let found = Found {
        id: info.id(),
        len,
        fwd: 200,
        detail: "origin-vouched",
    };
    Ok(Some(Known {
        found,
        policy,
        head,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ask_adds_the_coding() {
        let mut h = HeaderMap::new();
        ask(&mut h);
        assert_eq!(h[ACCEPT_ENCODING], "x-pdist-info");
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        ask(&mut h);
        assert_eq!(h[ACCEPT_ENCODING], "gzip, x-pdist-info");
    }

    #[test]
    fn body_head_undoes_what_origin_mode_adds() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("x-pdist-info"));
        h.insert("pdist-ticket", HeaderValue::from_static("t"));
        h.insert("pdist-content-length", HeaderValue::from_static("9"));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("120"));
        h.insert("etag", HeaderValue::from_static("\"v\""));
        h.append(VARY, HeaderValue::from_static("Accept-Language"));
        h.append(VARY, HeaderValue::from_static("Accept-Encoding"));
        let b = body_head(&h, 9);
        assert_eq!(b[CONTENT_LENGTH], "9");
        assert_eq!(b["etag"], "\"v\"");
        assert!(b.get(CONTENT_ENCODING).is_none() && b.get("pdist-ticket").is_none());
        let vary: Vec<_> = b.get_all(VARY).iter().collect();
        assert_eq!(vary, ["Accept-Language"]);
    }
}
