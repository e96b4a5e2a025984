//! The gateway's server: configuration, the listener and its connections (limits on
//! connections, header size and request rate; only allowed client networks), the routing of
//! each request to the cache, plain forwarding, `CONNECT`, origin mode or the gateway's own
//! routes, and a shutdown that drains.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::node::Node;
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::allow::RateLimit;
use crate::body::{Body, full};
use crate::error::GatewayError;
use crate::headers::CacheStatus;
use crate::index::{Claims, Index};
use crate::metrics::{GatewaySnapshot, GatewayStatus, Metrics};
use crate::record::UrlKeys;
use crate::state::{GatewayConfig, Shared};
use crate::upstream::Upstream;

/// The path of the Prometheus metrics (on the forward proxy) and under which origin mode keeps
/// its own routes.
pub const METRICS_PATH: &str = "/metrics";

/// Origin mode's metrics path (`/metrics` belongs to the backend there).
pub const REVERSE_METRICS_PATH: &str = "/.well-known/pdist/metrics";

/// A running gateway.
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Gateway {
    /// Starts a gateway on `node` (which serves its cached content to peers) with `index`.
    pub async fn start(
        cfg: GatewayConfig,
        node: Node,
        index: Arc<dyn Index>,
    ) -> Result<Gateway, std::io::Error> {
        std::fs::create_dir_all(&cfg.spool)?;
        crate::spool::clean(&cfg.spool);
        let listener = TcpListener::bind(cfg.listen).await?;
        let addr = listener.local_addr()?;
        // URL claims are filed and answered only in a group with its own secret: in the open
        // group anyone who guesses a URL could learn that it was fetched, and its ticket.
        if cfg.trust_peers {
            node.set_names(Arc::new(Claims(Arc::clone(&index))));
        }
        let urls = UrlKeys::new(node.secret());
        let shared = Arc::new(Shared {
            upstream: Upstream::new(Arc::clone(&cfg.origin), cfg.origin_timeout),
            limit: RateLimit::new(cfg.rate_per_client),
            conns: Arc::new(tokio::sync::Semaphore::new(cfg.max_connections)),
            cfg,
            node,
            index,
            metrics: Arc::default(),
            downloads: Default::default(),
            disk: Default::default(),
            urls,
            v2: Default::default(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            busy: tokio::sync::watch::Sender::new(0),
            shunned: Default::default(),
            revalidating: Default::default(),
        });
        shared.node.add_status_part(
            "gateway",
            Arc::new(StatusFigures {
                metrics: Arc::clone(&shared.metrics),
                listen: addr,
                reverse: shared.cfg.reverse.as_ref().map(|u| u.to_string()),
                busy: shared.busy.subscribe(),
            }),
        );
        let sh = Arc::clone(&shared);
        shared.tasks.spawn(accept_loop(sh, listener));
        Ok(Gateway { shared, addr })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its figures.
    pub fn snapshot(&self) -> GatewaySnapshot {
        self.shared.metrics.snapshot()
    }

    /// Waits until no download or peer fetch is being kept (tests, benchmarks): what was
    /// fetched so far is then in the store and its URL recorded.
    pub async fn settled(&self) {
        let mut rx = self.shared.busy.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Stops accepting, lets responses being sent finish (bounded to 10 s), and stops
    /// downloads.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        self.shared.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("gateway: some transfers did not finish within 10 s");
        }
    }
}

/// The gateway's part of the node's status (`pdist status`): where it listens, in which mode,
/// and its figures.
struct StatusFigures {
    metrics: Arc<Metrics>,
    listen: SocketAddr,
    reverse: Option<String>,
    busy: tokio::sync::watch::Receiver<usize>,
}

impl engine::node::StatusPart for StatusFigures {
    fn status(&self) -> serde_json::Value {
        let s = GatewayStatus {
            listen: self.listen,
            reverse: self.reverse.clone(),
            keeping: *self.busy.borrow(),
            figures: self.metrics.snapshot(),
        };
        serde_json::to_value(s).unwrap_or_default()
    }
}

/// What an accepted connection gets.
enum Slot {
    /// Served: it holds one of the connection slots while open.
    Serve(OwnedSemaphorePermit),
    /// Every slot is taken: it is told so (503, `Retry-After`) and closed.
    Refuse(OwnedSemaphorePermit),
}

/// Most connections being told at once that the gateway is full; while that many are, further
/// ones wait in the listen backlog.
const MAX_REFUSING: usize = 64;

/// How long a connection being refused is given to read the answer.
const REFUSE_LINGER: Duration = Duration::from_secs(2);

/// The body of the answer to a connection over the limit.
const FULL: &str = "pdist gateway: too busy: every connection slot taken\n";

/// The whole answer to a connection over the limit, its length counted.
fn full_answer() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
         Cache-Status: pdist; detail=error-503\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{FULL}",
        FULL.len()
    )
}

