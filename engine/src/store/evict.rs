//! Capacity: evicting least-recently-used content past a size cap, and the leases that keep
//! content in use (a running transfer, a reader) from being evicted under it.
//!
//! Only bytes the store holds count against the cap: content published in place costs only
//! metadata, and pinned content (what the user published with `--copy`, or pinned by hand) is
//! never evicted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Origin, SegmentStore, StoreError};
use crate::content::ContentId;

/// The set of contents in use, shared by whoever reads or writes them and by eviction.
#[derive(Debug, Clone, Default)]
pub struct Leases {
    in_use: Arc<Mutex<HashMap<ContentId, usize>>>,
}

/// Keeps one content from eviction while it lives.
#[derive(Debug)]
#[must_use = "the content is protected only while the lease is held"]
pub struct Lease {
    leases: Leases,
    id: ContentId,
}

impl Leases {
    /// No content in use.
    pub fn new() -> Self {
        Leases::default()
    }

    /// Marks `id` in use until the returned lease is dropped.
    pub fn lease(&self, id: ContentId) -> Lease {
        *self.lock().entry(id).or_insert(0) += 1;
        Lease {
            leases: self.clone(),
            id,
        }
    }

    /// Whether `id` is in use.
    pub fn in_use(&self, id: &ContentId) -> bool {
        self.lock().contains_key(id)
    }

    /// Runs `remove` unless `id` is in use, holding the lease table meanwhile so that no lease
    /// can be taken half-way. `Ok(false)` when it was in use.
    pub(crate) fn remove_unless_in_use(
        &self,
        id: &ContentId,
        remove: impl FnOnce() -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        let table = self.lock();
        if table.contains_key(id) {
            return Ok(false);
        }
        let removed = remove()?;
        drop(table);
        Ok(removed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContentId, usize>> {
        self.in_use.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut map = self.leases.lock();
        if let Some(n) = map.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.id);
            }
        }
    }
}

/// Removes least-recently-used content that is neither pinned, nor published in place, nor in
/// use, until the bytes the store holds are at most `cap`. Returns what was removed, oldest
/// first. Content in use stays even if the cap cannot be met without it.
///
/// Pass the store itself, never a [`CappedStore`] sharing `leases` (its `remove` takes the same
/// lease table and would wait for itself).
pub fn evict_to(
    store: &dyn SegmentStore,
    cap: u64,
    leases: &Leases,
) -> Result<Vec<ContentId>, StoreError> {
    let mut stored = store.usage()?.stored_bytes;
    let mut candidates: Vec<_> = store
        .list()?
        .into_iter()
        .filter(|r| !r.pinned && !matches!(r.origin, Origin::Published { .. }))
        .collect();
    candidates.sort_by_key(|r| r.last_used_ms);
    let mut removed = Vec::new();
    for r in candidates {
        if stored <= cap {
            break;
        }
        // The list may be stale: pinned or published since? Then it stays.
        let still_evictable = || -> Result<bool, StoreError> {
            Ok(store
                .record(&r.id)?
                .is_some_and(|now| !now.pinned && !matches!(now.origin, Origin::Published { .. })))
        };
        let remove = || {
            if still_evictable()? {
                store.remove(&r.id)
            } else {
                Ok(false)
            }
        };
        if leases.remove_unless_in_use(&r.id, remove)? {
            stored = store.usage()?.stored_bytes;
            removed.push(r.id);
        }
    }
    Ok(removed)
}

/// A store with a size cap: after blocks are added it evicts least-recently-used content (see
/// [`evict_to`]) so that the bytes it holds stay near `cap`. The check runs every
/// [`CappedStore::CHECK_EVERY`] blocks and whenever a block completes the end of a segment, so
/// the cap may be passed by that many blocks for a moment.
/// The content being written is leased while eviction runs, so it is never evicted under its
/// own writer; [`SegmentStore::remove`] through this store also refuses (returns `false`) while
/// the content is leased.
#[derive(Debug)]
pub struct CappedStore<S> {
    inner: S,
    cap: u64,
    leases: Leases,
    puts: std::sync::atomic::AtomicU64,
}

impl<S: SegmentStore> CappedStore<S> {
    /// Blocks stored between two eviction checks (64 blocks: 4 MiB).
    pub const CHECK_EVERY: u64 = 64;

