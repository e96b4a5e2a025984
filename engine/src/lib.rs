//! pdist's engine: the content model and content information formats, the store, the peer
//! protocol, discovery, fetching from peers and origins, and long-lived nodes.
//!
//! # Map, from the ground floor up
//!
//! * [`codec`]: the bounds-checked reader every decoder uses, and [`DecodeError`].
//! * [`content`]: the pure content model. Layout arithmetic ([`content::Layout`]), hashes and
//!   MS-PCCRC's key schedule, the Merkle tree over segment descriptors, content IDs and tickets,
//!   [`content::ContentInfo`] with its proofs and checks, the streaming parallel hasher (the
//!   one block hasher, also for downloads as they arrive), and pdist's native binary format.
//! * [`pccrc`]: MS-PCCRC V1 and V2 content information, byte for byte as BranchCache writes it.
//! * [`formats`]: recognising and decoding any of the three formats.
//! * [`store`]: the [`store::SegmentStore`] seam, RocksDB-backed and in-memory; eviction and
//!   leases; publishing a file.
//! * [`wire`] (pure): the peer protocol's bytes: key derivations, sealing, messages, block
//!   frames.
//! * [`peer`]: the peer protocol's server ([`peer::PeerService`]) and client
//!   ([`peer::PeerClient`]), the [`peer::Transport`] seam (HTTP, and an in-memory twin), and
//!   downloads offered to peers as they arrive.
//! * [`origin`]: the [`origin::HttpOrigin`] seam (hyper, and an in-memory twin), and what a
//!   fetch asks of an origin ([`origin::OriginClient`]).
//! * [`discovery`]: the [`discovery::Discovery`] seam, mDNS and its in-memory twin.
//! * [`download`]: content streamed in before anyone can check it (a whole download, a URL's
//!   body): written into a file and hashed as it arrives, announced byte by byte.
//! * [`fetch`]: fetching content from several peers at once (and an origin), every block
//!   checked before it is stored.
//! * [`node`]: a long-lived node: its front door ([`Node::open`] with [`NodeOptions`]), the peer
//!   table, the election of who downloads what nobody has, whole downloads followed as they
//!   arrive, and the local control API ([`node::control`]).
//!
//! No module imports a module above it; the pure ones use no async runtime and no sockets.
//!
//! # Example
//!
//! Hash content, print its ticket, and check one segment's descriptor against the content ID
//! alone, as a fetcher does with a descriptor from an untrusted peer:
//!
//! ```
//! use pdist_engine::content::{HashOptions, ServerSecret, hash_reader};
//!
//! let data = vec![7u8; 100_000];
//! let info = hash_reader(&data[..], &ServerSecret::open_group(), &HashOptions::default(), &mut |_| {})?;
//! let ticket = info.id().ticket().to_string();
//! assert!(ticket.starts_with("pd1"));
//!
//! // Elsewhere: only the ticket is trusted.
//! let id = ticket.parse::<pdist_engine::Ticket>()?.content_id();
//! let seg = info.layout().segment(0)?;
//! let proof = info.prove_segments(seg, 1).expect("segment 0 exists");
//! let verified = proof.verify(&id)?;
//! verified.verify_block_hashes(seg, info.block_hashes(seg))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The pure parts are property-tested and fuzzed (`fuzz/` at the repository root). The design
//! and the formats are described in `DESIGN.md`.

#![warn(missing_docs)]

pub mod codec;
pub mod content;
pub mod formats;
pub mod limit;
pub mod pccrc;
pub mod store;

pub use codec::{DecodeError, DecodeErrorKind};
pub use content::{ContentId, ContentInfo, Hash, Layout, ServerSecret, Ticket};
#[cfg(feature = "net")]
pub use fetch::{FetchError, FetchEvent, FetchOptions, FetchReport};
#[cfg(all(feature = "net", feature = "rocksdb"))]
pub use node::NodeOptions;
#[cfg(feature = "net")]
pub use node::{Node, NodeError};
#[cfg(feature = "net")]
pub use origin::{OriginClient, OriginError};
#[cfg(feature = "net")]
pub mod discovery;
#[cfg(feature = "net")]
pub mod download;
#[cfg(feature = "net")]
pub mod fetch;
#[cfg(feature = "net")]
pub mod node;
#[cfg(feature = "net")]
pub mod origin;
#[cfg(feature = "net")]
pub mod peer;
pub mod wire;
