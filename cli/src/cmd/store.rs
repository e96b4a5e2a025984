//! `pdist publish`, `ls`, `rm` and `verify`: the commands that work on the local store, through
//! the running node when there is one.

use std::io::{self, IsTerminal, Write};

use anyhow::Context;
use engine::node::control::api::{PublishRequest, Published, RmRequest};
use engine::store::{Verified, name_of, publish_file, verify_content};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::args::{GlobalArgs, LsArgs, PublishArgs, RmArgs, VerifyArgs};
use crate::options::{group_secret, hash_options, open_store, ticket};
use crate::print::{ago, human_bytes, kind};
use crate::process::with_node;

/// Files at least this large get a progress bar while they are hashed (on a terminal).
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

fn progress_bar(len: u64, name: &str) -> Option<ProgressBar> {
    if len < PROGRESS_MIN_BYTES || !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(len).with_message(name.to_string());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .expect("the template is valid"),
    );
    Some(bar)
}

pub fn publish(global: &GlobalArgs, args: PublishArgs) -> anyhow::Result<()> {
    let mut paths = Vec::new();
    for p in &args.files {
        paths.push(std::path::absolute(p).with_context(|| format!("publishing {}", p.display()))?);
    }
    let req = PublishRequest {
        paths,
        copy: args.copy,
    };
    let mut out = io::stdout().lock();
    let mut print = |r: &Published| -> io::Result<()> {
        let note = if r.new {
            ""
        } else {
            "  (already in the store)"
        };
        writeln!(
            out,
            "{}  {}  {}{note}",
            r.ticket,
            r.name,
            human_bytes(r.size)
        )
    };
    // Through the running node (which needs absolute paths), else into the store here.
    let rows = match with_node(global, async |c| Ok(c.publish(&req).await?))? {
        Some(rows) => {
            if !args.json {
                rows.iter().try_for_each(&mut print)?;
            }
            rows
        }
        None => publish_here(global, &args, &mut print)?,
    };
    if args.json {
        writeln!(io::stdout().lock(), "{}", serde_json::to_string(&rows)?)?;
    }
    Ok(())
}

