//! Origin mode (`pdist gateway --reverse URL`): requests pass through to the backend.
//! (Content information negotiation lands next.)

use std::sync::Arc;

use http::{Request, Response, Uri};
use hyper::body::Incoming;

use crate::body::Body;
use crate::error::GatewayError;
use crate::gateway::Shared;
use crate::headers::CacheStatus;

/// Answers a request in origin mode.
pub(crate) async fn handle(
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
    *req.uri_mut() = uri.parse().map_err(|e| GatewayError::BadRequest {
        reason: format!("{uri}: {e}"),
    })?;
    crate::upstream::forward(sh, req, CacheStatus::Bypass).await
}
