//! Key derivations and sealing (AES-256-GCM, nonce first).
//!
//! Every key is an HMAC-SHA256 of a secret the holder already has, under a label of its own, so
//! no two uses share a key:
//!
//! | key | derived from | protects |
//! |---|---|---|
//! | group messages | group secret | every request and reply after its header |
//! | lookup key | content ID | names content on the wire (reveals nothing without the ID) |
//! | info key | content ID | content information sent to a fetcher |
//! | segment key | Kp of the segment | block bytes between peers |
//! | tail key | content ID (or a URL and the group secret) | a download's bytes as it arrives |
//!
//! A seed's content ID is sealed to the cache node's own X25519 key ([`SeedKey`]), not to a
//! key of the group: in the open group, group keys are public.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use crate::content::{ContentId, Hash, ServerSecret, hmac_sha256};

use super::WireError;

/// Bytes that sealing adds: the 12-byte nonce before the ciphertext and the 16-byte tag after.
pub const AEAD_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// MAC length on messages (HMAC-SHA256 cut to 128 bits).
pub(crate) const MAC_LEN: usize = 16;

/// A node's random identity, chosen at start; it names the node in mDNS and in `pdist peers`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    /// No node in particular: the recipient of a hello to a node whose ID is not known yet.
    pub const ANY: NodeId = NodeId([0; 16]);

    /// A fresh random ID.
    pub fn random() -> NodeId {
        NodeId(random_bytes())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 32 hex digits.
    pub fn from_hex(s: &str) -> Option<NodeId> {
        let v = hex::decode(s).ok()?;
        Some(NodeId(v.try_into().ok()?))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &self.to_hex()[..12])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's random source works");
    b
}

/// The keys of a node group, derived from its secret (the open group's when none is given).
#[derive(Clone)]
pub struct GroupKeys {
    msg: Hash,
}

impl fmt::Debug for GroupKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GroupKeys(..)")
    }
}

impl GroupKeys {
    /// The keys of the group whose secret is `secret`.
    pub fn new(secret: &ServerSecret) -> GroupKeys {
        GroupKeys {
            msg: hmac_sha256(secret.as_bytes(), &[b"pdist group messages v1"]),
        }
    }

    /// Seals a peer message's body (everything after its 4-byte header).
    pub(crate) fn seal_msg(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        seal(&self.msg.0, aad, plain)
    }

    /// Opens a peer message's body; a message of another group fails here.
    pub(crate) fn open_msg(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, WireError> {
        open(&self.msg.0, aad, sealed, "message").map_err(|_| WireError::NotInGroup)
    }

    /// [`GroupKeys::seal_msg`], for fuzzing and tests that need valid messages with chosen
    /// bodies.
    #[doc(hidden)]
    pub fn test_seal_msg(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        self.seal_msg(aad, plain)
    }
}

/// How content is named on the wire: HMAC(content ID, label). Without the content ID (the
/// ticket) it cannot be linked to content; with it, anyone can compute it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupKey(pub [u8; 32]);

impl fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LookupKey({})", &hex::encode(self.0)[..12])
    }
}

/// The keys of one content, derived from its content ID.
#[derive(Clone)]
pub struct ContentKeys {
    /// The content's name on the wire.
    pub lookup: LookupKey,
    info: Hash,
}

impl fmt::Debug for ContentKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentKeys({:?})", self.lookup)
    }
}

impl ContentKeys {
    /// The keys of the content with this ID.
    pub fn new(id: &ContentId) -> ContentKeys {
        let key = &id.as_hash().0;
        ContentKeys {
            lookup: LookupKey(hmac_sha256(key, &[b"pdist lookup v1"]).0),
            info: hmac_sha256(key, &[b"pdist info seal v1"]),
        }
    }

    /// Seals encoded content information for a fetcher.
    pub fn seal_info(&self, encoded: &[u8]) -> Vec<u8> {
        seal(&self.info.0, &self.lookup.0, encoded)
    }

    /// Opens content information sealed by [`ContentKeys::seal_info`].
    pub fn open_info(&self, sealed: &[u8]) -> Result<Vec<u8>, WireError> {
        open(&self.info.0, &self.lookup.0, sealed, "content information")
    }
}

/// A cache node's key for seed requests: an X25519 key pair made at start (as its node ID is),
/// whose public half its hellos carry. A seed's content ID is sealed to it
/// ([`seal_seed`]), so only that node can read the ticket, whatever group it is in: in the
/// open group every message opens under public keys, and a seed would otherwise hand the
/// ticket to anyone listening.
#[derive(Clone)]
pub struct SeedKey {
    secret: x25519_dalek::StaticSecret,
    /// Its public half, computed once (every hello carries it).
    public: [u8; SEED_KEY_LEN],
}

impl fmt::Debug for SeedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeedKey(..)")
    }
}

/// The length of a public seed key.
pub const SEED_KEY_LEN: usize = 32;

