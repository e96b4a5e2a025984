//! pdist's own binary format for content information, version 1.
//!
//! Two kinds of message share one header. All integers are big-endian.
//!
//! ```text
//! offset size field
//!  0     4    magic "PDCI"
//!  4     1    format version (1)
//!  5     1    kind: 1 = content information, 2 = segment proof
//!  6     4    block size            } the layout: bound into the content ID
//! 10     4    blocks per segment    }
//! 14     8    content length        }
//! kind 1, content information (complete; checks itself):
//! 22    32    content ID
//! 54     4    segment count (must equal the layout's)
//!             per segment: HoD[32] Kp[32] u32 block count (must equal the layout's) hashes[32 each]
//! kind 2, segment proof (a run of descriptors, checked against a content ID from elsewhere):
//! 22     4    first segment
//! 26     4    descriptor count (at least 1, not past the last segment)
//!             descriptors: HoD[32] Kp[32] each
//!             u32 proof hash count, then the hashes (rs_merkle multi-proof order)
//! ```
//!
//! Decoding is strict: unknown versions, kinds and layouts are refused, every count is checked
//! against the layout before anything is allocated, trailing bytes are an error, and inputs over
//! [`MAX_NATIVE_LEN`] are refused unread. Content information is verified as it is decoded:
//! each segment's block hashes against its HoD, and the content ID rebuilt from the descriptors
//! against the one it carries, so any change to any byte is caught.

use crate::codec::{ByteReader, DecodeError, DecodeErrorKind, check_eq, check_range, unsupported};

use super::layout::{MAX_BLOCKS, MAX_SEGMENTS};
use super::{ContentId, ContentInfo, Hash, Layout, SegmentDescriptor, SegmentProof, VerifyError};

/// First four bytes of every native message.
pub const MAGIC: &[u8; 4] = b"PDCI";
/// The format version this module reads and writes.
pub const FORMAT_VERSION: u8 = 1;
const KIND_CONTENT_INFO: u8 = 1;
const KIND_SEGMENT_PROOF: u8 = 2;
const HEADER_LEN: usize = 22;
const DESCRIPTOR_LEN: usize = 64;

/// Largest native message: complete content information for the largest layout.
pub const MAX_NATIVE_LEN: usize =
    HEADER_LEN + 36 + MAX_SEGMENTS as usize * (DESCRIPTOR_LEN + 4) + MAX_BLOCKS as usize * 32;

/// A decoded native message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NativeMessage {
    /// Complete, self-verified content information.
    ContentInfo(ContentInfo),
    /// A run of segment descriptors with its proof (not yet verified: see
    /// [`SegmentProof::verify`]).
    SegmentProof(SegmentProof),
}

fn put_header(out: &mut Vec<u8>, kind: u8, layout: &Layout) {
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.push(kind);
    out.extend_from_slice(&layout.block_size().to_be_bytes());
    out.extend_from_slice(&layout.blocks_per_segment().to_be_bytes());
    out.extend_from_slice(&layout.content_len().to_be_bytes());
}

/// Encodes complete content information.
pub fn encode_content_info(info: &ContentInfo) -> Vec<u8> {
    let layout = info.layout();
    let mut out = Vec::with_capacity(
        HEADER_LEN
            + 36
            + layout.segment_count() as usize * (DESCRIPTOR_LEN + 4)
            + info.all_block_hashes().len() * 32,
    );
    put_header(&mut out, KIND_CONTENT_INFO, layout);
    out.extend_from_slice(&info.id().0.0);
    out.extend_from_slice(&layout.segment_count().to_be_bytes());
    for seg in layout.segments() {
        let d = info.descriptor(seg);
        out.extend_from_slice(&d.hod.0);
        out.extend_from_slice(&d.kp.0);
        let hashes = info.block_hashes(seg);
        out.extend_from_slice(&(hashes.len() as u32).to_be_bytes());
        for h in hashes {
            out.extend_from_slice(&h.0);
        }
    }
    out
}

/// Encodes a segment proof.
pub fn encode_segment_proof(proof: &SegmentProof) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        HEADER_LEN + 12 + proof.descriptors.len() * DESCRIPTOR_LEN + proof.proof.len() * 32,
    );
    put_header(&mut out, KIND_SEGMENT_PROOF, &proof.layout);
    out.extend_from_slice(&proof.first.to_be_bytes());
    out.extend_from_slice(&(proof.descriptors.len() as u32).to_be_bytes());
    for d in &proof.descriptors {
        out.extend_from_slice(&d.hod.0);
        out.extend_from_slice(&d.kp.0);
    }
    out.extend_from_slice(&(proof.proof.len() as u32).to_be_bytes());
    for h in &proof.proof {
        out.extend_from_slice(&h.0);
    }
    out
}

/// Decodes either kind of native message.
pub fn decode(bytes: &[u8]) -> Result<NativeMessage, DecodeError> {
    let mut r = ByteReader::new(bytes, MAX_NATIVE_LEN)?;
    let (kind, layout) = read_header(&mut r)?;
    match kind {
        KIND_CONTENT_INFO => read_content_info(&mut r, layout).map(NativeMessage::ContentInfo),
        _ => read_segment_proof(&mut r, layout).map(NativeMessage::SegmentProof),
    }
}

/// Decodes and verifies complete content information.
pub fn decode_content_info(bytes: &[u8]) -> Result<ContentInfo, DecodeError> {
    match decode(bytes)? {
        NativeMessage::ContentInfo(info) => Ok(info),
        NativeMessage::SegmentProof(_) => Err(wrong_kind(KIND_SEGMENT_PROOF, KIND_CONTENT_INFO)),
    }
}

