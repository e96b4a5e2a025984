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
//!
//! Everything here is pure (bytes or `Read` in, values out; no async runtime, no sockets), so it
//! is property-tested and fuzzed (`fuzz/` at the repository root). The design and the formats are
//! described in `DESIGN.md`.

#![warn(missing_docs)]

pub mod codec;
pub mod content;
pub mod formats;
pub mod pccrc;

pub use codec::{DecodeError, DecodeErrorKind};
pub use content::{ContentId, ContentInfo, Hash, Layout, ServerSecret, Ticket};