    /// Wraps `inner`, keeping the bytes it holds at most `cap` (bytes).
    pub fn new(inner: S, cap: u64, leases: Leases) -> Self {
        CappedStore {
            inner,
            cap,
            leases,
            puts: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The leases that protect content in use from eviction.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// After `blocks` blocks ending with `last` were stored: evicts when the count crossed a
    /// multiple of [`CappedStore::CHECK_EVERY`], or when `last` ends its segment.
    fn after_put(
        &self,
        id: &ContentId,
        last: crate::content::BlockIdx,
        blocks: u64,
    ) -> Result<(), StoreError> {
        let before = self
            .puts
            .fetch_add(blocks, std::sync::atomic::Ordering::Relaxed);
        let crossed = before / Self::CHECK_EVERY != (before + blocks) / Self::CHECK_EVERY;
        let ends_segment = self.inner.content_info(id)?.is_some_and(|info| {
            last.index_in_segment() + 1 == info.layout().blocks_in_segment(last.segment())
        });
        // The blocks are stored: an eviction that fails does not fail their write.
        if (crossed || ends_segment)
            && let Err(e) = evict_to(&self.inner, self.cap, &self.leases)
        {
            tracing::warn!("evicting to the cache's cap: {e}");
        }
        Ok(())
    }

    /// [`CappedStore::after_put`] for the run `data` starting at `first` (already stored).
    fn after_run(
        &self,
        id: &ContentId,
        first: crate::content::BlockIdx,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let Some(info) = self.inner.content_info(id)? else {
            return Ok(());
        };
        let blocks = super::split_blocks(id, info.layout(), first, data)?;
        match blocks.last() {
            Some((last, _)) => self.after_put(id, *last, blocks.len() as u64),
            None => Ok(()),
        }
    }
}

impl<S: SegmentStore> SegmentStore for CappedStore<S> {
    fn put_content(
        &self,
        info: &crate::content::ContentInfo,
        name: &str,
        origin: Origin,
    ) -> Result<bool, StoreError> {
        self.inner.put_content(info, name, origin)
    }

    fn content_info(
        &self,
        id: &ContentId,
    ) -> Result<Option<Arc<crate::content::ContentInfo>>, StoreError> {
        self.inner.content_info(id)
    }

    fn record(&self, id: &ContentId) -> Result<Option<super::ContentRecord>, StoreError> {
        self.inner.record(id)
    }

    fn list(&self) -> Result<Vec<super::ContentRecord>, StoreError> {
        self.inner.list()
    }

    fn put_block(
        &self,
        id: &ContentId,
        block: crate::content::BlockIdx,
        data: &[u8],
    ) -> Result<(), StoreError> {
        // Leased while it is written, so that no eviction (from this writer or another) can
        // remove it under the write.
        let _writing = self.leases.lease(*id);
        self.inner.put_block(id, block, data)?;
        self.after_put(id, block, 1)
    }

    fn put_blocks(
        &self,
        id: &ContentId,
        first: crate::content::BlockIdx,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let _writing = self.leases.lease(*id);
        self.inner.put_blocks(id, first, data)?;
        self.after_run(id, first, data)
    }

    fn put_blocks_lazy(
        &self,
        id: &ContentId,
        first: crate::content::BlockIdx,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let _writing = self.leases.lease(*id);
        self.inner.put_blocks_lazy(id, first, data)?;
        self.after_run(id, first, data)
    }

    fn sync_content(&self, id: &ContentId) -> Result<(), StoreError> {
        self.inner.sync_content(id)
    }

    fn get_block(
        &self,
        id: &ContentId,
        block: crate::content::BlockIdx,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_block(id, block)
    }

    fn get_blocks(
        &self,
        id: &ContentId,
        first: crate::content::BlockIdx,
        count: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        // Forwarded, not the trait's block-by-block default: the store reads a run at once.
        self.inner.get_blocks(id, first, count)
    }

    fn present(
        &self,
        id: &ContentId,
        seg: crate::content::SegmentIdx,
    ) -> Result<super::BlockSet, StoreError> {
        self.inner.present(id, seg)
    }

    fn mark_missing(
        &self,
        id: &ContentId,
        block: crate::content::BlockIdx,
    ) -> Result<(), StoreError> {
        self.inner.mark_missing(id, block)
    }

    fn repair_block(
        &self,
        id: &ContentId,
        block: crate::content::BlockIdx,
    ) -> Result<bool, StoreError> {
        self.inner.repair_block(id, block)
    }

    fn set_pinned(&self, id: &ContentId, pinned: bool) -> Result<(), StoreError> {
        self.inner.set_pinned(id, pinned)
    }

    fn remove(&self, id: &ContentId) -> Result<bool, StoreError> {
        self.leases
            .remove_unless_in_use(id, || self.inner.remove(id))
    }

    fn usage(&self) -> Result<super::Usage, StoreError> {
        self.inner.usage()
    }
}
