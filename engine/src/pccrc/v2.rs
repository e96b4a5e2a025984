//! MS-PCCRC Content Information version 2.0 (all integers big-endian):
//!
//! ```text
//!  0 1 bMinorVersion 0x00     3 8 ullStartInContent         19 4 dwOffsetInFirstSegment
//!  1 1 bMajorVersion 0x02    11 8 ullIndexOfFirstSegment    23 8 ullLengthOfRange (0: all)
//!  2 1 bHashAlgo 0x04
//! 31   chunks: u8 bChunkType (0), u32 dwChunkDataLength, then dwChunkDataLength / 68 x
//!      {u32 cbSegment, HoD[32], Kp[32]}
//! ```
//!
//! Segments are independent content-defined chunks of 1 byte to 128 KiB with no blocks inside:
//! `HoD = SHA-512(segment)[..32]`, `Kp = HMAC-SHA512(Ks, HoD)[..32]` with
//! `Ks = SHA-512(secret)[..32]`, and `HoHoDk = HMAC-SHA512(Kp, HoD ‖ C)[..32]`: SHA-512 cut to 32
//! bytes, *not* SHA-512/256. pdist cuts segments with FastCDC (32/64/128 KiB min/avg/max).
//! `ullLengthOfRange` is a length (the spec's example 3.7 shows it), not an end offset.

use std::io::Read;

use crate::codec::{ByteReader, DecodeError, DecodeErrorKind, check_eq, check_range, unsupported};
use crate::content::layout::MAX_CONTENT_LEN;
use crate::content::{Hash, ServerSecret, VerifyError};
use crate::content::{HashError, LayoutError, hash};

/// `bHashAlgo`: SHA-512 cut to 256 bits, the only value V2 defines.
pub const HASH_ALGO_SHA512_TRUNC: u8 = 0x04;
/// Largest V2 segment (MS-PCCRC): 128 KiB.
pub const MAX_SEGMENT_LEN: u32 = 128 * 1024;
/// FastCDC's minimum chunk size here.
pub const CDC_MIN: u32 = 32 * 1024;
/// FastCDC's average chunk size here.
pub const CDC_AVG: u32 = 64 * 1024;
const HEADER_LEN: usize = 31;
const SEGMENT_RECORD_LEN: usize = 68;
/// Largest V2 content information accepted or produced: 1 GiB, about 15.8 million segments
/// (roughly 1 TiB of content at the 64 KiB average segment size). Hashing refuses content that
/// would need more.
pub const MAX_V2_LEN: usize = 1 << 30;

/// One V2 segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentV2 {
    /// `cbSegment`.
    pub len: u32,
    /// `SegmentHashOfData`.
    pub hod: Hash,
    /// `SegmentSecret` (Kp).
    pub kp: Hash,
}

impl SegmentV2 {
    /// The public segment ID: HMAC-SHA512(Kp, HoD ‖ C) cut to 32 bytes.
    pub fn segment_id(&self) -> Hash {
        hash::hmac_sha512_trunc(&self.kp.0, &[&self.hod.0, &hash::HOHODK_CONSTANT])
    }
}

/// MS-PCCRC V2 content information. Segments are grouped in chunks as they were on the wire,
/// so decoding and encoding give back the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentInfoV2 {
    /// `ullStartInContent`: where the first listed segment begins.
    pub start_in_content: u64,
    /// `ullIndexOfFirstSegment`.
    pub index_of_first_segment: u64,
    /// `dwOffsetInFirstSegment`: where the range starts within the first listed segment.
    pub offset_in_first_segment: u32,
    /// `ullLengthOfRange` (0: the whole resource).
    pub length_of_range: u64,
    /// Chunks (all of type 0), each a run of segments.
    pub chunks: Vec<Vec<SegmentV2>>,
}

/// Builds whole-content V2 content information one segment at a time.
#[derive(Debug)]
pub struct V2Builder {
    ks: Hash,
    segments: Vec<SegmentV2>,
}

impl V2Builder {
    /// A builder deriving Kp from `secret`.
    pub fn new(secret: &ServerSecret) -> Self {
        V2Builder {
            ks: secret.ks_v2(),
            segments: Vec::new(),
        }
    }

