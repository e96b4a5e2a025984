//! The bounds-checked byte cursor every decoder uses, and the one decode error they all return.
//!
//! Every read names the field it reads, so a malformed input produces one clear line: what is
//! wrong and at which byte offset. Nothing here allocates according to a length read from the
//! input; callers check counts against the bytes that remain before they reserve memory.

use std::fmt;

use crate::content::{Hash, LayoutError, VerifyError};

/// A decode failure: what is wrong, and the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Offset of the field at fault (or of the first unexpected byte).
    pub offset: usize,
    /// What is wrong.
    pub kind: DecodeErrorKind,
}

/// What a decoder found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ends inside a field.
    #[error("truncated {field}: needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// Bytes after the end of the structure.
    #[error("{count} unexpected trailing bytes")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The input is larger than the format allows.
    #[error("input of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The first bytes match none of the formats pdist reads.
    #[error(
        "not content information pdist reads (expected 'PDCI', or 00 01 / 00 02 for MS-PCCRC V1/V2)"
    )]
    UnknownFormat,
    /// A version, algorithm or kind that this decoder does not know.
    #[error("unsupported {field} {value:#x}")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A field whose value is outside what the format allows.
    #[error("{field} is {value}, outside {min}..={max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Smallest value allowed.
        min: u64,
        /// Largest value allowed.
        max: u64,
    },
    /// Text that is not UTF-8.
    #[error("{field} is not UTF-8")]
    NotUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A field that disagrees with what the rest of the structure implies.
    #[error("{field} is {found}, expected {expected}")]
    Mismatch {
        /// The field.
        field: &'static str,
        /// The value read.
        found: u64,
        /// The value the structure implies.
        expected: u64,
    },
    /// A segment's complete block-hash list does not hash to its HoD.
    #[error("segment {segment}: the block hashes do not hash to the segment's HoD")]
    HashOfData {
        /// Segment index (within the listed segments).
        segment: u64,
    },
    /// The layout the header describes is not valid.
    #[error("{0}")]
    Layout(#[from] LayoutError),
    /// A hash, proof or content ID does not check out.
    #[error("{0}")]
    Verify(#[from] VerifyError),
}

impl DecodeError {
    /// An error at `offset`.
    pub fn at(offset: usize, kind: impl Into<DecodeErrorKind>) -> Self {
        DecodeError {
            offset,
            kind: kind.into(),
        }
    }
}

/// A cursor over input bytes whose reads fail with [`DecodeError`]s that name the field.
pub(crate) struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl fmt::Debug for ByteReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ByteReader(at {} of {})", self.pos, self.buf.len())
    }
}

impl<'a> ByteReader<'a> {
    /// A reader over `buf`, refusing inputs larger than `max` bytes.
    pub(crate) fn new(buf: &'a [u8], max: usize) -> Result<Self, DecodeError> {
        if buf.len() > max {
            return Err(DecodeError::at(
                max,
                DecodeErrorKind::TooLarge {
                    len: buf.len(),
                    max,
                },
            ));
        }
        Ok(ByteReader { buf, pos: 0 })
    }

    /// Current offset.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// An error at the current offset.
    pub(crate) fn err(&self, kind: impl Into<DecodeErrorKind>) -> DecodeError {
        DecodeError::at(self.pos, kind)
    }

    /// Fails unless `count` items of `size` bytes can still be read: call before reserving memory
    /// for a count taken from the input.
    pub(crate) fn ensure(
        &self,
        field: &'static str,
        count: u64,
        size: usize,
    ) -> Result<(), DecodeError> {
        let needed = count.saturating_mul(size as u64);
        if needed > self.remaining() as u64 {
            return Err(self.err(DecodeErrorKind::Truncated {
                field,
                needed: usize::try_from(needed).unwrap_or(usize::MAX),
                available: self.remaining(),
            }));
        }
        Ok(())
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        self.ensure(field, n as u64, 1)?;
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16_le(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.array(field).map(u16::from_le_bytes)
    }

    pub(crate) fn u32_le(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_le_bytes)
    }

    pub(crate) fn u64_le(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_le_bytes)
    }

    pub(crate) fn u16_be(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.array(field).map(u16::from_be_bytes)
    }

    pub(crate) fn u32_be(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_be_bytes)
    }

    pub(crate) fn u64_be(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_be_bytes)
    }

    pub(crate) fn hash(&mut self, field: &'static str) -> Result<Hash, DecodeError> {
        self.array(field).map(Hash)
    }

    /// Succeeds only at the end of the input.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(self.err(DecodeErrorKind::TrailingBytes { count })),
        }
    }
}

/// A field holding a version, algorithm or kind this decoder does not know.
pub(crate) fn unsupported(offset: usize, field: &'static str, value: u64) -> DecodeError {
    DecodeError::at(offset, DecodeErrorKind::Unsupported { field, value })
}

/// Checks `value` against `min..=max`, naming the field and its offset on failure.
pub(crate) fn check_range(
    offset: usize,
    field: &'static str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), DecodeError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(DecodeError::at(
            offset,
            DecodeErrorKind::OutOfRange {
                field,
                value,
                min,
                max,
            },
        ))
    }
}

/// Checks that `found == expected`, naming the field and its offset on failure.
pub(crate) fn check_eq(
    offset: usize,
    field: &'static str,
    found: u64,
    expected: u64,
) -> Result<(), DecodeError> {
    if found == expected {
        Ok(())
    } else {
        Err(DecodeError::at(
            offset,
            DecodeErrorKind::Mismatch {
                field,
                found,
                expected,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_field_and_offset() {
        let mut r = ByteReader::new(&[1, 2, 3], 10).unwrap();
        assert_eq!(r.u8("a").unwrap(), 1);
        let e = r.u32_le("count").unwrap_err();
        assert_eq!(e.offset, 1);
        assert_eq!(
            e.to_string(),
            "at byte 1: truncated count: needs 4 bytes, 2 left"
        );
        assert!(r.finish().is_err());
        assert!(ByteReader::new(&[0; 11], 10).is_err());
    }

    #[test]
    fn ensure_does_not_overflow() {
        let r = ByteReader::new(&[0; 4], 10).unwrap();
        assert!(r.ensure("x", u64::MAX, 64).is_err());
        assert!(r.ensure("x", 1, 4).is_ok());
    }
}