/// The error for a message of another kind than the caller asked for.
fn wrong_kind(found: u8, expected: u8) -> DecodeError {
    check_eq(5, "kind", u64::from(found), u64::from(expected))
        .expect_err("called only when the kinds differ")
}

/// Decodes content information and checks that it is the content `expected` names.
pub fn decode_content_info_for(
    bytes: &[u8],
    expected: &ContentId,
) -> Result<ContentInfo, DecodeError> {
    let info = decode_content_info(bytes)?;
    if info.id() != *expected {
        return Err(DecodeError::at(
            HEADER_LEN,
            VerifyError::ContentId {
                expected: *expected,
                actual: info.id(),
            },
        ));
    }
    Ok(info)
}

/// Decodes a segment proof (structure only: verify it with [`SegmentProof::verify`]).
pub fn decode_segment_proof(bytes: &[u8]) -> Result<SegmentProof, DecodeError> {
    match decode(bytes)? {
        NativeMessage::SegmentProof(p) => Ok(p),
        NativeMessage::ContentInfo(_) => Err(wrong_kind(KIND_CONTENT_INFO, KIND_SEGMENT_PROOF)),
    }
}

fn read_header(r: &mut ByteReader<'_>) -> Result<(u8, Layout), DecodeError> {
    if r.bytes(4, "magic")? != MAGIC {
        return Err(DecodeError::at(0, DecodeErrorKind::UnknownFormat));
    }
    let version = r.u8("format version")?;
    if version != FORMAT_VERSION {
        return Err(unsupported(4, "format version", u64::from(version)));
    }
    let kind = r.u8("kind")?;
    if kind != KIND_CONTENT_INFO && kind != KIND_SEGMENT_PROOF {
        return Err(unsupported(5, "kind", u64::from(kind)));
    }
    let block_size = r.u32_be("block size")?;
    let per_segment = r.u32_be("blocks per segment")?;
    let content_len = r.u64_be("content length")?;
    let layout = Layout::with_params(content_len, block_size, per_segment)
        .map_err(|e| DecodeError::at(6, e))?;
    Ok((kind, layout))
}

fn read_descriptor(r: &mut ByteReader<'_>) -> Result<SegmentDescriptor, DecodeError> {
    Ok(SegmentDescriptor {
        hod: r.hash("HoD")?,
        kp: r.hash("Kp")?,
    })
}

fn read_content_info(r: &mut ByteReader<'_>, layout: Layout) -> Result<ContentInfo, DecodeError> {
    let id_at = r.pos();
    let id = ContentId(r.hash("content ID")?);
    let count_at = r.pos();
    let count = r.u32_be("segment count")?;
    check_eq(
        count_at,
        "segment count",
        u64::from(count),
        u64::from(layout.segment_count()),
    )?;
    r.ensure("segment descriptors", u64::from(count), DESCRIPTOR_LEN + 4)?;
    let mut descriptors = Vec::with_capacity(count as usize);
    let mut hod_at = Vec::with_capacity(count as usize);
    let mut hashes = Vec::new();
    for seg in layout.segments() {
        hod_at.push(r.pos());
        descriptors.push(read_descriptor(r)?);
        let n_at = r.pos();
        let n = r.u32_be("block count")?;
        check_eq(
            n_at,
            "block count",
            u64::from(n),
            u64::from(layout.blocks_in_segment(seg)),
        )?;
        r.ensure("block hashes", u64::from(n), 32)?;
        hashes.reserve(n as usize);
        for _ in 0..n {
            hashes.push(r.hash("block hash")?);
        }
    }
    r.finish()?;
    let info = ContentInfo::from_parts(layout, descriptors, hashes).map_err(|e| {
        let at = match &e {
            VerifyError::SegmentHash { segment, .. } => hod_at[*segment as usize],
            _ => id_at,
        };
        DecodeError::at(at, e)
    })?;
    if info.id() != id {
        return Err(DecodeError::at(
            id_at,
            VerifyError::ContentId {
                expected: id,
                actual: info.id(),
            },
        ));
    }
    Ok(info)
}

fn read_segment_proof(r: &mut ByteReader<'_>, layout: Layout) -> Result<SegmentProof, DecodeError> {
    let first_at = r.pos();
    let first = r.u32_be("first segment")?;
    let segments = layout.segment_count();
    layout
        .segment(u64::from(first))
        .map_err(|e| DecodeError::at(first_at, e))?;
    let count_at = r.pos();
    let count = r.u32_be("descriptor count")?;
    check_range(
        count_at,
        "descriptor count",
        u64::from(count),
        1,
        u64::from(segments - first),
    )?;
    r.ensure("descriptors", u64::from(count), DESCRIPTOR_LEN)?;
    let descriptors = (0..count)
        .map(|_| read_descriptor(r))
        .collect::<Result<Vec<_>, _>>()?;
    let n_at = r.pos();
    let n = r.u32_be("proof hash count")?;
    // A multi-proof over a contiguous run never needs more than two hashes per tree level.
    check_range(n_at, "proof hash count", u64::from(n), 0, 2 * 64)?;
    r.ensure("proof hashes", u64::from(n), 32)?;
    let proof = (0..n)
        .map(|_| r.hash("proof hash"))
        .collect::<Result<Vec<Hash>, _>>()?;
    r.finish()?;
    Ok(SegmentProof {
        layout,
        first,
        descriptors,
        proof,
    })
}
