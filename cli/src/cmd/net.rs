//! `pdist node`, `peers`, `status` and `seed`, and what the commands share for talking to a
//! running node through its control socket.

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use engine::discovery::{Discovery, mdns::MdnsDiscovery};
use engine::node::control::{self, ControlClient, ErrorKind};
use engine::node::{Listen, Node, NodeConfig};
use engine::peer::http::HttpTransport;
use engine::store::SegmentStore;
use hyper::Method;
use serde_json::{Value, json};

use super::store::{data_dir, human_bytes, open_store_with};
use super::{Failed, UsageError};
use crate::args::{GlobalArgs, JsonArgs, NodeArgs, SeedArgs};

/// A multi-threaded runtime for the commands that use the network.
pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Logs to standard error; `PDIST_LOG` (tracing filter syntax) overrides `default`.
pub(super) fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PDIST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
        .with_target(false)
        .try_init();
}

/// The running node's control client, if a node runs on this data directory.
pub(super) async fn client(global: &GlobalArgs) -> anyhow::Result<Option<ControlClient>> {
    Ok(ControlClient::connect(&data_dir(global)?).await)
}

/// The running node's control client, or a clear error.
pub(super) async fn require_node(global: &GlobalArgs) -> anyhow::Result<ControlClient> {
    let dir = data_dir(global)?;
    client(global).await?.ok_or_else(|| {
        Failed {
            kind: ErrorKind::Unavailable,
            msg: format!(
                "no pdist node is running on {} (start one with `pdist node`)",
                dir.display()
            ),
        }
        .into()
    })
}

/// One JSON request to the node; its errors keep their kind.
pub(super) async fn call(
    c: &ControlClient,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    c.json(method, uri, body)
        .await
        .context("talking to the running node")?
        .map_err(|(kind, msg)| Failed { kind, msg }.into())
}

/// Resolves `--peer HOST:PORT` arguments.
pub(super) fn resolve_peers(peers: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for p in peers {
        let addrs = p
            .to_socket_addrs()
            .map_err(|e| UsageError(format!("--peer {p:?}: {e} (expected HOST:PORT)")))?;
        out.extend(addrs.filter(SocketAddr::is_ipv4).take(1));
    }
    Ok(out)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "pdist".into())
}

/// Starts a node on this data directory (the `pdist node` command, and fetches without one).
pub(super) async fn start_node(
    global: &GlobalArgs,
    listen: SocketAddr,
    peers: &[String],
    mdns: bool,
    interfaces: &[String],
    name: Option<String>,
    corrupt: bool,
) -> anyhow::Result<Node> {
    let dir = data_dir(global)?;
    let leases = engine::store::Leases::new();
    let store: Arc<dyn SegmentStore> = Arc::from(open_store_with(global, leases.clone())?);
    let name = name.unwrap_or_else(hostname);
    let discovery: Option<Arc<dyn Discovery>> = if mdns {
        Some(Arc::new(
            MdnsDiscovery::new(interfaces, &name).context("starting mDNS")?,
        ))
    } else {
        None
    };
    let cfg = NodeConfig {
        name,
        secret: super::secret(global)?,
        listen: Listen::Tcp(listen),
        cache: global.cache_size.is_some(),
        static_peers: resolve_peers(peers)?,
        probe_interval: Duration::from_secs(2),
        hello_timeout: Duration::from_secs(1),
        scratch: dir.join("tmp"),
        corrupt_blocks: corrupt,
        leases,
    };
    let transport = Arc::new(HttpTransport::new(Duration::from_secs(5)));
    Ok(Node::start(cfg, store, transport, discovery).await?)
}

pub(super) async fn signalled() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

