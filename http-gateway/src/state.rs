//! What every request handler shares: the gateway's configuration, its node and index, the
//! origin client, the figures, the downloads in flight, origin mode's V2 information, and the
//! tasks the gateway spawns with the token that stops them. It decides nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::node::Node;
use engine::origin::{HttpOrigin, HyperOrigin};
use http::Uri;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::allow::{AllowList, RateLimit};
use crate::decide::Setup;
use crate::downloads::Downloads;
use crate::index::Index;
use crate::metrics::Metrics;
use crate::record::UrlKeys;
use crate::upstream::Upstream;

/// The gateway's default port (a forward proxy's `http_proxy=http://host:7480`).
pub const DEFAULT_PORT: u16 = 7480;

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
    /// Longest a client may take to send a request head, and longest an idle kept-alive
    /// connection holds its slot.
    pub head_timeout: Duration,
    /// Where `CONNECT` tunnels may go, and how long one may sit idle.
    pub connect: crate::allow::ConnectPolicy,
    /// Requests per second per client address (0: no limit).
    pub rate_per_client: u32,
    /// Trust the group's peers (a group with its own secret): file claims that a URL is some
    /// content and answer peers' lookups of them, believe theirs, and follow their downloads of
    /// URLs in progress (whose bytes nothing binds to the origin's), offering ours to them
    /// likewise. Off (the open group), the gateway tells peers nothing about URLs.
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
    /// Longest wait for the next bytes of a body being downloaded (from the origin, or a peer
    /// gateway followed): past it the download is abandoned, its clients see the transfer cut
    /// off, and the next request starts a fresh one.
    pub origin_read_timeout: Duration,
    /// Largest body cached; larger ones pass through.
    pub max_object: u64,
    /// How stale a stored response may be served when its origin cannot be reached or answers
    /// with a server error (RFC 9111 §4.2.4), unless its directives forbid it; a response's or
    /// request's `stale-if-error` (RFC 5861) sets its own bound.
    pub max_stale: Duration,
    /// How origins are reached: hyper's pooled HTTP/1.1 client, or a twin in tests
    /// ([`engine::origin::mem::MemOrigin`]). Everything the gateway asks of origins goes
    /// through it, block ranges of peered content included.
    pub origin: Arc<dyn HttpOrigin>,
}

impl GatewayConfig {
    /// Defaults: loopback on [`DEFAULT_PORT`], loopback clients only, 1024 connections, 64 KiB
    /// heads sent within 10 s, 1000 requests per second per client, tunnels to port 443 of
    /// other machines only, origin fallback on.
    pub fn new(spool: PathBuf) -> GatewayConfig {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            allow: AllowList::loopback(),
            reverse: None,
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
            head_timeout: Duration::from_secs(10),
            connect: crate::allow::ConnectPolicy::default(),
            rate_per_client: 1000,
            trust_peers: false,
            origin_for_peered: true,
            origin_info: true,
            spool,
            origin_timeout: Duration::from_secs(30),
            origin_read_timeout: Duration::from_secs(60),
            max_object: engine::content::layout::MAX_CONTENT_LEN,
            max_stale: Duration::from_secs(7 * 24 * 3600),
            origin: Arc::new(HyperOrigin::new(Duration::from_secs(30))),
        }
    }
}

/// Origin mode's V2 content information by content (`None` while it is computed).
pub(crate) type V2Cache =
    Mutex<HashMap<engine::ContentId, Option<Arc<engine::pccrc::v2::ContentInfoV2>>>>;

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cfg: GatewayConfig,
    pub node: Node,
    pub index: Arc<dyn Index>,
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
    pub limit: RateLimit,
    /// Connection slots ([`GatewayConfig::max_connections`]): one per client connection, kept
    /// by a tunnel opened on it until the tunnel closes.
    pub conns: Arc<tokio::sync::Semaphore>,
    pub downloads: Downloads,
    /// Whether the disk takes the spool's and the store's writes.
    pub disk: crate::relay::DiskState,
    /// The keys of what this group's gateways say about URLs.
    pub urls: UrlKeys,
    pub v2: V2Cache,
    pub tasks: TaskTracker,
    pub stop: CancellationToken,
    /// Downloads and peer fetches whose results are not yet recorded.
    pub busy: tokio::sync::watch::Sender<usize>,
    /// Peers left out of this gateway's elections for a while.
    pub shunned: Shunned,
    /// URLs (index keys) being revalidated in the background (`stale-while-revalidate`).
    pub revalidating: std::sync::Mutex<std::collections::HashSet<Vec<u8>>>,
}

/// How long a peer whose download of a URL could not be followed is left out of elections.
const SHUN_FOR: Duration = Duration::from_secs(600);
/// Most peers remembered as shunned.
const MAX_SHUNNED: usize = 1024;

/// Peers whose download of a URL this gateway could not follow (it offered nothing, stopped
/// growing, or sent what does not open): left out of this gateway's elections for
/// [`SHUN_FOR`], so that a member that says it downloads every URL costs one wait, not one per
/// miss.
#[derive(Debug, Default)]
pub(crate) struct Shunned(Mutex<HashMap<SocketAddr, Instant>>);

impl Shunned {
    /// Leaves `peer` out from now on, for a while.
    pub fn add(&self, peer: SocketAddr) {
        let mut m = self.0.lock().expect("shunned lock");
        if m.len() >= MAX_SHUNNED {
            m.retain(|_, t| t.elapsed() < SHUN_FOR);
            if m.len() >= MAX_SHUNNED {
                return;
            }
        }
        m.insert(peer, Instant::now());
    }

    /// The peers left out now.
    pub fn now(&self) -> Vec<SocketAddr> {
        let mut m = self.0.lock().expect("shunned lock");
        m.retain(|_, t| t.elapsed() < SHUN_FOR);
        m.keys().copied().collect()
    }
}

impl Shared {
    /// Counts a background transfer until the guard drops.
    pub fn busy(&self) -> BusyGuard {
        self.busy.send_modify(|n| *n += 1);
        BusyGuard(self.busy.clone())
    }

    /// A client for the origin of `url`, through the gateway's origin seam.
    pub fn origin_client(&self, url: &str) -> Option<engine::fetch::OriginClient> {
        let origin = Arc::clone(&self.cfg.origin);
        engine::fetch::OriginClient::with(origin, url, self.cfg.origin_timeout).ok()
    }

    /// What the cache's decisions depend on besides the request, now.
    pub fn setup(&self) -> Setup {
        Setup {
            trust_peers: self.cfg.trust_peers,
            peers: !self.node.peers().fetch_peers().is_empty(),
            origin_info: self.cfg.origin_info,
            reverse: self.cfg.reverse.is_some(),
        }
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
