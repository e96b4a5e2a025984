//! Folders that survive a power cut: creating them with their entries synced, and syncing a
//! folder's entries (what the store's crash rules rely on; see DESIGN.md, *Ordering and crash
//! consistency*).

use std::fs;
use std::path::Path;

/// Creates `dir` and its missing parents; with `durable`, syncs the parent of each folder
/// created, so that its entry survives a power cut.
pub(super) fn create_dirs(dir: &Path, durable: bool) -> std::io::Result<()> {
    let mut created = Vec::new();
    let mut p = Some(dir);
    while let Some(d) = p.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        created.push(d);
        p = d.parent();
    }
    fs::create_dir_all(dir)?;
    if durable {
        for d in created.iter().rev() {
            match d.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
                _ => sync_dir(Path::new("."))?,
            }
        }
    }
    Ok(())
}

/// Syncs the entries of folder `dir`.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
