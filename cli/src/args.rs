//! Command-line arguments (clap derive). Every long option can also come from a `PDIST_*`
//! environment variable; the conversion into engine options happens in the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// pdist: peer-assisted content distribution for local networks.
#[derive(Debug, Parser)]
#[command(name = "pdist", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Server secret key as hex (BranchCache's "server secret"; pdist's group secret). Without
    /// it the open group's public constant is used, so every node computes the same content ID
    /// for the same bytes.
    #[arg(
        long,
        global = true,
        env = "PDIST_SECRET",
        value_name = "HEX",
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// Where the store keeps its data (default: $XDG_DATA_HOME/pdist, or ~/.local/share/pdist).
    #[arg(long, global = true, env = "PDIST_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Most bytes the store may hold for content it keeps copies of (e.g. 200G, 512M); past it,
    /// least-recently-used content that is neither pinned nor published in place is evicted.
    /// Unlimited by default.
    #[arg(long, global = true, env = "PDIST_CACHE_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub cache_size: Option<u64>,

    /// Hashing threads (0: every core).
    #[arg(
        long,
        global = true,
        env = "PDIST_THREADS",
        default_value_t = 0,
        value_name = "N"
    )]
    pub threads: usize,
}

/// Parses a byte count with an optional K, M, G or T suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("{s:?} is not a size (a number with an optional K, M, G or T)"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hash a file into content information: print its ticket, or write the content information
    /// in pdist's own format or as BranchCache (MS-PCCRC V1/V2) does.
    Hash(HashArgs),
    /// Print the fields of content information in any format pdist reads (detected from the
    /// bytes).
    Inspect(InspectArgs),
    /// Publish files: hash them, register them in the store (in place, without copying, unless
    /// --copy) and print a ticket for each.
    Publish(PublishArgs),
    /// List the contents in the store.
    Ls(LsArgs),
    /// Remove contents from the store (files published in place are left alone).
    Rm(RmArgs),
    /// Re-hash stored and published blocks, report, and repair the record of which are present.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Files to publish.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,

    /// Copy the bytes into the store (pinned) instead of serving them from the file.
    #[arg(long)]
    pub copy: bool,

    /// Print JSON.
    #[arg(long, env = "PDIST_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print JSON.
    #[arg(long, env = "PDIST_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Tickets of the contents to remove.
    #[arg(required = true)]
    pub tickets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this content (default: every content in the store).
    pub ticket: Option<String>,

    /// Print JSON.
    #[arg(long, env = "PDIST_JSON")]
    pub json: bool,
}

/// Output formats of `pdist hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// pdist's own content information (self-verifying).
    Native,
    /// MS-PCCRC V1: 64 KiB blocks in 32 MiB segments, SHA-256.
    PccrcV1,
    /// MS-PCCRC V2: content-defined segments of at most 128 KiB, truncated SHA-512.
    PccrcV2,
}

#[derive(Debug, Args)]
pub struct HashArgs {
    /// The file to hash ('-' for standard input).
    pub file: PathBuf,

    /// Write content information in this format (to OUT, or to standard output). Without it,
    /// print the ticket and a summary.
    #[arg(long, short = 'f', value_enum, env = "PDIST_FORMAT")]
    pub format: Option<OutputFormat>,

    /// Where to write the content information ('-' for standard output).
    #[arg(long, short = 'o', value_name = "OUT", requires = "format")]
    pub output: Option<PathBuf>,

    /// Describe only this byte range, as HTTP writes it: FIRST-LAST, both inclusive (MS-PCCRC
    /// formats only).
    #[arg(long, value_name = "FIRST-LAST", requires = "format")]
    pub range: Option<String>,

    /// Print the summary as JSON.
    #[arg(long, env = "PDIST_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Content information to read ('-' for standard input).
    pub file: PathBuf,

    /// Print JSON instead of text.
    #[arg(long, env = "PDIST_JSON")]
    pub json: bool,

    /// Also list every block hash.
    #[arg(long)]
    pub blocks: bool,
}
