//! MS-PCCRC Content Information version 1.0 (all integers little-endian; d = digest length):
//!
//! ```text
//!  0 2 Version 0x0100          6 4 dwOffsetInFirstSegment   14 4 cSegments
//!  2 4 dwHashAlgo 0x800C/D/E  10 4 dwReadBytesInLastSegment
//! 18   cSegments x {u64 ullOffsetInContent, u32 cbSegment, u32 cbBlockSize, HoD[d], Kp[d]}
//!      cSegments x {u32 cBlocks, cBlocks x BlockHash[d]}
//! ```
//!
//! A range starts `dwOffsetInFirstSegment` into the first listed segment. It ends
//! `dwReadBytesInLastSegment` bytes after its start when one segment is listed, that many bytes
//! into the last segment otherwise, and at the end of the last segment when the field is 0 (what
//! IIS sends for a whole file). Block-hash lists start at block 0 of each segment; only the last
//! segment's list may stop early, after the last block the range touches.
//!
//! ```
//! use pdist_engine::content::{HashOptions, ServerSecret, hash_reader};
//! use pdist_engine::pccrc::v1::ContentInfoV1;
//!
//! let secret = ServerSecret::from_hex("00112233")?;
//! let data = vec![1u8; 200_000];
//! let info = hash_reader(&data[..], &secret, &HashOptions::default(), &mut |_| {})?;
//! // What a BranchCache server sends for bytes 1000..=5999 of this content.
//! let v1 = ContentInfoV1::from_content_info(&info, Some(1000..6000))?;
//! let decoded = ContentInfoV1::decode(&v1.encode())?;
//! assert_eq!(decoded.range(), 1000..6000);
//! decoded.verify_secret(&secret)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Decoding checks every field against these rules: segments are contiguous, segment-aligned and
//! full except the last; blocks are 64 KiB; counts fit the bytes that remain; and where a
//! segment's block list is complete its HoD must equal the hash of its block hashes.

use std::ops::Range;

use sha2::{Digest, Sha256, Sha384, Sha512};

use super::PccrcError;
use crate::codec::{ByteReader, DecodeError, DecodeErrorKind, check_eq, check_range, unsupported};
use crate::content::info::verify_segment_secrets;
use crate::content::layout::{BLOCK_SIZE, MAX_CONTENT_LEN, SEGMENT_SIZE};
use crate::content::{ContentInfo, Hash, Layout, SegmentDescriptor, VerifyError, hash};

/// `Version` field of V1.
pub const VERSION: u16 = 0x0100;
const MAX_SEGMENTS: u64 = MAX_CONTENT_LEN / SEGMENT_SIZE as u64;
/// Largest V1 content information accepted (SHA-512, the largest content pdist describes).
pub const MAX_V1_LEN: usize = 18
    + MAX_SEGMENTS as usize * (16 + 2 * 64 + 4)
    + (MAX_CONTENT_LEN / BLOCK_SIZE as u64) as usize * 64;

/// V1's hash algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgo {
    /// SHA-256 (0x800C): the only one Windows peers accept.
    Sha256,
    /// SHA-384 (0x800D).
    Sha384,
    /// SHA-512 (0x800E).
    Sha512,
}

impl HashAlgo {
    /// The `dwHashAlgo` value.
    pub fn id(self) -> u32 {
        match self {
            HashAlgo::Sha256 => 0x800C,
            HashAlgo::Sha384 => 0x800D,
            HashAlgo::Sha512 => 0x800E,
        }
    }

    /// The algorithm's name ("SHA-256", ...).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha256 => "SHA-256",
            HashAlgo::Sha384 => "SHA-384",
            HashAlgo::Sha512 => "SHA-512",
        }
    }

    fn from_id(id: u32) -> Option<Self> {
        match id {
            0x800C => Some(HashAlgo::Sha256),
            0x800D => Some(HashAlgo::Sha384),
            0x800E => Some(HashAlgo::Sha512),
            _ => None,
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha384 => 48,
            HashAlgo::Sha512 => 64,
        }
    }

    fn digest_of_concat(self, parts: &[u8]) -> Vec<u8> {
        match self {
            HashAlgo::Sha256 => Sha256::digest(parts).to_vec(),
            HashAlgo::Sha384 => Sha384::digest(parts).to_vec(),
            HashAlgo::Sha512 => Sha512::digest(parts).to_vec(),
        }
    }
}

