//! The control API's server: HTTP/1.1 over a Unix socket in the data directory, each route
//! answered from the node with the types of [`super::api`]. `POST /v1/fetch` streams JSON lines
//! and closing the connection cancels the fetch.

use std::convert::Infallible;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use super::super::Node;
use super::api::{
    ErrorKind, Failure, FetchDone, FetchLine, FetchRequest, PublishRequest, Published, Removed,
    RmRequest, SeedRequest, VerifyRequest,
};
use crate::content::{HashOptions, Ticket};
use crate::fetch::{FetchError, FetchOptions};
use crate::origin::OriginClient;
use crate::peer::ChanBody;

/// Largest request body the control API reads.
const MAX_BODY: usize = 1 << 20;

type Body = BoxBody<Bytes, io::Error>;

/// Runs the control API on `path` until the node stops.
pub fn serve(node: Node, path: PathBuf) -> io::Result<()> {
    // A socket file left by a node that died: the store's lock says no node runs here now.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    // Only the node's user may drive it.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    let stop = node.stopping();
    node.clone().spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => break,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!("control socket: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let n = node.clone();
            let stop = stop.clone();
            node.spawn(async move {
                let svc = service_fn(move |req| route(n.clone(), req));
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = stop.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                    }
                }
            });
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

fn json(code: StatusCode, v: &impl Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(v).expect("API types serialise");
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(bytes))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("static headers are valid")
}

fn ok(v: &impl Serialize) -> Answer {
    Ok(json(StatusCode::OK, v))
}

fn refused(f: Failure) -> Response<Body> {
    json(f.kind.status(), &f)
}

type Answer = Result<Response<Body>, Failure>;

fn ticket(s: &str) -> Result<Ticket, Failure> {
    s.parse::<Ticket>()
        .map_err(|e| Failure::new(ErrorKind::Usage, format!("{s:?} is not a ticket: {e}")))
}

async fn body_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Failure> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| Failure::new(ErrorKind::Usage, format!("reading the request: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| Failure::new(ErrorKind::Usage, format!("bad request: {e}")))
}

async fn route(node: Node, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let r = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/v1/status") => match node.status() {
            Ok(s) => ok(&s),
            Err(e) => Err(Failure::of_store(&e)),
        },
        (Method::GET, "/v1/peers") => ok(&node.peer_views()),
        (Method::GET, "/v1/ls") => match node.list() {
            Ok(l) => ok(&l),
            Err(e) => Err(Failure::of_store(&e)),
        },
        (Method::POST, "/v1/publish") => publish(node, req).await,
        (Method::POST, "/v1/rm") => rm(node, req).await,
        (Method::POST, "/v1/verify") => verify(node, req).await,
        (Method::POST, "/v1/seed") => seed(node, req).await,
        (Method::POST, "/v1/fetch") => fetch(node, req).await,
        (Method::GET, p) if p.starts_with("/v1/content/") => {
            content(node, &p["/v1/content/".len()..])
        }
        _ => Err(Failure::new(ErrorKind::Usage, format!("no route {path}"))),
    };
    Ok(r.unwrap_or_else(refused))
}

async fn publish(node: Node, req: Request<Incoming>) -> Answer {
    let r: PublishRequest = body_json(req).await?;
    let rows = tokio::task::spawn_blocking(move || {
        let mut rows = Vec::new();
        for p in &r.paths {
            let (info, new) = node
                .publish(p, r.copy, &HashOptions::default())
                .map_err(|e| Failure::new(ErrorKind::of_publish(&e), e))?;
            rows.push(Published::new(&info, p, new, r.copy));
        }
        Ok(rows)
    })
    .await
    .map_err(|e| Failure::new(ErrorKind::Failure, e))??;
    ok(&rows)
}

async fn rm(node: Node, req: Request<Incoming>) -> Answer {
    let r: RmRequest = body_json(req).await?;
    let mut rows = Vec::new();
    for t in &r.tickets {
        let id = ticket(t)?.content_id();
        let removed = node.remove(&id).map_err(|e| Failure::of_store(&e))?;
        rows.push(Removed {
            ticket: t.clone(),
            removed,
        });
    }
    ok(&rows)
}

