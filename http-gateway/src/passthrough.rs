//! What the cache does not handle, passed through: other methods forwarded to the origin with
//! their bodies streamed both ways, and `CONNECT` tunnels (HTTPS), whose bytes are copied
//! untouched.

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::body::{Body, Credit, counted, empty};
use crate::error::GatewayError;
use crate::headers::CacheStatus;
use crate::state::Shared;
use crate::upstream::{client_head, origin_request};

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
    let uri = req.uri().clone();
    let (Some(target), Some(_)) = (uri.authority().map(|a| a.to_string()), uri.port_u16()) else {
        return Err(GatewayError::BadConnect { uri });
    };
    let mut upstream = match tokio::time::timeout(
        sh.cfg.origin_timeout,
        tokio::net::TcpStream::connect(&target),
    )
    .await
    {
        Err(_) => return Err(GatewayError::Timeout { uri }),
        Ok(Err(e)) => {
            return Err(GatewayError::Unreachable {
                uri,
                source: Box::new(e),
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
