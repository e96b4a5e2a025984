//! `pdist fetch`: through the running node when there is one (it keeps serving the content
//! afterwards), else with a node of its own for the length of the fetch.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use engine::fetch::{Events, FetchEvent, FetchOptions};
use engine::node::control::ControlClient;
use engine::node::control::api::{FetchDone, FetchLine, FetchRequest};
use engine::{Node, OriginClient};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::args::{FetchArgs, GlobalArgs};
use crate::options::{self, data_dir, open_store, ticket};
use crate::print::human_bytes;
use crate::process::{client, init_logging, runtime};

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

    fn line(&mut self, l: &FetchLine) {
        if let Some(w) = &mut self.json
            && let Ok(s) = serde_json::to_string(l)
        {
            let _ = writeln!(w, "{s}");
        }
        let Some(b) = &self.bar else { return };
        match l {
            FetchLine::Started {
                len,
                present,
                peers,
            } => {
                b.set_length(*len);
                b.set_position(*present);
                b.set_message(format!("{peers} peers"));
            }
            FetchLine::Progress { source, bytes } => {
                b.inc(*bytes);
                *self.by_source.entry(source.clone()).or_default() += bytes;
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
            FetchLine::PeerDropped { peer, reason } => {
                b.println(format!("dropped peer {peer}: {reason}"))
            }
            FetchLine::Done(_) | FetchLine::Error(_) => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// One line for standard error: where the bytes came from.
fn summary(done: &FetchDone) -> String {
    let mut parts: Vec<String> = done
        .by_source
        .iter()
        .map(|(s, n)| format!("{} from {s}", human_bytes(*n)))
        .collect();
    if done.present > 0 {
        parts.push(format!("{} already here", human_bytes(done.present)));
    }
    if parts.is_empty() {
        parts.push("nothing to transfer".into());
    }
    format!("fetched {} ({})", done.ticket, parts.join(", "))
}

pub fn run(global: &GlobalArgs, args: FetchArgs) -> anyhow::Result<()> {
    let ticket = ticket(&args.ticket)?;
    let origin = options::origin(&args.origin, args.no_origin)?;
    let to_stdout = args.output.as_os_str() == "-";
    let output = (!to_stdout)
        .then(|| std::path::absolute(&args.output))
        .transpose()
        .context("finding the current directory")?;
    let mut progress = Progress::new(args.json, to_stdout);
    runtime()?.block_on(async {
        let done = match client(global).await? {
            Some(c) => via_node(&c, &args, origin, output.clone(), &mut progress).await,
            None => {
                init_logging("warn");
                standalone(global, &args, ticket, origin, output.clone(), &mut progress).await
            }
        };
        progress.finish();
        let done = done?;
        match &mut progress.json {
            Some(w) => {
                let _ = writeln!(w, "{}", serde_json::to_string(&FetchLine::Done(done))?);
            }
            None => {
                let _ = writeln!(io::stderr(), "{}", summary(&done));
            }
        }
        if to_stdout {
            write_stdout(global, &ticket).await?;
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
) -> anyhow::Result<FetchDone> {
    let req = FetchRequest {
        ticket: args.ticket.clone(),
        output,
        origin,
        peers: args.peers.clone(),
    };
    let mut lines = c.fetch(&req).await?;
    while let Some(l) = lines.next().await? {
        match l {
            FetchLine::Done(done) => return Ok(done),
            FetchLine::Error(f) => return Err(f.into()),
            l => progress.line(&l),
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
) -> anyhow::Result<FetchDone> {
    let listen = "0.0.0.0:0".parse().expect("a valid address");
    let mut opts = options::node(global, listen, &Default::default())?;
    opts.peers = options::peers(&args.peers)?;
    opts.mdns = !args.no_mdns;
    let node = Node::open(&data_dir(global)?, opts).await?;
    let wait = Duration::from_secs_f64(args.wait.max(0.0));
    // With only --peer peers there is nothing to wait for once they all answered.
    let want = if args.no_mdns {
        args.peers.len()
    } else {
        usize::MAX
    };
    node.wait_for_peers(want, wait, Duration::from_millis(300))
        .await;
    let result = fetch_with(&node, ticket, origin, output.as_deref(), progress).await;
    node.shutdown().await;
    result
}

async fn fetch_with(
    node: &Node,
    ticket: engine::Ticket,
    origin: Option<String>,
    output: Option<&Path>,
    progress: &mut Progress,
) -> anyhow::Result<FetchDone> {
    let id = ticket.content_id();
    let lines: Arc<Mutex<Vec<FetchLine>>> = Arc::default();
    let sink = Arc::clone(&lines);
    let events: Events = Arc::new(move |e: FetchEvent| {
        sink.lock().expect("events lock").push(FetchLine::from(&e));
    });
    let opts = FetchOptions {
        origin: origin
            .as_deref()
            .map(|u| OriginClient::new(u, Duration::from_secs(30)))
            .transpose()?,
        ..FetchOptions::default()
    };
    let cancel = CancellationToken::new();
    let fetch = node.fetch_into(id, output, opts, events, cancel.clone());
    tokio::pin!(fetch);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let result = loop {
        tokio::select! {
            r = &mut fetch => break r,
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => cancel.cancel(),
        }
        for l in lines.lock().expect("events lock").drain(..) {
            progress.line(&l);
        }
    };
    for l in lines.lock().expect("events lock").drain(..) {
        progress.line(&l);
    }
    let (info, report) = result?;
    let mut done = FetchDone::new(&id, info.layout().content_len(), &report);
    done.peak_rss_bytes = peak_rss();
    Ok(done)
}

/// Writes fetched content to standard output: from the running node, or from the store.
async fn write_stdout(global: &GlobalArgs, ticket: &engine::Ticket) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match client(global).await? {
        Some(c) => {
            let mut bytes = c.content(&ticket.to_string()).await?;
            while let Some(data) = bytes.next().await? {
                out.write_all(&data)?;
            }
        }
        None => {
            let store = open_store(global)?;
            let id = ticket.content_id();
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
