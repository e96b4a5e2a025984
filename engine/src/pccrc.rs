//! MS-PCCRC content information, read and written byte for byte as BranchCache does.
//!
//! * [`v1`]: version 1.0 (little-endian): 32 MiB segments of 64 KiB blocks, SHA-256 (and
//!   SHA-384/512 on decode), with the range fields `dwOffsetInFirstSegment` and
//!   `dwReadBytesInLastSegment`. It is a re-encoding of pdist's own [`crate::content::ContentInfo`]:
//!   the same block hashes, HoD and Kp.
//! * [`v2`]: version 2.0 (big-endian): content-defined segments of at most 128 KiB hashed with
//!   SHA-512 cut to 32 bytes, with the range fields `ullStartInContent`, `ullIndexOfFirstSegment`,
//!   `dwOffsetInFirstSegment` and `ullLengthOfRange`. Segments come from FastCDC here (Windows'
//!   chunker is not public), so the bytes match Windows only when the boundaries do.
//!
//! Facts, sources and the known errors of the specification are in `../shared/PEERDIST.md`.

pub mod v1;
pub mod v2;

use crate::content::LayoutError;

/// Why content information could not be produced in a BranchCache format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PccrcError {
    /// MS-PCCRC V1 fixes 64 KiB blocks and 32 MiB segments.
    #[error(
        "MS-PCCRC V1 needs 64 KiB blocks and 512 blocks per segment, not {block_size} and {blocks_per_segment}"
    )]
    NonStandardLayout {
        /// Block size of the content information.
        block_size: u32,
        /// Blocks per segment of the content information.
        blocks_per_segment: u32,
    },
    /// The requested range is empty or outside the content.
    #[error("{0}")]
    Range(#[from] LayoutError),
}
