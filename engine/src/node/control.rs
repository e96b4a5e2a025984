//! The local control API: how `pdist publish/fetch/ls/rm/peers/status/seed` talk to a running
//! node. HTTP/1.1 with JSON bodies over a Unix socket in the data directory (`node.sock`), so
//! only users who may open the data directory can drive the node; no TCP port is opened.
//!
//! * [`api`]: the requests and answers, shared by both ends, and the kinds of failure
//!   ([`ErrorKind`], with its one mapping to HTTP statuses).
//! * [`server`]: answers them from a [`super::Node`] ([`serve`]).
//! * [`client`]: asks them, one typed method per route ([`ControlClient`]).

pub mod api;
pub mod client;
pub mod server;

pub use api::{ErrorKind, Failure, SOCKET_NAME};
pub use client::{ControlClient, ControlError};
pub use server::serve;
