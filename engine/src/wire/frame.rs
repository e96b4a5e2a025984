//! Block frames: how a [`super::Request::Blocks`] reply carries blocks, one sealed frame per
//! block, so that a receiver opens and checks each block as soon as its frame is complete.
//!
//! ```text
//! frame: block-in-segment u32 | status u8 (0 block, 1 missing) | len u32 | sealed[len]
//! sealed: nonce[12] ‖ AES-256-GCM(segment key, block) ‖ tag[16],
//!         associated data = lookup key ‖ segment u32 ‖ block u32
//! ```
//! The associated data binds each block to its content, segment and place, so a peer cannot
//! answer with another block sealed under the same key.

use crate::codec::{DecodeError, DecodeErrorKind, check_range, unsupported};

use super::WireError;
use super::keys::{
    AEAD_OVERHEAD, LookupKey, SegmentKey, open, open_in_place, seal_into, split_sealed,
};

const FRAME_HEADER_LEN: usize = 9;
/// Largest frame: a 1 MiB block (the largest block size a layout may have) sealed.
pub const MAX_FRAME_LEN: usize = FRAME_HEADER_LEN + (1 << 20) + AEAD_OVERHEAD;

/// One decoded frame (still sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Block index within the segment.
    pub block: u32,
    /// The sealed block, or `None` when the peer no longer has it.
    pub sealed: Option<Vec<u8>>,
}

fn aad(lookup: &LookupKey, seg: u32, block: u32) -> [u8; 40] {
    let mut a = [0u8; 40];
    a[..32].copy_from_slice(&lookup.0);
    a[32..36].copy_from_slice(&seg.to_be_bytes());
    a[36..].copy_from_slice(&block.to_be_bytes());
    a
}

/// Appends the frame carrying `data` (block `block` of segment `seg`) to `out`.
pub fn encode_frame(
    key: &SegmentKey,
    lookup: &LookupKey,
    seg: u32,
    block: u32,
    data: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&block.to_be_bytes());
    out.push(0);
    out.extend_from_slice(&((data.len() + AEAD_OVERHEAD) as u32).to_be_bytes());
    seal_into(key.bytes(), &aad(lookup, seg, block), data, out);
}

/// Appends a frame saying that block `block` is no longer here.
pub fn encode_missing_frame(block: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&block.to_be_bytes());
    out.push(1);
    out.extend_from_slice(&0u32.to_be_bytes());
}

/// Opens a frame's sealed block.
pub fn open_frame(
    key: &SegmentKey,
    lookup: &LookupKey,
    seg: u32,
    block: u32,
    sealed: &[u8],
) -> Result<Vec<u8>, WireError> {
    open(key.bytes(), &aad(lookup, seg, block), sealed, "block")
}

/// A sealed block taken apart: nonce and tag, with the ciphertext left where the caller put it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedParts {
    nonce: [u8; 12],
    tag: [u8; 16],
}

impl SealedParts {
    /// Splits `sealed` into its parts and appends the ciphertext to `out`; `None` if it is too
    /// short to be sealed bytes.
    pub fn take(sealed: &[u8], out: &mut Vec<u8>) -> Option<(SealedParts, usize)> {
        let (nonce, ct, tag) = split_sealed(sealed)?;
        out.extend_from_slice(ct);
        Some((
            SealedParts {
                nonce: nonce.try_into().ok()?,
                tag: tag.try_into().ok()?,
            },
            ct.len(),
        ))
    }

    /// Opens block `block` of segment `seg` in place: `buf` is its ciphertext, as
    /// [`SealedParts::take`] appended it.
    pub fn open_in_place(
        &self,
        key: &SegmentKey,
        lookup: &LookupKey,
        seg: u32,
        block: u32,
        buf: &mut [u8],
    ) -> Result<(), WireError> {
        open_in_place(
            key.bytes(),
            &aad(lookup, seg, block),
            &self.nonce,
            buf,
            &self.tag,
            "block",
        )
    }
}

/// A frame borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// Block index within the segment.
    pub block: u32,
    /// The sealed block, or `None` when the peer no longer has it.
    pub sealed: Option<&'a [u8]>,
}

