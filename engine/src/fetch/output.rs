//! Writing fetched content out of the store: in order, every block checked as it is read, with
//! memory bounded by one block.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::content::ContentInfo;
use crate::store::{BlockSet, SegmentStore, StoreError};

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
            let data = stored_block(store, &id, block)?;
            out.write_all(&data)
                .map_err(|e| StoreError::io("writing the output", e))?;
        }
    }
    Ok(())
}

/// A block that must be in the store.
fn stored_block(
    store: &dyn SegmentStore,
    id: &crate::ContentId,
    block: crate::content::BlockIdx,
) -> Result<Vec<u8>, StoreError> {
    store.get_block(id, block)?.ok_or(StoreError::MissingBlock {
        id: *id,
        block: block.global(),
    })
}

/// Stored content as a reader, a run of blocks at a time (each block checked as the store
/// checks it); a missing block is an error.
#[derive(Debug)]
pub struct ContentReader<'a> {
    store: &'a dyn SegmentStore,
    info: &'a ContentInfo,
    next: u64,
    buf: Vec<u8>,
    at: usize,
}

impl<'a> ContentReader<'a> {
    /// Reads `info`'s content from `store`.
    pub fn new(store: &'a dyn SegmentStore, info: &'a ContentInfo) -> Self {
        ContentReader {
            store,
            info,
            next: 0,
            buf: Vec::new(),
            at: 0,
        }
    }
}

impl io::Read for ContentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buf.len() {
            let layout = self.info.layout();
            if self.next >= layout.block_count() {
                return Ok(0);
            }
            let block = layout.block_at(self.next).map_err(io::Error::other)?;
            let left = layout.blocks_in_segment(block.segment()) - block.index_in_segment();
            let n = left.min(16);
            self.buf = self
                .store
                .get_blocks(&self.info.id(), block, n)
                .map_err(io::Error::other)?
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("blocks from {} are missing", self.next),
                    )
                })?;
            self.at = 0;
            self.next += u64::from(n);
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Writes the whole content to `path` atomically ([`PartFile`]): a reader sees no file or the
/// whole one.
pub fn write_content_atomically(
    store: &dyn SegmentStore,
    info: &ContentInfo,
    path: &Path,
) -> Result<(), StoreError> {
    let part = PartFile::create(path)?;
    let sink = part.sink();
    let mut w = io::BufWriter::with_capacity(1 << 20, &*sink);
    write_content(store, info, &mut w)?;
    w.flush()
        .map_err(|e| StoreError::io_at("writing", path, e))?;
    drop(w);
    part.commit_len(info.layout().content_len())
}

/// pdist's one way of writing a file atomically: a temporary file beside the destination
/// (random name, created exclusively, with the permissions asked for), filled (a fetch
/// writes verified runs of blocks into it at their offsets), then synced, renamed over the
/// destination and the folder synced, so a reader sees the old file or the whole new one, also
/// after a crash. Dropped without [`PartFile::commit`], it is removed, unless it was made to
/// be resumed ([`PartFile::resumable`]).
#[derive(Debug)]
pub struct PartFile {
    /// Taken by a commit (and by the drop of a resumable part, which keeps it).
    tmp: Option<tempfile::NamedTempFile>,
    file: Arc<fs::File>,
    path: PathBuf,
    resumable: bool,
}

impl PartFile {
    /// A new temporary file for `path` (random name, created exclusively, in the same folder),
    /// readable by everyone like a file the user made (0644).
    pub fn create(path: &Path) -> Result<PartFile, StoreError> {
        PartFile::create_with_mode(path, 0o644)
    }

