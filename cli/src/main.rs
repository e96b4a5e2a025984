//! `pdist`: parses arguments, runs one command, prints, and maps errors to exit codes (here, in
//! one place). Options come from flags and the environment in one place ([`options`]); all
//! behaviour lives in the `pdist-engine` and `pdist-http-gateway` libraries.

mod args;
mod cmd;
mod input;
mod options;
mod print;
mod process;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use engine::node::control::api::Lacking;
use engine::node::control::{ControlError, ErrorKind, Failure};

/// An argument value that parses but makes no sense (reported with exit code 2, like clap's).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Exit codes, after sysexits.h where one fits.
mod exit {
    /// Any other failure.
    pub const FAILURE: u8 = 1;
    /// Arguments that make no sense (clap uses the same code for the ones it rejects).
    pub const USAGE: u8 = 2;
    /// Malformed content information or another malformed input (EX_DATAERR).
    pub const DATA_ERR: u8 = 65;
    /// An input file that cannot be opened (EX_NOINPUT).
    pub const NO_INPUT: u8 = 66;
    /// Content no reachable peer or origin has, or no running node (EX_UNAVAILABLE).
    pub const UNAVAILABLE: u8 = 69;
    /// Reading or writing failed (EX_IOERR).
    pub const IO_ERR: u8 = 74;
}

fn of_kind(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Usage => exit::USAGE,
        ErrorKind::Unavailable => exit::UNAVAILABLE,
        ErrorKind::Data => exit::DATA_ERR,
        ErrorKind::NoInput => exit::NO_INPUT,
        ErrorKind::Io => exit::IO_ERR,
        ErrorKind::Failure => exit::FAILURE,
    }
}

/// The failure the engine classified somewhere in `err`'s chain, if any.
fn failure(err: &anyhow::Error) -> Option<Failure> {
    err.chain().find_map(|c| {
        if let Some(f) = c.downcast_ref::<Failure>() {
            return Some(f.clone());
        }
        match c.downcast_ref::<ControlError>() {
            Some(ControlError::Refused(f)) => return Some(f.clone()),
            // The socket, HTTP over it, or the node's answer failed: I/O.
            Some(e) => return Some(Failure::new(ErrorKind::Io, e)),
            None => {}
        }
        if let Some(e) = c.downcast_ref::<engine::FetchError>() {
            return Some(Failure::of_fetch(e));
        }
        if let Some(e) = c.downcast_ref::<engine::store::PublishError>() {
            return Some(Failure::new(ErrorKind::of_publish(e), e));
        }
        if let Some(e) = c.downcast_ref::<engine::store::StoreError>() {
            return Some(Failure::of_store(e));
        }
        None
    })
}

fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(f) = failure(err) {
        return of_kind(f.kind);
    }
    for cause in err.chain() {
        if cause.downcast_ref::<UsageError>().is_some() {
            return exit::USAGE;
        }
        if cause.downcast_ref::<engine::DecodeError>().is_some()
            || cause
                .downcast_ref::<engine::content::VerifyError>()
                .is_some()
        {
            return exit::DATA_ERR;
        }
        if let Some(e) = cause.downcast_ref::<input::InputError>() {
            return match e {
                input::InputError::Open { .. } => exit::NO_INPUT,
                input::InputError::TooLarge { .. } => exit::DATA_ERR,
            };
        }
        if cause.downcast_ref::<io::Error>().is_some() {
            return exit::IO_ERR;
        }
    }
    exit::FAILURE
}

/// What the user could give to get further, in this command line's terms.
fn hint(err: &anyhow::Error) -> Option<&'static str> {
    match failure(err)?.lacking? {
        Lacking::Peers => Some("is a node running on the LAN? or give --peer HOST:PORT"),
        Lacking::Origin => Some("give --origin URL to take them from the origin"),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`pdist inspect … | head`) is how the reader says it has enough.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context chain, outermost first, and a hint if there is one.
            let mut msg: Vec<String> = e.chain().map(ToString::to_string).collect();
            if let Some(h) = hint(&e) {
                msg.push(h.to_string());
            }
            // If even stderr is gone there is no one left to tell.
            let _ = writeln!(io::stderr().lock(), "pdist: {}", msg.join(": "));
            ExitCode::from(exit_code(&e))
        }
    }
}
