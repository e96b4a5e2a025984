//! What the commands that run tasks share: the async runtime, logging to standard error,
//! waiting for Ctrl-C or SIGTERM, and the running node's control client.

use std::io;

use anyhow::Context;
use engine::node::control::{ControlClient, ErrorKind, Failure};

use crate::args::GlobalArgs;
use crate::options::data_dir;

/// A multi-threaded runtime for the commands that use the network. They may hold many sockets
/// and files at once (a gateway's 1,024 client connections, their origins and spools): the
/// soft limit on open files is raised to the hard one first, as servers do.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Logs to standard error; `PDIST_LOG` (tracing filter syntax) overrides `default`.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PDIST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
        .with_target(false)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn signalled() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// The running node's control client, if a node runs on this data directory.
pub async fn client(global: &GlobalArgs) -> anyhow::Result<Option<ControlClient>> {
    Ok(ControlClient::connect(&data_dir(global)?).await)
}

/// The running node's control client, or a clear error.
pub async fn require_node(global: &GlobalArgs) -> anyhow::Result<ControlClient> {
    let dir = data_dir(global)?;
    client(global).await?.ok_or_else(|| {
        Failure::new(
            ErrorKind::Unavailable,
            format!(
                "no pdist node is running on {} (start one with `pdist node`)",
                dir.display()
            ),
        )
        .into()
    })
}

/// Runs `f` against the running node's control API, if a node runs on this data directory.
pub fn with_node<T>(
    global: &GlobalArgs,
    f: impl AsyncFnOnce(&ControlClient) -> anyhow::Result<T>,
) -> anyhow::Result<Option<T>> {
    runtime()?.block_on(async {
        match client(global).await? {
            Some(c) => f(&c).await.map(Some),
            None => Ok(None),
        }
    })
}
