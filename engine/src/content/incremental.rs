//! Hashing content as it arrives, in whatever pieces it comes: [`BlockHasher`] takes the bytes
//! of a stream in order (an origin's body, a peer's download followed as it grows, see
//! `crate::download`), hashes each block as soon as it is whole, and builds the content
//! information at the end. Pure; one core, and no thread of its own, so a download that waits
//! for its next bytes holds none. For content that is all there already, [`super::hash_file`]
//! and [`super::hash_reader`] use every core; the property test below holds the two to the same
//! hashes.

use super::layout::{BLOCK_SIZE, BLOCKS_PER_SEGMENT, MAX_CONTENT_LEN};
use super::{ContentInfo, Hash, HashError, Layout, LayoutError, ServerSecret, sha256};

/// Hashes a stream block by block, whatever its chunking.
#[derive(Debug)]
pub struct BlockHasher {
    block: usize,
    blocks_per_segment: u32,
    buf: Vec<u8>,
    hashes: Vec<Hash>,
    total: u64,
}

impl Default for BlockHasher {
    fn default() -> Self {
        BlockHasher::new()
    }
}

impl BlockHasher {
    /// A hasher for the standard layout (64 KiB blocks, 32 MiB segments).
    pub fn new() -> BlockHasher {
        BlockHasher {
            block: BLOCK_SIZE as usize,
            blocks_per_segment: BLOCKS_PER_SEGMENT,
            buf: Vec::with_capacity(BLOCK_SIZE as usize),
            hashes: Vec::new(),
            total: 0,
        }
    }

    /// Feeds the next bytes. Content longer than the largest content is refused before its
    /// hashes pile up.
    pub fn update(&mut self, mut data: &[u8]) -> Result<(), HashError> {
        let total = self.total + data.len() as u64;
        if total > MAX_CONTENT_LEN {
            return Err(LayoutError::ContentTooLarge {
                len: total,
                max: MAX_CONTENT_LEN,
            }
            .into());
        }
        self.total = total;
        while !data.is_empty() {
            if self.buf.is_empty() && data.len() >= self.block {
                let (b, rest) = data.split_at(self.block);
                self.hashes.push(sha256(b));
                data = rest;
                continue;
            }
            let take = (self.block - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.block {
                self.hashes.push(sha256(&self.buf));
                self.buf.clear();
            }
        }
        Ok(())
    }

    /// Bytes fed so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The content information of everything fed, under `secret`.
    pub fn finish(mut self, secret: &ServerSecret) -> Result<ContentInfo, HashError> {
        if !self.buf.is_empty() {
            self.hashes.push(sha256(&self.buf));
        }
        let layout = Layout::with_params(self.total, self.block as u32, self.blocks_per_segment)?;
        Ok(ContentInfo::build(layout, self.hashes, secret)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{HashOptions, hash_reader};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_the_parallel_hasher_whatever_the_chunking(
            len in 0usize..300_000,
            cuts in proptest::collection::vec(1usize..100_000, 0..8),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let secret = ServerSecret::open_group();
            let mut h = BlockHasher::new();
            let mut rest = &data[..];
            for c in cuts {
                let (a, b) = rest.split_at(c.min(rest.len()));
                h.update(a).unwrap();
                rest = b;
            }
            h.update(rest).unwrap();
            let ours = h.finish(&secret).unwrap();
            let theirs = hash_reader(&data[..], &secret, &HashOptions::default(), &mut |_| {}).unwrap();
            prop_assert_eq!(ours.id(), theirs.id());
        }
    }
}
