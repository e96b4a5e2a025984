//! [`MemStore`]: the in-memory twin of the RocksDB store, for tests of everything above the store.
//! It keeps the same rules (verify before storing, published files re-checked on read); it has
//! nothing to make durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    BlockSet, ContentRecord, Origin, OriginChange, SegmentStore, StoreError, Usage, now_ms,
    origin_change, read_published_block,
};
use crate::content::{BlockIdx, ContentId, ContentInfo, SegmentIdx};

#[derive(Debug)]
struct Entry {
    info: Arc<ContentInfo>,
    record: ContentRecord,
    present: Vec<BlockSet>,
    blocks: HashMap<u64, Vec<u8>>,
}

/// An in-memory [`SegmentStore`].
#[derive(Debug, Default)]
pub struct MemStore {
    entries: Mutex<HashMap<ContentId, Entry>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        MemStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ContentId, Entry>> {
        // A panic while holding the lock cannot leave an entry half-updated in a way that serves
        // wrong bytes (blocks are inserted after verification), so poisoning is ignored.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry<'a>(
        map: &'a mut HashMap<ContentId, Entry>,
        id: &ContentId,
    ) -> Result<&'a mut Entry, StoreError> {
        map.get_mut(id)
            .ok_or(StoreError::UnknownContent { id: *id })
    }
}

fn count_present(present: &[BlockSet]) -> u64 {
    present.iter().map(|s| u64::from(s.count())).sum()
}

fn present_sets(info: &ContentInfo, full: bool) -> Vec<BlockSet> {
    let l = info.layout();
    l.segments()
        .map(|s| {
            let n = l.blocks_in_segment(s);
            if full {
                BlockSet::full(n)
            } else {
                BlockSet::new(n)
            }
        })
        .collect()
}

impl SegmentStore for MemStore {
    fn put_content(
        &self,
        info: &ContentInfo,
        name: &str,
        origin: Origin,
    ) -> Result<bool, StoreError> {
        let mut map = self.lock();
        let published = matches!(origin, Origin::Published { .. });
        if let Some(e) = map.get_mut(&info.id()) {
            e.record.last_used_ms = now_ms();
            match origin_change(&e.record.origin, origin) {
                OriginChange::Keep => {}
                OriginChange::InPlace(origin) => {
                    e.record.origin = origin;
                    e.present = present_sets(info, true);
                    e.blocks.clear();
                }
                OriginChange::Copy => {
                    if matches!(e.record.origin, Origin::Published { .. }) {
                        e.present = present_sets(info, false);
                    }
                    e.record.origin = Origin::Copied;
                }
            }
            e.record.blocks_present = count_present(&e.present);
            return Ok(false);
        }
        let present = present_sets(info, published);
        let record = ContentRecord {
            id: info.id(),
            name: name.to_string(),
            len: info.layout().content_len(),
            blocks_total: info.layout().block_count(),
            blocks_present: count_present(&present),
            origin,
            pinned: false,
            last_used_ms: now_ms(),
        };
        map.insert(
            info.id(),
            Entry {
                info: Arc::new(info.clone()),
                record,
                present,
                blocks: HashMap::new(),
            },
        );
        Ok(true)
    }

    fn content_info(&self, id: &ContentId) -> Result<Option<Arc<ContentInfo>>, StoreError> {
        Ok(self.lock().get(id).map(|e| e.info.clone()))
    }

    fn record(&self, id: &ContentId) -> Result<Option<ContentRecord>, StoreError> {
        Ok(self.lock().get(id).map(|e| e.record.clone()))
    }

    fn list(&self) -> Result<Vec<ContentRecord>, StoreError> {
        Ok(self.lock().values().map(|e| e.record.clone()).collect())
    }

