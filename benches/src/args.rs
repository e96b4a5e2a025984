//! The benchmark programs' command lines: flags, each with a value or alone, read one by one,
//! with the same errors everywhere ("--size needs a value", "bad --size").

use std::str::FromStr;

/// The program's arguments after its name.
#[derive(Debug)]
pub struct Args(std::iter::Skip<std::env::Args>);

impl Args {
    /// This process's arguments.
    pub fn from_env() -> Args {
        Args(std::env::args().skip(1))
    }

    /// The next flag; `None` at the end.
    pub fn flag(&mut self) -> Option<String> {
        self.0.next()
    }

    /// The value after `flag`.
    pub fn value(&mut self, flag: &str) -> Result<String, String> {
        self.0.next().ok_or(format!("{flag} needs a value"))
    }

    /// The value after `flag`, parsed.
    pub fn parse<T: FromStr>(&mut self, flag: &str) -> Result<T, String> {
        self.value(flag)?.parse().map_err(|_| format!("bad {flag}"))
    }

    /// The size after `flag` (`256M`, `1G`; see [`fixtures::parse_size`]).
    pub fn size(&mut self, flag: &str) -> Result<u64, String> {
        fixtures::parse_size(&self.value(flag)?).ok_or(format!("bad {flag}"))
    }
}
