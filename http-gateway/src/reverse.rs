//! Origin mode (`pdist gateway --reverse URL`), BranchCache's content-server role: requests
//! pass through to the backend, and GET answers are cached like the forward proxy's. A client
//! that asks for content information instead of the body gets it once the body is stored:
//!
//! * pdist's own negotiation: `Accept-Encoding: x-pdist-info` is answered with
//!   `Content-Encoding: x-pdist-info`, the content information in pdist's native format as the
//!   body, and `Pdist-Ticket` / `Pdist-Content-Length` headers;
//! * MS-PCCRTP for BranchCache clients: `Accept-Encoding: peerdist` with `X-P2P-PeerDist` is
//!   answered with `Content-Encoding: peerdist`, MS-PCCRC V1 content information (a `Range`
//!   selects the segments it touches, through V1's offset fields) and
//!   `X-P2P-PeerDist: Version=…, ContentLength=…`.
//!
//! The first request for content not yet hashed gets the body (which is hashed and stored on
//! the way) and the hint `X-P2P-PeerDistEx: MakeHashRequest=true` / `Pdist-Info: pending`.

use std::sync::Arc;

use engine::content::native;
use engine::pccrc::v1::ContentInfoV1;
use engine::pccrc::v2::{ContentInfoV2, hash_reader_v2};
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, RANGE, VARY};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;

use crate::body::{Body, full};
use crate::cache::{self, Lookup};
use crate::error::GatewayError;
pub use crate::headers::PDIST_INFO_CODING;
use crate::headers::{self, CacheStatus};
use crate::range::{self, RangePlan, Validators};
use crate::record::index_key;
use crate::state::Shared;

/// What a client asks for instead of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    /// pdist's native content information.
    Native,
    /// MS-PCCRTP: PCCRC V1, or V2 when the client allows it (PeerDist 1.1 with
    /// `MaxContentInformation=2.0`), with the client's PeerDist version echoed.
    PeerDist { version: String, v2: bool },
}

fn codings(h: &http::HeaderMap) -> Vec<String> {
    h.get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

fn wanted(h: &http::HeaderMap) -> Option<Want> {
    let c = codings(h);
    if c.iter().any(|t| t == PDIST_INFO_CODING) {
        return Some(Want::Native);
    }
    let pd = h.get("x-p2p-peerdist")?.to_str().ok()?;
    if !c.iter().any(|t| t == "peerdist") || pd.contains("MissingDataRequest=true") {
        return None;
    }
    let version = pd
        .split(',')
        .find_map(|kv| kv.trim().strip_prefix("Version="))
        .unwrap_or("1.0")
        .trim()
        .to_string();
    let v2 = version == "1.1"
        && h.get("x-p2p-peerdistex")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ex| {
                ex.split(',')
                    .filter_map(|kv| kv.trim().strip_prefix("MaxContentInformation="))
                    .any(|v| v.trim() == "2.0")
            });
    Some(Want::PeerDist { version, v2 })
}

/// Answers a request in origin mode. As the origin's own cache (a surrogate) it tells the
/// backend so (`Surrogate-Capability`), and keeps `Surrogate-Control`, which is for it alone,
/// from clients.
pub(crate) async fn handle(
    sh: &Arc<Shared>,
    backend: &Uri,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    req.headers_mut().append(
        "surrogate-capability",
        HeaderValue::from_static(crate::policy::SURROGATE_CAPABILITY),
    );
    let mut r = answer(sh, backend, req).await?;
    r.headers_mut().remove("surrogate-control");
    Ok(r)
}