async fn accept_loop(sh: Arc<Shared>, listener: TcpListener) {
    let conns = Arc::clone(&sh.conns);
    let refusing = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSING));
    loop {
        let (stream, from) = tokio::select! {
            _ = sh.stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("gateway: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match Arc::clone(&conns).try_acquire_owned() {
            Ok(p) => Slot::Serve(p),
            Err(_) => match Arc::clone(&refusing).try_acquire_owned() {
                Ok(p) => Slot::Refuse(p),
                // Both full: take no more connections until a slot frees.
                Err(_) => tokio::select! {
                    _ = sh.stop.cancelled() => break,
                    p = Arc::clone(&conns).acquire_owned() => Slot::Serve(p.expect("never closed")),
                    p = Arc::clone(&refusing).acquire_owned() => {
                        Slot::Refuse(p.expect("never closed"))
                    }
                },
            },
        };
        let permit = match slot {
            Slot::Serve(p) => p,
            Slot::Refuse(p) => {
                sh.metrics.refused();
                sh.tasks.spawn(refuse(stream, p));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let sh2 = Arc::clone(&sh);
        sh.tasks.spawn(async move {
            // A CONNECT takes the slot over for its tunnel, which outlives this connection.
            let slot: crate::tunnel::ConnSlot = Arc::new(std::sync::Mutex::new(Some(permit)));
            let stop = sh2.stop.clone();
            let max_buf = sh2.cfg.max_header_bytes.max(8192);
            let head_timeout = sh2.cfg.head_timeout;
            let (io, dup) = crate::interim::track(stream);
            let (_dup, socket) = dup.unzip();
            let handler = service_fn(move |mut req: Request<Incoming>| {
                if let Some(s) = &socket {
                    req.extensions_mut().insert(s.clone());
                }
                handle(Arc::clone(&sh2), from, Arc::clone(&slot), req)
            });
            let conn = http1::Builder::new()
                .max_buf_size(max_buf)
                .timer(TokioTimer::new())
                .header_read_timeout(head_timeout)
                .serve_connection(TokioIo::new(io), handler)
                .with_upgrades();
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

/// Tells a connection over the limit so, without reading its request, and closes it once the
/// client had time to read the answer (closing with its request unread at once could reset the
/// connection before the answer arrives).
async fn refuse(mut stream: tokio::net::TcpStream, _slot: OwnedSemaphorePermit) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(REFUSE_LINGER, async {
        stream.write_all(full_answer().as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

async fn handle(
    sh: Arc<Shared>,
    from: SocketAddr,
    slot: crate::tunnel::ConnSlot,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let what = format!("{} {}", req.method(), req.uri());
    Ok(match route(&sh, from, slot, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("{from} {what}: {e}");
            e.into_response()
        }
    })
}

async fn route(
    sh: &Arc<Shared>,
    from: SocketAddr,
    slot: crate::tunnel::ConnSlot,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let ip = from.ip();
    if !sh.cfg.allow.allows(ip) {
        return Err(GatewayError::Forbidden { ip });
    }
    if !sh.limit.take(ip, Instant::now()) {
        return Err(GatewayError::RateLimited { ip });
    }
    if req.method() == Method::CONNECT {
        return crate::tunnel::connect(sh, &slot, req).await;
    }
    if let Some(backend) = sh.cfg.reverse.clone() {
        if req.uri().path() == REVERSE_METRICS_PATH {
            return Ok(metrics(sh));
        }
        return crate::reverse::handle(sh, &backend, req).await;
    }
    if req.uri().authority().is_none() {
        return match req.uri().path() {
            METRICS_PATH => Ok(metrics(sh)),
            _ => Err(GatewayError::NotFound {
                uri: req.uri().clone(),
                host: req
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.parse().ok()),
            }),
        };
    }
    if req.uri().scheme_str() != Some("http") {
        return Err(GatewayError::NotProxied {
            uri: req.uri().clone(),
        });
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return crate::cache::get(sh, req).await;
    }
    crate::passthrough::forward(sh, req, CacheStatus::Bypass, None).await
}

fn metrics(sh: &Shared) -> Response<Body> {
    let alive = sh.node.status().map_or(0, |s| s.peers_alive);
    let mut r = Response::new(full(sh.metrics.render(alive)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}
