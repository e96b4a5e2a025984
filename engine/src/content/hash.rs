//! Hash values and the MS-PCCRC key schedule over SHA-256.
//!
//! Owns the 32-byte [`Hash`](struct@Hash) newtype, the [`ServerSecret`] (BranchCache's "server secret key", which
//! for pdist is also the group secret), and the derivations of MS-PCCRC §2.2 for V1's SHA-256:
//! `Ks = SHA-256(secret)`, `Kp = HMAC-SHA256(Ks, HoD)` and the public segment ID
//! `HoHoDk = HMAC-SHA256(Kp, HoD ‖ "MS_P2P_CACHING\0" in UTF-16LE)`. The V2 forms (truncated
//! SHA-512) live in [`crate::pccrc::v2`], the only place that uses them.

use std::fmt;

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

/// Length in bytes of every hash pdist's own model uses (SHA-256).
pub const HASH_LEN: usize = 32;

/// The constant `C` that MS-PCCRC appends to HoD when it derives a segment ID: "MS_P2P_CACHING"
/// in UTF-16LE *including* its 2-byte NUL terminator (30 bytes). The spec's prose says ASCII; real
/// Windows peers use these bytes (PEERDIST.md §2.1).
pub const HOHODK_CONSTANT: [u8; 30] = *b"M\0S\0_\0P\0\x32\0P\0_\0C\0A\0C\0H\0I\0N\0G\0\0\0";

/// A 32-byte hash (SHA-256, or SHA-512 cut to 32 bytes in MS-PCCRC V2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; HASH_LEN]);

impl Hash {
    /// The all-zero hash.
    pub const ZERO: Hash = Hash([0; HASH_LEN]);

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Hash, hex::FromHexError> {
        let mut out = [0u8; HASH_LEN];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Hash(out))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl From<[u8; HASH_LEN]> for Hash {
    fn from(bytes: [u8; HASH_LEN]) -> Self {
        Hash(bytes)
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    Hash(Sha256::digest(data).into())
}

/// SHA-512 of `data`, cut to its first 32 bytes (MS-PCCRC V2's hash; *not* SHA-512/256).
pub fn sha512_trunc(data: &[u8]) -> Hash {
    let full: [u8; 64] = Sha512::digest(data).into();
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&full[..HASH_LEN]);
    Hash(out)
}

/// HMAC-SHA256(key, `parts[0] ‖ parts[1] ‖ …`).
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Hash {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    Hash(mac.finalize().into_bytes().into())
}

/// HMAC-SHA512(key, parts…) cut to 32 bytes (MS-PCCRC V2).
pub(crate) fn hmac_sha512_trunc(key: &[u8], parts: &[&[u8]]) -> Hash {
    let mut mac = <hmac::Hmac<Sha512> as KeyInit>::new_from_slice(key)
        .expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    let full: [u8; 64] = mac.finalize().into_bytes().into();
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&full[..HASH_LEN]);
    Hash(out)
}

/// BranchCache's server secret key: arbitrary bytes from which every segment secret derives.
///
/// In pdist it is also the group secret: nodes that share it compute the same content ID for the
/// same bytes. Its `Debug` form never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerSecret(Vec<u8>);

/// The open group's secret: a fixed public constant, so that every node outside any group computes
/// the same content information, and so the same content ID, for the same bytes.
pub const OPEN_GROUP_SECRET: &[u8] = b"pdist open group v1";

