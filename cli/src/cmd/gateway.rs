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
    let opts = options::node(global, args.peer_listen, &args.peer)?;
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
        tracing::info!(
            "node {} on {}; peers' URL records are {}; data in {}",
            node.id(),
            node.addr(),
            if trust_peers {
                "trusted (group secret set)"
            } else {
                "not used (open group: set --secret to share URLs with your peers)"
            },
            dir.display()
        );
        signalled().await;
        tracing::info!("stopping: letting responses finish");
        gw.shutdown().await;
        node.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}
