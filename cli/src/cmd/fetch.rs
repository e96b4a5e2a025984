//! `pdist fetch`: through the running node when there is one (it keeps serving the content
//! afterwards), else with a node of its own for the length of the fetch.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use engine::fetch::{Events, FetchEvent, FetchOptions, OriginClient};
use engine::node::control::{self, ControlClient, ErrorKind};
use http_body_util::BodyExt;
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::net::{runtime, start_node};
use super::store::{human_bytes, parse_ticket};
use super::{Failed, UsageError};
use crate::args::{FetchArgs, GlobalArgs};

/// Shows progress: a bar on a terminal, JSON lines with `--json`, nothing otherwise.
struct Progress {
    json: Option<Box<dyn Write + Send>>,
    bar: Option<ProgressBar>,
    by_source: std::collections::BTreeMap<String, u64>,
}

impl Progress {
    fn new(json: bool, to_stdout: bool) -> Progress {
        let json: Option<Box<dyn Write + Send>> = match (json, to_stdout) {
            (false, _) => None,
            (true, false) => Some(Box::new(io::stdout())),
            (true, true) => Some(Box::new(io::stderr())),
        };
        let bar = (json.is_none() && io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("the template is valid"),
            );
            b
        });
        Progress {
            json,
            bar,
            by_source: Default::default(),
        }
    }

    fn event(&mut self, v: &Value) {
        if let Some(w) = &mut self.json {
            let _ = writeln!(w, "{v}");
        }
        if let Some(b) = &self.bar {
            match v["event"].as_str() {
                Some("started") => {
                    b.set_length(v["len"].as_u64().unwrap_or(0));
                    b.set_position(v["present"].as_u64().unwrap_or(0));
                    b.set_message(format!("{} peers", v["peers"]));
                }
                Some("progress") => {
                    let n = v["bytes"].as_u64().unwrap_or(0);
                    b.inc(n);
                    let src = v["source"].as_str().unwrap_or("?").to_string();
                    *self.by_source.entry(src).or_default() += n;
                    // Bytes per source, largest first.
                    let mut v: Vec<_> = self.by_source.iter().collect();
                    v.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
                    let parts: Vec<String> = v
                        .iter()
                        .take(4)
                        .map(|(s, n)| format!("{s} {}", human_bytes(**n)))
                        .collect();
                    b.set_message(parts.join(", "));
                }
                Some("peer_dropped") => b.println(format!(
                    "dropped peer {}: {}",
                    v["peer"].as_str().unwrap_or("?"),
                    v["reason"].as_str().unwrap_or("?")
                )),
                _ => {}
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// One line for standard error: where the bytes came from.
fn summary(done: &Value) -> String {
    let mut parts: Vec<String> = done["by_source"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(s, n)| format!("{} from {s}", human_bytes(n.as_u64().unwrap_or(0))))
        .collect();
    let present = done["present"].as_u64().unwrap_or(0);
    if present > 0 {
        parts.push(format!("{} already here", human_bytes(present)));
    }
    if parts.is_empty() {
        parts.push("nothing to transfer".into());
    }
    format!(
        "fetched {} ({})",
        done["ticket"].as_str().unwrap_or("?"),
        parts.join(", ")
    )
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("finding the current directory")?
        .join(p))
}

pub fn run(global: &GlobalArgs, args: FetchArgs) -> anyhow::Result<()> {
    let ticket = parse_ticket(&args.ticket)?;
    let origin = if args.no_origin {
        None
    } else {
        args.origin.clone()
    };
    if let Some(u) = &origin {
        OriginClient::new(u, Duration::from_secs(30)).map_err(|e| UsageError(e.to_string()))?;
    }
    let to_stdout = args.output.as_os_str() == "-";
    let output = (!to_stdout).then(|| absolute(&args.output)).transpose()?;
    let mut progress = Progress::new(args.json, to_stdout);
    runtime()?.block_on(async {
        let node = super::net::client(global).await?;
        let done = match node {
            Some(c) => via_node(&c, &args, origin, output.clone(), &mut progress).await,
            None => {
                super::net::init_logging("warn");
                standalone(global, &args, ticket, origin, output.clone(), &mut progress).await
            }
        };
        progress.finish();
        let done = done?;
        if let Some(w) = &mut progress.json {
            let _ = writeln!(w, "{done}");
        } else {
            let _ = writeln!(io::stderr(), "{}", summary(&done));
        }
        if to_stdout {
            let c = super::net::client(global).await?;
            write_stdout(global, c, &args.ticket).await?;
        }
        Ok(())
    })
}

/// Fetches through the running node, relaying its progress lines.
async fn via_node(
    c: &ControlClient,
    args: &FetchArgs,
    origin: Option<String>,
    output: Option<PathBuf>,
    progress: &mut Progress,
) -> anyhow::Result<Value> {
    let body =
        json!({ "ticket": args.ticket, "output": output, "origin": origin, "peers": args.peers });
    let resp = c
        .request(Method::POST, "/v1/fetch", Some(body))
        .await
        .context("talking to the running node")?;
    let mut body = resp.body;
    if !resp.status.is_success() {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let kind = serde_json::from_value(v["kind"].clone()).unwrap_or(ErrorKind::Failure);
        let msg = v["error"]
            .as_str()
            .unwrap_or("the node refused the fetch")
            .to_string();
        return Err(Failed { kind, msg }.into());
    }
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("the node stopped answering")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let v: Value =
                serde_json::from_slice(&line).context("a malformed line from the node")?;
            match v["event"].as_str() {
                Some("done") => return Ok(v),
                Some("error") => {
                    let kind =
                        serde_json::from_value(v["kind"].clone()).unwrap_or(ErrorKind::Failure);
                    let msg = v["error"].as_str().unwrap_or("fetch failed").to_string();
                    return Err(Failed { kind, msg }.into());
                }
                _ => progress.event(&v),
            }
        }
    }
    anyhow::bail!("the node ended the fetch without a result")
}

