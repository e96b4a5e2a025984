//! The peer table: who this node knows (from discovery and `--peer`), whether they are of our
//! group, and whether they are alive by our own measure. mDNS keeps a killed node listed for
//! about two minutes, so liveness comes from hellos: a node that fails two in a row is not used
//! until it answers again, and one that keeps failing (down, or of another group: nothing in
//! an advert says which) is asked less and less often, down to once a minute.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::discovery::{Advert, DiscoveryEvent};
use crate::fetch::PeerRef;
use crate::peer::{PeerClient, ServiceStats};
use crate::wire::{HelloReply, NodeId, SEED_KEY_LEN};

/// Most discovered nodes that never answered a hello (down, or of other groups) kept in the
/// table; more are ignored until some go.
const MAX_UNANSWERED: usize = 256;

/// How long a peer that failed [`DOWN_AFTER`] hellos in a row is left alone before the next; it
/// doubles with every further failure, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(4);

/// The longest a failing peer is left alone.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Failed hellos in a row after which a peer is considered down.
const DOWN_AFTER: u32 = 2;

/// How a node is known.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// mDNS found it.
    Mdns,
    /// It was given by address (`--peer`).
    Static,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Via::Mdns => "mdns",
            Via::Static => "static",
        })
    }
}

/// One known node, as `pdist peers` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerView {
    /// Node ID (hex), when known.
    pub id: Option<String>,
    /// Its name (from its hello, else its mDNS host name).
    pub name: String,
    /// Addresses it can be reached at.
    pub addrs: Vec<SocketAddr>,
    /// Whether it is of our group (it answered our authenticated hello).
    pub group: bool,
    /// Whether it answers.
    pub alive: bool,
    /// How we know it.
    pub via: Via,
    /// A cache node.
    pub cache: bool,
    /// Seconds since it last answered (or was announced).
    pub last_seen_secs: Option<u64>,
    /// Contents it holds (from its hello).
    pub contents: Option<u32>,
    /// Bytes we served to it.
    pub bytes_to: u64,
    /// Bytes we received from it.
    pub bytes_from: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    node: Option<NodeId>,
    host: String,
    addrs: Vec<SocketAddr>,
    /// The address that last answered.
    good: Option<SocketAddr>,
    /// Not asked again before this (it kept failing).
    skip_until: Option<Instant>,
    via_static: bool,
    cache: bool,
    hello: Option<HelloReply>,
    failures: u32,
    last_seen: Option<SystemTime>,
}

impl Entry {
    fn alive(&self) -> bool {
        self.hello.is_some() && self.failures < DOWN_AFTER
    }
}

/// Known peers, keyed by node ID (static peers by address until they answer).
#[derive(Debug, Clone)]
pub struct PeerTable {
    inner: Arc<Mutex<Vec<Entry>>>,
    me: NodeId,
}

impl PeerTable {
    /// An empty table for node `me`.
    pub fn new(me: NodeId) -> PeerTable {
        PeerTable {
            inner: Arc::default(),
            me,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.inner.lock().expect("peer table lock")
    }

    /// Adds a static peer (`--peer HOST:PORT`).
    pub fn add_static(&self, addr: SocketAddr) {
        let mut t = self.lock();
        if t.iter().any(|e| e.addrs.contains(&addr)) {
            return;
        }
        t.push(Entry {
            node: None,
            host: addr.to_string(),
            addrs: vec![addr],
            good: None,
            skip_until: None,
            via_static: true,
            cache: false,
            hello: None,
            failures: 0,
            last_seen: None,
        });
    }

    /// Applies a discovery event.
    pub fn apply(&self, ev: DiscoveryEvent) {
        let mut t = self.lock();
        match ev {
            DiscoveryEvent::Up {
                advert,
                addrs,
                host,
            } => {
                let Advert { node, port } = advert;
                if node == self.me {
                    return;
                }
                let addrs: Vec<SocketAddr> = usable(&addrs)
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect();
                let unanswered = t
                    .iter()
                    .filter(|e| e.hello.is_none() && !e.via_static)
                    .count();
                match t.iter_mut().find(|e| e.node == Some(node)) {
                    Some(e) => {
                        if e.addrs != addrs {
                            // It moved: worth asking at once.
                            e.skip_until = None;
                        }
                        e.addrs = addrs;
                        e.host = host;
                        e.last_seen = Some(SystemTime::now());
                    }
                    None if unanswered >= MAX_UNANSWERED => {
                        // Enough nodes listed that never answered (they cannot be used).
                    }
                    None => t.push(Entry {
                        node: Some(node),
                        host,
                        addrs,
                        good: None,
                        skip_until: None,
                        via_static: false,
                        // Learnt from its hello.
                        cache: false,
                        hello: None,
                        failures: 0,
                        last_seen: Some(SystemTime::now()),
                    }),
                }
            }
            DiscoveryEvent::Down { node } => t.retain(|e| e.via_static || e.node != Some(node)),
        }
    }

    /// Peers to fetch from: alive and of our group, cache nodes first, then the least busy.
    pub fn fetch_peers(&self) -> Vec<PeerRef> {
        let t = self.lock();
        let mut v: Vec<(bool, u32, PeerRef)> = t
            .iter()
            .filter(|e| e.alive())
            .filter_map(|e| {
                let h = e.hello.as_ref()?;
                Some((
                    !h.cache,
                    h.busy,
                    PeerRef {
                        addr: e.good?,
                        node: Some(h.node),
                        cache: h.cache,
                    },
                ))
            })
            .collect();
        v.sort_by_key(|(not_cache, busy, p)| (*not_cache, *busy, p.addr));
        v.into_iter().map(|(_, _, p)| p).collect()
    }

    /// Live cache nodes of our group: (node ID, name, address, public seed key).
    pub fn caches(&self) -> Vec<(NodeId, String, SocketAddr, [u8; SEED_KEY_LEN])> {
        self.lock()
            .iter()
            .filter(|e| e.alive())
            .filter_map(|e| {
                let h = e.hello.as_ref().filter(|h| h.cache)?;
                Some((h.node, h.name.clone(), e.good?, h.seed_key?))
            })
            .collect()
    }

    /// The table as `pdist peers` shows it.
    pub fn views(&self, stats: &ServiceStats) -> Vec<PeerView> {
        let now = SystemTime::now();
        self.lock()
            .iter()
            .map(|e| {
                let (to, from) = e.node.map(|n| stats.exchanged(&n)).unwrap_or_default();
                PeerView {
                    id: e.node.map(|n| n.to_hex()),
                    name: e
                        .hello
                        .as_ref()
                        .map(|h| h.name.clone())
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| e.host.clone()),
                    addrs: e.addrs.clone(),
                    group: e.hello.is_some(),
                    alive: e.alive(),
                    via: if e.via_static { Via::Static } else { Via::Mdns },
                    cache: e.hello.as_ref().map_or(e.cache, |h| h.cache),
                    last_seen_secs: e
                        .last_seen
                        .and_then(|t| now.duration_since(t).ok())
                        .map(|d| d.as_secs()),
                    contents: e.hello.as_ref().map(|h| h.contents),
                    bytes_to: to,
                    bytes_from: from,
                }
            })
            .collect()
    }

