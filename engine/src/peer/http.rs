//! The peer protocol over HTTP/1.1 (hyper): [`serve`] runs a node's endpoint, [`HttpTransport`]
//! calls other nodes'. One route, `POST /pdist/v1`; request bodies are capped at
//! [`crate::wire::MAX_REQUEST_LEN`] and connections that break the protocol are closed.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    BodyInner, BoxFuture, ChanBody, PEER_PATH, PeerAddr, PeerResponse, PeerService, ReplyBody,
    Transport, TransportError,
};
use crate::wire::MAX_REQUEST_LEN;

type Body = BoxBody<Bytes, io::Error>;

/// Most peer connections served at once.
const MAX_CONNECTIONS: usize = 256;

/// Serves the peer protocol on `listener` until `stop` is cancelled; then lets connections
/// finish what they are sending and returns. Every connection task is tracked by `tasks`.
pub async fn serve(
    listener: TcpListener,
    service: Arc<PeerService>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let conns = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_address = crate::limit::Shares::new(MAX_CONNECTIONS / 8);
    loop {
        let (stream, from) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("peer endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&conns).try_acquire_owned() else {
            // Too many connections: refuse this one (the peer retries or uses others).
            drop(stream);
            continue;
        };
        // One machine may hold an eighth of them (nodes on this machine share its address).
        let share = if from.ip().is_loopback() {
            None
        } else {
            match per_address.take(from.ip()) {
                Some(s) => Some(s),
                None => {
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = Arc::clone(&service);
        let stop = stop.clone();
        tasks.spawn(async move {
            let _permit = (permit, share);
            let handler = service_fn(move |req| answer(Arc::clone(&svc), from, req));
            let conn = http1::Builder::new()
                .max_buf_size(64 * 1024)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), handler);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

async fn answer(
    svc: Arc<PeerService>,
    from: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::POST || req.uri().path() != PEER_PATH {
        return Ok(plain(StatusCode::NOT_FOUND, true));
    }
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        Limited::new(req.into_body(), MAX_REQUEST_LEN).collect(),
    );
    let body = match read.await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, true)),
        Err(_) => return Ok(plain(StatusCode::REQUEST_TIMEOUT, true)),
    };
    let resp = svc.handle(from, &body);
    let code = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code != StatusCode::OK {
        // A peer that breaks the protocol (or is not in our group) is cut off.
        return Ok(plain(code, code.is_client_error()));
    }
    let body: Body = match resp.body.inner {
        BodyInner::Full(b) => Full::new(b.unwrap_or_default())
            .map_err(|never| match never {})
            .boxed(),
        BodyInner::Chan(rx) => BodyExt::boxed(ChanBody(rx)),
        BodyInner::Http(_) => unreachable!("the service never answers with an HTTP body"),
    };
    Ok(Response::builder()
        .header("content-type", "application/octet-stream")
        .body(body)
        .expect("static headers are valid"))
}

fn plain(code: StatusCode, close: bool) -> Response<Body> {
    let mut b = Response::builder().status(code);
    if close {
        b = b.header("connection", "close");
    }
    b.body(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed(),
    )
    .expect("static headers are valid")
}

/// Calls other nodes over HTTP/1.1, pooling connections (several per peer, so requests to one
/// peer run in parallel).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpTransport {
    /// A transport whose connects and reply headers time out after `timeout`.
    pub fn new(timeout: Duration) -> HttpTransport {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(timeout));
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        HttpTransport { client, timeout }
    }
}

impl Transport for HttpTransport {
    fn call(
        &self,
        peer: PeerAddr,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<PeerResponse, TransportError>> {
        Box::pin(async move {
            let req = Request::post(format!("http://{peer}{PEER_PATH}"))
                .header("content-type", "application/octet-stream")
                .body(Full::new(Bytes::from(request)))
                .expect("a socket address makes a valid URI");
            let resp = tokio::time::timeout(self.timeout, self.client.request(req))
                .await
                .map_err(|_| TransportError::Timeout { peer })?
                .map_err(|e| TransportError::Io {
                    peer,
                    source: io::Error::other(e),
                })?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(TransportError::Status { peer, status });
            }
            Ok(PeerResponse {
                status,
                body: ReplyBody::http(peer, resp.into_body()),
            })
        })
    }
}