    /// Adds the next segment (1 byte to 128 KiB).
    pub fn push_segment(&mut self, data: &[u8]) -> Result<(), LayoutError> {
        if data.is_empty() || data.len() > MAX_SEGMENT_LEN as usize {
            return Err(LayoutError::BadRange {
                start: 0,
                end: data.len() as u64,
                len: u64::from(MAX_SEGMENT_LEN),
            });
        }
        let hod = hash::sha512_trunc(data);
        self.segments.push(SegmentV2 {
            len: data.len() as u32,
            hod,
            kp: hash::hmac_sha512_trunc(&self.ks.0, &[&hod.0]),
        });
        Ok(())
    }

    /// Whole-content V2 content information (all segments in one chunk).
    pub fn finish(self) -> ContentInfoV2 {
        // dwChunkDataLength is a u32: split runs that would not fit (over 63 million segments).
        let per_chunk = u32::MAX as usize / SEGMENT_RECORD_LEN;
        ContentInfoV2 {
            start_in_content: 0,
            index_of_first_segment: 0,
            offset_in_first_segment: 0,
            length_of_range: 0,
            chunks: self.segments.chunks(per_chunk).map(<[_]>::to_vec).collect(),
        }
    }
}

/// V2 content information for everything `reader` yields, cut with FastCDC.
pub fn hash_reader_v2<R: Read>(
    reader: R,
    secret: &ServerSecret,
) -> Result<ContentInfoV2, HashError> {
    let mut builder = V2Builder::new(secret);
    let mut total = 0u64;
    let cdc = fastcdc::v2020::StreamCDC::new(
        reader,
        CDC_MIN as usize,
        CDC_AVG as usize,
        MAX_SEGMENT_LEN as usize,
    );
    for chunk in cdc {
        let chunk = chunk.map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })?;
        total += chunk.length as u64;
        if total > MAX_CONTENT_LEN {
            return Err(LayoutError::ContentTooLarge {
                len: total,
                max: MAX_CONTENT_LEN,
            }
            .into());
        }
        builder.push_segment(&chunk.data)?;
        // Keep the encoding within what the decoder accepts.
        if HEADER_LEN + 5 + builder.segments.len() * SEGMENT_RECORD_LEN > MAX_V2_LEN {
            return Err(HashError::TooManySegments {
                max: (MAX_V2_LEN - HEADER_LEN - 5) / SEGMENT_RECORD_LEN,
            });
        }
    }
    Ok(builder.finish())
}

impl ContentInfoV2 {
    /// All listed segments in order.
    pub fn segments(&self) -> impl Iterator<Item = &SegmentV2> {
        self.chunks.iter().flatten()
    }

    /// Bytes covered by the listed segments.
    pub fn listed_len(&self) -> u64 {
        self.segments().map(|s| u64::from(s.len)).sum()
    }

    /// The byte range of the content this describes.
    pub fn range(&self) -> std::ops::Range<u64> {
        let start = self.start_in_content + u64::from(self.offset_in_first_segment);
        let len = match self.length_of_range {
            0 => self.listed_len() - u64::from(self.offset_in_first_segment),
            n => n,
        };
        start..start + len
    }

    /// Content information for a byte range of whole-content information: the segments the range
    /// touches, with the range fields set.
    pub fn slice(&self, start: u64, len: u64) -> Result<ContentInfoV2, LayoutError> {
        let total = self.listed_len();
        let bad = LayoutError::BadRange {
            start,
            end: start.saturating_add(len),
            len: total,
        };
        if self.start_in_content != 0 || len == 0 || start.saturating_add(len) > total {
            return Err(bad);
        }
        let end = start + len;
        let (mut offset, mut picked, mut first) = (0u64, Vec::new(), None);
        for (i, s) in self.segments().enumerate() {
            let seg_end = offset + u64::from(s.len);
            if seg_end > start && offset < end {
                first.get_or_insert((i as u64, offset));
                picked.push(*s);
            }
            offset = seg_end;
        }
        let (index, seg_start) = first.ok_or(bad)?;
        Ok(ContentInfoV2 {
            start_in_content: seg_start,
            index_of_first_segment: index,
            offset_in_first_segment: (start - seg_start) as u32,
            length_of_range: len,
            chunks: vec![picked],
        })
    }

    /// Checks every segment's Kp against a server secret.
    pub fn verify_secret(&self, secret: &ServerSecret) -> Result<(), VerifyError> {
        let ks = secret.ks_v2();
        for (i, s) in self.segments().enumerate() {
            let expected = hash::hmac_sha512_trunc(&ks.0, &[&s.hod.0]);
            if expected != s.kp {
                return Err(VerifyError::SegmentSecret {
                    segment: i as u32,
                    expected,
                    actual: s.kp,
                });
            }
        }
        Ok(())
    }