/// One `SegmentDescription` with its `SegmentContentBlocks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentV1 {
    /// `ullOffsetInContent`.
    pub offset: u64,
    /// `cbSegment`.
    pub len: u32,
    /// `cbBlockSize` (always 65536).
    pub block_size: u32,
    /// `SegmentHashOfData`.
    pub hod: Vec<u8>,
    /// `SegmentSecret` (Kp).
    pub kp: Vec<u8>,
    /// The listed block hashes, `d` bytes each, concatenated.
    pub block_hashes: Vec<u8>,
}

impl SegmentV1 {
    /// Number of listed block hashes.
    pub fn listed_blocks(&self, algo: HashAlgo) -> usize {
        self.block_hashes.len() / algo.digest_len()
    }

    /// Blocks the whole segment has.
    pub fn total_blocks(&self) -> u32 {
        self.len.div_ceil(BLOCK_SIZE)
    }
}

/// MS-PCCRC V1 content information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentInfoV1 {
    /// `dwHashAlgo`.
    pub hash_algo: HashAlgo,
    /// `dwOffsetInFirstSegment`.
    pub offset_in_first_segment: u32,
    /// `dwReadBytesInLastSegment` (0: up to the end of the last segment).
    pub read_bytes_in_last_segment: u32,
    /// The listed segments.
    pub segments: Vec<SegmentV1>,
}

impl ContentInfoV1 {
    /// V1 (SHA-256) for `info`: the whole content, or the segments a byte range touches.
    pub fn from_content_info(
        info: &ContentInfo,
        range: Option<Range<u64>>,
    ) -> Result<Self, PccrcError> {
        let layout = info.layout();
        if !layout.is_standard() {
            return Err(PccrcError::NonStandardLayout {
                block_size: layout.block_size(),
                blocks_per_segment: layout.blocks_per_segment(),
            });
        }
        let (segs, offset_first, read_last, last_end) = match &range {
            None => (layout.segments().collect::<Vec<_>>(), 0, 0, None),
            Some(r) => {
                let (first, last) = layout.segments_covering(r)?;
                let segs: Vec<_> = layout
                    .segments()
                    .skip(first.get() as usize)
                    .take((last.get() - first.get() + 1) as usize)
                    .collect();
                let offset_first = (r.start - layout.segment_offset(first)) as u32;
                let read_last = if first == last {
                    r.end - r.start
                } else {
                    r.end - layout.segment_offset(last)
                } as u32;
                (segs, offset_first, read_last, Some(r.end))
            }
        };
        let last = segs.last().copied();
        let segments = segs
            .into_iter()
            .map(|seg| {
                let d = info.descriptor(seg);
                let mut hashes = info.block_hashes(seg);
                if let (Some(end), true) = (last_end, Some(seg) == last) {
                    let in_seg = end - layout.segment_offset(seg);
                    hashes = &hashes[..in_seg.div_ceil(u64::from(BLOCK_SIZE)) as usize];
                }
                SegmentV1 {
                    offset: layout.segment_offset(seg),
                    len: layout.segment_len(seg),
                    block_size: BLOCK_SIZE,
                    hod: d.hod.0.to_vec(),
                    kp: d.kp.0.to_vec(),
                    block_hashes: hashes.iter().flat_map(|h| h.0).collect(),
                }
            })
            .collect();
        Ok(ContentInfoV1 {
            hash_algo: HashAlgo::Sha256,
            offset_in_first_segment: offset_first,
            read_bytes_in_last_segment: read_last,
            segments,
        })
    }

    /// The byte range of the content this describes (empty when no segment is listed).
    pub fn range(&self) -> Range<u64> {
        let (Some(first), Some(last)) = (self.segments.first(), self.segments.last()) else {
            return 0..0;
        };
        let start = first.offset + u64::from(self.offset_in_first_segment);
        let end = match self.read_bytes_in_last_segment {
            0 => last.offset + u64::from(last.len),
            n if self.segments.len() == 1 => start + u64::from(n),
            n => last.offset + u64::from(n),
        };
        start..end
    }

