//! Command-line arguments (clap derive). Every long option can also come from a `PDIST_*`
//! environment variable; [`crate::options`] turns them into the libraries' options.

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
        alias = "group-secret",
        env = "PDIST_SECRET",
        value_name = "HEX",
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// Read the group secret (hex) from this file instead (keeps it out of process lists).
    #[arg(
        long,
        global = true,
        env = "PDIST_SECRET_FILE",
        value_name = "FILE",
        conflicts_with = "secret"
    )]
    pub secret_file: Option<PathBuf>,

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

/// A size that is not one.
#[derive(Debug, thiserror::Error)]
#[error("not a size (a number with an optional K, M, G or T)")]
pub struct NotASize;

/// Parses a byte count with an optional K, M, G or T suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u64, NotASize> {
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
        .ok_or(NotASize)
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
    /// Run a node: serve the store to peers, find peers with mDNS, and take commands from the
    /// other pdist commands. Stops cleanly on Ctrl-C or SIGTERM.
    Node(NodeArgs),
    /// Fetch content by its ticket from peers (and an HTTP origin), verified block by block.
    Fetch(FetchArgs),
    /// List the nodes this node sees.
    Peers(JsonArgs),
    /// Show this node: ID, address, store usage, transfers, bytes served and received.
    Status(JsonArgs),
    /// Ask cache nodes to fetch and keep content ahead of demand.
    Seed(SeedArgs),
    /// Run the HTTP caching gateway: a forward proxy (clients set http_proxy) whose cache LAN
    /// peers share, with a node built in; or, with --reverse, origin mode in front of an HTTP
    /// server, which also answers requests for content information.
    Gateway(GatewayArgs),
    /// Group secrets.
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Make a new random group secret (256 bits) and print it as hex, or write it to a file
    /// that only its owner can read.
    New(SecretNewArgs),
}

#[derive(Debug, Args)]
pub struct SecretNewArgs {
    /// Write it to this new file (mode 0600) instead of printing it; an existing file is
    /// never overwritten.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address the proxy listens on (loopback by default; see --allow).
    #[arg(
        long,
        env = "PDIST_GATEWAY_LISTEN",
        default_value = "127.0.0.1:7480",
        value_name = "ADDR:PORT"
    )]
    pub listen: std::net::SocketAddr,

    /// Client network allowed to use the proxy (CIDR or address; repeatable). Loopback is
    /// always allowed; nothing else unless listed.
    #[arg(long = "allow", value_name = "CIDR", value_parser = http_gateway::allow::parse_net)]
    pub allow: Vec<http_gateway::allow::IpNet>,

    /// Origin mode: pass every request to this HTTP server and answer requests for content
    /// information (pdist's own and BranchCache's PeerDist).
    #[arg(long, value_name = "URL")]
    pub reverse: Option<String>,

    /// Keep content that LAN peers hold off the origin: if peers fail, the request fails
    /// rather than fetching the body over the WAN.
    #[arg(long)]
    pub no_origin_for_peered: bool,

    /// Do not ask origins for content information on a miss (pdist origins answer it; then
    /// the body comes from peers, checked against what the origin vouched for).
    #[arg(long)]
    pub no_origin_info: bool,

    /// Requests per second each client address may make (0: no limit).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub rate: u32,

    /// Most client connections at once (open CONNECT tunnels count); over it, clients get 503
    /// with Retry-After.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_connections: usize,

    /// Seconds a client may take to send a request head (and an idle kept-alive connection
    /// may hold its slot).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub head_timeout: u64,

    /// Seconds without a byte of a body being downloaded after which the download is
    /// abandoned (its clients see the transfer cut off; the next request starts afresh).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub origin_read_timeout: u64,

    /// Seconds past its freshness a stored response may still be served when its origin cannot
    /// be reached or answers with a server error (unless the response forbids it with
    /// must-revalidate, proxy-revalidate, s-maxage or no-cache; stale-if-error sets its own
    /// bound). 0: never
    #[arg(long, default_value_t = 7 * 24 * 3600, value_name = "SECS")]
    pub max_stale: u64,

    /// A port CONNECT tunnels may reach (repeatable; default 443 only).
    #[arg(long = "connect-port", value_name = "PORT")]
    pub connect_ports: Vec<u16>,

    /// Let CONNECT tunnels, and the plain-HTTP requests of clients on other machines, reach
    /// loopback, link-local and this machine's own addresses (refused by default: they would
    /// expose services that listen only locally).
    #[arg(long)]
    pub connect_local: bool,

    /// Seconds after which a CONNECT tunnel that moved no byte is closed.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub tunnel_idle: u64,

    /// Address of the built-in node's peer endpoint. Loopback by default: the gateway shares
    /// nothing with the LAN until given one (e.g. 0.0.0.0:7461), and then finds its peers
    /// with mDNS unless --no-mdns.
    #[arg(long, default_value = "127.0.0.1:7461", value_name = "ADDR:PORT")]
    pub peer_listen: std::net::SocketAddr,

    #[command(flatten)]
    pub peer: PeerArgs,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Address of the peer protocol endpoint (port 0: any free port).
    #[arg(
        long,
        env = "PDIST_LISTEN",
        default_value = "0.0.0.0:7461",
        value_name = "ADDR:PORT"
    )]
    pub listen: std::net::SocketAddr,

    #[command(flatten)]
    pub peer: PeerArgs,

    /// For tests of fetchers only: serve corrupted blocks.
    #[arg(long, hide = true)]
    pub serve_corrupt: bool,
}

/// How a node finds its peers and is named (`pdist node` and `pdist gateway`).
#[derive(Debug, Default, Args)]
pub struct PeerArgs {
    /// A peer to use besides those mDNS finds (HOST:PORT; repeatable), for networks that block
    /// multicast.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,

    /// Do not use mDNS (only --peer peers).
    #[arg(long)]
    pub no_mdns: bool,

    /// Use mDNS only on this interface (repeatable; default: every interface).
    #[arg(long = "interface", value_name = "NAME")]
    pub interfaces: Vec<String>,

    /// The name other nodes see (default: the host name).
    #[arg(long, env = "PDIST_NAME")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The content's ticket.
    pub ticket: String,

    /// Where to write the content ('-' for standard output).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,

    /// HTTP origin for blocks no peer holds (range requests), and for content no peer has.
    #[arg(long, env = "PDIST_ORIGIN", value_name = "URL")]
    pub origin: Option<String>,

    /// Never use an origin, even one set in the environment.
    #[arg(long)]
    pub no_origin: bool,

    /// A peer to fetch from besides those mDNS finds (HOST:PORT; repeatable).
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,

    /// Without a running node: do not use mDNS.
    #[arg(long)]
    pub no_mdns: bool,

    /// Without a running node: how long to look for peers before fetching (seconds).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub wait: f64,

    /// Print progress as JSON lines (on standard error when the content goes to standard output).
    #[arg(long, env = "PDIST_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON.
    #[arg(long, env = "PDIST_JSON")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The content's ticket.
    pub ticket: String,

    /// Only the cache node with this name (or node ID prefix).
    #[arg(long, value_name = "NODE")]
    pub on: Option<String>,

    /// Print JSON.
    #[arg(long, env = "PDIST_JSON")]
    pub json: bool,
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
