//! Talking to origins: one pooled HTTP/1.1 client, the request a proxy sends on (hop-by-hop
//! fields removed, `Via` added), plain forwarding of what is not cached (any method, bodies
//! streamed both ways), and `CONNECT` tunnels, passed through untouched.

use std::time::Duration;

use http::request::Parts;
use http::{HeaderValue, Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::body::{Body, Credit, counted, empty};
use crate::error::GatewayError;
use crate::gateway::Shared;
use crate::headers::{self, CacheStatus};

/// The pooled client to origins.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    timeout: Duration,
}

impl Upstream {
    /// A client whose connects and response heads must come within `timeout`.
    pub fn new(timeout: Duration) -> Upstream {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(timeout));
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        Upstream { client, timeout }
    }

    /// Sends `req`; its head must come within the timeout (the body may take as long as it
    /// takes).
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, GatewayError> {
        let host = req.uri().authority().map_or("?".into(), |a| a.to_string());
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(GatewayError::Timeout { host }),
            Ok(Err(e)) => Err(GatewayError::Unreachable {
                host,
                reason: error_chain(&e),
            }),
            Ok(Ok(r)) => Ok(r),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The request to send to the origin for a client's request head: same method, URL and
/// end-to-end fields; hop-by-hop fields removed; `Via` added.
pub fn origin_request(parts: &Parts, body: Body) -> Request<Body> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = Version::HTTP_11;
    let mut h = parts.headers.clone();
    headers::strip_hop_by_hop(&mut h);
    headers::add_via(&mut h, parts.version);
    *req.headers_mut() = h;
    req
}

/// Prepares an origin's response head for the client: hop-by-hop fields removed, `Via` and our
/// `Cache-Status` added.
pub fn client_head(
    h: &mut http::HeaderMap,
    version: Version,
    status: CacheStatus,
    fwd: Option<u16>,
) {
    headers::strip_hop_by_hop(h);
    headers::add_via(h, version);
    headers::add_cache_status(h, &status.entry(fwd, None));
}

/// Passes a request the cache does not handle on to the origin, and its answer back, bodies
/// streamed both ways.
pub(crate) async fn forward(
    sh: &Shared,
    req: Request<Incoming>,
    status: CacheStatus,
) -> Result<Response<Body>, GatewayError> {
    let (parts, body) = req.into_parts();
    let body = http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(
        body,
        |e| -> crate::body::BoxError { e.into() },
    ));
    let resp = sh.upstream.send(origin_request(&parts, body)).await?;
    sh.metrics.request(status);
    let (mut head, body) = resp.into_parts();
    let code = head.status.as_u16();
    client_head(&mut head.headers, head.version, status, Some(code));
    Ok(Response::from_parts(
        head,
        counted(body, sh.metrics.clone(), Credit::Origin),
    ))
}

/// Opens a `CONNECT` tunnel: connects to the target first (so a failure is a clear 502), then
/// answers 200 and copies bytes both ways until either side closes.
pub(crate) async fn connect(
    sh: &Shared,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let Some(target) = req.uri().authority().map(|a| a.to_string()) else {
        return Err(GatewayError::BadRequest {
            reason: "CONNECT needs host:port".into(),
        });
    };
    if req.uri().port_u16().is_none() {
        return Err(GatewayError::BadRequest {
            reason: format!("CONNECT {target}: no port"),
        });
    }
    let mut upstream = match tokio::time::timeout(
        sh.cfg.origin_timeout,
        tokio::net::TcpStream::connect(&target),
    )
    .await
    {
        Err(_) => return Err(GatewayError::Timeout { host: target }),
        Ok(Err(e)) => {
            return Err(GatewayError::Unreachable {
                host: target,
                reason: e.to_string(),
            });
        }
        Ok(Ok(s)) => s,
    };
    sh.metrics.request(CacheStatus::Bypass);
    let stop = sh.stop.clone();
    sh.tasks.spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(up) => {
                let mut client = TokioIo::new(up);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    _ = stop.cancelled() => {}
                }
            }
            Err(e) => tracing::debug!("CONNECT {target}: upgrade failed: {e}"),
        }
    });
    let mut r = Response::new(empty());
    r.headers_mut()
        .insert(http::header::VIA, HeaderValue::from_static("1.1 pdist"));
    Ok(r)
}
