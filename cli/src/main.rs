//! `pdist`: parses arguments, runs one command, maps errors to exit codes. All behaviour lives
//! in the `pdist-engine` library.

mod args;
mod cmd;
mod input;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

/// Exit codes, after sysexits.h where one fits. The one place errors become exit codes.
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

fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<cmd::UsageError>().is_some() {
            return exit::USAGE;
        }
        if let Some(f) = cause.downcast_ref::<cmd::Failed>() {
            use engine::node::control::ErrorKind as K;
            return match f.kind {
                K::Usage => exit::USAGE,
                K::Unavailable => exit::UNAVAILABLE,
                K::Data => exit::DATA_ERR,
                K::NoInput => exit::NO_INPUT,
                K::Io => exit::IO_ERR,
                _ => exit::FAILURE,
            };
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
            // One line: the context chain, outermost first.
            let msg: Vec<String> = e.chain().map(ToString::to_string).collect();
            // If even stderr is gone there is no one left to tell.
            let _ = writeln!(io::stderr().lock(), "pdist: {}", msg.join(": "));
            ExitCode::from(exit_code(&e))
        }
    }
}
