//! pdist's HTTP gateway: a transparent caching forward proxy whose cache is fed by LAN peers,
//! and an origin mode that answers BranchCache's `Accept-Encoding: peerdist` with content
//! information.
//!
//! Nothing is implemented here yet: the gateway is built on the store and the LAN nodes, which
//! land first (see the project's issues). The crate exists so that the workspace has its final
//! shape and the engine's public API is compiled against a second consumer from the start.

#![warn(missing_docs)]

/// The content-information formats a gateway will offer, re-exported from the engine so the
/// dependency is real and checked by the compiler.
pub use engine::formats::Format;