/// [`handle`]'s answer, before `Surrogate-Control` is removed.
async fn answer(
    sh: &Arc<Shared>,
    backend: &Uri,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let uri = format!(
        "{}://{}{pq}",
        backend.scheme_str().unwrap_or("http"),
        backend.authority().map_or("", |a| a.as_str())
    );
    *req.uri_mut() = uri.parse()?;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        // Clients name the origin by this gateway's address: their URLs are the backend's.
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        return crate::passthrough::forward(sh, req, CacheStatus::Bypass, host.as_deref()).await;
    }
    let (mut parts, _) = req.into_parts();
    let Some(want) = wanted(&parts.headers) else {
        return cache::get_parts(sh, &parts).await;
    };
    // The plain request (the body's), whose stored answer the information describes.
    let client_range = parts.headers.remove(RANGE);
    let plain: Vec<String> = codings(&parts.headers)
        .into_iter()
        .filter(|t| t != PDIST_INFO_CODING && t != "peerdist")
        .collect();
    parts.headers.remove(ACCEPT_ENCODING);
    if !plain.is_empty()
        && let Ok(v) = HeaderValue::from_str(&plain.join(", "))
    {
        parts.headers.insert(ACCEPT_ENCODING, v);
    }
    parts.headers.remove("x-p2p-peerdist");
    parts.headers.remove("x-p2p-peerdistex");
    let url = parts.uri.to_string();
    match cache::lookup(sh, &parts, &url, &index_key(&url)).await? {
        Lookup::Stored(s)
            if s.head.status == StatusCode::OK
                && s.head.headers.get(CONTENT_ENCODING).is_none() =>
        {
            let v2 = match want {
                Want::PeerDist { v2: true, .. } => match v2_info(sh, &s.info) {
                    Some(v2) => Some(v2),
                    // Being hashed for V2: the body meanwhile, and the hint to ask again.
                    None => return Ok(pending(s.respond(sh, &parts).await, &want)),
                },
                _ => None,
            };
            Ok(info_response(sh, &parts, s, &want, client_range, v2))
        }
        Lookup::Stored(s) => Ok(s.respond(sh, &parts).await),
        Lookup::Answer(r) => Ok(pending(r, &want)),
        Lookup::Nothing(_) => Ok(pending(cache::get_parts(sh, &parts).await?, &want)),
    }
}

/// Most contents whose V2 information is kept in memory.
const V2_KEPT: usize = 64;

/// `info`'s content's V2 information (FastCDC segments, truncated SHA-512), if it has been
/// computed; else it starts computing it in the background (once per content) and says `None`.
fn v2_info(sh: &Arc<Shared>, info: &Arc<engine::ContentInfo>) -> Option<Arc<ContentInfoV2>> {
    let id = info.id();
    {
        let mut kept = sh.v2.lock().expect("v2 lock");
        match kept.get(&id) {
            Some(Some(v2)) => return Some(Arc::clone(v2)),
            Some(None) => return None,
            None => {}
        }
        if kept.len() >= V2_KEPT {
            kept.retain(|_, v| v.is_none());
        }
        kept.insert(id, None);
    }
    let (sh2, info) = (Arc::clone(sh), Arc::clone(info));
    let lease = sh.node.lease(id);
    sh.tasks.spawn(async move {
        let _lease = lease;
        let (sh3, info2) = (Arc::clone(&sh2), Arc::clone(&info));
        let r = tokio::task::spawn_blocking(move || {
            let reader = engine::fetch::ContentReader::new(sh3.node.store().as_ref(), &info2);
            hash_reader_v2(
                std::io::BufReader::with_capacity(1 << 20, reader),
                sh3.node.secret(),
            )
        })
        .await;
        let mut kept = sh2.v2.lock().expect("v2 lock");
        match r {
            Ok(Ok(v2)) => {
                kept.insert(id, Some(Arc::new(v2)));
            }
            Ok(Err(e)) => {
                tracing::warn!("V2 content information of {}: {e}", id.ticket());
                kept.remove(&id);
            }
            Err(e) => {
                tracing::warn!("V2 content information of {}: {e}", id.ticket());
                kept.remove(&id);
            }
        }
    });
    None
}

/// The body is on its way and being hashed: say so, so the client asks again later.
fn pending(mut r: Response<Body>, want: &Want) -> Response<Body> {
    if r.status() != StatusCode::OK {
        return r;
    }
    let (k, v) = match want {
        Want::Native => ("pdist-info", "pending"),
        Want::PeerDist { .. } => ("x-p2p-peerdistex", "MakeHashRequest=true"),
    };
    r.headers_mut().insert(k, HeaderValue::from_static(v));
    r
}

