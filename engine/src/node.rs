//! A long-lived node: the store, the peer protocol endpoint, discovery, the peer table with its
//! own liveness, fetches, seeds, and the local control API ([`control`]).
//!
//! Every task a node spawns is tracked; [`Node::shutdown`] stops accepting work, says goodbye on
//! mDNS, lets running block streams and fetches finish or stop, and waits for all of them.

pub mod control;
mod elect;
mod handle;
#[cfg(feature = "rocksdb")]
mod open;
mod peers;
mod repair;
mod whole;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::content::{ContentId, ContentInfo, HashOptions, ServerSecret};
use crate::discovery::{Advert, Discovery, DiscoveryError};
use crate::fetch::{Events, FetchError, FetchOptions, FetchReport, Fetcher};
use crate::peer::mem::MemNetwork;
use crate::peer::{PeerAddr, PeerClient, PeerService, ServeOptions, Transport};
use crate::store::{ContentRecord, SegmentStore, StoreError, Usage};
use crate::wire::{ContentKeys, GroupKeys, NodeId};

pub use elect::{Ballot, Stopped, TailError, TailOffer, TailReader, Wanting};
pub use handle::{FetchHandle, InOrder, ReadError};
#[cfg(feature = "rocksdb")]
pub use open::{NodeOptions, host_name, open_store};
pub use peers::{PeerTable, PeerView, Via};

/// How long shutdown waits for transfers and tasks to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The default TCP port of the peer protocol.
pub const DEFAULT_PORT: u16 = 7461;

/// Where a node's peer endpoint listens.
#[derive(Debug, Clone)]
pub enum Listen {
    /// A TCP address (port 0: any free port).
    Tcp(SocketAddr),
    /// An in-memory network (tests).
    Mem(MemNetwork, SocketAddr),
}

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The name peers see.
    pub name: String,
    /// The group secret (also the server secret of the content information it builds).
    pub secret: ServerSecret,
    /// Where the peer endpoint listens.
    pub listen: Listen,
    /// A cache node: accepts seeds, says so.
    pub cache: bool,
    /// Peers given by address (`--peer`).
    pub static_peers: Vec<SocketAddr>,
    /// How often peers are said hello to.
    pub probe_interval: Duration,
    /// How long a hello may take.
    pub hello_timeout: Duration,
    /// Scratch space for downloads from an origin (in the data directory).
    pub scratch: PathBuf,
    /// Serve corrupted blocks (only for tests of fetchers).
    pub corrupt_blocks: bool,
    /// The leases of the store's eviction (a `CappedStore`'s), so that content being fetched or
    /// streamed is not evicted under the transfer.
    pub leases: crate::store::Leases,
}

/// Why a node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The peer endpoint could not listen.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Discovery failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The control API's socket could not be opened.
    #[error("opening the control socket {}: {source}", .path.display())]
    Control {
        /// The socket.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The node was not opened on a data directory ([`Node::open`]).
    #[error("the node has no data directory")]
    NoDataDir,
}

/// What `pdist status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node ID (hex).
    pub id: String,
    /// Name.
    pub name: String,
    /// The peer endpoint's address.
    pub listen: SocketAddr,
    /// A cache node.
    pub cache: bool,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Store usage.
    pub usage: Usage,
    /// Fetches running.
    pub fetches: u32,
    /// Block streams being served.
    pub serving: u32,
    /// Bytes served to peers.
    pub bytes_served: u64,
    /// Bytes received from peers.
    pub bytes_received: u64,
    /// Peers known, and of those alive in our group.
    pub peers_known: usize,
    /// Peers alive in our group.
    pub peers_alive: usize,
    /// Parts added by components built on the node (e.g. `"gateway"`), by name.
    #[serde(flatten, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub parts: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A component built on a node (the HTTP gateway) that adds its figures to the node's status,
/// so that `pdist status` shows them.
pub trait StatusPart: Send + Sync {
    /// The figures now, as JSON (an object).
    fn status(&self) -> serde_json::Value;
}

/// One cache node's answer to a seed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeedResult {
    /// The cache node's name.
    pub node: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Whether it accepted.
    pub accepted: bool,
}

struct Inner {
    id: NodeId,
    cfg: NodeConfig,
    store: Arc<dyn SegmentStore>,
    service: Arc<PeerService>,
    fetcher: Fetcher,
    client: PeerClient,
    peers: PeerTable,
    addr: SocketAddr,
    discovery: Option<Arc<dyn Discovery>>,
    started: Instant,
    fetches: AtomicU32,
    parts: std::sync::Mutex<Vec<(String, Arc<dyn StatusPart>)>>,
    data_dir: std::sync::OnceLock<PathBuf>,
}

