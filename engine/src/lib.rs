//! pdist's engine: the content model and content information formats today; the store,
//! discovery, transfer and fetch scheduler as they land.
//!
//! # Map
//!
//! * [`content`]: the pure content model. Layout arithmetic ([`content::Layout`]), hashes and
//!   MS-PCCRC's key schedule, the Merkle tree over segment descriptors, content IDs and tickets,
//!   [`content::ContentInfo`] with its proofs and checks, the streaming parallel hasher, and
//!   pdist's native binary format.
//! * [`pccrc`]: MS-PCCRC V1 and V2 content information, byte for byte as BranchCache writes it.
//! * [`formats`]: recognising and decoding any of the three formats.
//! * [`codec`]: the bounds-checked reader every decoder uses, and [`DecodeError`].
//! * [`store`]: the [`store::SegmentStore`] trait, RocksDB-backed and in-memory.
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
//! Everything here is pure (bytes or `Read` in, values out; no async runtime, no sockets), so it
//! is property-tested and fuzzed (`fuzz/` at the repository root). The design and the formats are
//! described in `DESIGN.md`.

#![warn(missing_docs)]

pub mod codec;
pub mod content;
pub mod formats;
pub mod pccrc;
pub mod store;

pub use codec::{DecodeError, DecodeErrorKind};
pub use content::{ContentId, ContentInfo, Hash, Layout, ServerSecret, Ticket};
#[cfg(feature = "net")]
pub mod discovery;
#[cfg(feature = "net")]
pub mod fetch;
#[cfg(feature = "net")]
pub mod node;
#[cfg(feature = "net")]
pub mod peer;
pub mod wire;