impl ServerSecret {
    /// A secret from raw bytes (any length, including empty).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        ServerSecret(bytes.into())
    }

    /// The open group's public secret ([`OPEN_GROUP_SECRET`]).
    pub fn open_group() -> Self {
        ServerSecret::new(OPEN_GROUP_SECRET)
    }

    /// Parses hex digits (any even number of them; whitespace is not allowed).
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        hex::decode(s).map(ServerSecret)
    }

    /// The raw secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A new group secret: [`GROUP_SECRET_LEN`] bytes from the operating system's random
    /// source.
    pub fn generate() -> Self {
        let mut b = vec![0u8; GROUP_SECRET_LEN];
        getrandom::fill(&mut b).expect("the operating system's random source works");
        ServerSecret(b)
    }

    /// Whether this secret may be a group's. Everything sealed under the group's keys (and
    /// every content ID of the group) lets whoever sees it test a guess of the secret offline,
    /// so it must be too long and too random to guess: at least [`MIN_GROUP_SECRET_BITS`],
    /// and not a pattern (a byte repeated, a few values cycled).
    pub fn check_group(&self) -> Result<(), WeakSecret> {
        let bits = self.0.len() * 8;
        if bits < MIN_GROUP_SECRET_BITS {
            return Err(WeakSecret::Short {
                bits,
                min: MIN_GROUP_SECRET_BITS,
            });
        }
        let mut seen = [false; 256];
        for &b in &self.0 {
            seen[usize::from(b)] = true;
        }
        let distinct = seen.iter().filter(|s| **s).count();
        // 16 random bytes have fewer than 8 distinct values with a probability below 1e-9.
        if distinct < 8 {
            return Err(WeakSecret::Patterned { distinct });
        }
        Ok(())
    }

    /// The secret as hex digits (what `--secret-file` holds).
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// `Ks` for V1 and pdist's own model: SHA-256 of the secret.
    pub fn ks_v1(&self) -> Hash {
        sha256(&self.0)
    }

    /// `Ks` for V2: SHA-512 of the secret, cut to 32 bytes.
    pub fn ks_v2(&self) -> Hash {
        sha512_trunc(&self.0)
    }
}

/// The least a group secret may have ([`ServerSecret::check_group`]).
pub const MIN_GROUP_SECRET_BITS: usize = 128;

/// How long a secret [`ServerSecret::generate`] makes is, in bytes (256 bits).
pub const GROUP_SECRET_LEN: usize = 32;

/// Why a secret cannot be a group's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakSecret {
    /// Too short to be safe from guessing.
    #[error("a group secret needs at least {min} bits; this one has {bits}")]
    Short {
        /// Its length in bits.
        bits: usize,
        /// The least allowed.
        min: usize,
    },
    /// Long enough, but not random.
    #[error(
        "a group secret must be random bytes; this one has only {distinct} different byte values"
    )]
    Patterned {
        /// How many different byte values it has.
        distinct: usize,
    },
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerSecret({} bytes, redacted)", self.0.len())
    }
}

/// The segment secret `Kp = HMAC-SHA256(Ks, HoD)` (MS-PCCRC V1, and pdist's model).
pub fn segment_secret(ks: &Hash, hod: &Hash) -> Hash {
    hmac_sha256(&ks.0, &[&hod.0])
}

/// The public segment ID `HoHoDk = HMAC-SHA256(Kp, HoD ‖ C)` (MS-PCCRC V1, and pdist's model).
pub fn segment_id(kp: &Hash, hod: &Hash) -> Hash {
    hmac_sha256(&kp.0, &[&hod.0, &HOHODK_CONSTANT])
}

/// HoD of a V1 segment: SHA-256 over the concatenation of its block hashes.
pub fn hash_of_data(block_hashes: &[Hash]) -> Hash {
    let mut h = Sha256::new();
    for b in block_hashes {
        h.update(b.0);
    }
    Hash(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_secrets_must_be_long_and_random() {
        let short = ServerSecret::new(vec![7u8; 15]);
        assert_eq!(
            short.check_group(),
            Err(WeakSecret::Short {
                bits: 120,
                min: 128
            })
        );
        let repeated = ServerSecret::from_hex(&"0ff1ce".repeat(8)).unwrap();
        assert_eq!(
            repeated.check_group(),
            Err(WeakSecret::Patterned { distinct: 3 })
        );
        let counted = ServerSecret::new((0u8..16).collect::<Vec<_>>());
        assert_eq!(counted.check_group(), Ok(()));
        let made = ServerSecret::generate();
        assert_eq!(made.as_bytes().len(), GROUP_SECRET_LEN);
        assert_eq!(made.check_group(), Ok(()));
        assert_ne!(made, ServerSecret::generate());
        assert_eq!(ServerSecret::from_hex(&made.to_hex()).unwrap(), made);
    }

    #[test]
    fn constant_is_utf16le_with_nul() {
        let expected: Vec<u8> = "MS_P2P_CACHING\0"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(HOHODK_CONSTANT.as_slice(), expected.as_slice());
        assert_eq!(HOHODK_CONSTANT.len(), 30);
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = ServerSecret::new(b"very secret".to_vec());
        assert!(!format!("{s:?}").contains("very"));
    }

    #[test]
    fn hash_hex_round_trip() {
        let h = sha256(b"abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Hash::from_hex(&h.to_hex()).unwrap(), h);
        assert!(Hash::from_hex("abc").is_err());
    }
}