    fn put_block(&self, id: &ContentId, block: BlockIdx, data: &[u8]) -> Result<(), StoreError> {
        let mut map = self.lock();
        let e = Self::entry(&mut map, id)?;
        e.info.verify_block(block, data)?;
        if matches!(e.record.origin, Origin::Published { .. }) {
            return Err(StoreError::PublishedInPlace { id: *id });
        }
        let seg = &mut e.present[block.segment().get() as usize];
        if seg.contains(block.index_in_segment()) {
            return Ok(());
        }
        e.blocks.insert(block.global(), data.to_vec());
        seg.insert(block.index_in_segment());
        e.record.blocks_present += 1;
        e.record.last_used_ms = now_ms();
        Ok(())
    }

    fn get_block(&self, id: &ContentId, block: BlockIdx) -> Result<Option<Vec<u8>>, StoreError> {
        let (info, origin) = {
            let mut map = self.lock();
            let e = Self::entry(&mut map, id)?;
            if !e.present[block.segment().get() as usize].contains(block.index_in_segment()) {
                return Ok(None);
            }
            e.record.last_used_ms = now_ms();
            if let Some(bytes) = e.blocks.get(&block.global())
                && !matches!(e.record.origin, Origin::Published { .. })
            {
                return Ok(Some(bytes.clone()));
            }
            (e.info.clone(), e.record.origin.clone())
        };
        // Published in place: read outside the lock, then mark missing if it no longer matches.
        let bytes = read_published_block(&info, &origin, block)?;
        if bytes.is_none() {
            self.mark_missing(id, block)?;
        }
        Ok(bytes)
    }

    fn present(&self, id: &ContentId, seg: SegmentIdx) -> Result<BlockSet, StoreError> {
        let mut map = self.lock();
        Ok(Self::entry(&mut map, id)?.present[seg.get() as usize].clone())
    }

    fn mark_missing(&self, id: &ContentId, block: BlockIdx) -> Result<(), StoreError> {
        let mut map = self.lock();
        let e = Self::entry(&mut map, id)?;
        // The bytes stay (as a file's would): `repair_block` may find them good again.
        if e.present[block.segment().get() as usize].remove(block.index_in_segment()) {
            e.record.blocks_present -= 1;
        }
        Ok(())
    }

    fn repair_block(&self, id: &ContentId, block: BlockIdx) -> Result<bool, StoreError> {
        let (info, origin, stored) = {
            let mut map = self.lock();
            let e = Self::entry(&mut map, id)?;
            let stored = e.blocks.get(&block.global()).cloned();
            (e.info.clone(), e.record.origin.clone(), stored)
        };
        let good = match stored {
            Some(bytes) => info.verify_block(block, &bytes).is_ok(),
            None => read_published_block(&info, &origin, block)?.is_some(),
        };
        let mut map = self.lock();
        let e = Self::entry(&mut map, id)?;
        let set = &mut e.present[block.segment().get() as usize];
        let i = block.index_in_segment();
        if good && set.insert(i) {
            e.record.blocks_present += 1;
        } else if !good {
            e.blocks.remove(&block.global());
            if set.remove(i) {
                e.record.blocks_present -= 1;
            }
        }
        Ok(good)
    }

    fn set_pinned(&self, id: &ContentId, pinned: bool) -> Result<(), StoreError> {
        let mut map = self.lock();
        Self::entry(&mut map, id)?.record.pinned = pinned;
        Ok(())
    }

    fn remove(&self, id: &ContentId) -> Result<bool, StoreError> {
        Ok(self.lock().remove(id).is_some())
    }

    fn usage(&self) -> Result<Usage, StoreError> {
        let map = self.lock();
        let mut u = Usage {
            contents: map.len() as u64,
            ..Usage::default()
        };
        for e in map.values() {
            let layout = e.info.layout();
            u.stored_bytes += e
                .blocks
                .iter()
                .filter(|&(&g, _)| {
                    layout.block_at(g).is_ok_and(|b| {
                        e.present[b.segment().get() as usize].contains(b.index_in_segment())
                    })
                })
                .map(|(_, b)| b.len() as u64)
                .sum::<u64>();
            if matches!(e.record.origin, Origin::Published { .. }) {
                u.in_place_bytes += e.record.len;
            }
        }
        Ok(u)
    }
}