pub fn node(global: &GlobalArgs, args: NodeArgs) -> anyhow::Result<()> {
    init_logging("info");
    runtime()?.block_on(async {
        let dir = data_dir(global)?;
        let node = start_node(
            global,
            args.listen,
            &args.peer.peers,
            !args.peer.no_mdns,
            &args.peer.interfaces,
            args.peer.name,
            args.serve_corrupt,
        )
        .await?;
        let sock = dir.join(control::SOCKET_NAME);
        control::serve(node.clone(), sock.clone())
            .with_context(|| format!("opening the control socket {}", sock.display()))?;
        let cache = if global.cache_size.is_some() {
            " (cache node)"
        } else {
            ""
        };
        tracing::info!(
            "node {} serving peers on {}{cache}; data in {}",
            node.id(),
            node.addr(),
            dir.display()
        );
        signalled().await;
        tracing::info!("stopping: saying goodbye and letting transfers finish");
        node.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

pub fn peers(global: &GlobalArgs, args: JsonArgs) -> anyhow::Result<()> {
    let v = runtime()?.block_on(async {
        let c = require_node(global).await?;
        call(&c, Method::GET, "/v1/peers", None).await
    })?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<24} {:<22} {:<6} {:<6} {:<7} {:<6} {:>9} {:>10} {:>10}",
        "NAME", "ADDRESS", "GROUP", "ALIVE", "VIA", "CACHE", "CONTENTS", "SENT", "RECEIVED"
    )?;
    for p in v.as_array().into_iter().flatten() {
        let yes = |b: &Value| {
            if b.as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            }
        };
        let addr = p["addrs"][0].as_str().unwrap_or("-");
        writeln!(
            out,
            "{:<24} {:<22} {:<6} {:<6} {:<7} {:<6} {:>9} {:>10} {:>10}",
            p["name"].as_str().unwrap_or("?"),
            addr,
            yes(&p["group"]),
            yes(&p["alive"]),
            p["via"].as_str().unwrap_or("?"),
            yes(&p["cache"]),
            p["contents"].as_u64().map_or("-".into(), |n| n.to_string()),
            human_bytes(p["bytes_to"].as_u64().unwrap_or(0)),
            human_bytes(p["bytes_from"].as_u64().unwrap_or(0)),
        )?;
    }
    Ok(())
}

pub fn status(global: &GlobalArgs, args: JsonArgs) -> anyhow::Result<()> {
    let v = runtime()?.block_on(async {
        let c = require_node(global).await?;
        call(&c, Method::GET, "/v1/status", None).await
    })?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let u = |k: &str| v["usage"][k].as_u64().unwrap_or(0);
    writeln!(
        out,
        "node      {} ({})",
        v["id"].as_str().unwrap_or("?"),
        v["name"].as_str().unwrap_or("?")
    )?;
    writeln!(
        out,
        "listening {}{}",
        v["listen"].as_str().unwrap_or("?"),
        if v["cache"].as_bool() == Some(true) {
            " (cache node)"
        } else {
            ""
        }
    )?;
    writeln!(out, "uptime    {} s", n("uptime_secs"))?;
    writeln!(
        out,
        "store     {} contents, {} stored, {} published in place",
        u("contents"),
        human_bytes(u("stored_bytes")),
        human_bytes(u("in_place_bytes"))
    )?;
    writeln!(
        out,
        "peers     {} alive of {} known",
        n("peers_alive"),
        n("peers_known")
    )?;
    writeln!(
        out,
        "transfers {} fetching, {} serving",
        n("fetches"),
        n("serving")
    )?;
    writeln!(
        out,
        "bytes     {} served, {} received",
        human_bytes(n("bytes_served")),
        human_bytes(n("bytes_received"))
    )?;
    let g = &v["gateway"];
    if g.is_object() {
        let b = |k: &str| g[k].as_u64().unwrap_or(0);
        match g["reverse"].as_str() {
            Some(backend) => writeln!(
                out,
                "gateway   http://{} in front of {backend}",
                g["listen"].as_str().unwrap_or("?")
            )?,
            None => writeln!(
                out,
                "gateway   proxy on http://{}",
                g["listen"].as_str().unwrap_or("?")
            )?,
        }
        let hit = if b("cacheable") == 0 {
            "-".to_string()
        } else {
            format!("{:.0}%", 100.0 * b("hits") as f64 / b("cacheable") as f64)
        };
        writeln!(
            out,
            "sent      {} from the store, {} from peers, {} from origins; hits {hit} of {} cacheable; {} transfers running",
            human_bytes(b("bytes_store")),
            human_bytes(b("bytes_peers")),
            human_bytes(b("bytes_origin")),
            b("cacheable"),
            g["in_flight"].as_i64().unwrap_or(0)
        )?;
    }
    Ok(())
}

pub fn seed(global: &GlobalArgs, args: SeedArgs) -> anyhow::Result<()> {
    super::store::parse_ticket(&args.ticket)?;
    let v = runtime()?.block_on(async {
        let c = require_node(global).await?;
        call(
            &c,
            Method::POST,
            "/v1/seed",
            Some(json!({"ticket": args.ticket, "on": args.on})),
        )
        .await
    })?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{v}")?;
    }
    let rows = v.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return Err(Failed {
            kind: ErrorKind::Unavailable,
            msg: match &args.on {
                Some(on) => format!("no cache node named {on:?} is alive in this group"),
                None => "no cache node is alive in this group (start one with `pdist node --cache-size SIZE`)".into(),
            },
        }
        .into());
    }
    if !args.json {
        for r in &rows {
            let what = if r["accepted"].as_bool() == Some(true) {
                "fetching it"
            } else {
                "refused"
            };
            writeln!(
                out,
                "{} ({}): {what}",
                r["node"].as_str().unwrap_or("?"),
                r["addr"].as_str().unwrap_or("?")
            )?;
        }
    }
    Ok(())
}
