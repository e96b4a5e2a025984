//! A set of block indices within one segment, as a bitmap: what a store says is present.

/// Blocks of one segment (indices below the segment's block count).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockSet {
    words: Vec<u64>,
    len: u32,
}

impl BlockSet {
    /// An empty set for a segment of `len` blocks.
    pub fn new(len: u32) -> Self {
        BlockSet {
            words: vec![0; len.div_ceil(64) as usize],
            len,
        }
    }

    /// The full set for a segment of `len` blocks.
    pub fn full(len: u32) -> Self {
        let mut s = BlockSet::new(len);
        for i in 0..len {
            s.insert(i);
        }
        s
    }

    /// Blocks in the segment (the bitmap's size).
    pub fn capacity(&self) -> u32 {
        self.len
    }

    /// Whether block `i` is in the set.
    pub fn contains(&self, i: u32) -> bool {
        i < self.len && self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Adds block `i`; returns whether it was new. Indices past the capacity are ignored.
    pub fn insert(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let w = &mut self.words[(i / 64) as usize];
        let new = *w & (1 << (i % 64)) == 0;
        *w |= 1 << (i % 64);
        new
    }

    /// Removes block `i`; returns whether it was there.
    pub fn remove(&mut self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        let w = &mut self.words[(i / 64) as usize];
        let had = *w & (1 << (i % 64)) != 0;
        *w &= !(1 << (i % 64));
        had
    }

    /// Number of blocks in the set.
    pub fn count(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    /// Whether every block is in the set.
    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }

    /// The indices in the set, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.contains(i))
    }

    /// Compact encoding: little-endian words, `ceil(len / 64) * 8` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Decodes [`BlockSet::to_bytes`] for a segment of `len` blocks; `None` when the length is
    /// wrong or bits past `len` are set.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Option<Self> {
        let words = len.div_ceil(64) as usize;
        if bytes.len() != words * 8 {
            return None;
        }
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("chunks of 8")))
            .collect();
        if let (Some(last), r) = (words.last(), len % 64)
            && r != 0
            && last >> r != 0
        {
            return None;
        }
        Some(BlockSet { words, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(len in 0u32..1100, picks in prop::collection::vec(any::<u32>(), 0..40)) {
            let mut s = BlockSet::new(len);
            for p in &picks {
                if len > 0 {
                    s.insert(p % len);
                }
            }
            let back = BlockSet::from_bytes(&s.to_bytes(), len).unwrap();
            prop_assert_eq!(&back, &s);
            prop_assert_eq!(back.iter().count() as u32, s.count());
        }
    }

    #[test]
    fn stray_bits_and_wrong_lengths_are_refused() {
        assert!(BlockSet::from_bytes(&[0xff; 8], 3).is_none());
        assert!(BlockSet::from_bytes(&[0x07, 0, 0, 0, 0, 0, 0, 0], 3).is_some());
        assert!(BlockSet::from_bytes(&[0; 7], 3).is_none());
        assert!(BlockSet::full(512).is_full());
        let mut s = BlockSet::new(5);
        assert!(!s.insert(5));
        assert!(s.insert(4) && !s.insert(4) && s.remove(4) && !s.contains(4));
    }
}
