//! Content IDs and tickets.
//!
//! The content ID is `SHA-256("pdist content id v1\0" ‖ block size ‖ blocks per segment ‖
//! content length ‖ Merkle root)` (big-endian integers). It binds the layout (and so the segment
//! count, which the Merkle proofs rely on) and the root over all segment descriptors, so every
//! part of the content information can be checked against it alone.
//!
//! A [`Ticket`] is the printable content ID a user pastes into `pdist fetch`: `pd1` followed by
//! lower-case base32 (RFC 4648, no padding) of the 32-byte ID and a 2-byte checksum, 58
//! characters in all. The checksum turns a mistyped ticket into a clear error instead of a
//! fruitless search. Whoever holds a ticket may fetch and read the content: it is a read
//! capability, and later parts derive lookup keys and transfer keys from it.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use super::{Hash, Layout};

const ID_DOMAIN: &[u8] = b"pdist content id v1\0";
/// Every ticket starts with this.
pub const TICKET_PREFIX: &str = "pd1";
const CHECKSUM_LEN: usize = 2;

/// The identity of one content under one server secret.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ContentId(pub Hash);

impl ContentId {
    /// The ID of content with `layout` whose segment tree has root `root`.
    pub fn compute(layout: &Layout, root: &Hash) -> ContentId {
        let mut h = Sha256::new();
        h.update(ID_DOMAIN);
        h.update(layout.block_size().to_be_bytes());
        h.update(layout.blocks_per_segment().to_be_bytes());
        h.update(layout.content_len().to_be_bytes());
        h.update(root.0);
        ContentId(Hash(h.finalize().into()))
    }

    /// The 32 bytes.
    pub fn as_hash(&self) -> &Hash {
        &self.0
    }

    /// The printable ticket for this ID.
    pub fn ticket(&self) -> Ticket {
        Ticket(*self)
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.0.to_hex())
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_hex())
    }
}

/// A printable read capability for one content: its content ID with a checksum.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ticket(ContentId);

/// Why a string is not a ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// It does not start with `pd1`.
    #[error("a ticket starts with '{TICKET_PREFIX}'")]
    Prefix,
    /// Characters outside lower-case base32, or the wrong length.
    #[error(
        "a ticket is '{TICKET_PREFIX}' and {expected} base32 characters (a-z, 2-7); this has {found} characters after the prefix, or others"
    )]
    Encoding {
        /// Characters expected after the prefix.
        expected: usize,
        /// Characters found after the prefix.
        found: usize,
    },
    /// The checksum does not match: a typo, or a truncated copy.
    #[error("the ticket's checksum does not match: it was mistyped or cut short")]
    Checksum,
}

/// CRC-16/CCITT-FALSE of the ID. A CRC (unlike a truncated hash) catches *every* error burst of up
/// to 16 bits, and one mistyped base32 character is a burst of at most 5.
fn checksum(id: &ContentId) -> [u8; CHECKSUM_LEN] {
    crc16(&id.0.0).to_be_bytes()
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xffff;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

const ENCODED_LEN: usize = (32 + CHECKSUM_LEN) * 8 / 5 + 1; // 34 bytes -> 55 base32 chars

impl Ticket {
    /// The content ID this ticket names.
    pub fn content_id(&self) -> ContentId {
        self.0
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = [0u8; 32 + CHECKSUM_LEN];
        raw[..32].copy_from_slice(&self.0.0.0);
        raw[32..].copy_from_slice(&checksum(&self.0));
        write!(
            f,
            "{TICKET_PREFIX}{}",
            data_encoding::BASE32_NOPAD
                .encode(&raw)
                .to_ascii_lowercase()
        )
    }
}

impl FromStr for Ticket {
    type Err = TicketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s
            .trim()
            .strip_prefix(TICKET_PREFIX)
            .ok_or(TicketError::Prefix)?;
        let bad = TicketError::Encoding {
            expected: ENCODED_LEN,
            found: body.len(),
        };
        if body.len() != ENCODED_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad);
        }
        let raw = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| bad)?;
        let mut id = [0u8; 32];
        id.copy_from_slice(&raw[..32]);
        let id = ContentId(Hash(id));
        if raw[32..] != checksum(&id) {
            return Err(TicketError::Checksum);
        }
        Ok(Ticket(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ticket_shape() {
        let t = ContentId(Hash([7; 32])).ticket().to_string();
        assert_eq!(t.len(), 3 + ENCODED_LEN);
        assert!(t.starts_with("pd1"));
        assert_eq!(
            t.parse::<Ticket>().unwrap().content_id(),
            ContentId(Hash([7; 32]))
        );
        assert_eq!("xx".parse::<Ticket>(), Err(TicketError::Prefix));
        assert!(matches!(
            "pd1abc".parse::<Ticket>(),
            Err(TicketError::Encoding { .. })
        ));
    }

    #[test]
    fn crc_matches_reference() {
        // The CRC-16/CCITT-FALSE check value.
        assert_eq!(crc16(b"123456789"), 0x29b1);
    }

    #[test]
    fn id_binds_layout_and_root() {
        let root = Hash([1; 32]);
        let a = ContentId::compute(&Layout::new(10).unwrap(), &root);
        assert_ne!(a, ContentId::compute(&Layout::new(11).unwrap(), &root));
        assert_ne!(
            a,
            ContentId::compute(&Layout::with_params(10, 4096, 512).unwrap(), &root)
        );
        assert_ne!(
            a,
            ContentId::compute(&Layout::new(10).unwrap(), &Hash([2; 32]))
        );
    }

    proptest! {
        #[test]
        fn any_single_typo_is_caught(id in any::<[u8; 32]>(), pos in 3usize..58, c in 0u8..32) {
            let t = ContentId(Hash(id)).ticket().to_string();
            let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
            let mut b = t.clone().into_bytes();
            prop_assume!(b[pos] != alphabet[c as usize]);
            b[pos] = alphabet[c as usize];
            let typo = String::from_utf8(b).unwrap();
            prop_assert!(typo.parse::<Ticket>().is_err());
        }
    }
}