/// Fetches with a node of our own (no node runs on this data directory).
async fn standalone(
    global: &GlobalArgs,
    args: &FetchArgs,
    ticket: engine::Ticket,
    origin: Option<String>,
    output: Option<PathBuf>,
    progress: &mut Progress,
) -> anyhow::Result<Value> {
    let listen = "0.0.0.0:0".parse().expect("a valid address");
    let node = start_node(global, listen, &args.peers, !args.no_mdns, &[], None, false).await?;
    let wait = Duration::from_secs_f64(args.wait.max(0.0));
    // With only --peer peers there is nothing to wait for once they all answered.
    let want = if args.no_mdns {
        args.peers.len()
    } else {
        usize::MAX
    };
    node.wait_for_peers(want, wait, Duration::from_millis(300))
        .await;
    let id = ticket.content_id();
    let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&lines);
    let events: Events = Arc::new(move |e: FetchEvent| {
        sink.lock()
            .expect("events lock")
            .push(control::event_json(&e));
    });
    let part = output
        .as_deref()
        .map(engine::fetch::PartFile::create)
        .transpose()
        .map_err(|e| Failed {
            kind: ErrorKind::of_store(&e),
            msg: e.to_string(),
        })?;
    let opts = FetchOptions {
        sink: part.as_ref().map(engine::fetch::PartFile::sink),
        origin: origin
            .as_deref()
            .map(|u| OriginClient::new(u, Duration::from_secs(30)))
            .transpose()
            .map_err(|e| UsageError(e.to_string()))?,
        ..FetchOptions::default()
    };
    let cancel = CancellationToken::new();
    let fetch = node.fetch(id, opts, events, cancel.clone());
    tokio::pin!(fetch);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let result = loop {
        tokio::select! {
            r = &mut fetch => break r,
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => cancel.cancel(),
        }
        for v in lines.lock().expect("events lock").drain(..) {
            progress.event(&v);
        }
    };
    for v in lines.lock().expect("events lock").drain(..) {
        progress.event(&v);
    }
    let result = match result {
        Ok((info, report)) => {
            if let Some(part) = part {
                node.commit_output(part, &info).await.map_err(|e| Failed {
                    kind: ErrorKind::of_store(&e),
                    msg: e.to_string(),
                })?;
            }
            let mut done = control::done_json(&id, info.layout().content_len(), &report);
            done["peak_rss_bytes"] = json!(peak_rss());
            Ok(done)
        }
        Err(e) => Err(Failed {
            kind: ErrorKind::of_fetch(&e),
            msg: e.to_string(),
        }
        .into()),
    };
    node.shutdown().await;
    result
}

/// Writes fetched content to standard output: from the running node, or from the store.
async fn write_stdout(
    global: &GlobalArgs,
    c: Option<ControlClient>,
    ticket: &str,
) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match c {
        Some(c) => {
            let resp = c
                .request(Method::GET, &format!("/v1/content/{ticket}"), None)
                .await
                .context("talking to the running node")?;
            if !resp.status.is_success() {
                anyhow::bail!("the node could not send the content (HTTP {})", resp.status);
            }
            let mut body = resp.body;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame
                    .context("reading the content from the node")?
                    .into_data()
                {
                    out.write_all(&data)?;
                }
            }
        }
        None => {
            let store = super::store::open_store(global)?;
            let id = parse_ticket(ticket)?.content_id();
            let info = store
                .content_info(&id)?
                .context("the fetched content is no longer in the store")?;
            let mut w = io::BufWriter::with_capacity(1 << 20, &mut out);
            engine::fetch::write_content(store.as_ref(), &info, &mut w)?;
            w.flush()?;
        }
    }
    out.flush()?;
    Ok(())
}

/// This process's peak resident set size (VmHWM), if the kernel says.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
