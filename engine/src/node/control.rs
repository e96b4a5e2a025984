//! The local control API: how `pdist publish/fetch/ls/rm/peers/status/seed` talk to a running
//! node. HTTP/1.1 with JSON bodies over a Unix socket in the data directory (`node.sock`), so
//! only users who may open the data directory can drive the node; no TCP port is opened.
//!
//! `POST /v1/fetch` answers with a stream of JSON lines (progress events, then `done` or
//! `error`); closing the connection cancels the fetch. Errors carry a `kind` that the CLI maps
//! to exit codes; [`ErrorKind::status`] is the one place they map to HTTP statuses.

use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use super::Node;
use crate::content::{HashOptions, Ticket};
use crate::fetch::{FetchError, FetchEvent, FetchOptions, OriginClient, OriginError, Source};
use crate::peer::ChanBody;
use crate::store::StoreError;

/// The socket's file name in the data directory.
pub const SOCKET_NAME: &str = "node.sock";
/// Largest request body the control API reads.
const MAX_BODY: usize = 1 << 20;

type Body = BoxBody<Bytes, io::Error>;

/// What kind of failure an error is (for exit codes and HTTP statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad arguments.
    Usage,
    /// Content nobody reachable has.
    Unavailable,
    /// Bytes or content information that do not verify.
    Data,
    /// A missing input file.
    NoInput,
    /// Disk or network I/O.
    Io,
    /// Anything else.
    Failure,
}

impl ErrorKind {
    /// The HTTP status of an error of this kind (the one place this mapping lives).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::Usage => StatusCode::BAD_REQUEST,
            ErrorKind::Unavailable => StatusCode::NOT_FOUND,
            ErrorKind::Data => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::NoInput => StatusCode::NOT_FOUND,
            ErrorKind::Io | ErrorKind::Failure => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind of a fetch error.
    pub fn of_fetch(e: &FetchError) -> ErrorKind {
        match e {
            FetchError::NoInfo { .. } | FetchError::Unavailable { .. } => ErrorKind::Unavailable,
            FetchError::Origin(OriginError::Changed { .. }) => ErrorKind::Data,
            FetchError::Origin(OriginError::BadUrl { .. }) => ErrorKind::Usage,
            FetchError::Origin(_) => ErrorKind::Unavailable,
            FetchError::Store(e) => ErrorKind::of_store(e),
            _ => ErrorKind::Failure,
        }
    }

    /// The kind of a store error.
    pub fn of_store(e: &StoreError) -> ErrorKind {
        match e {
            StoreError::Io { .. } => ErrorKind::Io,
            StoreError::Verify(_) => ErrorKind::Data,
            _ => ErrorKind::Failure,
        }
    }
}

/// A request to fetch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The ticket.
    pub ticket: String,
    /// Write the content here (absolute path) once fetched.
    pub output: Option<PathBuf>,
    /// Origin URL for blocks no peer holds.
    pub origin: Option<String>,
    /// Peers to add (HOST:PORT) before fetching.
    #[serde(default)]
    pub peers: Vec<String>,
}

/// A request to publish.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishRequest {
    /// Absolute paths.
    pub paths: Vec<PathBuf>,
    /// Copy into the store.
    pub copy: bool,
}

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

fn full(code: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(v.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("static headers are valid")
}

/// A failed control request: its kind and message.
#[derive(Debug)]
struct ApiError(ErrorKind, String);

impl ApiError {
    fn into_response(self) -> Response<Body> {
        full(self.0.status(), &json!({ "error": self.1, "kind": self.0 }))
    }
}

fn error(kind: ErrorKind, msg: impl std::fmt::Display) -> ApiError {
    ApiError(kind, msg.to_string())
}

type Answer = Result<Response<Body>, ApiError>;

fn ticket(s: &str) -> Result<Ticket, ApiError> {
    s.parse::<Ticket>()
        .map_err(|e| error(ErrorKind::Usage, format!("{s:?} is not a ticket: {e}")))
}

async fn body_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| error(ErrorKind::Usage, format!("reading the request: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| error(ErrorKind::Usage, format!("bad request: {e}")))
}

async fn route(node: Node, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let r = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/v1/status") => match node.status() {
            Ok(s) => Ok(full(StatusCode::OK, &json!(s))),
            Err(e) => Err(error(ErrorKind::of_store(&e), e)),
        },
        (Method::GET, "/v1/peers") => Ok(full(StatusCode::OK, &json!(node.peer_views()))),
        (Method::GET, "/v1/ls") => match node.list() {
            Ok(l) => Ok(full(StatusCode::OK, &json!(l))),
            Err(e) => Err(error(ErrorKind::of_store(&e), e)),
        },
        (Method::POST, "/v1/publish") => publish(node, req).await,
        (Method::POST, "/v1/rm") => rm(node, req).await,
        (Method::POST, "/v1/seed") => seed(node, req).await,
        (Method::POST, "/v1/fetch") => fetch(node, req).await,
        (Method::GET, p) if p.starts_with("/v1/content/") => {
            content(node, &p["/v1/content/".len()..])
        }
        _ => Err(error(ErrorKind::Usage, format!("no route {path}"))),
    };
    Ok(r.unwrap_or_else(ApiError::into_response))
}

