//! One module per command; each calls the libraries and prints the result.

mod fetch;
mod gateway;
mod hash;
mod inspect;
mod net;
mod secret;
mod store;

use crate::args::{Cli, Command, SecretCommand};

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Hash(args) => hash::run(&cli.global, args),
        Command::Inspect(args) => inspect::run(&cli.global, args),
        Command::Publish(args) => store::publish(&cli.global, args),
        Command::Ls(args) => store::ls(&cli.global, args),
        Command::Rm(args) => store::rm(&cli.global, args),
        Command::Verify(args) => store::verify_cmd(&cli.global, args),
        Command::Node(args) => net::node(&cli.global, args),
        Command::Fetch(args) => fetch::run(&cli.global, args),
        Command::Peers(args) => net::peers(&cli.global, args),
        Command::Status(args) => net::status(&cli.global, args),
        Command::Seed(args) => net::seed(&cli.global, args),
        Command::Gateway(args) => gateway::run(&cli.global, args),
        Command::Secret(SecretCommand::New(args)) => secret::new(&args),
    }
}
