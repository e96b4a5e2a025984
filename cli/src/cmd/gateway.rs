//! `pdist gateway`: a node with the HTTP gateway in front of it, until Ctrl-C or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use engine::node::control;
use http_gateway::index::RocksIndex;
use http_gateway::{Gateway, GatewayConfig};

use super::UsageError;
use super::net::{init_logging, runtime, signalled, start_node};
use super::store::data_dir;
use crate::args::{GatewayArgs, GlobalArgs};

pub fn run(global: &GlobalArgs, args: GatewayArgs) -> anyhow::Result<()> {
    init_logging("info");
    let allow = http_gateway::allow::AllowList::parse(&args.allow).map_err(UsageError)?;
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
    let trust_peers = global.secret.is_some() || global.secret_file.is_some();
    runtime()?.block_on(async {
        let node = start_node(
            global,
            args.peer_listen,
            &args.peer.peers,
            !args.peer.no_mdns,
            &args.peer.interfaces,
            args.peer.name,
            false,
        )
        .await?;
        let index = RocksIndex::open(&dir.join("gateway").join("index"))
            .context("opening the gateway's index")?;
        let mut cfg = GatewayConfig::new(dir.join("gateway").join("spool"));
        cfg.listen = args.listen;
        cfg.allow = allow;
        cfg.reverse = reverse;
        cfg.rate_per_client = args.rate;
        cfg.max_connections = args.max_connections;
        cfg.trust_peers = trust_peers;
        cfg.origin_for_peered = !args.no_origin_for_peered;
        cfg.origin_info = !args.no_origin_info;
        let gw = Gateway::start(cfg.clone(), node.clone(), Arc::new(index))
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let sock = dir.join(control::SOCKET_NAME);
        control::serve(node.clone(), sock.clone())
            .with_context(|| format!("opening the control socket {}", sock.display()))?;
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