    /// Says hello to every known peer not left alone for failing (in parallel) and records who
    /// answered.
    pub async fn probe(&self, client: &PeerClient, timeout: Duration) {
        let now = Instant::now();
        let targets: Vec<(Key, Vec<SocketAddr>)> = self
            .lock()
            .iter()
            .filter(|e| e.skip_until.is_none_or(|t| now >= t))
            .map(|e| {
                let mut addrs = e.addrs.clone();
                if let Some(g) = e.good {
                    addrs.retain(|a| *a != g);
                    addrs.insert(0, g);
                }
                (key(e), addrs)
            })
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for (i, addrs) in targets {
            let client = client.clone();
            set.spawn(async move {
                for addr in addrs {
                    // A peer that does not answer as a member of our group is not one.
                    if let Ok(h) = client.hello(addr, timeout).await {
                        return (i, Some((addr, h)));
                    }
                }
                (i, None)
            });
        }
        let mut results = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                results.push(r);
            }
        }
        let mut t = self.lock();
        for (k, r) in results {
            // Entries may have come and gone while the hellos ran: find this one again.
            let Some(e) = t.iter_mut().find(|e| key(e) == k) else {
                continue;
            };
            match r {
                Some((addr, h)) if h.node != self.me => {
                    if e.node.is_some_and(|n| n != h.node) {
                        if !e.via_static {
                            // Someone else answers at that address now.
                            e.failures += 1;
                            continue;
                        }
                        // A static peer restarted (node IDs are chosen at start).
                        e.node = None;
                    }
                    e.node = Some(h.node);
                    e.good = Some(addr);
                    e.cache = h.cache;
                    e.hello = Some(h);
                    e.failures = 0;
                    e.skip_until = None;
                    e.last_seen = Some(SystemTime::now());
                }
                Some(_) => {
                    e.failures = DOWN_AFTER;
                    e.skip_until = Some(Instant::now() + MAX_BACKOFF);
                }
                None => {
                    e.failures = e.failures.saturating_add(1);
                    if let Some(extra) = e.failures.checked_sub(DOWN_AFTER) {
                        let wait = FIRST_BACKOFF.saturating_mul(1 << extra.min(8));
                        e.skip_until = Some(Instant::now() + wait.min(MAX_BACKOFF));
                    }
                }
            }
        }
        // A static peer that turned out to be a node we also know from mDNS is kept once.
        let mut seen = std::collections::HashSet::new();
        t.retain(|e| e.node.is_none() || seen.insert(e.node));
    }
}

/// What identifies an entry across a probe: its node ID, or a static peer's address.
type Key = (Option<NodeId>, Option<SocketAddr>);

fn key(e: &Entry) -> Key {
    (
        e.node,
        e.node.is_none().then(|| e.addrs.first().copied()).flatten(),
    )
}

/// Addresses worth trying: IPv4 first (link-local IPv6 needs a scope we do not carry).
fn usable(addrs: &[IpAddr]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = addrs
        .iter()
        .copied()
        .filter(|a| match a {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect();
    v.sort_by_key(|a| (a.is_ipv6(), a.is_loopback(), *a));
    v.dedup();
    v
}
