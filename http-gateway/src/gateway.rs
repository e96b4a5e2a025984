//! The gateway's server: configuration, the listener and its connections (limits on
//! connections, header size and request rate; only allowed client networks), the routing of
//! each request to the cache, plain forwarding, `CONNECT`, origin mode or the gateway's own
//! routes, and a shutdown that drains.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::node::Node;
use http::{HeaderValue, Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::allow::{AllowList, RateLimit};
use crate::body::{Body, full};
use crate::error::GatewayError;
use crate::headers::CacheStatus;
use crate::index::{Claims, Index};
use crate::metrics::{GatewaySnapshot, Metrics};
use crate::spool::InFlight;
use crate::upstream::{self, Upstream};

/// The gateway's default port (a forward proxy's `http_proxy=http://host:7480`).
pub const DEFAULT_PORT: u16 = 7480;

/// The path of the Prometheus metrics (on the forward proxy) and under which origin mode keeps
/// its own routes.
pub const METRICS_PATH: &str = "/metrics";

/// Origin mode's metrics path (`/metrics` belongs to the backend there).
pub const REVERSE_METRICS_PATH: &str = "/.well-known/pdist/metrics";

/// How a gateway runs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where it listens (loopback by default).
    pub listen: SocketAddr,
    /// Client networks served.
    pub allow: AllowList,
    /// Origin mode: the backend every request goes to.
    pub reverse: Option<Uri>,
    /// Most client connections at once.
    pub max_connections: usize,
    /// Most bytes of a request head.
    pub max_header_bytes: usize,
    /// Requests per second per client address (0: no limit).
    pub rate_per_client: u32,
    /// Trust the group's peers (a group with its own secret): believe their claims that a URL
    /// is some content, and follow their downloads of URLs in progress (whose bytes nothing
    /// binds to the origin's), offering ours to them likewise.
    pub trust_peers: bool,
    /// Whether blocks of peered content that peers fail to send may come from the origin.
    /// Off: once the LAN has a URL, its body never crosses the WAN.
    pub origin_for_peered: bool,
    /// Ask origins for content information on a miss (`x-pdist-info`, which origin mode
    /// answers): bytes then come from peers, checked against what the origin vouched for.
    pub origin_info: bool,
    /// Directory for bodies being downloaded (in the data directory).
    pub spool: PathBuf,
    /// Longest wait for an origin's connection and response head.
    pub origin_timeout: Duration,
    /// Largest body cached; larger ones pass through.
    pub max_object: u64,
}

impl GatewayConfig {
    /// Defaults: loopback on [`DEFAULT_PORT`], loopback clients only, 1024 connections, 64 KiB
    /// heads, 1000 requests per second per client, origin fallback on.
    pub fn new(spool: PathBuf) -> GatewayConfig {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            allow: AllowList::loopback(),
            reverse: None,
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
            rate_per_client: 1000,
            trust_peers: false,
            origin_for_peered: true,
            origin_info: true,
            spool,
            origin_timeout: Duration::from_secs(30),
            max_object: engine::content::layout::MAX_CONTENT_LEN,
        }
    }
}

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cfg: GatewayConfig,
    pub node: Node,
    pub index: Arc<dyn Index>,
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
    pub limit: RateLimit,
    /// Downloads in progress, by index key.
    pub inflight: Mutex<HashMap<Vec<u8>, Arc<InFlight>>>,
    /// Origin mode: V2 content information by content (`None` while it is computed).
    pub v2: Mutex<HashMap<engine::ContentId, Option<Arc<engine::pccrc::v2::ContentInfoV2>>>>,
    pub tasks: TaskTracker,
    pub stop: CancellationToken,
    /// Downloads and peer fetches whose results are not yet recorded.
    pub busy: tokio::sync::watch::Sender<usize>,
}

impl Shared {
    /// Counts a background transfer until the guard drops.
    pub fn busy(&self) -> BusyGuard {
        self.busy.send_modify(|n| *n += 1);
        BusyGuard(self.busy.clone())
    }
}

/// Ends a background transfer's count.
#[derive(Debug)]
pub(crate) struct BusyGuard(tokio::sync::watch::Sender<usize>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

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
        node.set_names(Arc::new(Claims(Arc::clone(&index))));
        let shared = Arc::new(Shared {
            upstream: Upstream::new(cfg.origin_timeout),
            limit: RateLimit::new(cfg.rate_per_client),
            cfg,
            node,
            index,
            metrics: Arc::default(),
            inflight: Mutex::default(),
            v2: Mutex::default(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            busy: tokio::sync::watch::Sender::new(0),
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
        let mut v = serde_json::to_value(self.metrics.snapshot()).unwrap_or_default();
        v["listen"] = self.listen.to_string().into();
        v["reverse"] = self.reverse.clone().into();
        // Downloads and peer fetches not yet in the store and recorded.
        v["keeping"] = (*self.busy.borrow()).into();
        v
    }
}

async fn accept_loop(sh: Arc<Shared>, listener: TcpListener) {
    let conns = Arc::new(tokio::sync::Semaphore::new(sh.cfg.max_connections));
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
        let Ok(permit) = Arc::clone(&conns).try_acquire_owned() else {
            tracing::debug!("gateway: connection limit reached, refusing {from}");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let sh2 = Arc::clone(&sh);
        sh.tasks.spawn(async move {
            let _permit = permit;
            let stop = sh2.stop.clone();
            let max_buf = sh2.cfg.max_header_bytes.max(8192);
            let handler = service_fn(move |req| handle(Arc::clone(&sh2), from, req));
            let conn = http1::Builder::new()
                .max_buf_size(max_buf)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), handler)
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

async fn handle(
    sh: Arc<Shared>,
    from: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let what = format!("{} {}", req.method(), req.uri());
    Ok(match route(&sh, from, req).await {
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
        return upstream::connect(sh, req).await;
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
            path => Err(GatewayError::NotFound {
                path: format!(
                    "{path} (this is a forward proxy: clients set http_proxy=http://{}/ and ask for http:// URLs)",
                    req.headers()
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("this-host")
                ),
            }),
        };
    }
    if req.uri().scheme_str() != Some("http") {
        return Err(GatewayError::BadRequest {
            reason: format!(
                "only http:// URLs are proxied (HTTPS goes through CONNECT), not {}",
                req.uri()
            ),
        });
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return crate::cache::get(sh, req).await;
    }
    upstream::forward(sh, req, CacheStatus::Bypass).await
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
