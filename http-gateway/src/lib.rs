//! pdist's HTTP gateway: a transparent caching forward proxy whose cache is fed by LAN peers,
//! and an origin mode that answers BranchCache's `Accept-Encoding: peerdist` with content
//! information.

#![warn(missing_docs)]

pub mod allow;
pub mod body;
mod cache;
pub mod conditional;
pub mod error;
mod followed;
mod gateway;
pub mod headers;
pub mod index;
pub mod metrics;
mod peered;
pub mod range;
mod ranged;
pub mod record;
pub mod reverse;
pub mod spool;
mod stored;
pub mod upstream;
mod vouched;

pub use error::GatewayError;
pub use gateway::{DEFAULT_PORT, Gateway, GatewayConfig, METRICS_PATH, REVERSE_METRICS_PATH};
