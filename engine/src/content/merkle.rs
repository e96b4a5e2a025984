//! The Merkle tree over segment descriptors, with leaf/node domain separation, and proof checks
//! that do not trust rs_merkle with malformed input.
//!
//! A leaf is `SHA-256(0x00 ‖ offset ‖ length ‖ HoD ‖ Kp)` (big-endian integers) and an inner node
//! `SHA-256(0x01 ‖ left ‖ right)`, as in RFC 6962, so no leaf can pose as a node. A node without a
//! right sibling is promoted unchanged (rs_merkle's rule); that is safe because the leaf count is
//! bound into the content ID. The empty tree's root is SHA-256 of nothing.
//!
//! rs_merkle 1.5.0 accepts duplicate indices and indices past the leaf count in `verify`
//! (LAB.md), and ignores surplus proof hashes; [`root_from_proof`] rejects all three before it
//! calls rs_merkle.

use rs_merkle::{Hasher, MerkleProof, MerkleTree};
use sha2::{Digest, Sha256};

use super::{Hash, VerifyError};

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// rs_merkle's hasher for inner nodes, with our domain separation.
#[derive(Clone, Debug)]
pub(crate) struct NodeHasher;

impl Hasher for NodeHasher {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([NODE_PREFIX]);
        h.update(data);
        h.finalize().into()
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(right) => {
                let mut h = Sha256::new();
                h.update([NODE_PREFIX]);
                h.update(left);
                h.update(right);
                h.finalize().into()
            }
            None => *left,
        }
    }
}

/// The leaf hash of a segment descriptor.
pub fn leaf_hash(offset: u64, len: u32, hod: &Hash, kp: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(offset.to_be_bytes());
    h.update(len.to_be_bytes());
    h.update(hod.0);
    h.update(kp.0);
    Hash(h.finalize().into())
}

/// Root of the tree with no leaves (zero-length content).
pub fn empty_root() -> Hash {
    super::sha256(&[])
}

/// A built tree over the leaves of one content.
#[derive(Clone)]
pub(crate) struct SegmentTree {
    tree: MerkleTree<NodeHasher>,
    leaves: usize,
}

impl std::fmt::Debug for SegmentTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SegmentTree({} leaves, root {})",
            self.leaves,
            self.root()
        )
    }
}

impl SegmentTree {
    pub(crate) fn new(leaves: &[Hash]) -> Self {
        let raw: Vec<[u8; 32]> = leaves.iter().map(|h| h.0).collect();
        SegmentTree {
            tree: MerkleTree::from_leaves(&raw),
            leaves: leaves.len(),
        }
    }

    pub(crate) fn root(&self) -> Hash {
        self.tree.root().map(Hash).unwrap_or_else(empty_root)
    }

    /// Proof hashes for the contiguous leaves `first..first + count` (in range: callers check).
    pub(crate) fn prove(&self, first: u32, count: u32) -> Vec<Hash> {
        let indices: Vec<usize> = (first as usize..(first + count) as usize).collect();
        debug_assert!(indices.last().is_none_or(|&i| i < self.leaves));
        self.tree
            .proof(&indices)
            .proof_hashes()
            .iter()
            .map(|h| Hash(*h))
            .collect()
    }
}

/// Number of proof hashes a multi-proof for `indices` (sorted, unique, in range) must carry.
pub fn expected_proof_len(indices: &[usize], leaf_count: usize) -> usize {
    rs_merkle::utils::indices::proof_indices_by_layers(indices, leaf_count)
        .iter()
        .map(Vec::len)
        .sum()
}