    /// The V2 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let n: usize = self.chunks.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(HEADER_LEN + self.chunks.len() * 5 + n * 68);
        out.extend_from_slice(&[0x00, 0x02, HASH_ALGO_SHA512_TRUNC]);
        out.extend_from_slice(&self.start_in_content.to_be_bytes());
        out.extend_from_slice(&self.index_of_first_segment.to_be_bytes());
        out.extend_from_slice(&self.offset_in_first_segment.to_be_bytes());
        out.extend_from_slice(&self.length_of_range.to_be_bytes());
        for chunk in &self.chunks {
            out.push(0);
            out.extend_from_slice(&((chunk.len() * SEGMENT_RECORD_LEN) as u32).to_be_bytes());
            for s in chunk {
                out.extend_from_slice(&s.len.to_be_bytes());
                out.extend_from_slice(&s.hod.0);
                out.extend_from_slice(&s.kp.0);
            }
        }
        out
    }

    /// Parses and checks V2 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = ByteReader::new(bytes, MAX_V2_LEN)?;
        let minor = r.u8("bMinorVersion")?;
        let major = r.u8("bMajorVersion")?;
        if (major, minor) != (2, 0) {
            return Err(unsupported(
                0,
                "version",
                u64::from(major) << 8 | u64::from(minor),
            ));
        }
        let algo = r.u8("bHashAlgo")?;
        if algo != HASH_ALGO_SHA512_TRUNC {
            return Err(unsupported(2, "bHashAlgo", u64::from(algo)));
        }
        let start = r.u64_be("ullStartInContent")?;
        check_range(3, "ullStartInContent", start, 0, MAX_CONTENT_LEN)?;
        let index = r.u64_be("ullIndexOfFirstSegment")?;
        // Every segment holds at least one byte, so segment k cannot start before byte k.
        check_range(11, "ullIndexOfFirstSegment", index, 0, start)?;
        let offset_first = r.u32_be("dwOffsetInFirstSegment")?;
        let length = r.u64_be("ullLengthOfRange")?;
        let mut chunks = Vec::new();
        let mut total = 0u64;
        while r.remaining() > 0 {
            let type_at = r.pos();
            let kind = r.u8("bChunkType")?;
            check_eq(type_at, "bChunkType", u64::from(kind), 0)?;
            let len_at = r.pos();
            let data_len = r.u32_be("dwChunkDataLength")?;
            if data_len == 0 || !(data_len as usize).is_multiple_of(SEGMENT_RECORD_LEN) {
                return Err(DecodeError::at(
                    len_at,
                    DecodeErrorKind::Mismatch {
                        field: "dwChunkDataLength (a non-zero multiple of 68)",
                        found: u64::from(data_len),
                        expected: u64::from(data_len).div_ceil(68).max(1) * 68,
                    },
                ));
            }
            r.ensure("chunk data", u64::from(data_len), 1)?;
            let mut segments = Vec::with_capacity(data_len as usize / SEGMENT_RECORD_LEN);
            for _ in 0..data_len as usize / SEGMENT_RECORD_LEN {
                let at = r.pos();
                let len = r.u32_be("cbSegment")?;
                check_range(
                    at,
                    "cbSegment",
                    u64::from(len),
                    1,
                    u64::from(MAX_SEGMENT_LEN),
                )?;
                total += u64::from(len);
                check_range(at, "end of segment", start + total, 0, MAX_CONTENT_LEN)?;
                segments.push(SegmentV2 {
                    len,
                    hod: r.hash("SegmentHashOfData")?,
                    kp: r.hash("SegmentSecret")?,
                });
            }
            chunks.push(segments);
        }
        let info = ContentInfoV2 {
            start_in_content: start,
            index_of_first_segment: index,
            offset_in_first_segment: offset_first,
            length_of_range: length,
            chunks,
        };
        match info.segments().next() {
            None => {
                check_eq(19, "dwOffsetInFirstSegment", u64::from(offset_first), 0)?;
                check_eq(23, "ullLengthOfRange", length, 0)?;
            }
            Some(first) => {
                check_range(
                    19,
                    "dwOffsetInFirstSegment",
                    u64::from(offset_first),
                    0,
                    u64::from(first.len - 1),
                )?;
                check_range(
                    23,
                    "ullLengthOfRange",
                    length,
                    0,
                    total - u64::from(offset_first),
                )?;
            }
        }
        Ok(info)
    }
}