/// How long a sealed seed is: an ephemeral public key, then the sealed content ID.
pub const SEALED_SEED_LEN: usize = SEED_KEY_LEN + 32 + AEAD_OVERHEAD;

fn seed_aead_key(shared: &[u8; 32], eph: &[u8; 32], to_pub: &[u8; 32], to: &NodeId) -> [u8; 32] {
    hmac_sha256(shared, &[b"pdist seed v1", eph, to_pub, &to.0]).0
}

impl SeedKey {
    /// A new key pair.
    pub fn generate() -> SeedKey {
        let secret = x25519_dalek::StaticSecret::from(random_bytes::<32>());
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        SeedKey { secret, public }
    }

    /// Its public half (what hellos carry).
    pub fn public(&self) -> [u8; SEED_KEY_LEN] {
        self.public
    }

    /// Opens a content ID sealed to this key for node `me` by [`seal_seed`].
    pub fn open(&self, me: &NodeId, sealed: &[u8]) -> Result<ContentId, WireError> {
        let refuse = || WireError::Sealed {
            what: "sealed seed",
        };
        if sealed.len() != SEALED_SEED_LEN {
            return Err(refuse());
        }
        let eph: [u8; 32] = sealed[..SEED_KEY_LEN].try_into().expect("32 bytes");
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(eph));
        if !shared.was_contributory() {
            return Err(refuse());
        }
        let key = seed_aead_key(shared.as_bytes(), &eph, &self.public(), me);
        let plain = open(&key, &me.0, &sealed[SEED_KEY_LEN..], "sealed seed")?;
        let id: [u8; 32] = plain.as_slice().try_into().map_err(|_| refuse())?;
        Ok(ContentId(Hash(id)))
    }
}

/// Seals content ID `id` to the cache node `to` whose public seed key is `to_pub`: an
/// ephemeral X25519 exchange, then AES-256-GCM under a key derived from the shared secret and
/// both public keys, bound to the node ID.
pub fn seal_seed(to_pub: &[u8; SEED_KEY_LEN], to: &NodeId, id: &ContentId) -> Vec<u8> {
    let eph = x25519_dalek::StaticSecret::from(random_bytes::<32>());
    let eph_pub = x25519_dalek::PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&x25519_dalek::PublicKey::from(*to_pub));
    let key = seed_aead_key(shared.as_bytes(), &eph_pub, to_pub, to);
    let mut out = eph_pub.to_vec();
    out.extend_from_slice(&seal(&key, &to.0, &id.as_hash().0));
    out
}

/// The key that seals the bytes of a download offered to peers as it arrives
/// ([`crate::wire::Request::Tail`]): nobody without the ticket (for content), or without the
/// URL and the group secret (for a gateway's download of a URL), can read them, in any group.
#[derive(Clone)]
pub struct TailKey(Hash);

impl fmt::Debug for TailKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TailKey(..)")
    }
}

impl TailKey {
    /// The key of a download of the content with this ID.
    pub fn for_content(id: &ContentId) -> TailKey {
        TailKey(hmac_sha256(&id.as_hash().0, &[b"pdist tail seal v1"]))
    }

    /// A key its offering component derived itself (a secret only its takers know).
    pub fn from_secret(key: [u8; 32]) -> TailKey {
        TailKey(Hash(key))
    }

    /// Seals the download's bytes from `offset` (bound to that offset, so they open nowhere
    /// else).
    pub fn seal(&self, offset: u64, plain: &[u8]) -> Vec<u8> {
        seal(&self.0.0, &Self::ad(offset), plain)
    }

    /// Opens bytes sealed by [`TailKey::seal`] for `offset`.
    pub fn open(&self, offset: u64, sealed: &[u8]) -> Result<Vec<u8>, WireError> {
        open(&self.0.0, &Self::ad(offset), sealed, "download bytes")
    }

    fn ad(offset: u64) -> [u8; 12] {
        let mut ad = *b"tail\0\0\0\0\0\0\0\0";
        ad[4..].copy_from_slice(&offset.to_be_bytes());
        ad
    }
}

/// The key that seals one segment's blocks between peers: HMAC(Kp, label).
#[derive(Clone)]
pub struct SegmentKey(Hash);

impl fmt::Debug for SegmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SegmentKey(..)")
    }
}

impl SegmentKey {
    /// The key for the segment whose secret is `kp`.
    pub fn new(kp: &Hash) -> SegmentKey {
        SegmentKey(hmac_sha256(&kp.0, &[b"pdist block seal v1"]))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0.0
    }
}

/// An AES-256-GCM key (ring's implementation: AES-NI and carry-less multiply, about 4x the
/// throughput of a pure-Rust GHASH on this project's machine).
fn aead_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("AES-256 takes 32-byte keys"))
}

