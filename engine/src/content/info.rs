//! Content information in memory: the descriptors of every segment, every block hash, the
//! Merkle tree over the descriptors and the content ID; and the pieces of it that travel
//! separately (a run of descriptors with its proof) with their checks.
//!
//! Trust flows one way: a content ID is trusted (it came from a ticket); a [`SegmentProof`] from
//! anyone becomes [`VerifiedSegments`] only through [`SegmentProof::verify`] against that ID; a
//! segment's block hashes are checked against its verified HoD; a block against its block hash.

use std::ops::Range;

use super::merkle::{self, SegmentTree};
use super::{
    BlockIdx, ContentId, Hash, Layout, SegmentIdx, ServerSecret, VerifyError, hash_of_data,
    segment_id, segment_secret, sha256,
};

/// What the content information says about one segment. Its offset and length come from the
/// layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SegmentDescriptor {
    /// Hash of data: SHA-256 over the segment's block hashes.
    pub hod: Hash,
    /// Segment secret `Kp = HMAC-SHA256(Ks, HoD)`: only holders of the content information know it.
    pub kp: Hash,
}

impl SegmentDescriptor {
    /// The Merkle leaf of this descriptor at `seg` of `layout`.
    pub fn leaf(&self, layout: &Layout, seg: SegmentIdx) -> Hash {
        merkle::leaf_hash(
            layout.segment_offset(seg),
            layout.segment_len(seg),
            &self.hod,
            &self.kp,
        )
    }

    /// The public segment ID (MS-PCCRC's HoHoDk).
    pub fn segment_id(&self) -> Hash {
        segment_id(&self.kp, &self.hod)
    }
}

/// Complete content information: every descriptor and every block hash, with the tree and ID.
#[derive(Debug, Clone)]
pub struct ContentInfo {
    layout: Layout,
    descriptors: Vec<SegmentDescriptor>,
    block_hashes: Vec<Hash>,
    tree: SegmentTree,
    id: ContentId,
}

impl ContentInfo {
    /// Builds content information from the hash of every block (in order), deriving each
    /// segment's HoD and Kp from `secret`.
    pub fn build(
        layout: Layout,
        block_hashes: Vec<Hash>,
        secret: &ServerSecret,
    ) -> Result<Self, VerifyError> {
        check_block_total(&layout, block_hashes.len())?;
        let ks = secret.ks_v1();
        let descriptors = layout
            .segments()
            .map(|seg| {
                let hod = hash_of_data(&block_hashes[block_span(&layout, seg)]);
                SegmentDescriptor {
                    hod,
                    kp: segment_secret(&ks, &hod),
                }
            })
            .collect();
        Ok(Self::assemble(layout, descriptors, block_hashes))
    }

    /// Content information from decoded parts: checks every segment's block hashes against its
    /// HoD, then computes the tree and the ID (which the caller compares with what it expects).
    pub fn from_parts(
        layout: Layout,
        descriptors: Vec<SegmentDescriptor>,
        block_hashes: Vec<Hash>,
    ) -> Result<Self, VerifyError> {
        check_block_total(&layout, block_hashes.len())?;
        if descriptors.len() != layout.segment_count() as usize {
            return Err(VerifyError::SegmentCount {
                expected: layout.segment_count(),
                actual: descriptors.len(),
            });
        }
        for (seg, d) in layout.segments().zip(&descriptors) {
            verify_block_hashes(&layout, seg, d, &block_hashes[block_span(&layout, seg)])?;
        }
        Ok(Self::assemble(layout, descriptors, block_hashes))
    }

    fn assemble(
        layout: Layout,
        descriptors: Vec<SegmentDescriptor>,
        block_hashes: Vec<Hash>,
    ) -> Self {
        let leaves: Vec<Hash> = layout
            .segments()
            .zip(&descriptors)
            .map(|(seg, d)| d.leaf(&layout, seg))
            .collect();
        let tree = SegmentTree::new(&leaves);
        let id = ContentId::compute(&layout, &tree.root());
        ContentInfo {
            layout,
            descriptors,
            block_hashes,
            tree,
            id,
        }
    }

    /// The content ID.
    pub fn id(&self) -> ContentId {
        self.id
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Root of the Merkle tree over the segment descriptors.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// All segment descriptors, in order.
    pub fn descriptors(&self) -> &[SegmentDescriptor] {
        &self.descriptors
    }

    /// One segment's descriptor.
    ///
    /// # Panics
    ///
    /// If `seg` comes from another layout and is out of range for this one.
    pub fn descriptor(&self, seg: SegmentIdx) -> &SegmentDescriptor {
        &self.descriptors[seg.get() as usize]
    }

    /// One segment's block hashes.
    ///
    /// # Panics
    ///
    /// If `seg` comes from another layout and is out of range for this one.
    pub fn block_hashes(&self, seg: SegmentIdx) -> &[Hash] {
        &self.block_hashes[block_span(&self.layout, seg)]
    }

    /// Every block hash of the content, in order.
    pub fn all_block_hashes(&self) -> &[Hash] {
        &self.block_hashes
    }

    /// Checks a block's bytes against its block hash.
    ///
    /// # Panics
    ///
    /// If `block` comes from another layout and is out of range for this one.
    pub fn verify_block(&self, block: BlockIdx, data: &[u8]) -> Result<(), VerifyError> {
        verify_block(
            &self.layout,
            block,
            &self.block_hashes[block.global() as usize],
            data,
        )
    }

    /// The descriptors of segments `first..first + count` with their Merkle proof: what a peer
    /// sends so that a fetcher can check them against the content ID alone. `None` when the
    /// range is empty or reaches past the last segment.
    pub fn prove_segments(&self, first: SegmentIdx, count: u32) -> Option<SegmentProof> {
        let start = first.get();
        let end = start.checked_add(count)?;
        if count == 0 || end > self.layout.segment_count() {
            return None;
        }
        Some(SegmentProof {
            layout: self.layout,
            first: start,
            descriptors: self.descriptors[start as usize..end as usize].to_vec(),
            proof: self.tree.prove(start, count),
        })
    }
}

/// A run of segment descriptors from an untrusted source, with the Merkle proof that ties them
/// (and the layout) to a content ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentProof {
    /// The layout the sender claims (checked through the content ID).
    pub layout: Layout,
    /// Index of the first descriptor.
    pub first: u32,
    /// Descriptors of segments `first..first + descriptors.len()`.
    pub descriptors: Vec<SegmentDescriptor>,
    /// Proof hashes (rs_merkle's multi-proof order).
    pub proof: Vec<Hash>,
}