/// Checks the store on a blocking thread (every block is read and hashed) while the node goes
/// on serving.
async fn verify(node: Node, req: Request<Incoming>) -> Answer {
    let r: VerifyRequest = body_json(req).await?;
    let only = r.ticket.as_deref().map(ticket).transpose()?;
    let rows = tokio::task::spawn_blocking(move || {
        let id = only.map(|t| t.content_id());
        node.verify(id.as_ref()).map_err(|e| match e {
            crate::store::StoreError::UnknownContent { id } => Failure::new(
                ErrorKind::Unavailable,
                format!("{} is not in the store", id.ticket()),
            ),
            e => Failure::of_store(&e),
        })
    })
    .await
    .map_err(|e| Failure::new(ErrorKind::Failure, e))??;
    ok(&rows)
}

async fn seed(node: Node, req: Request<Incoming>) -> Answer {
    let r: SeedRequest = body_json(req).await?;
    let id = ticket(&r.ticket)?.content_id();
    ok(&node.seed(id, r.on.as_deref()).await)
}

fn line(l: &FetchLine) -> Bytes {
    let mut v = serde_json::to_vec(l).expect("API types serialise");
    v.push(b'\n');
    Bytes::from(v)
}

async fn fetch(node: Node, req: Request<Incoming>) -> Answer {
    let r: FetchRequest = body_json(req).await?;
    let id = ticket(&r.ticket)?.content_id();
    let origin = match &r.origin {
        Some(u) => Some(
            OriginClient::new(u, Duration::from_secs(30))
                .map_err(|e| Failure::new(ErrorKind::Usage, e))?,
        ),
        None => None,
    };
    if !r.peers.is_empty() {
        for p in &r.peers {
            let addr = tokio::net::lookup_host(p)
                .await
                .ok()
                .and_then(|mut a| a.find(std::net::SocketAddr::is_ipv4))
                .ok_or_else(|| {
                    Failure::new(ErrorKind::Usage, format!("peer {p:?} is not HOST:PORT"))
                })?;
            node.peers().add_static(addr);
        }
        node.probe_now().await;
    }
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(256);
    let cancel = node.stopping().child_token();
    let ev_tx = tx.clone();
    let ev_cancel = cancel.clone();
    let events: crate::fetch::Events = Arc::new(move |e| {
        // A client that went away (Ctrl-C) cancels its fetch; a slow one loses progress lines.
        let l = line(&FetchLine::from(&e));
        if let Err(mpsc::error::TrySendError::Closed(_)) = ev_tx.try_send(Ok(l)) {
            ev_cancel.cancel();
        }
    });
    let n = node.clone();
    node.spawn(async move {
        let opts = FetchOptions {
            origin,
            ..FetchOptions::default()
        };
        let watch = {
            let tx = tx.clone();
            let cancel = cancel.clone();
            async move {
                tx.closed().await;
                cancel.cancel();
            }
        };
        let output = r.output.as_deref();
        let result = tokio::select! {
            r = n.fetch_into(id, output, opts, events, cancel.clone()) => r,
            _ = watch => Err(FetchError::Cancelled),
        };
        let last = match result {
            Ok((info, report)) => {
                FetchLine::Done(FetchDone::new(&id, info.layout().content_len(), &report))
            }
            Err(e) => FetchLine::Error(Failure::of_fetch(&e)),
        };
        let _ = tx.send(Ok(line(&last))).await;
    });
    Ok(Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(BodyExt::boxed(ChanBody(rx)))
        .expect("static headers are valid"))
}

fn content(node: Node, t: &str) -> Answer {
    let id = ticket(t)?.content_id();
    let info = node
        .store()
        .content_info(&id)
        .map_err(|e| Failure::of_store(&e))?
        .ok_or_else(|| {
            Failure::new(
                ErrorKind::Unavailable,
                format!("content {id} is not in the store"),
            )
        })?;
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let store = Arc::clone(node.store());
    let stop = node.stopping();
    let lease = node.lease(id);
    node.spawn(async move {
        let _ = tokio::task::spawn_blocking(move || {
            let _lease = lease;
            let mut w = ChanWriter { tx, stop };
            if let Err(e) = crate::fetch::write_content(store.as_ref(), &info, &mut w) {
                let _ = w.tx.blocking_send(Err(io::Error::other(e)));
            }
        })
        .await;
    });
    Ok(Response::builder()
        .header("content-type", "application/octet-stream")
        .body(BodyExt::boxed(ChanBody(rx)))
        .expect("static headers are valid"))
}

/// A `Write` that sends what it gets into a body channel.
struct ChanWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    stop: tokio_util::sync::CancellationToken,
}

impl io::Write for ChanWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stop.is_cancelled() {
            return Err(io::Error::other("node stopping"));
        }
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