/// Publishes into the store directly (no node runs on it), with a progress bar for large files;
/// each row is printed (`print`, as text) as soon as its file is published.
fn publish_here(
    global: &GlobalArgs,
    args: &PublishArgs,
    print: &mut dyn FnMut(&Published) -> io::Result<()>,
) -> anyhow::Result<Vec<Published>> {
    let store = open_store(global)?;
    let secret = group_secret(global)?;
    let opts = hash_options(global);
    let mut rows = Vec::new();
    for path in &args.files {
        let name = name_of(path);
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let bar = progress_bar(size, &name);
        let published = publish_file(store.as_ref(), path, &secret, &opts, args.copy, &mut |n| {
            if let Some(b) = &bar {
                b.set_position(n);
            }
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let (info, new) = published?;
        let row = Published::new(&info, path, new, args.copy);
        if !args.json {
            print(&row)?;
        }
        rows.push(row);
    }
    Ok(rows)
}

pub fn ls(global: &GlobalArgs, args: LsArgs) -> anyhow::Result<()> {
    let mut records = match with_node(global, async |c| Ok(c.ls().await?))? {
        Some(r) => r,
        None => open_store(global)?.list()?,
    };
    records.sort_by_key(|r| std::cmp::Reverse(r.last_used_ms));
    let mut out = io::stdout().lock();
    if args.json {
        let rows: Vec<_> = records
            .iter()
            .map(|r| {
                json!({
                    "ticket": r.id.ticket().to_string(), "name": r.name, "size": r.len,
                    "blocks_present": r.blocks_present, "blocks_total": r.blocks_total,
                    "kind": kind(&r.origin), "pinned": r.pinned, "last_used_ms": r.last_used_ms,
                    "origin": r.origin,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(rows))?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<58}  {:>10}  {:>13}  {:<17}  {:<12}  NAME",
        "TICKET", "SIZE", "BLOCKS", "KIND", "LAST USED"
    )?;
    for r in &records {
        let pin = if r.pinned { ", pinned" } else { "" };
        writeln!(
            out,
            "{:<58}  {:>10}  {:>13}  {:<17}  {:<12}  {}",
            r.id.ticket().to_string(),
            human_bytes(r.len),
            format!("{}/{}", r.blocks_present, r.blocks_total),
            format!("{}{pin}", kind(&r.origin)),
            ago(r.last_used_ms),
            r.name
        )?;
    }
    Ok(())
}

pub fn rm(global: &GlobalArgs, args: RmArgs) -> anyhow::Result<()> {
    let tickets = args
        .tickets
        .iter()
        .map(|t| ticket(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let req = RmRequest {
        tickets: args.tickets.clone(),
    };
    let mut out = io::stdout().lock();
    if let Some(rows) = with_node(global, async |c| Ok(c.rm(&req).await?))? {
        let mut missing = Vec::new();
        for r in rows {
            if r.removed {
                writeln!(out, "removed {}", r.ticket)?;
            } else {
                missing.push(r.ticket);
            }
        }
        if !missing.is_empty() {
            anyhow::bail!("not in the store: {}", missing.join(", "));
        }
        return Ok(());
    }
    let store = open_store(global)?;
    let (mut missing, mut failed) = (Vec::new(), Vec::new());
    for t in tickets {
        // Go on with the others when one fails; report everything at the end.
        match store.remove(&t.content_id()) {
            Ok(true) => writeln!(out, "removed {t}")?,
            Ok(false) => missing.push(t.to_string()),
            Err(e) => failed.push(format!("removing {t}: {e}")),
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("{}", failed.join("; "));
    }
    if !missing.is_empty() {
        anyhow::bail!("not in the store: {}", missing.join(", "));
    }
    Ok(())
}

pub fn verify_cmd(global: &GlobalArgs, args: VerifyArgs) -> anyhow::Result<()> {
    let only = args.ticket.as_deref().map(ticket).transpose()?;
    // Through the running node, if there is one (the store is the node's).
    let req = engine::node::control::api::VerifyRequest {
        ticket: only.as_ref().map(ToString::to_string),
    };
    if let Some(checked) = with_node(global, async |c| Ok(c.verify(&req).await?))? {
        print_verified(&checked, args.json)?;
        return verified(&checked);
    }
    let store = open_store(global)?;
    let records = match only {
        Some(t) => vec![
            store
                .record(&t.content_id())?
                .with_context(|| format!("{t} is not in the store"))?,
        ],
        None => store.list()?,
    };
    let mut checked = Vec::new();
    for r in &records {
        let v = match verify_content(store.as_ref(), r) {
            Err(engine::store::StoreError::UnknownContent { id }) => {
                anyhow::bail!("{} has no content information", id.ticket())
            }
            v => v?,
        };
        // Text goes out as each content is checked; JSON at the end.
        if !args.json {
            print_verified(std::slice::from_ref(&v), false)?;
        }
        checked.push(v);
    }
    if args.json {
        print_verified(&checked, true)?;
    }
    verified(&checked)
}

/// Fails if blocks were found damaged (the exit code says so; the rows said which).
fn verified(checked: &[Verified]) -> anyhow::Result<()> {
    let damaged: u64 = checked.iter().map(|v| v.lost).sum();
    if damaged > 0 {
        anyhow::bail!("{damaged} blocks no longer matched their hashes and are marked missing");
    }
    Ok(())
}

fn print_verified(checked: &[Verified], json: bool) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    if json {
        let rows: Vec<_> = checked
            .iter()
            .map(|v| {
                json!({
                    "ticket": v.id.ticket().to_string(), "name": v.name,
                    "blocks_total": v.blocks_total, "blocks_good": v.good,
                    "blocks_lost": v.lost, "blocks_restored": v.restored,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(rows))?;
        return Ok(());
    }
    for v in checked {
        writeln!(
            out,
            "{}  {}: {}/{} blocks good, {} no longer match (marked missing), {} restored",
            v.id.ticket(),
            v.name,
            v.good,
            v.blocks_total,
            v.lost,
            v.restored
        )?;
    }
    Ok(())
}