impl SegmentProof {
    /// Checks the descriptors and the layout against `id`.
    pub fn verify(&self, id: &ContentId) -> Result<VerifiedSegments, VerifyError> {
        let count =
            u32::try_from(self.descriptors.len()).map_err(|_| VerifyError::ProofIndices {
                reason: "too many descriptors",
            })?;
        let end = self
            .first
            .checked_add(count)
            .filter(|&e| count > 0 && e <= self.layout.segment_count())
            .ok_or(VerifyError::ProofIndices {
                reason: "descriptor range is empty or past the last segment",
            })?;
        let indices: Vec<u32> = (self.first..end).collect();
        let leaves: Vec<Hash> = self
            .layout
            .segments()
            .skip(self.first as usize)
            .zip(&self.descriptors)
            .map(|(seg, d)| d.leaf(&self.layout, seg))
            .collect();
        let root =
            merkle::root_from_proof(self.layout.segment_count(), &indices, &leaves, &self.proof)?;
        let actual = ContentId::compute(&self.layout, &root);
        if actual != *id {
            return Err(VerifyError::ContentId {
                expected: *id,
                actual,
            });
        }
        Ok(VerifiedSegments {
            layout: self.layout,
            first: self.first,
            descriptors: self.descriptors.clone(),
        })
    }
}

/// Segment descriptors proven to belong to a content ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSegments {
    layout: Layout,
    first: u32,
    descriptors: Vec<SegmentDescriptor>,
}

impl VerifiedSegments {
    /// The (now trusted) layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The segments covered.
    pub fn segments(&self) -> impl Iterator<Item = SegmentIdx> + '_ {
        self.layout
            .segments()
            .skip(self.first as usize)
            .take(self.descriptors.len())
    }

    /// The descriptor of `seg`, if this run covers it.
    pub fn descriptor(&self, seg: SegmentIdx) -> Option<&SegmentDescriptor> {
        let i = seg.get().checked_sub(self.first)?;
        self.descriptors.get(i as usize)
    }

    /// Checks a segment's block hashes (from anyone) against its verified HoD.
    pub fn verify_block_hashes(&self, seg: SegmentIdx, hashes: &[Hash]) -> Result<(), VerifyError> {
        let d = self.descriptor(seg).ok_or(VerifyError::ProofIndices {
            reason: "segment not covered by this proof",
        })?;
        verify_block_hashes(&self.layout, seg, d, hashes)
    }
}

/// Checks that every descriptor's Kp is the one `secret` gives for its HoD (segments are
/// numbered from `first` in the error).
pub fn verify_segment_secrets(
    descriptors: &[SegmentDescriptor],
    first: u32,
    secret: &ServerSecret,
) -> Result<(), VerifyError> {
    let ks = secret.ks_v1();
    for (i, d) in descriptors.iter().enumerate() {
        let expected = segment_secret(&ks, &d.hod);
        if expected != d.kp {
            return Err(VerifyError::SegmentSecret {
                segment: first.saturating_add(i as u32),
                expected,
                actual: d.kp,
            });
        }
    }
    Ok(())
}

/// Checks a segment's block hashes against its descriptor's HoD (count first, then hash).
pub fn verify_block_hashes(
    layout: &Layout,
    seg: SegmentIdx,
    descriptor: &SegmentDescriptor,
    hashes: &[Hash],
) -> Result<(), VerifyError> {
    let expected = layout.blocks_in_segment(seg);
    if hashes.len() != expected as usize {
        return Err(VerifyError::BlockCount {
            segment: seg.get(),
            expected,
            actual: hashes.len(),
        });
    }
    let actual = hash_of_data(hashes);
    if actual != descriptor.hod {
        return Err(VerifyError::SegmentHash {
            segment: seg.get(),
            expected: descriptor.hod,
            actual,
        });
    }
    Ok(())
}

/// Checks a block's bytes (length, then SHA-256) against its expected block hash.
pub fn verify_block(
    layout: &Layout,
    block: BlockIdx,
    expected: &Hash,
    data: &[u8],
) -> Result<(), VerifyError> {
    let len = layout.block_len(block);
    if data.len() != len as usize {
        return Err(VerifyError::BlockLength {
            block: block.global(),
            expected: len,
            actual: data.len(),
        });
    }
    let actual = sha256(data);
    if actual != *expected {
        return Err(VerifyError::BlockHash {
            block: block.global(),
            expected: *expected,
            actual,
        });
    }
    Ok(())
}

fn block_span(layout: &Layout, seg: SegmentIdx) -> Range<usize> {
    let first = layout.first_block_of(seg) as usize;
    first..first + layout.blocks_in_segment(seg) as usize
}

fn check_block_total(layout: &Layout, actual: usize) -> Result<(), VerifyError> {
    if actual as u64 != layout.block_count() {
        return Err(VerifyError::TotalBlockCount {
            expected: layout.block_count(),
            actual,
        });
    }
    Ok(())
}
