//! Where flags and environment variables (clap reads both) become the library's options: the
//! data directory, the group secret, hashing, a node's options, a gateway's configuration. The
//! one place; commands take what it gives them. Errors here are usage errors and name the flag.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::Context;
use engine::content::HashOptions;
use engine::store::SegmentStore;
use engine::{NodeOptions, ServerSecret, Ticket};
use http_gateway::GatewayConfig;

use crate::UsageError;
use crate::args::{GatewayArgs, GlobalArgs, PeerArgs};

/// The data directory: `--data-dir`, `PDIST_DATA_DIR`, or the XDG data directory.
pub fn data_dir(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(d) = &global.data_dir {
        return Ok(d.clone());
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("pdist"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("no data directory: set --data-dir, PDIST_DATA_DIR or HOME")?;
    Ok(PathBuf::from(home).join(".local/share/pdist"))
}

/// The server secret from `--secret` / `--secret-file`, or the open group's.
pub fn secret(global: &GlobalArgs) -> anyhow::Result<ServerSecret> {
    if let Some(path) = &global.secret_file {
        let hex = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("reading --secret-file {}: {e}", path.display())))?;
        return ServerSecret::from_hex(hex.trim()).map_err(|e| {
            UsageError(format!("{} must hold hex bytes: {e}", path.display())).into()
        });
    }
    match &global.secret {
        None => Ok(ServerSecret::open_group()),
        Some(hex) => ServerSecret::from_hex(hex.trim()).map_err(|e| {
            UsageError(format!(
                "--secret must be hex bytes (an even number of 0-9a-f digits): {e}"
            ))
            .into()
        }),
    }
}

/// The secret of the group this command's node or store joins: [`secret`], and if one was
/// given, one too strong to guess ([`ServerSecret::check_group`]).
pub fn group_secret(global: &GlobalArgs) -> anyhow::Result<ServerSecret> {
    let s = secret(global)?;
    if has_secret(global) {
        s.check_group().map_err(|e| {
            UsageError(format!(
                "{e}: make one with `pdist secret new -o FILE` and pass --secret-file FILE"
            ))
        })?;
        if let Some(path) = &global.secret_file {
            warn_if_readable_by_others(path);
        }
    }
    Ok(s)
}

/// Says so on stderr when a secret file can be read by users other than its owner.
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "pdist: warning: {} can be read by other users (mode {:o}); chmod 600 it",
            path.display(),
            m.permissions().mode() & 0o777
        );
    }
}

/// Whether a group secret was given (then peers are trusted with URL records).
pub fn has_secret(global: &GlobalArgs) -> bool {
    global.secret.is_some() || global.secret_file.is_some()
}

/// How files are hashed (`--threads`).
pub fn hash_options(global: &GlobalArgs) -> HashOptions {
    HashOptions {
        threads: global.threads,
        ..HashOptions::default()
    }
}

/// The store in the data directory, capped by `--cache-size` when given.
pub fn open_store(global: &GlobalArgs) -> anyhow::Result<Box<dyn SegmentStore>> {
    let dir = data_dir(global)?;
    engine::node::open_store(&dir, global.cache_size, Default::default())
        .with_context(|| format!("opening the store in {}", dir.display()))
}

/// A ticket argument.
pub fn ticket(s: &str) -> anyhow::Result<Ticket> {
    s.parse::<Ticket>()
        .map_err(|e| UsageError(format!("{s:?} is not a ticket: {e}")).into())
}

/// `--peer HOST:PORT` arguments, resolved (the first IPv4 address of each).
pub fn peers(peers: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for p in peers {
        let addrs = p
            .to_socket_addrs()
            .map_err(|e| UsageError(format!("--peer {p:?}: {e} (expected HOST:PORT)")))?;
        out.extend(addrs.filter(SocketAddr::is_ipv4).take(1));
    }
    Ok(out)
}

/// A node's options: its endpoint, how it finds peers, its name, group and cache size.
pub fn node(global: &GlobalArgs, listen: SocketAddr, p: &PeerArgs) -> anyhow::Result<NodeOptions> {
    Ok(NodeOptions {
        name: p.name.clone(),
        secret: group_secret(global)?,
        listen,
        peers: peers(&p.peers)?,
        mdns: !p.no_mdns,
        interfaces: p.interfaces.clone(),
        cache_size: global.cache_size,
        store_cap: None,
    })
}

/// The gateway's node: as [`node`], but a peer endpoint on loopback (the default) is not
/// advertised on mDNS, since no other host can reach it.
pub fn gateway_node(global: &GlobalArgs, args: &GatewayArgs) -> anyhow::Result<NodeOptions> {
    let mut opts = node(global, args.peer_listen, &args.peer)?;
    if args.peer_listen.ip().is_loopback() {
        opts.mdns = false;
    }
    if global.cache_size.is_none() {
        opts.store_cap = Some(default_gateway_cap(&data_dir(global)?)?);
    }
    Ok(opts)
}

/// A gateway's cache by default: at most half the size of the filesystem holding its data
/// directory (least recently used content evicted past it), so a busy cache never fills the
/// disk it shares with the system.
pub fn default_gateway_cap(dir: &std::path::Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let fs = rustix::fs::statvfs(dir)
        .map_err(std::io::Error::from)
        .with_context(|| format!("the size of the filesystem holding {}", dir.display()))?;
    Ok(fs.f_blocks.saturating_mul(fs.f_frsize) / 2)
}

/// `--origin` unless `--no-origin`, checked.
pub fn origin(origin: &Option<String>, no_origin: bool) -> anyhow::Result<Option<String>> {
    let origin = if no_origin { None } else { origin.clone() };
    if let Some(u) = &origin {
        engine::OriginClient::new(u, std::time::Duration::from_secs(30))
            .map_err(|e| UsageError(format!("--origin: {e}")))?;
    }
    Ok(origin)
}

/// The gateway's configuration from `pdist gateway`'s flags.
pub fn gateway(global: &GlobalArgs, args: &GatewayArgs) -> anyhow::Result<GatewayConfig> {
    let reverse = match &args.reverse {
        None => None,
        Some(u) => {
            let uri: hyper::Uri = u
                .parse()
                .map_err(|e| UsageError(format!("--reverse {u:?}: {e}")))?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(UsageError(format!(
                    "--reverse {u:?}: expected http://HOST[:PORT] (HTTPS backends are not supported)"
                ))
                .into());
            }
            Some(uri)
        }
    };
    let dir = data_dir(global)?;
    let mut cfg = GatewayConfig::new(dir.join("gateway").join("spool"));
    cfg.listen = args.listen;
    cfg.allow = http_gateway::allow::AllowList::new(args.allow.clone());
    cfg.reverse = reverse;
    cfg.rate_per_client = args.rate;
    cfg.max_connections = args.max_connections;
    cfg.head_timeout = std::time::Duration::from_secs(args.head_timeout.max(1));
    cfg.origin_read_timeout = std::time::Duration::from_secs(args.origin_read_timeout.max(1));
    cfg.max_stale = std::time::Duration::from_secs(args.max_stale);
    if !args.connect_ports.is_empty() {
        cfg.connect.ports = args.connect_ports.clone();
    }
    cfg.connect.local = args.connect_local;
    cfg.connect.idle = std::time::Duration::from_secs(args.tunnel_idle.max(1));
    cfg.trust_peers = has_secret(global);
    cfg.origin_for_peered = !args.no_origin_for_peered;
    cfg.origin_info = !args.no_origin_info;
    http_gateway::guard_origins(&mut cfg);
    Ok(cfg)
}
