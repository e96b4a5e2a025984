//! Recognising content information by its first bytes, and decoding whichever format it is.
//!
//! Native messages start with `PDCI`; MS-PCCRC puts a zero byte first in both versions, so V1 and
//! V2 are told apart by the second byte (`00 01` and `00 02`).

use crate::codec::{DecodeError, DecodeErrorKind};
use crate::content::native::{self, NativeMessage};
use crate::pccrc::{v1::ContentInfoV1, v2::ContentInfoV2};

/// The three formats pdist reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// pdist's own (`PDCI`).
    Native,
    /// MS-PCCRC version 1.0.
    PccrcV1,
    /// MS-PCCRC version 2.0.
    PccrcV2,
}

impl Format {
    /// The name the CLI uses (`native`, `pccrc-v1`, `pccrc-v2`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::PccrcV1 => "pccrc-v1",
            Format::PccrcV2 => "pccrc-v2",
        }
    }
}

/// Content information in any of the formats.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyContentInfo {
    /// A native message.
    Native(NativeMessage),
    /// MS-PCCRC V1.
    V1(ContentInfoV1),
    /// MS-PCCRC V2.
    V2(ContentInfoV2),
}

/// Which format `bytes` is in, from its first bytes.
pub fn detect(bytes: &[u8]) -> Result<Format, DecodeError> {
    match bytes {
        [b'P', b'D', b'C', b'I', ..] => Ok(Format::Native),
        [0x00, 0x01, ..] => Ok(Format::PccrcV1),
        [0x00, 0x02, ..] => Ok(Format::PccrcV2),
        [] => Err(DecodeError::at(
            0,
            DecodeErrorKind::Truncated {
                field: "format marker",
                needed: 2,
                available: 0,
            },
        )),
        _ => Err(DecodeError::at(0, DecodeErrorKind::UnknownFormat)),
    }
}

/// Detects the format and decodes.
pub fn decode_any(bytes: &[u8]) -> Result<AnyContentInfo, DecodeError> {
    Ok(match detect(bytes)? {
        Format::Native => AnyContentInfo::Native(native::decode(bytes)?),
        Format::PccrcV1 => AnyContentInfo::V1(ContentInfoV1::decode(bytes)?),
        Format::PccrcV2 => AnyContentInfo::V2(ContentInfoV2::decode(bytes)?),
    })
}

/// The largest input any decoder accepts; read no more than this from a file.
pub const MAX_CONTENT_INFO_LEN: usize = {
    let a = native::MAX_NATIVE_LEN;
    let b = crate::pccrc::v1::MAX_V1_LEN;
    let c = crate::pccrc::v2::MAX_V2_LEN;
    let ab = if a > b { a } else { b };
    if ab > c { ab } else { c }
};
