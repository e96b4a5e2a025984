//! Checking what the store holds (`pdist verify`): every block of a content is re-hashed
//! (stored blocks and blocks of files published in place alike) and its present bit repaired
//! both ways, so a damaged block becomes missing and a restored file's blocks come back.

use crate::content::ContentId;

use super::{ContentRecord, SegmentStore, StoreError};

/// What checking one content found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verified {
    /// The content.
    pub id: ContentId,
    /// Its name.
    pub name: String,
    /// Its blocks.
    pub blocks_total: u64,
    /// Blocks present and matching their hashes now.
    pub good: u64,
    /// Blocks that were marked present and no longer match (now missing).
    pub lost: u64,
    /// Blocks that were missing and match again (now present).
    pub restored: u64,
}

/// Checks every block of `record`'s content, repairing the store's record of which are present.
pub fn verify_content(
    store: &dyn SegmentStore,
    record: &ContentRecord,
) -> Result<Verified, StoreError> {
    let id = record.id;
    let info = store
        .content_info(&id)?
        .ok_or(StoreError::UnknownContent { id })?;
    let layout = info.layout();
    let (mut good, mut lost, mut restored) = (0u64, 0u64, 0u64);
    for seg in layout.segments() {
        let before = store.present(&id, seg)?;
        for block in layout.blocks(seg) {
            let was = before.contains(block.index_in_segment());
            let now = store.repair_block(&id, block)?;
            match (was, now) {
                (_, true) => good += 1,
                (true, false) => lost += 1,
                (false, false) => {}
            }
            if !was && now {
                restored += 1;
            }
        }
    }
    Ok(Verified {
        id,
        name: record.name.clone(),
        blocks_total: record.blocks_total,
        good,
        lost,
        restored,
    })
}

/// Checks `only` (or every content in the store).
pub fn verify(
    store: &dyn SegmentStore,
    only: Option<&ContentId>,
) -> Result<Vec<Verified>, StoreError> {
    let records = match only {
        Some(id) => vec![
            store
                .record(id)?
                .ok_or(StoreError::UnknownContent { id: *id })?,
        ],
        None => store.list()?,
    };
    records.iter().map(|r| verify_content(store, r)).collect()
}
