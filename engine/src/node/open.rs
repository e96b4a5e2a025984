//! The node's front door: [`Node::open`] starts a node on a data directory with
//! [`NodeOptions`] (every field has a default): the store in it (RocksDB, capped and evicting
//! for a cache node), the peer endpoint on TCP, mDNS discovery, and static peers. What a test
//! swaps (the store, the transport, discovery, serving corrupted blocks) goes through the lower
//! door, [`Node::start`] with a [`NodeConfig`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{DEFAULT_PORT, Listen, Node, NodeConfig, NodeError};
use crate::content::ServerSecret;
use crate::discovery::Discovery;
use crate::discovery::mdns::MdnsDiscovery;
use crate::peer::http::HttpTransport;
use crate::store::{Leases, SegmentStore, StoreError};

/// How a node opened with [`Node::open`] runs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The name peers see. Default: the host name.
    pub name: Option<String>,
    /// The group secret, also the server secret of the content information it builds.
    /// Default: the open group's public constant.
    pub secret: ServerSecret,
    /// Where the peer endpoint listens (port 0: any free port). Default `0.0.0.0:7461`.
    pub listen: SocketAddr,
    /// Peers given by address, besides those mDNS finds. Default: none.
    pub peers: Vec<SocketAddr>,
    /// Find peers with mDNS. Default: on.
    pub mdns: bool,
    /// mDNS only on these interfaces. Default: every interface.
    pub interfaces: Vec<String>,
    /// A cache node whose store holds at most this many bytes, evicting the least recently
    /// used content past it. Default: not a cache node, no cap.
    pub cache_size: Option<u64>,
    /// A cap on the store (least recently used content evicted past it) for a node that is not
    /// a cache node: a gateway's cache. `cache_size` wins when both are given. Default: none.
    pub store_cap: Option<u64>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            name: None,
            secret: ServerSecret::open_group(),
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            peers: Vec::new(),
            mdns: true,
            interfaces: Vec::new(),
            cache_size: None,
            store_cap: None,
        }
    }
}

/// How often peers are said hello to.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a hello (and other short requests) may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a peer's answer may take to begin.
const TRANSPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The store in `data_dir` (RocksDB and segment files), capped at `cache_size` bytes when
/// given (evicting least-recently-used content not leased in `leases`).
pub fn open_store(
    data_dir: &Path,
    cache_size: Option<u64>,
    leases: Leases,
) -> Result<Box<dyn SegmentStore>, StoreError> {
    let store = crate::store::RocksStore::open(data_dir, Default::default())?;
    Ok(match cache_size {
        Some(cap) => Box::new(crate::store::CappedStore::new(store, cap, leases)),
        None => Box::new(store),
    })
}

/// Where whole downloads without an output file are written while they arrive.
const SCRATCH_DIR: &str = "tmp";

/// Removes the scratch files a killed run left (whole downloads cut short, which a new run
/// starts again); logs what it freed.
fn clean_scratch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let (mut files, mut bytes) = (0u64, 0u64);
    for e in entries.flatten() {
        let len = e.metadata().map_or(0, |m| m.len());
        if e.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(e.path()).is_ok() {
            files += 1;
            bytes += len;
        }
    }
    if files > 0 {
        tracing::info!(
            "removed {files} scratch files ({bytes} bytes) a previous run left in {}",
            dir.display()
        );
    }
}

/// The host's name, as peers see a node by default.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "pdist".into())
}

impl Node {
    /// Starts a node on the store in `data_dir`, as `opts` says.
    pub async fn open(data_dir: &Path, opts: NodeOptions) -> Result<Node, NodeError> {
        Node::open_with(data_dir, opts, |_| {}).await
    }

    /// [`Node::open`], with `tune` changing the low-level configuration before the node
    /// starts (tests that need a node misbehaving on a real network).
    pub async fn open_with(
        data_dir: &Path,
        opts: NodeOptions,
        tune: impl FnOnce(&mut NodeConfig),
    ) -> Result<Node, NodeError> {
        let leases = Leases::new();
        let store: Arc<dyn SegmentStore> = Arc::from(open_store(
            data_dir,
            opts.cache_size.or(opts.store_cap),
            leases.clone(),
        )?);
        // The store is ours (its lock is held): scratch files are from a run that was killed.
        clean_scratch(&data_dir.join(SCRATCH_DIR));
        let name = opts.name.unwrap_or_else(host_name);
        let discovery: Option<Arc<dyn Discovery>> = if opts.mdns {
            Some(Arc::new(MdnsDiscovery::new(&opts.interfaces, &name)?))
        } else {
            None
        };
        let mut cfg = NodeConfig {
            name,
            secret: opts.secret,
            listen: Listen::Tcp(opts.listen),
            cache: opts.cache_size.is_some(),
            static_peers: opts.peers,
            probe_interval: PROBE_INTERVAL,
            hello_timeout: HELLO_TIMEOUT,
            scratch: data_dir.join(SCRATCH_DIR),
            corrupt_blocks: false,
            leases,
        };
        tune(&mut cfg);
        let transport = Arc::new(HttpTransport::new(TRANSPORT_TIMEOUT));
        let node = Node::start(cfg, store, transport, discovery).await?;
        node.data_dir_set(data_dir);
        Ok(node)
    }

    /// Serves the control API on the socket in the data directory the node was opened on.
    pub fn serve_control(&self) -> Result<std::path::PathBuf, NodeError> {
        let dir = self.data_dir().ok_or(NodeError::NoDataDir)?.to_path_buf();
        let sock = dir.join(super::control::SOCKET_NAME);
        super::control::serve(self.clone(), sock.clone()).map_err(|source| NodeError::Control {
            path: sock.clone(),
            source,
        })?;
        Ok(sock)
    }
}
