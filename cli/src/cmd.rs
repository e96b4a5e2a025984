//! One module per command; each turns its arguments into engine calls and prints the result.

mod fetch;
mod gateway;
mod hash;
mod inspect;
mod net;
mod store;

use engine::ServerSecret;

use crate::args::{Cli, Command, GlobalArgs};

/// An argument value that parses but makes no sense (reported with exit code 2, like clap's).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A failure of a kind the engine classified (mapped to an exit code in `main`).
#[derive(Debug)]
pub struct Failed {
    pub kind: engine::node::control::ErrorKind,
    pub msg: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Failed {}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Hash(args) => hash::run(&cli.global, args),
        Command::Inspect(args) => inspect::run(&cli.global, args),
        Command::Publish(args) => store::publish(&cli.global, args),
        Command::Ls(args) => store::ls(&cli.global, args),
        Command::Rm(args) => store::rm(&cli.global, args),
        Command::Verify(args) => store::verify(&cli.global, args),
        Command::Node(args) => net::node(&cli.global, args),
        Command::Fetch(args) => fetch::run(&cli.global, args),
        Command::Peers(args) => net::peers(&cli.global, args),
        Command::Status(args) => net::status(&cli.global, args),
        Command::Seed(args) => net::seed(&cli.global, args),
        Command::Gateway(args) => gateway::run(&cli.global, args),
    }
}

/// The server secret from `--secret` / `PDIST_SECRET`, or the open group's.
fn secret(global: &GlobalArgs) -> anyhow::Result<ServerSecret> {
    if let Some(path) = &global.secret_file {
        let hex = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("reading --secret-file {}: {e}", path.display())))?;
        return ServerSecret::from_hex(hex.trim()).map_err(|e| {
            UsageError(format!("{} must hold hex bytes: {e}", path.display())).into()
        });
    }
    match &global.secret {
        None => Ok(ServerSecret::open_group()),
        Some(hex) => ServerSecret::from_hex(hex.trim()).map_err(|e| {
            UsageError(format!(
                "--secret must be hex bytes (an even number of 0-9a-f digits): {e}"
            ))
            .into()
        }),
    }
}