async fn publish(node: Node, req: Request<Incoming>) -> Answer {
    let r: PublishRequest = body_json(req).await?;
    let rows = tokio::task::spawn_blocking(move || {
        let mut rows = Vec::new();
        for p in &r.paths {
            let (info, new) = node
                .publish(p, r.copy, &HashOptions::default())
                .map_err(|e| {
                    let kind = match &e {
                        crate::store::PublishError::Open { .. } => ErrorKind::NoInput,
                        crate::store::PublishError::Store { source, .. } => {
                            ErrorKind::of_store(source)
                        }
                        _ => ErrorKind::Io,
                    };
                    error(kind, e)
                })?;
            rows.push(json!({
                "ticket": info.id().ticket().to_string(),
                "name": crate::store::name_of(p),
                "path": p,
                "size": info.layout().content_len(),
                "blocks": info.layout().block_count(),
                "new": new,
                "copied": r.copy,
            }));
        }
        Ok(rows)
    })
    .await
    .map_err(|e| error(ErrorKind::Failure, e))??;
    Ok(full(StatusCode::OK, &Value::Array(rows)))
}

async fn rm(node: Node, req: Request<Incoming>) -> Answer {
    #[derive(Deserialize)]
    struct Rm {
        tickets: Vec<String>,
    }
    let r: Rm = body_json(req).await?;
    let mut rows = Vec::new();
    for t in &r.tickets {
        let id = ticket(t)?.content_id();
        let removed = node
            .remove(&id)
            .map_err(|e| error(ErrorKind::of_store(&e), e))?;
        rows.push(json!({ "ticket": t, "removed": removed }));
    }
    Ok(full(StatusCode::OK, &Value::Array(rows)))
}

async fn seed(node: Node, req: Request<Incoming>) -> Answer {
    #[derive(Deserialize)]
    struct Seed {
        ticket: String,
        on: Option<String>,
    }
    let r: Seed = body_json(req).await?;
    let id = ticket(&r.ticket)?.content_id();
    let results = node.seed(id, r.on.as_deref()).await;
    Ok(full(StatusCode::OK, &json!(results)))
}

/// A fetch event as a JSON line.
pub fn event_json(e: &FetchEvent) -> Value {
    match e {
        FetchEvent::Started {
            len,
            present,
            peers,
        } => {
            json!({ "event": "started", "len": len, "present": present, "peers": peers })
        }
        FetchEvent::Progress { source, bytes } => {
            json!({ "event": "progress", "source": source_name(source), "bytes": bytes })
        }
        FetchEvent::PeerDropped { peer, reason } => {
            json!({ "event": "peer_dropped", "peer": peer.to_string(), "reason": reason })
        }
    }
}

/// The last line of a successful fetch: where the bytes came from, and who was dropped.
pub fn done_json(id: &crate::ContentId, len: u64, report: &crate::fetch::FetchReport) -> Value {
    let by: serde_json::Map<String, Value> = report
        .by_source
        .iter()
        .map(|(s, n)| (source_name(s), json!(n)))
        .collect();
    let dropped: Vec<Value> = report
        .dropped
        .iter()
        .map(|(p, w)| json!({"peer": p.to_string(), "reason": w}))
        .collect();
    json!({
        "event": "done",
        "ticket": id.ticket().to_string(),
        "len": len,
        "present": report.present,
        "by_source": by,
        "dropped": dropped,
    })
}

