//! Talking to origins: one client whose answers must begin in time, the request
//! a proxy sends on (hop-by-hop fields removed, `Via` added), and the head of an origin's answer
//! as the client gets it.

use std::sync::Arc;
use std::time::Duration;

use engine::origin::HttpOrigin;
use http::request::Parts;
use http::{Request, Response, Version};

use crate::body::Body;
use crate::error::GatewayError;
use crate::headers::{self, CacheStatus};

/// The client to origins: every request goes through the origin seam ([`HttpOrigin`]: hyper's
/// pooled client, or a twin in tests), and its answer's head must come in time.
#[derive(Debug, Clone)]
pub struct Upstream {
    origin: Arc<dyn HttpOrigin>,
    timeout: Duration,
}

impl Upstream {
    /// A client through `origin` whose answers' heads must come within `timeout`.
    pub fn new(origin: Arc<dyn HttpOrigin>, timeout: Duration) -> Upstream {
        Upstream { origin, timeout }
    }

    /// Sends `req`; its head must come within the timeout (the body may take as long as it
    /// takes).
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Body>, GatewayError> {
        let uri = req.uri().clone();
        match tokio::time::timeout(self.timeout, self.origin.send(req)).await {
            Err(_) => Err(GatewayError::Timeout { uri }),
            Ok(Err(source)) => Err(GatewayError::Unreachable { uri, source }),
            Ok(Ok(r)) => Ok(r),
        }
    }
}

impl Upstream {
    /// [`Upstream::send`] for the client request `client`: interim (1xx) answers that come
    /// before the final one are written to that client as they come ([`crate::interim`]).
    pub(crate) async fn send_for(
        &self,
        client: &Parts,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, GatewayError> {
        let socket = client
            .extensions
            .get::<crate::interim::ClientSocket>()
            .filter(|_| crate::interim::may_forward(client.version, &client.headers))
            .cloned();
        let Some(socket) = socket else {
            return self.send(req).await;
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(crate::interim::MAX_INTERIM);
        hyper::ext::on_informational(&mut req, move |r| {
            if crate::interim::forwarded(r.status()) {
                let _ = tx.try_send(crate::interim::head_bytes(r.status(), r.headers()));
            }
        });
        let answer = self.send(req);
        tokio::pin!(answer);
        loop {
            tokio::select! {
                biased;
                Some(head) = rx.recv() => {
                    if !socket.write_interim(&head).await {
                        tracing::debug!("an interim answer was not passed on");
                    }
                }
                r = &mut answer => {
                    // Those that came with the final answer go before it.
                    while let Ok(head) = rx.try_recv() {
                        socket.write_interim(&head).await;
                    }
                    return r;
                }
            }
        }
    }
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