fn info_response(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    s: cache::Stored,
    want: &Want,
    client_range: Option<HeaderValue>,
    v2: Option<Arc<ContentInfoV2>>,
) -> Response<Body> {
    let info = &s.info;
    let len = info.layout().content_len();
    let mut head = s.head;
    let h = &mut head.headers;
    headers::strip_hop_by_hop(h);
    headers::add_via(h, req.version);
    headers::add_cache_status(
        h,
        &CacheStatus::Hit.entry(None, Some("content-information")),
    );
    h.remove(CONTENT_RANGE);
    h.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    sh.metrics.request(CacheStatus::Hit);
    head.status = StatusCode::OK;
    let body = match want {
        Want::Native => {
            h.insert(
                CONTENT_ENCODING,
                HeaderValue::from_static(PDIST_INFO_CODING),
            );
            h.insert(
                "pdist-ticket",
                HeaderValue::from_str(&info.id().ticket().to_string()).expect("ASCII"),
            );
            h.insert("pdist-content-length", len.into());
            native::encode_content_info(info)
        }
        Want::PeerDist { version, .. } => {
            // A range selects the segments it touches (the offset fields say where it starts
            // and ends).
            let mut range = None;
            if let Some(r) = client_range {
                let mut rh = http::HeaderMap::new();
                rh.insert(RANGE, r);
                if let RangePlan::Parts(p) = range::plan(&rh, len, Validators::default())
                    && p.len() == 1
                {
                    head.status = StatusCode::PARTIAL_CONTENT;
                    h.insert(
                        CONTENT_RANGE,
                        HeaderValue::from_str(&range::content_range(&p[0], len)).expect("ASCII"),
                    );
                    range = Some(p[0].clone());
                }
            }
            let encoded = match &v2 {
                Some(v2) => match range {
                    Some(r) => v2
                        .slice(r.start, r.end - r.start)
                        .map(|v| v.encode())
                        .map_err(crate::body::BoxError::from),
                    None => Ok(v2.encode()),
                },
                None => ContentInfoV1::from_content_info(info, range)
                    .map(|v| v.encode())
                    .map_err(crate::body::BoxError::from),
            };
            let encoded = match encoded {
                Ok(v) => v,
                Err(e) => return GatewayError::Encode(e).into_response(),
            };
            h.insert(CONTENT_ENCODING, HeaderValue::from_static("peerdist"));
            let v = if version == "1.1" { "1.1" } else { "1.0" };
            h.insert(
                "x-p2p-peerdist",
                HeaderValue::from_str(&format!("Version={v}, ContentLength={len}")).expect("ASCII"),
            );
            encoded
        }
    };
    h.insert(CONTENT_LENGTH, body.len().into());
    if req.method == Method::HEAD {
        return Response::from_parts(head, crate::body::empty());
    }
    Response::from_parts(head, full(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut m = http::HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn negotiation() {
        assert_eq!(wanted(&h(&[("accept-encoding", "gzip")])), None);
        assert_eq!(
            wanted(&h(&[("accept-encoding", "gzip, x-pdist-info")])),
            Some(Want::Native)
        );
        assert_eq!(
            wanted(&h(&[
                ("accept-encoding", "gzip, PeerDist"),
                ("x-p2p-peerdist", "Version=1.1"),
                (
                    "x-p2p-peerdistex",
                    "MinContentInformation=1.0, MaxContentInformation=2.0"
                ),
            ])),
            Some(Want::PeerDist {
                version: "1.1".into(),
                v2: true
            })
        );
        // peerdist without the PeerDist header, or a missing-data fallback, wants the body.
        assert_eq!(wanted(&h(&[("accept-encoding", "peerdist")])), None);
        assert_eq!(
            wanted(&h(&[
                ("accept-encoding", "peerdist"),
                ("x-p2p-peerdist", "Version=1.1, MissingDataRequest=true"),
            ])),
            None
        );
    }
}