/// Recomputes the root from `leaves` at `indices` and their multi-proof, refusing duplicate,
/// unsorted or out-of-range indices, count mismatches and surplus or missing proof hashes.
/// `leaf_count` must come from trusted data (a layout bound into the content ID), never a peer.
pub fn root_from_proof(
    leaf_count: u32,
    indices: &[u32],
    leaves: &[Hash],
    proof: &[Hash],
) -> Result<Hash, VerifyError> {
    if indices.is_empty() {
        return Err(VerifyError::ProofIndices {
            reason: "no leaves to prove",
        });
    }
    if indices.len() != leaves.len() {
        return Err(VerifyError::ProofIndices {
            reason: "leaf and index counts differ",
        });
    }
    if !indices.windows(2).all(|w| w[0] < w[1]) {
        return Err(VerifyError::ProofIndices {
            reason: "indices are not strictly increasing",
        });
    }
    if indices[indices.len() - 1] >= leaf_count {
        return Err(VerifyError::ProofIndices {
            reason: "index past the leaf count",
        });
    }
    let idx: Vec<usize> = indices.iter().map(|&i| i as usize).collect();
    let expected = expected_proof_len(&idx, leaf_count as usize);
    if proof.len() != expected {
        return Err(VerifyError::ProofLength {
            expected,
            actual: proof.len(),
        });
    }
    let raw_leaves: Vec<[u8; 32]> = leaves.iter().map(|h| h.0).collect();
    let proof = MerkleProof::<NodeHasher>::new(proof.iter().map(|h| h.0).collect());
    proof
        .root(&idx, &raw_leaves, leaf_count as usize)
        .map(Hash)
        .map_err(|_| VerifyError::ProofMalformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: u32) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(u64::from(i), i, &Hash([i as u8; 32]), &Hash::ZERO))
            .collect()
    }

    #[test]
    fn leaf_and_node_are_separated() {
        let l = leaves(2);
        let node = NodeHasher::concat_and_hash(&l[0].0, Some(&l[1].0));
        let mut plain = Sha256::new();
        plain.update(l[0].0);
        plain.update(l[1].0);
        let plain: [u8; 32] = plain.finalize().into();
        assert_ne!(node, plain, "inner nodes must carry their own prefix");
    }

    #[test]
    fn duplicate_indices_are_refused() {
        // rs_merkle 1.5.0 itself accepts [0, 1, 1] with a forged third leaf (LAB.md).
        let l = leaves(4);
        let tree = SegmentTree::new(&l);
        let proof = tree.prove(0, 2);
        let forged = leaf_hash(9, 9, &Hash([9; 32]), &Hash([9; 32]));
        let r = root_from_proof(4, &[0, 1, 1], &[l[0], l[1], forged], &proof);
        assert!(matches!(r, Err(VerifyError::ProofIndices { .. })));
        let r = root_from_proof(4, &[1, 0], &[l[1], l[0]], &proof);
        assert!(matches!(r, Err(VerifyError::ProofIndices { .. })));
        let r = root_from_proof(4, &[4], &[l[0]], &[]);
        assert!(matches!(r, Err(VerifyError::ProofIndices { .. })));
        let r = root_from_proof(4, &[0, 1], &[l[0]], &proof);
        assert!(matches!(r, Err(VerifyError::ProofIndices { .. })));
        assert_eq!(
            root_from_proof(4, &[0, 1], &l[..2], &proof).unwrap(),
            tree.root()
        );
    }

    #[test]
    fn surplus_proof_hashes_are_refused() {
        let l = leaves(5);
        let tree = SegmentTree::new(&l);
        let mut proof = tree.prove(2, 1);
        proof.push(Hash::ZERO);
        assert!(matches!(
            root_from_proof(5, &[2], &l[2..3], &proof),
            Err(VerifyError::ProofLength { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn every_range_proves(n in 1u32..70, a in 0u32..70, b in 0u32..70) {
            let l = leaves(n);
            let tree = SegmentTree::new(&l);
            let first = a % n;
            let count = 1 + b % (n - first);
            let proof = tree.prove(first, count);
            let idx: Vec<u32> = (first..first + count).collect();
            let range = first as usize..(first + count) as usize;
            prop_assert_eq!(root_from_proof(n, &idx, &l[range.clone()], &proof).unwrap(), tree.root());
        }

        #[test]
        fn tampering_is_caught(n in 2u32..40, a in 0u32..40, flip in 0usize..32, which in 0usize..64) {
            let l = leaves(n);
            let tree = SegmentTree::new(&l);
            let first = a % n;
            let proof = tree.prove(first, 1);
            let root = tree.root();
            // A tampered leaf.
            let mut bad = l[first as usize];
            bad.0[flip] ^= 1;
            prop_assert_ne!(root_from_proof(n, &[first], &[bad], &proof).ok(), Some(root));
            // A tampered proof hash.
            if !proof.is_empty() {
                let mut p = proof.clone();
                let k = which % p.len();
                p[k].0[flip] ^= 0x80;
                prop_assert_ne!(root_from_proof(n, &[first], &l[first as usize..=first as usize], &p).ok(), Some(root));
            }
            // The leaf count is not checked here: a proof for 5 leaves can rebuild the same root
            // under 6. The content ID binds the count, which is why callers take it from there.
        }
    }
}