    /// True when this lists the whole content from byte 0 with every block hash. V1 does not
    /// carry the content's length: only `dwReadBytesInLastSegment` = 0 (what IIS sends for a
    /// whole file) says that the last listed segment ends the content, so a range that happens
    /// to end on a segment boundary is not complete.
    pub fn is_complete(&self) -> bool {
        self.read_bytes_in_last_segment == 0
            && self.offset_in_first_segment == 0
            && self.segments.first().is_none_or(|s| s.offset == 0)
            && self
                .segments
                .iter()
                .all(|s| s.listed_blocks(self.hash_algo) == s.total_blocks() as usize)
    }

    /// pdist's own content information for the same content and secret, when this is complete
    /// SHA-256 content information: the same hashes give the same content ID that
    /// `pdist hash` computes with that secret.
    pub fn to_content_info(&self) -> Option<ContentInfo> {
        if self.hash_algo != HashAlgo::Sha256 || !self.is_complete() {
            return None;
        }
        let layout = Layout::new(self.range().end).ok()?;
        let descriptors = self
            .segments
            .iter()
            .map(descriptor)
            .collect::<Option<Vec<_>>>()?;
        let hashes = self
            .segments
            .iter()
            .flat_map(|s| s.block_hashes.chunks_exact(32))
            .map(|c| Hash(c.try_into().expect("chunks of 32")))
            .collect();
        ContentInfo::from_parts(layout, descriptors, hashes).ok()
    }

    /// Checks every segment's Kp against a server secret (SHA-256 content information only).
    pub fn verify_secret(&self, secret: &hash::ServerSecret) -> Result<(), VerifyError> {
        let descriptors = self
            .segments
            .iter()
            .map(descriptor)
            .collect::<Option<Vec<_>>>()
            .ok_or(VerifyError::Unsupported {
                what: "checking Kp of SHA-384/512 content information",
            })?;
        verify_segment_secrets(&descriptors, 0, secret)
    }

    /// The public segment IDs (HoHoDk), for SHA-256 content information.
    pub fn segment_ids(&self) -> Option<Vec<Hash>> {
        self.segments
            .iter()
            .map(|s| descriptor(s).map(|d| d.segment_id()))
            .collect()
    }

    /// The V1 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let d = self.hash_algo.digest_len();
        let blocks: usize = self.segments.iter().map(|s| s.block_hashes.len()).sum();
        let mut out = Vec::with_capacity(18 + self.segments.len() * (20 + 2 * d) + blocks);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.hash_algo.id().to_le_bytes());
        out.extend_from_slice(&self.offset_in_first_segment.to_le_bytes());
        out.extend_from_slice(&self.read_bytes_in_last_segment.to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for s in &self.segments {
            out.extend_from_slice(&s.offset.to_le_bytes());
            out.extend_from_slice(&s.len.to_le_bytes());
            out.extend_from_slice(&s.block_size.to_le_bytes());
            out.extend_from_slice(&s.hod);
            out.extend_from_slice(&s.kp);
        }
        for s in &self.segments {
            out.extend_from_slice(&((s.block_hashes.len() / d) as u32).to_le_bytes());
            out.extend_from_slice(&s.block_hashes);
        }
        out
    }

    /// Parses and checks V1 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = ByteReader::new(bytes, MAX_V1_LEN)?;
        let version = r.u16_le("Version")?;
        if version != VERSION {
            return Err(unsupported(0, "Version", u64::from(version)));
        }
        let algo_id = r.u32_le("dwHashAlgo")?;
        let algo =
            HashAlgo::from_id(algo_id).ok_or(unsupported(2, "dwHashAlgo", u64::from(algo_id)))?;
        let d = algo.digest_len();
        let offset_first = r.u32_le("dwOffsetInFirstSegment")?;
        let read_last = r.u32_le("dwReadBytesInLastSegment")?;
        let count = r.u32_le("cSegments")?;
        check_range(14, "cSegments", u64::from(count), 0, MAX_SEGMENTS)?;
        r.ensure("SegmentDescription", u64::from(count), 16 + 2 * d + 4)?;
        let mut segments: Vec<SegmentV1> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            segments.push(read_description(&mut r, d, segments.last())?);
        }
        check_range_fields(&segments, offset_first, read_last)?;
        let mut info = ContentInfoV1 {
            hash_algo: algo,
            offset_in_first_segment: offset_first,
            read_bytes_in_last_segment: read_last,
            segments,
        };
        let range_end = info.range().end;
        let n = info.segments.len();
        for (i, s) in info.segments.iter_mut().enumerate() {
            let at = r.pos();
            let listed = r.u32_le("cBlocks")?;
            let total = s.total_blocks();
            let min = if i + 1 == n {
                (range_end - s.offset).div_ceil(u64::from(BLOCK_SIZE))
            } else {
                u64::from(total)
            };
            check_range(at, "cBlocks", u64::from(listed), min, u64::from(total))?;
            s.block_hashes = r.bytes(listed as usize * d, "BlockHashes")?.to_vec();
            if listed == total && algo.digest_of_concat(&s.block_hashes) != s.hod {
                return Err(DecodeError::at(
                    at,
                    DecodeErrorKind::HashOfData { segment: i as u64 },
                ));
            }
        }
        r.finish()?;
        Ok(info)
    }
}

