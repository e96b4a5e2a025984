//! pdist's HTTP gateway: a transparent caching forward proxy whose cache is fed by LAN peers,
//! and an origin mode that answers BranchCache's `Accept-Encoding: peerdist` with content
//! information.

#![warn(missing_docs)]

pub mod allow;
pub mod headers;
pub mod index;
pub mod metrics;
pub mod range;
pub mod record;
