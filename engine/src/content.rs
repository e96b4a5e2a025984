//! The content model: pure values in, pure values out (no tokio, no sockets).
//!
//! * [`layout`]: segment and block arithmetic, and the validated [`SegmentIdx`] / [`BlockIdx`].
//! * [`hash`]: [`Hash`](struct@Hash), [`ServerSecret`] and MS-PCCRC's key schedule (Ks, Kp, HoHoDk).
//! * [`merkle`]: the tree over segment descriptors, with domain separation and guarded proofs.
//! * [`id`]: [`ContentId`] and the printable [`Ticket`].
//! * [`info`]: [`ContentInfo`], [`SegmentProof`] and the checks that move trust from a content ID
//!   to descriptors, block hashes and blocks.
//! * [`hasher`]: builds [`ContentInfo`] from a `Read`, streaming, on all cores.
//! * [`incremental`]: [`BlockHasher`], the same hashes for bytes that arrive a piece at a time.
//! * [`native`]: pdist's own binary format for content information and segment proofs.
//!
//! The MS-PCCRC formats are in [`crate::pccrc`]; they reuse this model where BranchCache's
//! structure matches it (V1) and stand alone where it does not (V2's content-defined chunks).

pub mod hash;
pub mod hasher;
pub mod id;
pub mod incremental;
pub mod info;
pub mod layout;
pub mod merkle;
pub mod native;

pub use hash::{
    GROUP_SECRET_LEN, HASH_LEN, Hash, MIN_GROUP_SECRET_BITS, OPEN_GROUP_SECRET, ServerSecret,
    WeakSecret, hash_of_data, hmac_sha256, segment_id, segment_secret, sha256,
};
pub use hasher::{HashError, HashOptions, Progress, hash_file, hash_reader};
pub use id::{ContentId, Ticket, TicketError};
pub use incremental::BlockHasher;
pub use info::{ContentInfo, SegmentDescriptor, SegmentProof, VerifiedSegments};
pub use layout::{BlockIdx, Layout, LayoutError, SegmentIdx};

/// A hash, count, proof or ID that does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A block's bytes do not hash to its block hash.
    #[error("block {block} hashes to {actual}, expected {expected}")]
    BlockHash {
        /// Global block index.
        block: u64,
        /// Hash from the content information.
        expected: Hash,
        /// Hash of the bytes received.
        actual: Hash,
    },
    /// A block has the wrong length.
    #[error("block {block} is {actual} bytes, expected {expected}")]
    BlockLength {
        /// Global block index.
        block: u64,
        /// Length from the layout.
        expected: u32,
        /// Length received.
        actual: usize,
    },
    /// A segment's block hashes do not hash to its HoD.
    #[error("segment {segment}: block hashes give HoD {actual}, expected {expected}")]
    SegmentHash {
        /// Segment index.
        segment: u32,
        /// HoD from the descriptor.
        expected: Hash,
        /// HoD of the block hashes received.
        actual: Hash,
    },
    /// A segment's block-hash list has the wrong length.
    #[error("segment {segment} lists {actual} block hashes, its layout has {expected} blocks")]
    BlockCount {
        /// Segment index.
        segment: u32,
        /// Blocks in the segment.
        expected: u32,
        /// Hashes received.
        actual: usize,
    },
    /// The number of block hashes for the whole content is wrong.
    #[error("{actual} block hashes for content of {expected} blocks")]
    TotalBlockCount {
        /// Blocks in the content.
        expected: u64,
        /// Hashes given.
        actual: usize,
    },
    /// The number of segment descriptors is wrong.
    #[error("{actual} segment descriptors for content of {expected} segments")]
    SegmentCount {
        /// Segments in the layout.
        expected: u32,
        /// Descriptors given.
        actual: usize,
    },
    /// The content information or proof leads to another content ID.
    #[error("content ID is {actual}, expected {expected}")]
    ContentId {
        /// The ID that was trusted.
        expected: ContentId,
        /// The ID the data leads to.
        actual: ContentId,
    },
    /// Proof indices are duplicated, unsorted, out of range, or do not match the leaves.
    #[error("bad proof indices: {reason}")]
    ProofIndices {
        /// What is wrong.
        reason: &'static str,
    },
    /// The proof has more or fewer hashes than its indices need.
    #[error("proof has {actual} hashes, its indices need {expected}")]
    ProofLength {
        /// Hashes needed.
        expected: usize,
        /// Hashes present.
        actual: usize,
    },
    /// A segment's Kp is not the one the server secret gives.
    #[error("segment {segment}: Kp is {actual}, the secret gives {expected}")]
    SegmentSecret {
        /// Segment index.
        segment: u32,
        /// Kp derived from the secret.
        expected: Hash,
        /// Kp in the content information.
        actual: Hash,
    },
    /// A check this content information's algorithm does not support.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What was asked.
        what: &'static str,
    },
    /// rs_merkle could not rebuild a root from the proof.
    #[error("proof does not rebuild a Merkle root")]
    ProofMalformed,
}