fn read_description(
    r: &mut ByteReader<'_>,
    d: usize,
    prev: Option<&SegmentV1>,
) -> Result<SegmentV1, DecodeError> {
    let at = r.pos();
    let offset = r.u64_le("ullOffsetInContent")?;
    match prev {
        None => check_eq(
            at,
            "ullOffsetInContent (segment-aligned)",
            offset % u64::from(SEGMENT_SIZE),
            0,
        )?,
        Some(p) => {
            // Every segment but the last is a full 32 MiB.
            check_eq(
                at - (16 + 2 * d) + 8,
                "cbSegment of a segment that is not the last",
                u64::from(p.len),
                u64::from(SEGMENT_SIZE),
            )?;
            check_eq(
                at,
                "ullOffsetInContent",
                offset,
                p.offset + u64::from(p.len),
            )?;
        }
    }
    let len_at = r.pos();
    let len = r.u32_le("cbSegment")?;
    check_range(
        len_at,
        "cbSegment",
        u64::from(len),
        1,
        u64::from(SEGMENT_SIZE),
    )?;
    check_range(
        at,
        "ullOffsetInContent",
        offset,
        0,
        MAX_CONTENT_LEN - u64::from(len),
    )?;
    let bs_at = r.pos();
    let block_size = r.u32_le("cbBlockSize")?;
    check_eq(
        bs_at,
        "cbBlockSize",
        u64::from(block_size),
        u64::from(BLOCK_SIZE),
    )?;
    Ok(SegmentV1 {
        offset,
        len,
        block_size,
        hod: r.bytes(d, "SegmentHashOfData")?.to_vec(),
        kp: r.bytes(d, "SegmentSecret")?.to_vec(),
        block_hashes: Vec::new(),
    })
}

fn check_range_fields(
    segments: &[SegmentV1],
    offset_first: u32,
    read_last: u32,
) -> Result<(), DecodeError> {
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
        check_eq(6, "dwOffsetInFirstSegment", u64::from(offset_first), 0)?;
        return check_eq(10, "dwReadBytesInLastSegment", u64::from(read_last), 0);
    };
    check_range(
        6,
        "dwOffsetInFirstSegment",
        u64::from(offset_first),
        0,
        u64::from(first.len - 1),
    )?;
    let max_read = if segments.len() == 1 {
        first.len - offset_first
    } else {
        last.len
    };
    check_range(
        10,
        "dwReadBytesInLastSegment",
        u64::from(read_last),
        0,
        u64::from(max_read),
    )
}

/// A segment's HoD and Kp as pdist's [`SegmentDescriptor`], when they are SHA-256 (32 bytes).
pub fn descriptor(segment: &SegmentV1) -> Option<SegmentDescriptor> {
    Some(SegmentDescriptor {
        hod: Hash(segment.hod.as_slice().try_into().ok()?),
        kp: Hash(segment.kp.as_slice().try_into().ok()?),
    })
}