/// A running node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("addr", &self.inner.addr)
            .finish()
    }
}

impl Node {
    /// Starts a node on `store`: the peer endpoint, discovery (if any), the prober, and (for a
    /// cache node) the seed worker.
    pub async fn start(
        cfg: NodeConfig,
        store: Arc<dyn SegmentStore>,
        transport: Arc<dyn Transport>,
        discovery: Option<Arc<dyn Discovery>>,
    ) -> Result<Node, NodeError> {
        let id = NodeId::random();
        let keys = GroupKeys::new(&cfg.secret);
        let (seed_tx, seed_rx) = mpsc::channel(64);
        let service = PeerService::new(
            Arc::clone(&store),
            keys.clone(),
            id,
            ServeOptions {
                name: cfg.name.clone(),
                cache: cfg.cache,
                corrupt_blocks: cfg.corrupt_blocks,
                ..ServeOptions::default()
            },
            cfg.cache.then_some(seed_tx),
        )?;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let addr = match &cfg.listen {
            Listen::Tcp(a) => {
                let listener = TcpListener::bind(a)
                    .await
                    .map_err(|source| NodeError::Listen { addr: *a, source })?;
                let local = listener
                    .local_addr()
                    .map_err(|source| NodeError::Listen { addr: *a, source })?;
                tasks.spawn(crate::peer::http::serve(
                    listener,
                    Arc::clone(&service),
                    stop.clone(),
                    tasks.clone(),
                ));
                local
            }
            Listen::Mem(net, a) => {
                net.attach(*a, Arc::clone(&service));
                *a
            }
        };
        let peers = PeerTable::new(id);
        for p in &cfg.static_peers {
            peers.add_static(*p);
        }
        let client = PeerClient::new(transport, keys.clone(), id);
        let fetcher = Fetcher::new(
            client.clone(),
            Arc::clone(&store),
            Arc::clone(service.stats()),
        );
        let inner = Arc::new(Inner {
            id,
            store,
            service,
            fetcher,
            client,
            peers,
            addr,
            discovery,
            started: Instant::now(),
            fetches: AtomicU32::new(0),
            parts: std::sync::Mutex::new(Vec::new()),
            data_dir: std::sync::OnceLock::new(),
            cfg,
        });
        let node = Node { inner, stop, tasks };
        if let Some(d) = &node.inner.discovery {
            let events = d.start(Advert {
                node: id,
                port: addr.port(),
            })?;
            node.tasks.spawn(node.clone().pump_discovery(events));
        }
        node.tasks.spawn(node.clone().prober());
        if node.inner.cfg.cache {
            node.tasks.spawn(node.clone().seed_worker(seed_rx));
        }
        Ok(node)
    }

