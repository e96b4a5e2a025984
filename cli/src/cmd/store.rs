//! `pdist publish`, `ls`, `rm` and `verify`: the commands that work on the local store.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use engine::content::{HashOptions, Ticket, hash_file};
use engine::store::{
    CappedStore, Leases, Origin, RocksStore, RocksStoreOptions, SegmentStore, copy_file_blocks,
    published_origin,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::UsageError;
use crate::args::{GlobalArgs, LsArgs, PublishArgs, RmArgs, VerifyArgs};

/// Files at least this large get a progress bar while they are hashed (on a terminal).
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

/// The data directory: `--data-dir`, `PDIST_DATA_DIR`, or the XDG data directory.
pub(super) fn data_dir(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
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

/// The store in the data directory, capped by `--cache-size` when given.
pub(super) fn open_store(global: &GlobalArgs) -> anyhow::Result<Box<dyn SegmentStore>> {
    open_store_with(global, Leases::new())
}

/// [`open_store`], with the leases its eviction honours.
pub(super) fn open_store_with(
    global: &GlobalArgs,
    leases: Leases,
) -> anyhow::Result<Box<dyn SegmentStore>> {
    let dir = data_dir(global)?;
    let store = RocksStore::open(&dir, RocksStoreOptions::default())
        .with_context(|| format!("opening the store in {}", dir.display()))?;
    Ok(match global.cache_size {
        Some(cap) => Box::new(CappedStore::new(store, cap, leases)),
        None => Box::new(store),
    })
}

pub(super) fn parse_ticket(s: &str) -> anyhow::Result<Ticket> {
    s.parse::<Ticket>()
        .map_err(|e| UsageError(format!("{s:?} is not a ticket: {e}")).into())
}

fn name_of(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

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

/// Runs `f` against the running node's control API, if a node runs on this data directory.
fn with_node<T>(
    global: &GlobalArgs,
    f: impl AsyncFnOnce(&engine::node::control::ControlClient) -> anyhow::Result<T>,
) -> anyhow::Result<Option<T>> {
    super::net::runtime()?.block_on(async {
        match super::net::client(global).await? {
            Some(c) => f(&c).await.map(Some),
            None => Ok(None),
        }
    })
}

pub fn publish(global: &GlobalArgs, args: PublishArgs) -> anyhow::Result<()> {
    let mut paths = Vec::new();
    for p in &args.files {
        paths.push(std::path::absolute(p).with_context(|| format!("publishing {}", p.display()))?);
    }
    let body = json!({ "paths": paths, "copy": args.copy });
    let via_node = with_node(global, async |c| {
        super::net::call(c, hyper::Method::POST, "/v1/publish", Some(body)).await
    })?;
    if let Some(rows) = via_node {
        let mut out = io::stdout().lock();
        if args.json {
            writeln!(out, "{rows}")?;
        } else {
            for r in rows.as_array().into_iter().flatten() {
                let note = if r["new"].as_bool() == Some(false) {
                    "  (already in the store)"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "{}  {}  {}{note}",
                    r["ticket"].as_str().unwrap_or("?"),
                    r["name"].as_str().unwrap_or("?"),
                    human_bytes(r["size"].as_u64().unwrap_or(0))
                )?;
            }
        }
        return Ok(());
    }
    let store = open_store(global)?;
    let secret = super::secret(global)?;
    let opts = HashOptions {
        threads: global.threads,
        ..HashOptions::default()
    };
    let mut out = io::stdout().lock();
    let mut json_rows = Vec::new();
    for path in &args.files {
        let ctx = || format!("publishing {}", path.display());
        // Size and time are taken before hashing: a change while hashing is then caught on read.
        let origin = published_origin(path).with_context(ctx)?;
        let file = crate::input::open_file(path)?.context("'-' cannot be published")?;
        let name = name_of(path);
        let Origin::Published { size, .. } = &origin else {
            unreachable!("published_origin gives Published")
        };
        let bar = progress_bar(*size, &name);
        let info = hash_file(&file, &secret, &opts, &mut |n| {
            if let Some(b) = &bar {
                b.set_position(n);
            }
        })
        .with_context(ctx)?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let new = if args.copy {
            let new = store
                .put_content(&info, &name, Origin::Copied)
                .with_context(ctx)?;
            // Pinned first: a copy that fails half-way (disk full, file changed) is kept for a
            // later run to resume, not evicted.
            store.set_pinned(&info.id(), true).with_context(ctx)?;
            copy_file_blocks(store.as_ref(), &info, &file).with_context(ctx)?;
            new
        } else {
            store.put_content(&info, &name, origin).with_context(ctx)?
        };
        let ticket = info.id().ticket().to_string();
        let size = info.layout().content_len();
        if args.json {
            json_rows.push(json!({
                "ticket": ticket, "name": name, "path": path, "size": size,
                "blocks": info.layout().block_count(), "new": new, "copied": args.copy,
            }));
        } else {
            let note = if new { "" } else { "  (already in the store)" };
            writeln!(out, "{ticket}  {name}  {}{note}", human_bytes(size))?;
        }
    }
    if args.json {
        writeln!(out, "{}", serde_json::Value::Array(json_rows))?;
    }
    Ok(())
}

pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn ago(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

fn kind(origin: &Origin) -> &'static str {
    match origin {
        Origin::Published { .. } => "published",
        Origin::Copied => "copied",
        Origin::Fetched => "fetched",
    }
}

pub fn ls(global: &GlobalArgs, args: LsArgs) -> anyhow::Result<()> {
    let via_node = with_node(global, async |c| {
        let v = super::net::call(c, hyper::Method::GET, "/v1/ls", None).await?;
        serde_json::from_value::<Vec<engine::store::ContentRecord>>(v)
            .context("a malformed list from the node")
    })?;
    let mut records = match via_node {
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
        .map(|t| parse_ticket(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let body = json!({ "tickets": args.tickets });
    let via_node = with_node(global, async |c| {
        super::net::call(c, hyper::Method::POST, "/v1/rm", Some(body)).await
    })?;
    let mut out = io::stdout().lock();
    if let Some(rows) = via_node {
        let mut missing = Vec::new();
        for r in rows.as_array().into_iter().flatten() {
            let t = r["ticket"].as_str().unwrap_or("?");
            if r["removed"].as_bool() == Some(true) {
                writeln!(out, "removed {t}")?;
            } else {
                missing.push(t.to_string());
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

pub fn verify(global: &GlobalArgs, args: VerifyArgs) -> anyhow::Result<()> {
    let only = args.ticket.as_deref().map(parse_ticket).transpose()?;
    let store = open_store(global)?;
    let records = match only {
        Some(t) => vec![
            store
                .record(&t.content_id())?
                .with_context(|| format!("{t} is not in the store"))?,
        ],
        None => store.list()?,
    };
    let mut out = io::stdout().lock();
    let mut rows = Vec::new();
    let mut damaged = 0u64;
    for r in records {
        let info = store
            .content_info(&r.id)?
            .with_context(|| format!("{} has no content information", r.id.ticket()))?;
        let layout = info.layout();
        let (mut good, mut lost, mut restored) = (0u64, 0u64, 0u64);
        for seg in layout.segments() {
            let before = store.present(&r.id, seg)?;
            for block in layout.blocks(seg) {
                let was = before.contains(block.index_in_segment());
                let now = store.repair_block(&r.id, block)?;
                match (was, now) {
                    (_, true) => good += 1,
                    (true, false) => lost += 1,
                    (false, false) => {}
                }
                if !was && now {
                    restored += 1;
                }
            }
        }
        damaged += lost;
        let ticket = r.id.ticket().to_string();
        if args.json {
            rows.push(json!({
                "ticket": ticket, "name": r.name, "blocks_total": r.blocks_total,
                "blocks_good": good, "blocks_lost": lost, "blocks_restored": restored,
            }));
        } else {
            writeln!(
                out,
                "{ticket}  {}: {good}/{} blocks good, {lost} no longer match (marked missing), {restored} restored",
                r.name, r.blocks_total
            )?;
        }
    }
    if args.json {
        writeln!(out, "{}", serde_json::Value::Array(rows))?;
    }
    if damaged > 0 {
        anyhow::bail!("{damaged} blocks no longer matched their hashes and are marked missing");
    }
    Ok(())
}