    /// [`PartFile::create`] with the permissions `mode` (0600 for what only the user may read,
    /// such as content information, which holds its segments' secrets).
    pub fn create_with_mode(path: &Path, mode: u32) -> Result<PartFile, StoreError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".pdist-")
            .suffix(".part")
            .tempfile_in(&dir)
            .map_err(|e| StoreError::io_at("creating a temporary file for", path, e))?;
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| StoreError::io("setting the output's permissions", e))?;
        }
        let file = Arc::new(
            tmp.as_file()
                .try_clone()
                .map_err(|e| StoreError::io("opening the temporary file", e))?,
        );
        Ok(PartFile {
            tmp: Some(tmp),
            file,
            path: path.to_path_buf(),
            resumable: false,
        })
    }

    /// A part file for `path` that outlives the fetch that writes it (cancelled, failed or
    /// killed): named after the destination and `tag` (`.NAME.TAG.pdist-part` beside it), so
    /// the next fetch of the same content into the same path opens it again and goes on from
    /// what it holds ([`PartFile::held`]). It is locked while open, so two fetches never write
    /// one part. Dropped without a commit it stays; [`PartFile::discard`] removes it.
    pub fn resumable(path: &Path, tag: &str) -> Result<PartFile, StoreError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                let e = io::Error::new(io::ErrorKind::InvalidInput, "not a file name");
                StoreError::io_at("writing", path, e)
            })?;
        let part = path.with_file_name(format!(".{name}.{tag}.pdist-part"));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(|e| StoreError::io_at("opening the part file", &part, e))?;
        if let Err(e) = file.try_lock() {
            let e = match e {
                fs::TryLockError::WouldBlock => {
                    io::Error::new(io::ErrorKind::WouldBlock, "another fetch is writing it")
                }
                fs::TryLockError::Error(e) => e,
            };
            return Err(StoreError::io_at("locking the part file", &part, e));
        }
        let sink = file
            .try_clone()
            .map_err(|e| StoreError::io_at("opening the part file", &part, e))?;
        let path_of_part = tempfile::TempPath::try_from_path(&part)
            .map_err(|e| StoreError::io_at("opening the part file", &part, e))?;
        let tmp = tempfile::NamedTempFile::from_parts(file, path_of_part);
        Ok(PartFile {
            tmp: Some(tmp),
            file: Arc::new(sink),
            path: path.to_path_buf(),
            resumable: true,
        })
    }

    /// Bytes the part file holds now (what an earlier fetch into a resumable part left).
    pub fn held(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }

    /// Removes the part file (its bytes are known to be wrong, or not wanted).
    pub fn discard(mut self) {
        // A dropped temporary path removes its file.
        drop(self.tmp.take());
    }

    /// The destination it is renamed to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where fetched runs go (see [`super::FetchOptions::sink`]).
    pub fn sink(&self) -> Arc<fs::File> {
        Arc::clone(&self.file)
    }

    /// [`PartFile::commit`], the file cut (or extended) to exactly `len` bytes first: an
    /// output is never committed longer than its content, whatever was written past its end.
    pub fn commit_len(self, len: u64) -> Result<(), StoreError> {
        self.file
            .set_len(len)
            .map_err(|e| StoreError::io_at("setting the length of", &self.path, e))?;
        self.commit()
    }

    /// Syncs the file and renames it into place; a reader sees no file or the whole one.
    pub fn commit(mut self) -> Result<(), StoreError> {
        let tmp = self.tmp.take().expect("a part is committed once");
        tmp.as_file()
            .sync_all()
            .map_err(|e| StoreError::io_at("syncing", &self.path, e))?;
        let dir = tmp.path().parent().map(Path::to_path_buf);
        tmp.persist(&self.path)
            .map_err(|e| StoreError::io_at("renaming into", &self.path, e.error))?;
        if let Some(dir) = dir {
            fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::io_at("syncing the folder of", &self.path, e))?;
        }
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take()
            && self.resumable
        {
            // Kept for the next fetch to go on from.
            let _ = tmp.keep();
        }
    }
}

/// Copies into `sink` every block of `info` that `skip` does not mark as written already
/// (`None`: every block), reading it from the store (checked on read).
pub fn fill_sink(
    store: &dyn SegmentStore,
    info: &ContentInfo,
    sink: &fs::File,
    skip: Option<&[BlockSet]>,
) -> Result<(), StoreError> {
    use std::os::unix::fs::FileExt;
    let id = info.id();
    let layout = info.layout();
    for seg in layout.segments() {
        let done = skip.and_then(|s| s.get(seg.get() as usize));
        for block in layout.blocks(seg) {
            if done.is_some_and(|d| d.contains(block.index_in_segment())) {
                continue;
            }
            let data = stored_block(store, &id, block)?;
            sink.write_all_at(&data, layout.block_offset(block))
                .map_err(|e| StoreError::io("writing the output", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_is_committed_at_its_content_length() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let part = PartFile::create(&path).unwrap();
        // Something wrote past the end (a lying source, a bug): it is cut off.
        part.sink().write_all_at(&[7u8; 5000], 0).unwrap();
        assert!(!path.exists(), "nothing in place before the commit");
        part.commit_len(4096).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 4096]);
        // Short writes are extended to the length (the holes are blocks written elsewhere).
        let part = PartFile::create(&path).unwrap();
        part.sink().write_all_at(b"abc", 0).unwrap();
        part.commit_len(10).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc\0\0\0\0\0\0\0");
    }
}