/// How a source is named in events and reports: a peer's address, or "origin".
pub fn source_name(s: &Source) -> String {
    match s {
        Source::Peer(a) => a.to_string(),
        Source::Origin => "origin".into(),
    }
}

async fn fetch(node: Node, req: Request<Incoming>) -> Answer {
    let r: FetchRequest = body_json(req).await?;
    let id = ticket(&r.ticket)?.content_id();
    let origin = match &r.origin {
        Some(u) => Some(
            OriginClient::new(u, Duration::from_secs(30))
                .map_err(|e| error(ErrorKind::Usage, e))?,
        ),
        None => None,
    };
    if !r.peers.is_empty() {
        for p in &r.peers {
            let addr = tokio::net::lookup_host(p)
                .await
                .ok()
                .and_then(|mut a| a.find(std::net::SocketAddr::is_ipv4))
                .ok_or_else(|| error(ErrorKind::Usage, format!("peer {p:?} is not HOST:PORT")))?;
            node.peers().add_static(addr);
        }
        node.probe_now().await;
    }
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(256);
    let cancel = node.stopping().child_token();
    let line = |v: Value| Bytes::from(format!("{v}\n"));
    let ev_tx = tx.clone();
    let ev_cancel = cancel.clone();
    let events: crate::fetch::Events = Arc::new(move |e| {
        // A client that went away (Ctrl-C) cancels its fetch; a slow one loses progress lines.
        if let Err(mpsc::error::TrySendError::Closed(_)) = ev_tx.try_send(Ok(line(event_json(&e))))
        {
            ev_cancel.cancel();
        }
    });
    let part = match &r.output {
        Some(p) => {
            Some(crate::fetch::PartFile::create(p).map_err(|e| error(ErrorKind::of_store(&e), e))?)
        }
        None => None,
    };
    let n = node.clone();
    node.spawn(async move {
        let opts = FetchOptions {
            origin,
            sink: part.as_ref().map(crate::fetch::PartFile::sink),
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
        let result = tokio::select! {
            r = n.fetch(id, opts, events, cancel.clone()) => r,
            _ = watch => Err(FetchError::Cancelled),
        };
        let last = match result {
            Ok((info, report)) => {
                let written = match part {
                    Some(part) => n.commit_output(part, &info).await,
                    None => Ok(()),
                };
                match written {
                    Ok(()) => done_json(&id, info.layout().content_len(), &report),
                    Err(e) => json!({ "event": "error", "kind": ErrorKind::of_store(&e), "error": e.to_string() }),
                }
            }
            Err(e) => json!({ "event": "error", "kind": ErrorKind::of_fetch(&e), "error": e.to_string() }),
        };
        let _ = tx.send(Ok(line(last))).await;
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
        .map_err(|e| error(ErrorKind::of_store(&e), e))?
        .ok_or_else(|| {
            error(
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

/// A client of a node's control API.
#[derive(Debug, Clone)]
pub struct ControlClient {
    path: PathBuf,
}

/// A control API answer: status and body.
#[derive(Debug)]
pub struct ControlResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// The body, read chunk by chunk.
    pub body: Incoming,
}

impl ControlClient {
    /// A client for the node whose data directory is `data_dir`, if one is running there.
    pub async fn connect(data_dir: &Path) -> Option<ControlClient> {
        let path = data_dir.join(SOCKET_NAME);
        UnixStream::connect(&path).await.ok()?;
        Some(ControlClient { path })
    }

    /// Sends one request (`body` as JSON for POST).
    pub async fn request(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> io::Result<ControlResponse> {
        let stream = UnixStream::connect(&self.path).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        // The connection lives as long as this request's body is read.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "pdist")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(io::Error::other)?;
        let resp = sender.send_request(req).await.map_err(io::Error::other)?;
        Ok(ControlResponse {
            status: resp.status(),
            body: resp.into_body(),
        })
    }

    /// A request whose answer is one JSON value; errors become `Err((kind, message))`.
    pub async fn json(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> io::Result<Result<Value, (ErrorKind, String)>> {
        let resp = self.request(method, uri, body).await?;
        let bytes = resp
            .body
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
        if resp.status.is_success() {
            return Ok(Ok(v));
        }
        let kind = serde_json::from_value(v["kind"].clone()).unwrap_or(ErrorKind::Failure);
        Ok(Err((
            kind,
            v["error"].as_str().unwrap_or("unknown error").to_string(),
        )))
    }
}
