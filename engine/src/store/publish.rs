//! Publishing a file: hash it with the group's secret and register it in the store, in place
//! (the file keeps serving its blocks) or copied (pinned).

use std::path::{Path, PathBuf};

use crate::content::{ContentInfo, HashError, HashOptions, ServerSecret, hash_file};

use super::{Origin, SegmentStore, StoreError, copy_file_blocks, published_origin};

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The file could not be opened or read.
    #[error("{}: {source}", .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Hashing failed.
    #[error("hashing {}: {source}", .path.display())]
    Hash {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: HashError,
    },
    /// The store failed.
    #[error("publishing {}: {source}", .path.display())]
    Store {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: StoreError,
    },
}

/// The name a published file gets in the store: its file name.
pub fn name_of(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Publishes `path`; returns its content information and whether it is new to the store.
/// `progress` gets the bytes hashed so far.
pub fn publish_file(
    store: &dyn SegmentStore,
    path: &Path,
    secret: &ServerSecret,
    opts: &HashOptions,
    copy: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<(ContentInfo, bool), PublishError> {
    let p = || path.to_path_buf();
    let store_err = |source| PublishError::Store { path: p(), source };
    // Size and time are taken before hashing: a change while hashing is then caught on read.
    let origin = published_origin(path).map_err(store_err)?;
    let open = |source| PublishError::Open { path: p(), source };
    let file = std::fs::File::open(path).map_err(open)?;
    if file.metadata().map_err(open)?.is_dir() {
        let dir = std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory");
        return Err(open(dir));
    }
    let info = hash_file(&file, secret, opts, progress)
        .map_err(|source| PublishError::Hash { path: p(), source })?;
    let name = name_of(path);
    let new = if copy {
        let new = store
            .put_content(&info, &name, Origin::Copied)
            .map_err(store_err)?;
        // Pinned first: a copy that fails half-way (disk full, file changed) is kept for a
        // later run to resume, not evicted.
        store.set_pinned(&info.id(), true).map_err(store_err)?;
        copy_file_blocks(store, &info, &file).map_err(store_err)?;
        new
    } else {
        store.put_content(&info, &name, origin).map_err(store_err)?
    };
    Ok((info, new))
}