/// Splits a byte stream into frames, whatever the chunking; holds at most one frame.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    consumed: usize,
    /// Offset in the stream of `buf[0]`, for error messages.
    base: usize,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.base += self.consumed;
            self.consumed = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or an error for a frame
    /// that breaks the format (the stream is then unusable).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        Ok(self.next_ref()?.map(|f| Frame {
            block: f.block,
            sealed: f.sealed.map(<[u8]>::to_vec),
        }))
    }

    /// Like [`FrameReader::next_frame`], without copying the sealed bytes.
    pub fn next_ref(&mut self) -> Result<Option<FrameRef<'_>>, DecodeError> {
        let rest = &self.buf[self.consumed..];
        if rest.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let at = self.base + self.consumed;
        let block = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
        let status = rest[4];
        let len = u32::from_be_bytes(rest[5..9].try_into().expect("4 bytes")) as usize;
        let sealed = match status {
            0 => {
                check_range(
                    at + 5,
                    "frame length",
                    len as u64,
                    AEAD_OVERHEAD as u64,
                    (MAX_FRAME_LEN - FRAME_HEADER_LEN) as u64,
                )?;
                if rest.len() < FRAME_HEADER_LEN + len {
                    return Ok(None);
                }
                Some(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len)
            }
            1 => {
                check_range(at + 5, "frame length", len as u64, 0, 0)?;
                None
            }
            s => return Err(unsupported(at + 4, "frame status", s.into())),
        };
        let start = self.consumed;
        self.consumed += FRAME_HEADER_LEN + len;
        let buf = &self.buf[start..];
        Ok(Some(FrameRef {
            block,
            sealed: sealed.map(|r| &buf[r]),
        }))
    }

    /// Checks that the stream ended on a frame boundary.
    pub fn finish(&self) -> Result<(), DecodeError> {
        let left = self.buf.len() - self.consumed;
        if left == 0 {
            Ok(())
        } else {
            Err(DecodeError::at(
                self.base + self.consumed,
                DecodeErrorKind::Truncated {
                    field: "block frame",
                    needed: FRAME_HEADER_LEN.max(left + 1),
                    available: left,
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Hash;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frames_survive_any_chunking(
            blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..6),
            cuts in proptest::collection::vec(1usize..5000, 1..20),
        ) {
            let key = SegmentKey::new(&Hash([1; 32]));
            let lookup = LookupKey([2; 32]);
            let mut stream = Vec::new();
            for (i, b) in blocks.iter().enumerate() {
                encode_frame(&key, &lookup, 9, i as u32, b, &mut stream);
            }
            encode_missing_frame(99, &mut stream);
            let mut reader = FrameReader::new();
            let mut got = Vec::new();
            let mut rest = &stream[..];
            for c in cuts.iter().cycle() {
                if rest.is_empty() { break; }
                let (now, later) = rest.split_at((*c).min(rest.len()));
                reader.push(now);
                rest = later;
                while let Some(f) = reader.next_frame().unwrap() {
                    got.push(f);
                }
            }
            reader.finish().unwrap();
            prop_assert_eq!(got.len(), blocks.len() + 1);
            for (i, b) in blocks.iter().enumerate() {
                let f = &got[i];
                prop_assert_eq!(f.block, i as u32);
                let plain = open_frame(&key, &lookup, 9, f.block, f.sealed.as_ref().unwrap()).unwrap();
                prop_assert_eq!(&plain, b);
                // Bound to its place: the same frame does not open as another block or segment.
                prop_assert!(open_frame(&key, &lookup, 9, f.block + 1, f.sealed.as_ref().unwrap()).is_err());
                prop_assert!(open_frame(&key, &lookup, 8, f.block, f.sealed.as_ref().unwrap()).is_err());
            }
            prop_assert_eq!(got.last().unwrap(), &Frame { block: 99, sealed: None });
        }
    }

    #[test]
    fn oversized_and_truncated_frames_are_refused() {
        let mut r = FrameReader::new();
        let mut bad = 0u32.to_be_bytes().to_vec();
        bad.push(0);
        bad.extend_from_slice(&(MAX_FRAME_LEN as u32).to_be_bytes());
        r.push(&bad);
        assert!(
            r.next_frame()
                .unwrap_err()
                .to_string()
                .contains("frame length")
        );
        let mut r = FrameReader::new();
        r.push(&[0, 0, 0]);
        assert_eq!(r.next_frame().unwrap(), None);
        assert!(r.finish().is_err());
    }
}
