//! `pdist node`, `peers`, `status` and `seed`.

use std::io::{self, Write};

use engine::Node;
use engine::node::control::api::{NodeStatus, SeedRequest};
use engine::node::control::{ErrorKind, Failure};

use crate::args::{GlobalArgs, JsonArgs, NodeArgs, SeedArgs};
use crate::options::{self, data_dir, ticket};
use crate::print::{human_bytes, yes};
use crate::process::{init_logging, require_node, runtime, signalled};

pub fn node(global: &GlobalArgs, args: NodeArgs) -> anyhow::Result<()> {
    init_logging("info");
    let dir = data_dir(global)?;
    let opts = options::node(global, args.listen, &args.peer)?;
    let corrupt = args.serve_corrupt;
    runtime()?.block_on(async {
        let node = Node::open_with(&dir, opts, |c| c.corrupt_blocks = corrupt).await?;
        node.serve_control()?;
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
    let peers =
        runtime()?.block_on(async { anyhow::Ok(require_node(global).await?.peers().await?) })?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&peers)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<24} {:<22} {:<6} {:<6} {:<7} {:<6} {:>9} {:>10} {:>10}",
        "NAME", "ADDRESS", "GROUP", "ALIVE", "VIA", "CACHE", "CONTENTS", "SENT", "RECEIVED"
    )?;
    for p in &peers {
        let addr = p.addrs.first().map_or("-".to_string(), |a| a.to_string());
        writeln!(
            out,
            "{:<24} {:<22} {:<6} {:<6} {:<7} {:<6} {:>9} {:>10} {:>10}",
            p.name,
            addr,
            yes(p.group),
            yes(p.alive),
            p.via.to_string(),
            yes(p.cache),
            p.contents.map_or("-".into(), |n| n.to_string()),
            human_bytes(p.bytes_to),
            human_bytes(p.bytes_from),
        )?;
    }
    Ok(())
}

pub fn status(global: &GlobalArgs, args: JsonArgs) -> anyhow::Result<()> {
    let s =
        runtime()?.block_on(async { anyhow::Ok(require_node(global).await?.status().await?) })?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&s)?)?;
        return Ok(());
    }
    print_status(&mut out, &s)?;
    Ok(())
}

fn print_status(out: &mut impl Write, s: &NodeStatus) -> anyhow::Result<()> {
    writeln!(out, "node      {} ({})", s.id, s.name)?;
    let cache = if s.cache { " (cache node)" } else { "" };
    writeln!(out, "listening {}{cache}", s.listen)?;
    writeln!(out, "uptime    {} s", s.uptime_secs)?;
    let u = &s.usage;
    writeln!(
        out,
        "store     {} contents, {} stored, {} published in place",
        u.contents,
        human_bytes(u.stored_bytes),
        human_bytes(u.in_place_bytes)
    )?;
    writeln!(
        out,
        "peers     {} alive of {} known",
        s.peers_alive, s.peers_known
    )?;
    writeln!(
        out,
        "transfers {} fetching, {} serving",
        s.fetches, s.serving
    )?;
    writeln!(
        out,
        "bytes     {} served, {} received",
        human_bytes(s.bytes_served),
        human_bytes(s.bytes_received)
    )?;
    if let Some(g) = s.parts.get("gateway") {
        let g: http_gateway::metrics::GatewayStatus = serde_json::from_value(g.clone())?;
        match &g.reverse {
            Some(backend) => writeln!(out, "gateway   http://{} in front of {backend}", g.listen)?,
            None => writeln!(out, "gateway   proxy on http://{}", g.listen)?,
        }
        let f = &g.figures;
        let hit = if f.cacheable == 0 {
            "-".to_string()
        } else {
            format!("{:.0}%", 100.0 * f.hits as f64 / f.cacheable as f64)
        };
        writeln!(
            out,
            "sent      {} from the store, {} from peers, {} from origins; hits {hit} of {} cacheable; {} transfers running",
            human_bytes(f.bytes_store),
            human_bytes(f.bytes_peers),
            human_bytes(f.bytes_origin),
            f.cacheable,
            f.in_flight
        )?;
    }
    Ok(())
}

pub fn seed(global: &GlobalArgs, args: SeedArgs) -> anyhow::Result<()> {
    ticket(&args.ticket)?;
    let req = SeedRequest {
        ticket: args.ticket.clone(),
        on: args.on.clone(),
    };
    let rows =
        runtime()?.block_on(async { anyhow::Ok(require_node(global).await?.seed(&req).await?) })?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&rows)?)?;
    }
    if rows.is_empty() {
        let msg = match &args.on {
            Some(on) => format!("no cache node named {on:?} is alive in this group"),
            None => "no cache node is alive in this group (start one with `pdist node --cache-size SIZE`)".into(),
        };
        return Err(Failure::new(ErrorKind::Unavailable, msg).into());
    }
    if !args.json {
        for r in &rows {
            let what = if r.accepted { "fetching it" } else { "refused" };
            writeln!(out, "{} ({}): {what}", r.node, r.addr)?;
        }
    }
    Ok(())
}