/// Seals `plain`: nonce ‖ ciphertext ‖ tag, with a fresh random nonce.
pub fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plain.len() + AEAD_OVERHEAD);
    seal_into(key, aad, plain, &mut out);
    out
}

/// Appends the sealed form of `plain` to `out`.
pub(crate) fn seal_into(key: &[u8; 32], aad: &[u8], plain: &[u8], out: &mut Vec<u8>) {
    let nonce: [u8; NONCE_LEN] = random_bytes();
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plain);
    let tag = aead_key(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[start..],
        )
        .expect("AES-GCM seals messages below 64 GiB");
    out.extend_from_slice(tag.as_ref());
}

/// Opens, in place, the ciphertext `buf` of bytes made by [`seal`], given their nonce and tag.
pub(crate) fn open_in_place(
    key: &[u8; 32],
    aad: &[u8],
    nonce: &[u8],
    buf: &mut [u8],
    tag: &[u8],
    what: &'static str,
) -> Result<(), WireError> {
    let sealed = || WireError::Sealed { what };
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| sealed())?;
    let tag = Tag::try_from(tag).map_err(|_| sealed())?;
    aead_key(key)
        .open_in_place_separate_tag(nonce, Aad::from(aad), tag, buf, 0..)
        .map(drop)
        .map_err(|_| sealed())
}

/// Splits sealed bytes into nonce, ciphertext and tag.
pub(crate) fn split_sealed(sealed: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    if sealed.len() < AEAD_OVERHEAD {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    Some((nonce, ct, tag))
}

/// Opens bytes made by [`seal`]; `what` names them in the error.
pub fn open(
    key: &[u8; 32],
    aad: &[u8],
    sealed: &[u8],
    what: &'static str,
) -> Result<Vec<u8>, WireError> {
    let (nonce, ct, tag) = split_sealed(sealed).ok_or(WireError::Sealed { what })?;
    let mut buf = ct.to_vec();
    open_in_place(key, aad, nonce, &mut buf, tag, what)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_detects_tampering() {
        let key = [9u8; 32];
        let sealed = seal(&key, b"ad", b"hello");
        assert_eq!(sealed.len(), 5 + AEAD_OVERHEAD);
        assert_eq!(open(&key, b"ad", &sealed, "x").unwrap(), b"hello");
        assert!(open(&key, b"other ad", &sealed, "x").is_err());
        assert!(open(&[8u8; 32], b"ad", &sealed, "x").is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                open(&key, b"ad", &bad, "x").is_err(),
                "flip at {i} accepted"
            );
        }
        assert!(open(&key, b"ad", &sealed[..10], "x").is_err());
        // Fresh nonces: sealing twice gives different bytes.
        assert_ne!(seal(&key, b"ad", b"hello"), sealed);
    }

    #[test]
    fn groups_do_not_share_keys() {
        let a = GroupKeys::new(&ServerSecret::open_group());
        let b = GroupKeys::new(&ServerSecret::new(b"office".to_vec()));
        let sealed = a.seal_msg(b"", b"x");
        assert!(b.open_msg(b"", &sealed).is_err());
        assert!(a.open_msg(b"", &sealed).is_ok());
    }

    #[test]
    fn seeds_open_only_for_the_node_they_were_sealed_to() {
        let (k, other) = (SeedKey::generate(), SeedKey::generate());
        let (me, them) = (NodeId([1; 16]), NodeId([2; 16]));
        let id = ContentId(Hash([9; 32]));
        let sealed = seal_seed(&k.public(), &me, &id);
        assert_eq!(sealed.len(), SEALED_SEED_LEN);
        assert_eq!(k.open(&me, &sealed).unwrap(), id);
        assert!(k.open(&them, &sealed).is_err(), "bound to the node ID");
        assert!(other.open(&me, &sealed).is_err(), "only its key opens it");
        assert_ne!(seal_seed(&k.public(), &me, &id), sealed, "fresh each time");
        assert!(
            !sealed.windows(32).any(|w| w == id.as_hash().0),
            "the ID is not in clear"
        );
        let mut bad = sealed.clone();
        bad[40] ^= 1;
        assert!(k.open(&me, &bad).is_err());
        assert!(k.open(&me, &sealed[..SEALED_SEED_LEN - 1]).is_err());
        // A low-order point in place of the ephemeral key gives no shared secret.
        let mut zero = sealed.clone();
        zero[..32].fill(0);
        assert!(k.open(&me, &zero).is_err());
    }

    #[test]
    fn content_keys_hide_the_content_id() {
        let id = ContentId(Hash([5; 32]));
        let k = ContentKeys::new(&id);
        assert_ne!(k.lookup.0, id.as_hash().0);
        let sealed = k.seal_info(b"info");
        assert_eq!(k.open_info(&sealed).unwrap(), b"info");
        assert!(
            ContentKeys::new(&ContentId(Hash([6; 32])))
                .open_info(&sealed)
                .is_err()
        );
    }
}
