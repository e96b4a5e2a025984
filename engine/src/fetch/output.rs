//! Writing fetched content out of the store: in order, every block checked as it is read, with
//! memory bounded by one block.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::content::ContentInfo;
use crate::store::{SegmentStore, StoreError};

/// Writes the whole content to `out`. Fails if a block is missing.
pub fn write_content(
    store: &dyn SegmentStore,
    info: &ContentInfo,
    out: &mut dyn Write,
) -> Result<(), StoreError> {
    let id = info.id();
    let layout = info.layout();
    for seg in layout.segments() {
        for block in layout.blocks(seg) {
            let data = store.get_block(&id, block)?.ok_or_else(|| {
                StoreError::io(
                    format!("content {id}"),
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("block {} is missing", block.global()),
                    ),
                )
            })?;
            out.write_all(&data)
                .map_err(|e| StoreError::io("writing the output", e))?;
        }
    }
    Ok(())
}

/// Writes the whole content to `path` through a temporary file beside it (random name, created
/// exclusively), synced and renamed over `path`: a reader sees no file or the whole one.
pub fn write_content_atomically(
    store: &dyn SegmentStore,
    info: &ContentInfo,
    path: &Path,
) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let ctx = |what: &str| format!("{what} {}", path.display());
    let tmp = tempfile::Builder::new()
        .prefix(".pdist-")
        .suffix(".part")
        .tempfile_in(&dir)
        .map_err(|e| StoreError::io(ctx("creating a temporary file for"), e))?;
    let mut w = io::BufWriter::with_capacity(1 << 20, tmp);
    write_content(store, info, &mut w)?;
    let tmp = w
        .into_inner()
        .map_err(|e| StoreError::io(ctx("writing"), e.into_error()))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| StoreError::io(ctx("syncing"), e))?;
    tmp.persist(path)
        .map_err(|e| StoreError::io(ctx("renaming into"), e.error))?;
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(ctx("syncing the folder of"), e))
}
