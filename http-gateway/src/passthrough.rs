//! What the cache does not handle, passed through: other methods forwarded to the origin with
//! their bodies streamed both ways (`CONNECT` tunnels are [`crate::tunnel`]'s); what a
//! successful unsafe one changed is forgotten ([`crate::invalidate`]).

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::{Body, Credit, counted};
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
    alias: Option<&str>,
) -> Result<Response<Body>, GatewayError> {
    let (parts, body) = req.into_parts();
    let body = http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(
        body,
        |e| -> crate::body::BoxError { e.into() },
    ));
    let resp = sh
        .upstream
        .send_for(&parts, origin_request(&parts, body))
        .await?;
    sh.metrics.request(status);
    let (mut head, body) = resp.into_parts();
    let stale =
        crate::invalidate::targets(&parts.method, &parts.uri, alias, head.status, &head.headers);
    crate::invalidate::forget(sh, &stale);
    let code = head.status.as_u16();
    client_head(&mut head.headers, head.version, status, Some(code));
    Ok(Response::from_parts(
        head,
        counted(body, sh.metrics.clone(), Credit::Origin),
    ))
}
