//! Segment and block arithmetic: the only place that turns indices into offsets and lengths.
//!
//! Content of length L is cut into fixed-size blocks (64 KiB) grouped into segments of
//! `blocks_per_segment` blocks (512, so 32 MiB), as in MS-PCCRC V1. Only the last block and the
//! last segment may be short; zero-length content has no segments and no blocks.
//!
//! [`SegmentIdx`] and [`BlockIdx`] are handed out only by a [`Layout`], which bounds-checks them,
//! and every offset or length helper takes them, so an out-of-range index cannot reach the
//! arithmetic. The non-standard parameters exist so that tests can hit every edge (short last
//! block, exactly full segment, …) with small sizes; content IDs bind the parameters.

use std::ops::Range;

/// Block size of MS-PCCRC V1 and of pdist's model: 64 KiB.
pub const BLOCK_SIZE: u32 = 64 * 1024;
/// Blocks in a full segment: 512.
pub const BLOCKS_PER_SEGMENT: u32 = 512;
/// Segment size: 32 MiB.
pub const SEGMENT_SIZE: u32 = BLOCK_SIZE * BLOCKS_PER_SEGMENT;
/// Largest content pdist describes: 1 TiB (32,768 segments, 16 Mi blocks). Its content
/// information (all block hashes) is about 514 MiB.
pub const MAX_CONTENT_LEN: u64 = 1 << 40;
/// Most segments any layout may have, whatever its parameters (keeps the Merkle tree small).
pub const MAX_SEGMENTS: u32 = 1 << 20;
/// Most blocks any layout may have, whatever its parameters.
pub const MAX_BLOCKS: u64 = 1 << 24;

/// Why a layout or an index was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The content is longer than pdist describes.
    #[error("content of {len} bytes is larger than the maximum of {max} bytes")]
    ContentTooLarge {
        /// Requested length.
        len: u64,
        /// [`MAX_CONTENT_LEN`].
        max: u64,
    },
    /// Block size or blocks per segment out of bounds, or too many segments or blocks.
    #[error(
        "invalid layout parameters: block size {block_size}, {blocks_per_segment} blocks per segment"
    )]
    BadParameters {
        /// Requested block size in bytes.
        block_size: u32,
        /// Requested blocks per segment.
        blocks_per_segment: u32,
    },
    /// A segment index at or past the segment count.
    #[error("segment {index} does not exist (content has {count} segments)")]
    SegmentOutOfRange {
        /// The index asked for.
        index: u64,
        /// Segments in the content.
        count: u32,
    },
    /// A block index at or past the block count of its segment (or of the content).
    #[error("block {index} does not exist (there are {count} blocks)")]
    BlockOutOfRange {
        /// The index asked for.
        index: u64,
        /// Blocks in the segment, or in the whole content for global indices.
        count: u64,
    },
    /// A byte range that is empty, reversed or reaches past the end of the content.
    #[error("byte range {start}..{end} is not a non-empty range inside content of {len} bytes")]
    BadRange {
        /// Range start (inclusive).
        start: u64,
        /// Range end (exclusive).
        end: u64,
        /// Content length.
        len: u64,
    },
}

/// A segment index checked against a [`Layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentIdx(u32);

impl SegmentIdx {
    /// The zero-based index.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A block index checked against a [`Layout`]: a segment and a block within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockIdx {
    segment: u32,
    index: u32,
    global: u64,
}

impl BlockIdx {
    /// The segment this block belongs to.
    pub fn segment(self) -> SegmentIdx {
        SegmentIdx(self.segment)
    }

    /// Zero-based index within its segment.
    pub fn index_in_segment(self) -> u32 {
        self.index
    }

    /// Zero-based index within the whole content.
    pub fn global(self) -> u64 {
        self.global
    }
}

/// How content of a given length is cut into segments and blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    content_len: u64,
    block_size: u32,
    blocks_per_segment: u32,
    segment_count: u32,
    block_count: u64,
}

impl Layout {
    /// The standard layout (64 KiB blocks, 32 MiB segments) for content of `content_len` bytes.
    pub fn new(content_len: u64) -> Result<Layout, LayoutError> {
        Layout::with_params(content_len, BLOCK_SIZE, BLOCKS_PER_SEGMENT)
    }

    /// A layout with other parameters: tests use small ones to reach every edge cheaply.
    /// `block_size` must be 1 byte to 16 MiB and a segment at most 4 GiB - 1.
    pub fn with_params(
        content_len: u64,
        block_size: u32,
        blocks_per_segment: u32,
    ) -> Result<Layout, LayoutError> {
        if content_len > MAX_CONTENT_LEN {
            return Err(LayoutError::ContentTooLarge {
                len: content_len,
                max: MAX_CONTENT_LEN,
            });
        }
        let bad = LayoutError::BadParameters {
            block_size,
            blocks_per_segment,
        };
        if block_size == 0 || block_size > 16 << 20 || blocks_per_segment == 0 {
            return Err(bad);
        }
        let segment_size = u64::from(block_size) * u64::from(blocks_per_segment);
        if segment_size > u64::from(u32::MAX) {
            return Err(bad);
        }
        let block_count = content_len.div_ceil(u64::from(block_size));
        let segment_count = content_len.div_ceil(segment_size);
        if block_count > MAX_BLOCKS || segment_count > u64::from(MAX_SEGMENTS) {
            return Err(bad);
        }
        Ok(Layout {
            content_len,
            block_size,
            blocks_per_segment,
            segment_count: segment_count as u32,
            block_count,
        })
    }