    async fn pump_discovery(self, mut events: mpsc::Receiver<crate::discovery::DiscoveryEvent>) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                ev = events.recv() => match ev {
                    Some(ev) => {
                        let up = matches!(ev, crate::discovery::DiscoveryEvent::Up { .. });
                        self.inner.peers.apply(ev);
                        if up {
                            // Say hello at once rather than at the next round.
                            self.probe_now().await;
                        }
                    }
                    None => return,
                },
            }
        }
    }

    async fn prober(self) {
        loop {
            self.probe_now().await;
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(self.inner.cfg.probe_interval) => {}
            }
        }
    }

    /// Says hello to every known peer now.
    pub async fn probe_now(&self) {
        self.inner
            .peers
            .probe(&self.inner.client, self.inner.cfg.hello_timeout)
            .await;
    }

    async fn seed_worker(self, mut rx: mpsc::Receiver<ContentId>) {
        loop {
            let id = tokio::select! {
                _ = self.stop.cancelled() => return,
                id = rx.recv() => match id { Some(id) => id, None => return },
            };
            let events: Events = Arc::new(|_| {});
            match self
                .fetch(id, FetchOptions::default(), events, self.stop.child_token())
                .await
            {
                Ok(_) => tracing::info!("seeded {}", id.ticket()),
                Err(e) => tracing::warn!("seeding {}: {e}", id.ticket()),
            }
        }
    }

    /// Keeps `id` from eviction while the lease lives.
    pub fn lease(&self, id: ContentId) -> crate::store::Lease {
        self.inner.cfg.leases.lease(id)
    }

    /// The data directory it was opened on ([`Node::open`]), if any.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.inner.data_dir.get().map(PathBuf::as_path)
    }

    #[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
    fn data_dir_set(&self, dir: &std::path::Path) {
        let _ = self.inner.data_dir.set(dir.to_path_buf());
    }

    /// This node's ID.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The peer endpoint's address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SegmentStore> {
        &self.inner.store
    }

    /// The peer table.
    pub fn peers(&self) -> &PeerTable {
        &self.inner.peers
    }

    /// The group secret.
    pub fn secret(&self) -> &ServerSecret {
        &self.inner.cfg.secret
    }

    /// Waits until at least `n` peers of our group are alive, or `timeout` passes; returns how
    /// many are. Once the first peer answers, others get `settle` more to show up.
    pub async fn wait_for_peers(&self, n: usize, timeout: Duration, settle: Duration) -> usize {
        let mut deadline = Instant::now() + timeout;
        let mut settled = false;
        loop {
            let alive = self.inner.peers.fetch_peers().len();
            if alive >= n || Instant::now() >= deadline {
                return alive;
            }
            if alive > 0 && !settled {
                settled = true;
                deadline = deadline.min(Instant::now() + settle);
            }
            tokio::select! {
                _ = self.stop.cancelled() => return alive,
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Makes content in the store findable by peers.
    pub fn announce(&self, id: &ContentId) {
        self.inner.service.index(id);
    }

    /// Publishes a file (see [`crate::store::publish_file`]) and makes it findable.
    pub fn publish(
        &self,
        path: &std::path::Path,
        copy: bool,
        opts: &HashOptions,
    ) -> Result<(ContentInfo, bool), crate::store::PublishError> {
        let (info, new) = crate::store::publish_file(
            self.inner.store.as_ref(),
            path,
            &self.inner.cfg.secret,
            opts,
            copy,
            &mut |_| {},
        )?;
        self.announce(&info.id());
        Ok((info, new))
    }

    /// Removes content from the store (and from what peers can find).
    pub fn remove(&self, id: &ContentId) -> Result<bool, StoreError> {
        self.inner.service.unindex(id);
        self.inner.store.remove(id)
    }

    /// Checks every block of `only` (or of every content), repairing which blocks the store
    /// counts as present: a damaged block is no longer served, a restored one is again.
    pub fn verify(
        &self,
        only: Option<&ContentId>,
    ) -> Result<Vec<crate::store::Verified>, StoreError> {
        crate::store::verify(self.inner.store.as_ref(), only)
    }

    /// The store's records.
    pub fn list(&self) -> Result<Vec<ContentRecord>, StoreError> {
        self.inner.store.list()
    }

    /// Fetches content into the store: from peers, and blocks no peer holds from
    /// `opts.origin`; content no peer knows at all is downloaded whole from the origin and
    /// checked against the ticket. The content is then served to peers.
    pub async fn fetch(
        &self,
        id: ContentId,
        opts: FetchOptions,
        events: Events,
        cancel: CancellationToken,
    ) -> Result<(Arc<ContentInfo>, FetchReport), FetchError> {
        struct Counted<'a>(&'a AtomicU32);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.inner.fetches.fetch_add(1, Ordering::Relaxed);
        let _counted = Counted(&self.inner.fetches);
        // Not evicted while it is being fetched (on a cache node near its cap).
        let _lease = self.inner.cfg.leases.lease(id);
        self.fetch_inner(id, opts, events, cancel).await
    }

    async fn fetch_inner(
        &self,
        id: ContentId,
        opts: FetchOptions,
        events: Events,
        cancel: CancellationToken,
    ) -> Result<(Arc<ContentInfo>, FetchReport), FetchError> {
        let mut peers = self.inner.peers.fetch_peers();
        let mut info = self
            .inner
            .fetcher
            .content_info(&id, &peers, opts.chunk_timeout)
            .await;
        if matches!(info, Err(FetchError::NoInfo { .. })) && opts.origin.is_some() {
            // Nobody has it: one of the nodes that want it downloads it from the origin, and
            // the others take it from that download as it arrives.
            match self.elect(id, &opts, &[], &cancel).await? {
                whole @ (Ballot::Lead(_) | Ballot::Follow(..)) => {
                    match self.whole(id, whole, &opts, &events, &cancel).await? {
                        whole::Whole::Done(info, report) => return Ok((info, report)),
                        // The leader finished before this node caught up.
                        whole::Whole::Known(known) => info = Ok(known),
                    }
                }
                Ballot::Found(known) => info = Ok(known),
            }
            peers = self.inner.peers.fetch_peers();
        }
        let info = info?;
        self.announce(&id);
        let report = self
            .inner
            .fetcher
            .fetch(Arc::clone(&info), &peers, &opts, events, cancel)
            .await?;
        Ok((info, report))
    }

    /// Keeps content that arrived whole in `file` (a download checked against `info`): its
    /// information and blocks go into the store under `name` (each block checked again on the
    /// way in), leased from eviction meanwhile, and peers can find it. The one place content
    /// downloaded whole enters the store.
    pub async fn keep_file(
        &self,
        info: &Arc<ContentInfo>,
        name: &str,
        file: Arc<std::fs::File>,
    ) -> Result<(), StoreError> {
        let store = Arc::clone(&self.inner.store);
        let (info2, name) = (Arc::clone(info), name.to_string());
        let lease = self.lease(info.id());
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let _lease = lease;
            store.put_content(&info2, &name, crate::store::Origin::Fetched)?;
            crate::store::copy_file_blocks(store.as_ref(), &info2, &file)
        })
        .await
        .map_err(|e| StoreError::io("storing", std::io::Error::other(e)))??;
        self.announce(&info.id());
        Ok(())
    }

    /// After content was fetched into the file at `path`: the content is served from that file
    /// from now on (published in place), and the copies in the store are dropped, so a fetch
    /// to a file takes its size on disk once, not twice. A cache node keeps its copies.
    pub fn keep_in_place(
        &self,
        info: &ContentInfo,
        path: &std::path::Path,
    ) -> Result<(), StoreError> {
        if self.inner.cfg.cache {
            return self.inner.store.sync_content(&info.id());
        }
        let origin = crate::store::published_origin(path)?;
        let name = crate::store::name_of(path);
        self.inner.store.put_content(info, &name, origin)?;
        Ok(())
    }

    /// Puts a fetch's output file in place ([`crate::fetch::PartFile::commit`]) and serves the
    /// content from it from now on ([`Node::keep_in_place`]), on a blocking thread.
    pub async fn commit_output(
        &self,
        part: crate::fetch::PartFile,
        info: &Arc<ContentInfo>,
    ) -> Result<(), StoreError> {
        let node = self.clone();
        let info = Arc::clone(info);
        tokio::task::spawn_blocking(move || {
            let path = part.path().to_path_buf();
            part.commit_len(info.layout().content_len())?;
            node.keep_in_place(&info, &path)
        })
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::io(
                "writing the output",
                std::io::Error::other(e),
            ))
        })
    }

    /// Fetches `id` ([`Node::fetch`]) and, with `output`, writes it into that file atomically
    /// as it arrives ([`crate::fetch::PartFile`]), puts the file in place when complete and
    /// serves the content from it from now on ([`Node::commit_output`]). What `pdist fetch`
    /// does, through a running node or with a node of its own.
    pub async fn fetch_into(
        &self,
        id: ContentId,
        output: Option<&std::path::Path>,
        mut opts: FetchOptions,
        events: Events,
        cancel: CancellationToken,
    ) -> Result<(Arc<ContentInfo>, FetchReport), FetchError> {
        use crate::fetch::PartFile;
        // Named after the content's lookup key (not secret: it is on the wire), so that the
        // same fetch run again finds what this one leaves if it is stopped or killed.
        let tag = hex::encode(&ContentKeys::new(&id).lookup.0[..8]);
        let part = output.map(|o| PartFile::resumable(o, &tag)).transpose()?;
        opts.sink = part.as_ref().map(PartFile::sink);
        opts.resumed = part.as_ref().map_or(0, PartFile::held);
        match self.fetch(id, opts, events, cancel).await {
            Ok((info, report)) => {
                if let Some(part) = part {
                    self.commit_output(part, &info).await?;
                }
                Ok((info, report))
            }
            Err(e) => {
                if let Some(part) = part {
                    if matches!(
                        e,
                        FetchError::Origin(crate::origin::OriginError::Changed(_))
                    ) {
                        // Its bytes are not the content: nothing to go on from.
                        part.discard();
                    } else if part.held() > 0 {
                        tracing::info!(
                            "{} bytes fetched so far are kept for the same fetch to go on from",
                            part.held()
                        );
                    }
                }
                Err(e)
            }
        }
    }

    /// Answers peers' [`crate::wire::Request::Name`] lookups from `names` (the gateway's URL records).
    pub fn set_names(&self, names: Arc<dyn crate::peer::NameIndex>) {
        self.inner.service.set_names(names);
    }

    /// Asks every live peer of the group for the record filed under `key` (each within the
    /// hello timeout), and returns the first that `open` accepts, with the peer that sent it. A
    /// peer's record is only its claim: `open` opens and checks it, so a peer answering with
    /// what does not open cannot hide an honest peer's record.
    pub async fn ask_name<T>(
        &self,
        key: [u8; 32],
        open: impl Fn(PeerAddr, &[u8]) -> Option<T>,
    ) -> Option<(PeerAddr, T)> {
        let mut asks = tokio::task::JoinSet::new();
        for p in self.inner.peers.fetch_peers() {
            let node = self.clone();
            asks.spawn(async move {
                let key = crate::wire::LookupKey(key);
                let timeout = node.inner.cfg.hello_timeout;
                match node.inner.client.name(p.addr, key, timeout).await {
                    Ok(Some(sealed)) => Some((p.addr, sealed)),
                    _ => None,
                }
            });
        }
        while let Some(r) = asks.join_next().await {
            if let Ok(Some((peer, sealed))) = r
                && let Some(opened) = open(peer, &sealed)
            {
                return Some((peer, opened));
            }
        }
        None
    }

    /// Asks cache nodes (all, or the one whose name or ID is `on`) to fetch and keep `id`.
    pub async fn seed(&self, id: ContentId, on: Option<&str>) -> Vec<SeedResult> {
        let mut out = Vec::new();
        for (node, name, addr, seed_key) in self.inner.peers.caches() {
            if let Some(on) = on
                && on != name
                && !node.to_hex().starts_with(on)
            {
                continue;
            }
            let timeout = self.inner.cfg.hello_timeout;
            // Sealed to that node alone: nobody else learns the ticket, in any group.
            let sealed_id = crate::wire::seal_seed(&seed_key, &node, &id);
            let accepted = matches!(
                self.inner.client.seed(addr, sealed_id, timeout).await,
                Ok(true)
            );
            out.push(SeedResult {
                node: name,
                addr,
                accepted,
            });
        }
        out
    }

    /// Adds `part`'s figures to the node's status under `name` (replacing a part of that name).
    pub fn add_status_part(&self, name: &str, part: Arc<dyn StatusPart>) {
        let mut parts = self.inner.parts.lock().expect("status parts lock");
        parts.retain(|(n, _)| n != name);
        parts.push((name.to_string(), part));
    }

    /// The node's status.
    pub fn status(&self) -> Result<NodeStatus, StoreError> {
        let stats = self.inner.service.stats();
        let peers = self.inner.peers.views(stats);
        Ok(NodeStatus {
            id: self.inner.id.to_hex(),
            name: self.inner.cfg.name.clone(),
            listen: self.inner.addr,
            cache: self.inner.cfg.cache,
            uptime_secs: self.inner.started.elapsed().as_secs(),
            usage: self.inner.store.usage()?,
            fetches: self.inner.fetches.load(Ordering::Relaxed),
            serving: stats.busy.load(Ordering::Relaxed),
            bytes_served: stats.served.load(Ordering::Relaxed),
            bytes_received: stats.received.load(Ordering::Relaxed),
            peers_known: peers.len(),
            peers_alive: peers.iter().filter(|p| p.alive && p.group).count(),
            parts: self
                .inner
                .parts
                .lock()
                .expect("status parts lock")
                .iter()
                .map(|(n, p)| (n.clone(), p.status()))
                .collect(),
        })
    }

    /// The peer table as `pdist peers` shows it.
    pub fn peer_views(&self) -> Vec<PeerView> {
        self.inner.peers.views(self.inner.service.stats())
    }

    /// A token cancelled when the node shuts down (for work tied to it).
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Tracks a task as part of the node (it must end when [`Node::stopping`] fires).
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(fut);
    }

    /// Stops: says goodbye, stops accepting, lets running transfers end, waits for every task.
    pub async fn shutdown(&self) {
        if let Some(d) = &self.inner.discovery {
            d.stop().await;
        }
        if let Listen::Mem(net, a) = &self.inner.cfg.listen {
            net.detach(*a);
        }
        self.stop.cancel();
        // Transfers get a while to finish; a peer that stopped reading does not hold the node.
        let drain = async {
            self.inner.service.drain().await;
            self.tasks.close();
            self.tasks.wait().await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!(
                "stopping without waiting longer for {} tasks",
                self.tasks.len()
            );
        }
    }
}
