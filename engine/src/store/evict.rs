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
    fn remove_unless_in_use(
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
        if leases.remove_unless_in_use(&r.id, || store.remove(&r.id))? {
            stored = store.usage()?.stored_bytes;
            removed.push(r.id);
        }
    }
    Ok(removed)
}