    /// True when the parameters are MS-PCCRC V1's (64 KiB blocks, 512 per segment).
    pub fn is_standard(&self) -> bool {
        self.block_size == BLOCK_SIZE && self.blocks_per_segment == BLOCKS_PER_SEGMENT
    }

    /// Content length in bytes.
    pub fn content_len(&self) -> u64 {
        self.content_len
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Blocks in a full segment.
    pub fn blocks_per_segment(&self) -> u32 {
        self.blocks_per_segment
    }

    /// Bytes in a full segment.
    pub fn segment_size(&self) -> u32 {
        self.block_size * self.blocks_per_segment
    }

    /// Number of segments (0 for empty content).
    pub fn segment_count(&self) -> u32 {
        self.segment_count
    }

    /// Number of blocks in the whole content.
    pub fn block_count(&self) -> u64 {
        self.block_count
    }

    /// Checks a segment index.
    pub fn segment(&self, index: u64) -> Result<SegmentIdx, LayoutError> {
        if index < u64::from(self.segment_count) {
            Ok(SegmentIdx(index as u32))
        } else {
            Err(LayoutError::SegmentOutOfRange {
                index,
                count: self.segment_count,
            })
        }
    }

    /// All segments in order.
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = SegmentIdx> + ExactSizeIterator {
        (0..self.segment_count).map(SegmentIdx)
    }

    /// Byte offset of a segment's first byte.
    pub fn segment_offset(&self, seg: SegmentIdx) -> u64 {
        u64::from(seg.0) * u64::from(self.segment_size())
    }

    /// Length of a segment in bytes (only the last one may be short).
    pub fn segment_len(&self, seg: SegmentIdx) -> u32 {
        let rest = self.content_len - self.segment_offset(seg);
        rest.min(u64::from(self.segment_size())) as u32
    }

    /// The bytes of a segment.
    pub fn segment_range(&self, seg: SegmentIdx) -> Range<u64> {
        let start = self.segment_offset(seg);
        start..start + u64::from(self.segment_len(seg))
    }

    /// Number of blocks in a segment.
    pub fn blocks_in_segment(&self, seg: SegmentIdx) -> u32 {
        self.segment_len(seg).div_ceil(self.block_size)
    }

    /// Global index of a segment's first block.
    pub fn first_block_of(&self, seg: SegmentIdx) -> u64 {
        u64::from(seg.0) * u64::from(self.blocks_per_segment)
    }

    /// Checks a block index within a segment.
    pub fn block(&self, seg: SegmentIdx, index: u32) -> Result<BlockIdx, LayoutError> {
        let count = self.blocks_in_segment(seg);
        if index < count {
            Ok(BlockIdx {
                segment: seg.0,
                index,
                global: self.first_block_of(seg) + u64::from(index),
            })
        } else {
            Err(LayoutError::BlockOutOfRange {
                index: u64::from(index),
                count: u64::from(count),
            })
        }
    }

    /// Checks a block index within the whole content.
    pub fn block_at(&self, global: u64) -> Result<BlockIdx, LayoutError> {
        if global >= self.block_count {
            return Err(LayoutError::BlockOutOfRange {
                index: global,
                count: self.block_count,
            });
        }
        let bps = u64::from(self.blocks_per_segment);
        Ok(BlockIdx {
            segment: (global / bps) as u32,
            index: (global % bps) as u32,
            global,
        })
    }

    /// The blocks of a segment, in order.
    pub fn blocks(&self, seg: SegmentIdx) -> impl DoubleEndedIterator<Item = BlockIdx> + use<> {
        let first = self.first_block_of(seg);
        (0..self.blocks_in_segment(seg)).map(move |index| BlockIdx {
            segment: seg.0,
            index,
            global: first + u64::from(index),
        })
    }

    /// Byte offset of a block's first byte.
    pub fn block_offset(&self, block: BlockIdx) -> u64 {
        block.global * u64::from(self.block_size)
    }

    /// Length of a block in bytes (only the content's last block may be short).
    pub fn block_len(&self, block: BlockIdx) -> u32 {
        let rest = self.content_len - self.block_offset(block);
        rest.min(u64::from(self.block_size)) as u32
    }

    /// The bytes of a block.
    pub fn block_range(&self, block: BlockIdx) -> Range<u64> {
        let start = self.block_offset(block);
        start..start + u64::from(self.block_len(block))
    }

    /// Checks that `range` is non-empty and inside the content.
    pub fn check_range(&self, range: &Range<u64>) -> Result<(), LayoutError> {
        if range.start < range.end && range.end <= self.content_len {
            Ok(())
        } else {
            Err(LayoutError::BadRange {
                start: range.start,
                end: range.end,
                len: self.content_len,
            })
        }
    }

    /// The segments that a non-empty byte range inside the content touches, as `first..=last`.
    pub fn segments_covering(
        &self,
        range: &Range<u64>,
    ) -> Result<(SegmentIdx, SegmentIdx), LayoutError> {
        self.check_range(range)?;
        let size = u64::from(self.segment_size());
        Ok((
            SegmentIdx((range.start / size) as u32),
            SegmentIdx(((range.end - 1) / size) as u32),
        ))
    }

    /// The blocks that a non-empty byte range inside the content touches, as `first..=last`.
    pub fn blocks_covering(&self, range: &Range<u64>) -> Result<(BlockIdx, BlockIdx), LayoutError> {
        self.check_range(range)?;
        let size = u64::from(self.block_size);
        Ok((
            self.block_at(range.start / size)?,
            self.block_at((range.end - 1) / size)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn interesting_sizes_standard() {
        for &(len, why) in fixtures::INTERESTING_SIZES {
            let l = Layout::new(len).unwrap();
            let total: u64 = l.segments().map(|s| u64::from(l.segment_len(s))).sum();
            assert_eq!(total, len, "{why}");
            let blocks: u64 = l
                .segments()
                .map(|s| u64::from(l.blocks_in_segment(s)))
                .sum();
            assert_eq!(blocks, l.block_count(), "{why}");
        }
    }

    #[test]
    fn empty_content_has_nothing() {
        let l = Layout::new(0).unwrap();
        assert_eq!(l.segment_count(), 0);
        assert_eq!(l.block_count(), 0);
        assert!(l.segment(0).is_err());
        assert!(l.block_at(0).is_err());
        assert!(l.check_range(&(0..0)).is_err());
    }

    #[test]
    fn limits() {
        assert!(Layout::new(MAX_CONTENT_LEN).is_ok());
        assert!(matches!(
            Layout::new(MAX_CONTENT_LEN + 1),
            Err(LayoutError::ContentTooLarge { .. })
        ));
        assert!(Layout::with_params(10, 0, 1).is_err());
        assert!(Layout::with_params(10, 1, 0).is_err());
        assert!(
            Layout::with_params(1 << 30, 1, 1).is_err(),
            "too many blocks"
        );
        assert!(
            Layout::with_params(10, 16 << 20, 1024).is_err(),
            "segment over 4 GiB"
        );
    }

    fn small_layout() -> impl Strategy<Value = Layout> {
        (0u64..5000, 1u32..40, 1u32..9)
            .prop_map(|(len, bs, bps)| Layout::with_params(len, bs, bps).unwrap())
    }

    proptest! {
        #[test]
        fn segments_tile_content(l in small_layout()) {
            let mut next = 0;
            for s in l.segments() {
                let r = l.segment_range(s);
                prop_assert_eq!(r.start, next);
                prop_assert!(r.end > r.start);
                let last = s.get() + 1 == l.segment_count();
                if !last {
                    prop_assert_eq!(l.segment_len(s), l.segment_size());
                }
                // Blocks tile the segment.
                let mut b_next = r.start;
                for b in l.blocks(s) {
                    prop_assert_eq!(b.segment(), s);
                    let br = l.block_range(b);
                    prop_assert_eq!(br.start, b_next);
                    prop_assert!(br.end > br.start);
                    prop_assert_eq!(l.block_at(b.global()).unwrap(), b);
                    prop_assert_eq!(l.block(s, b.index_in_segment()).unwrap(), b);
                    let last_block = b.global() + 1 == l.block_count();
                    if !last_block {
                        prop_assert_eq!(l.block_len(b), l.block_size());
                    }
                    b_next = br.end;
                }
                prop_assert_eq!(b_next, r.end);
                prop_assert!(l.block(s, l.blocks_in_segment(s)).is_err());
                next = r.end;
            }
            prop_assert_eq!(next, l.content_len());
            prop_assert!(l.segment(u64::from(l.segment_count())).is_err());
            prop_assert!(l.block_at(l.block_count()).is_err());
        }

        #[test]
        fn covering_is_tight(l in small_layout(), a in 0u64..5000, b in 0u64..5000) {
            let range = a.min(b)..a.max(b);
            match l.blocks_covering(&range) {
                Ok((first, last)) => {
                    prop_assert!(l.block_range(first).contains(&range.start));
                    prop_assert!(l.block_range(last).contains(&(range.end - 1)));
                    let (fs, ls) = l.segments_covering(&range).unwrap();
                    prop_assert_eq!(fs, first.segment());
                    prop_assert_eq!(ls, last.segment());
                }
                Err(_) => prop_assert!(range.is_empty() || range.end > l.content_len()),
            }
        }
    }
}
