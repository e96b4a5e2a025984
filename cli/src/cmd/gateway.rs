//! `pdist gateway`: a node with the HTTP gateway in front of it, until Ctrl-C or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use engine::Node;
use http_gateway::Gateway;
use http_gateway::index::RocksIndex;

use crate::args::{GatewayArgs, GlobalArgs};
use crate::options::{self, data_dir};
use crate::process::{init_logging, runtime, signalled};

pub fn run(global: &GlobalArgs, args: GatewayArgs) -> anyhow::Result<()> {
    init_logging("info");
    let cfg = options::gateway(global, &args)?;
    let opts = options::gateway_node(global, &args)?;
    let cap = opts.cache_size.or(opts.store_cap);
    let shared = !args.peer_listen.ip().is_loopback();
    let dir = data_dir(global)?;
    let trust_peers = cfg.trust_peers;
    runtime()?.block_on(async {
        let node = Node::open(&dir, opts).await?;
        let index = RocksIndex::open(&dir.join("gateway").join("index"))?;
        let gw = Gateway::start(cfg.clone(), node.clone(), Arc::new(index))
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        node.serve_control()?;
        match &cfg.reverse {
            Some(b) => tracing::info!("origin mode: http://{} in front of {b}", gw.addr()),
            None => tracing::info!(
                "proxy on http://{} (set http_proxy=http://{}/); clients allowed: {}",
                gw.addr(),
                gw.addr(),
                cfg.allow
                    .nets()
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
        if let Some(cap) = cap {
            tracing::info!(
                "cache: at most {} (least recently used evicted past it; {})",
                crate::print::human_bytes(cap),
                if global.cache_size.is_some() {
                    "--cache-size"
                } else {
                    "half the filesystem of the data directory by default; --cache-size to change"
                }
            );
        }
        if shared {
            tracing::info!(
                "node {}: peer endpoint {} shared with the LAN{}; URLs {}; data in {}",
                node.id(),
                node.addr(),
                if args.peer.no_mdns { "" } else { " (mDNS on)" },
                if trust_peers {
                    "shared with the group (group secret set)"
                } else {
                    "not shared (open group: give a group secret to share them)"
                },
                dir.display()
            );
        } else {
            tracing::info!(
                "node {}: peer endpoint {} on loopback only: nothing is shared with the LAN \
                 (give --peer-listen ADDR:PORT to share); data in {}",
                node.id(),
                node.addr(),
                dir.display()
            );
        }
        signalled().await;
        tracing::info!("stopping: letting responses finish");
        gw.shutdown().await;
        node.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}
