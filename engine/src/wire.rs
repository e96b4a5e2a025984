//! The peer protocol's bytes: key derivations, request and reply messages, and the encrypted
//! block frames. Pure: bytes in, values out; the HTTP transport in [`crate::peer`] carries them.
//!
//! Every message starts with the magic `PDW` or `PDR` and a version, and is bounded
//! ([`MAX_REQUEST_LEN`], [`MAX_REPLY_LEN`]); a peer that breaks either is cut off. Everything
//! after that header is sealed under the group's message key, so only nodes of one group talk
//! to each other, and a node of another group learns only that a pdist node answered. Content is named on the wire
//! only by keyed derivations of its content ID ([`LookupKey`]); content information travels
//! sealed under a key derived from the content ID, and blocks sealed under a per-segment key
//! derived from the segment secret Kp, so a node without the ticket learns nothing about the
//! bytes. The threat model is in `DESIGN.md`.

mod frame;
mod keys;
mod msg;

pub use frame::{
    Frame, FrameReader, FrameRef, MAX_FRAME_LEN, SealedParts, encode_frame, encode_missing_frame,
    open_frame,
};
pub use keys::{
    AEAD_OVERHEAD, ContentKeys, GroupKeys, LookupKey, NodeId, SEALED_SEED_LEN, SEED_KEY_LEN,
    SeedKey, SegmentKey, TailKey, open, seal, seal_seed,
};
pub use msg::{
    HaveEntry, HelloReply, Intent, MAX_BITMAP_BITS, MAX_HAVE_SEGMENTS, MAX_NAME_RECORD,
    MAX_RANGE_BLOCKS, MAX_REPLY_LEN, MAX_REQUEST_LEN, MAX_TAIL_CHUNK, MAX_TAIL_META, Reply,
    Request, RequestEnvelope, decode_reply, decode_request, encode_reply, encode_request,
    open_plain, unix_now,
};

/// The version of the peer protocol this build speaks; messages of any other are refused.
pub const PROTOCOL_VERSION: u8 = 2;

/// Why a message from a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Malformed or over-long bytes.
    #[error("malformed peer message: {0}")]
    Decode(#[from] crate::DecodeError),
    /// The message's MAC does not match our group's key: a node of another group, or tampering.
    #[error("message not authenticated by our group's key")]
    NotInGroup,
    /// Sealed bytes that do not open under the key they should: wrong key, or tampering.
    #[error("sealed {what} did not open (wrong key or tampered)")]
    Sealed {
        /// What was sealed.
        what: &'static str,
    },
    /// A reply of a kind that does not answer the request sent.
    #[error("reply of the wrong kind for the request")]
    WrongReply,
}
