//! pdist's HTTP gateway: a transparent caching forward proxy whose cache is fed by LAN peers,
//! and an origin mode that answers BranchCache's `Accept-Encoding: peerdist` with content
//! information.
//!
//! # Map, from the top floor down
//!
//! * [`Gateway`] (`gateway`): the server: listener, connection limits, allow list and rate,
//!   routing to the cache, origin mode ([`reverse`]), pass-through (`passthrough`: other
//!   methods), `CONNECT` tunnels (`tunnel`) or the gateway's own routes; shutdown that drains.
//! * `cache`: carries out [`decide`]'s plans for a GET or HEAD: stored, revalidated, or a miss
//!   looked for in the plan's order.
//! * The ways a miss finds its body, each returning what it found: `peered` (a trusted peer's
//!   claim, confirmed with the origin), `followed` (the peer gateways' election, following the
//!   elected one's download), `vouched` (content information the origin vouched for).
//! * Serving what was found: `known` (content known by ID, fetched from peers and streamed in
//!   order, or only the blocks covering a range), `stored` (from the store: whole, ranges,
//!   multipart), `answers` (an origin's answer passed back; a download read as it grows),
//!   `spool` (a download written to a spool file and hashed as it arrives), `keep` (a finished
//!   body into the store, then the URL's record and claim).
//! * `interim`: 1xx answers from origins written to their clients before the final answer.
//! * `invalidate`: what a successful unsafe request makes the cache forget (RFC 9111 §4.4).
//! * `downloads` (the registry of downloads in flight, one per URL) and `state` (what every
//!   handler shares, [`GatewayConfig`]), `upstream` (the client to origins).
//! * The pure ground floor: [`decide`] (the cache's decisions), [`policy`] (RFC 9111 for one
//!   stored response) and [`directives`] (its header fields), [`range`], [`conditional`],
//!   [`headers`], [`record`] (URL records, claims, pending downloads), [`allow`], [`metrics`],
//!   [`body`], [`error`], and the [`index`] seam (RocksDB and in-memory).
//!
//! No module calls a module above it.

#![warn(missing_docs)]

pub mod allow;
mod answers;
pub mod body;
mod cache;
pub mod conditional;
pub mod decide;
pub mod directives;
mod downloads;
pub mod error;
mod followed;
mod gateway;
pub mod headers;
pub mod index;
mod interim;
pub mod invalidate;
mod keep;
mod known;
pub mod metrics;
mod passthrough;
mod peered;
pub mod policy;
pub mod range;
pub mod record;
mod relay;
pub mod reverse;
mod spool;
mod state;
mod stored;
mod tunnel;
pub mod upstream;
mod vouched;

pub use downloads::DownloadError;
pub use error::GatewayError;
pub use gateway::{Gateway, METRICS_PATH, REVERSE_METRICS_PATH};
pub use keep::KeepError;
pub use relay::RelayError;
pub use state::{DEFAULT_PORT, GatewayConfig};
pub use tunnel::guard_origins;
