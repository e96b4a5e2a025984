//! Where a node keeps content information and blocks: the [`SegmentStore`] trait, which speaks
//! pdist's domain (content IDs, segments, blocks) and not any database's, and its two
//! implementations, run through one conformance suite:
//!
//! * [`MemStore`]: in memory, the test twin;
//! * [`RocksStore`] (feature `rocksdb`): RocksDB for metadata, plain files for block bytes.
//!
//! Rules every implementation keeps (DESIGN.md, "Store"):
//!
//! * A block is stored only after it has been checked against its content information, and it is
//!   marked present only once its bytes are durable. Nothing unverified is ever served.
//! * Content published in place costs only metadata: its blocks are read from the original file
//!   and checked again on every read; a file that changed (size, modification time, or a block
//!   that no longer matches) has its blocks marked missing, never served wrong.
//! * The same content ID is stored once, however often it is added.

pub mod blockset;
#[cfg(feature = "rocksdb")]
mod durable;
pub mod evict;
pub mod mem;
mod publish;
#[cfg(feature = "rocksdb")]
pub mod rocks;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;

pub use blockset::BlockSet;
pub use evict::{CappedStore, Lease, Leases, evict_to};
pub use mem::MemStore;
pub use publish::{PublishError, name_of, publish_file};
#[cfg(feature = "rocksdb")]
pub use rocks::{RocksStore, RocksStoreOptions};
pub use verify::{Verified, verify, verify_content};

use crate::content::{BlockIdx, ContentId, ContentInfo, SegmentIdx, VerifyError};

/// Where a content's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Origin {
    /// Published in place: the bytes stay in the user's file, which must not change.
    Published {
        /// Absolute path of the file.
        path: PathBuf,
        /// Its size when it was hashed.
        size: u64,
        /// Its modification time when it was hashed, in nanoseconds since the Unix epoch.
        mtime_ns: i64,
    },
    /// Published with its bytes copied into the store.
    Copied,
    /// Fetched from peers or an origin, block by block.
    Fetched,
}

/// What the store knows about one content, besides its content information.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContentRecord {
    /// The content ID.
    pub id: ContentId,
    /// A name for people (the file name it was published or fetched as).
    pub name: String,
    /// Content length in bytes.
    pub len: u64,
    /// Blocks in the content.
    pub blocks_total: u64,
    /// Blocks present and verified.
    pub blocks_present: u64,
    /// Where the bytes come from.
    pub origin: Origin,
    /// Pinned content is never evicted.
    pub pinned: bool,
    /// Last time it was added or read, in milliseconds since the Unix epoch.
    pub last_used_ms: u64,
}

/// Space the store uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Contents known.
    pub contents: u64,
    /// Bytes of blocks held in the store itself (fetched or copied content).
    pub stored_bytes: u64,
    /// Bytes of content published in place (not held by the store).
    pub in_place_bytes: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Blocks handed to `put_blocks` that do not end at a block boundary within one segment, or
    /// asked of `get_blocks` past their segment.
    #[error("blocks given for content {id} do not end at a block boundary within one segment")]
    BadBlockRun {
        /// The content.
        id: ContentId,
    },
    /// No content with this ID.
    #[error("no content {id} in the store")]
    UnknownContent {
        /// The ID asked for.
        id: ContentId,
    },
    /// Bytes offered for a block do not check out against the content information.
    #[error("block rejected: {0}")]
    Verify(#[from] VerifyError),
    /// Reading or writing files failed (the source says why: e.g. no space left on device).
    #[error(
        "{op}{}: {source}",
        .path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default()
    )]
    Io {
        /// What was being done.
        op: &'static str,
        /// To which file or folder, when one is concerned.
        path: Option<std::path::PathBuf>,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database failed.
    #[error("database: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Another process has the store open.
    #[error("{} is in use by another pdist process ({source})", .dir.display())]
    InUse {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The database's refusal.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A block the content needs is not in the store.
    #[error("content {id}: block {block} is missing")]
    MissingBlock {
        /// The content.
        id: ContentId,
        /// The block (its index in the content).
        block: u64,
    },
    /// A layout computation failed (stored content information that does not add up).
    #[error("{0}")]
    Layout(#[from] crate::content::LayoutError),
    /// Content published in place takes its blocks from its file, not from `put_block`.
    #[error("content {id} is published in place: its blocks come from its file")]
    PublishedInPlace {
        /// The content.
        id: ContentId,
    },
    /// Stored data is damaged (a record that does not decode).
    #[error("corrupt store record {family}/{}: {source}", hex::encode(.key))]
    Corrupt {
        /// Which kind of record.
        family: &'static str,
        /// Its key.
        key: Vec<u8>,
        /// What is wrong.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A stored bitmap of present blocks whose length does not fit its segment.
#[derive(Debug, thiserror::Error)]
#[error("{len} bytes for {blocks} blocks")]
pub struct BadBitmap {
    /// Its length.
    pub len: usize,
    /// The segment's blocks.
    pub blocks: u32,
}

impl StoreError {
    /// An I/O failure doing `op`.
    pub fn io(op: &'static str, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: None,
            source,
        }
    }

    /// An I/O failure doing `op` to `path`.
    pub fn io_at(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: Some(path.to_path_buf()),
            source,
        }
    }

    #[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
    pub(crate) fn corrupt(
        family: &'static str,
        key: &[u8],
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Corrupt {
            family,
            key: key.to_vec(),
            source: Box::new(source),
        }
    }
}

/// A node's store of content information and verified blocks.
///
/// Methods take `&self` and are safe to call from many threads. They block (disk I/O); async
/// callers use `spawn_blocking`.
pub trait SegmentStore: Send + Sync + std::fmt::Debug + 'static {
    /// Adds content information. Returns `false` when the content was already known: it is
    /// stored once and keeps its first name; its origin changes as a user would expect
    /// (publishing a file again points at that file and makes every block present; `--copy`
    /// turns published or fetched content into copied content, whose blocks are present once
    /// copied; fetching what is here changes nothing). Content published in place has every
    /// block present at once.
    fn put_content(
        &self,
        info: &ContentInfo,
        name: &str,
        origin: Origin,
    ) -> Result<bool, StoreError>;

    /// The content information of `id`.
    fn content_info(&self, id: &ContentId) -> Result<Option<Arc<ContentInfo>>, StoreError>;

    /// The record of `id`.
    fn record(&self, id: &ContentId) -> Result<Option<ContentRecord>, StoreError>;

    /// Every content, in no particular order.
    fn list(&self) -> Result<Vec<ContentRecord>, StoreError>;

    /// Stores a block after checking it against the content information; it is marked present
    /// only once its bytes are durable. Storing a block already present does nothing. Content
    /// published in place refuses ([`StoreError::PublishedInPlace`]).
    fn put_block(&self, id: &ContentId, block: BlockIdx, data: &[u8]) -> Result<(), StoreError>;

    /// Stores consecutive blocks of one segment, starting at `first`; `data` holds their bytes
    /// in order. The same as [`SegmentStore::put_block`] for each, except that a store may make
    /// them durable together (one sync instead of one per block), as a fetcher needs.
    fn put_blocks(&self, id: &ContentId, first: BlockIdx, data: &[u8]) -> Result<(), StoreError> {
        let info = self
            .content_info(id)?
            .ok_or(StoreError::UnknownContent { id: *id })?;
        let blocks = split_blocks(id, info.layout(), first, data)?;
        // All or nothing: every block is checked before any is stored.
        for (block, bytes) in &blocks {
            info.verify_block(*block, bytes)?;
        }
        for (block, bytes) in blocks {
            self.put_block(id, block, bytes)?;
        }
        Ok(())
    }

    /// Like [`SegmentStore::put_blocks`], but the bytes need not be durable before they are
    /// marked present: a fetcher stores runs this way and calls
    /// [`SegmentStore::sync_content`] when it is done. After a power loss in between, a block
    /// marked present may have lost its bytes; the hash check on every read then finds it
    /// missing, so it is fetched again, never served wrong.
    fn put_blocks_lazy(
        &self,
        id: &ContentId,
        first: BlockIdx,
        data: &[u8],
    ) -> Result<(), StoreError> {
        self.put_blocks(id, first, data)
    }

    /// Makes every block of `id` stored so far durable.
    fn sync_content(&self, id: &ContentId) -> Result<(), StoreError> {
        let _ = id;
        Ok(())
    }

    /// A present block's bytes, or `None` when it is not present. Every block is checked against
    /// its hash as it is read (from the store, or from the file of content published in place);
    /// a block that no longer matches, or whose bytes are gone, is marked missing and `None` is
    /// returned.
    fn get_block(&self, id: &ContentId, block: BlockIdx) -> Result<Option<Vec<u8>>, StoreError>;

    /// Blocks `first..first + count` (consecutive, within `first`'s segment) as one buffer,
    /// each checked as [`SegmentStore::get_block`] checks it; `None` when any of them is not
    /// present (a bad one is marked missing). A store may read them together.
    fn get_blocks(
        &self,
        id: &ContentId,
        first: BlockIdx,
        count: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let info = self
            .content_info(id)?
            .ok_or(StoreError::UnknownContent { id: *id })?;
        let blocks = run_blocks(id, info.layout(), first, count)?;
        concat_blocks(self, id, &blocks)
    }

    /// Which blocks of a segment are present and verified.
    fn present(&self, id: &ContentId, seg: SegmentIdx) -> Result<BlockSet, StoreError>;

    /// Marks a block missing (its bytes turned out wrong or gone).
    fn mark_missing(&self, id: &ContentId, block: BlockIdx) -> Result<(), StoreError>;

    /// Re-hashes whatever bytes the store or the published file holds for a block and sets its
    /// present bit to match: `true` when the block is now present. This repairs the present-map
    /// after a crash (bytes written but not yet marked) or a file that was restored.
    fn repair_block(&self, id: &ContentId, block: BlockIdx) -> Result<bool, StoreError>;

    /// Pins or unpins content.
    fn set_pinned(&self, id: &ContentId, pinned: bool) -> Result<(), StoreError>;

    /// Removes content and its stored blocks. Returns `false` when it was not there.
    fn remove(&self, id: &ContentId) -> Result<bool, StoreError>;

    /// Space used.
    fn usage(&self) -> Result<Usage, StoreError>;
}

/// What adding known content with a new origin does to its record (the same rule for every
/// store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OriginChange {
    /// Nothing changes but the last-used time (fetching what is already here, or publishing in
    /// place what is already copied).
    Keep,
    /// The bytes now come from a (re-)published file: every block is present, stored copies go.
    InPlace(Origin),
    /// The bytes are being copied into the store: stored blocks stay present, blocks that came
    /// from a published file are not present until copied.
    Copy,
}

pub(crate) fn origin_change(existing: &Origin, new: Origin) -> OriginChange {
    match (existing, new) {
        (_, Origin::Fetched) | (Origin::Copied, Origin::Published { .. }) => OriginChange::Keep,
        (_, new @ Origin::Published { .. }) => OriginChange::InPlace(new),
        (Origin::Copied, Origin::Copied) => OriginChange::Keep,
        (_, Origin::Copied) => OriginChange::Copy,
    }
}

/// Milliseconds since the Unix epoch, now.
/// Splits `data` into the consecutive blocks that start at `first`; they must end at a block
/// boundary and stay within `first`'s segment.
/// `blocks` read one by one with [`SegmentStore::get_block`], in one buffer; `None` when any is
/// not present.
pub(crate) fn concat_blocks<S: SegmentStore + ?Sized>(
    store: &S,
    id: &ContentId,
    blocks: &[BlockIdx],
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut out = Vec::new();
    for b in blocks {
        match store.get_block(id, *b)? {
            Some(data) => out.extend_from_slice(&data),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// The blocks of a run of `count` from `first`, which must stay within `first`'s segment.
pub(crate) fn run_blocks(
    id: &ContentId,
    layout: &crate::content::Layout,
    first: BlockIdx,
    count: u32,
) -> Result<Vec<BlockIdx>, StoreError> {
    let seg = first.segment();
    let blocks = (0..u64::from(count))
        .map(|k| layout.block_at(first.global() + k).ok())
        .collect::<Option<Vec<_>>>()
        .filter(|b| b.iter().all(|b| b.segment() == seg));
    blocks.ok_or(StoreError::BadBlockRun { id: *id })
}

pub(crate) fn split_blocks<'a>(
    id: &ContentId,
    layout: &crate::content::Layout,
    first: BlockIdx,
    mut data: &'a [u8],
) -> Result<Vec<(BlockIdx, &'a [u8])>, StoreError> {
    let seg = first.segment();
    let mut out = Vec::new();
    let mut i = first.index_in_segment();
    while !data.is_empty() {
        let block = layout
            .block(seg, i)
            .map_err(|_| StoreError::BadBlockRun { id: *id })?;
        let len = layout.block_len(block) as usize;
        if data.len() < len {
            return Err(StoreError::BadBlockRun { id: *id });
        }
        let (now, rest) = data.split_at(len);
        out.push((block, now));
        data = rest;
        i += 1;
    }
    Ok(out)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The origin of a file published in place, from its metadata.
pub fn published_origin(path: &std::path::Path) -> Result<Origin, StoreError> {
    let op = "reading metadata of";
    let path = std::fs::canonicalize(path).map_err(|e| StoreError::io_at(op, path, e))?;
    let meta = std::fs::metadata(&path).map_err(|e| StoreError::io_at(op, &path, e))?;
    Ok(Origin::Published {
        size: meta.len(),
        mtime_ns: mtime_ns(&meta),
        path,
    })
}

pub(crate) fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    match meta.modified() {
        Ok(t) => match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
        },
        Err(_) => 0,
    }
}

/// Reads and checks one block of a file published in place. `Ok(None)` when the file changed
/// or the block no longer matches (the caller marks it missing).
pub(crate) fn read_published_block(
    info: &ContentInfo,
    origin: &Origin,
    block: BlockIdx,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Origin::Published {
        path,
        size,
        mtime_ns: mtime,
    } = origin
    else {
        return Ok(None);
    };
    // Only a definite answer marks a block missing: the file is gone, changed, shorter, or the
    // bytes do not match. Anything else (no file descriptors left, permissions) is an error
    // for the caller, and the block stays present.
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io_at("reading", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| StoreError::io_at("reading", path, e))?;
    if meta.len() != *size || mtime_ns(&meta) != *mtime {
        return Ok(None);
    }
    let layout = info.layout();
    let mut buf = vec![0u8; layout.block_len(block) as usize];
    match read_exact_at(&file, &mut buf, layout.block_offset(block)) {
        Ok(()) => Ok(info.verify_block(block, &buf).is_ok().then_some(buf)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(StoreError::io_at("reading", path, e)),
    }
}

/// Stores every block of `file` (whose content information is `info`) in `store`, each checked
/// on the way in; blocks already present are skipped, so an interrupted copy resumes. Missing
/// blocks go in runs of up to 16 (one sync each, see [`SegmentStore::put_blocks`]).
pub fn copy_file_blocks(
    store: &dyn SegmentStore,
    info: &ContentInfo,
    file: &std::fs::File,
) -> Result<(), StoreError> {
    const RUN: usize = 16;
    let layout = info.layout();
    let mut buf = Vec::new();
    for seg in layout.segments() {
        let present = store.present(&info.id(), seg)?;
        let missing: Vec<BlockIdx> = layout
            .blocks(seg)
            .filter(|b| !present.contains(b.index_in_segment()))
            .collect();
        // Runs of consecutive missing blocks, at most RUN long.
        for run in missing
            .chunk_by(|a, b| a.index_in_segment() + 1 == b.index_in_segment())
            .flat_map(|r| r.chunks(RUN))
        {
            let start = layout.block_offset(run[0]);
            let end = layout.block_range(run[run.len() - 1]).end;
            buf.resize((end - start) as usize, 0);
            read_exact_at(file, &mut buf, start)
                .map_err(|e| StoreError::io("reading the file to copy", e))?;
            store.put_blocks(&info.id(), run[0], &buf)?;
        }
    }
    Ok(())
}

/// Positional read of exactly `buf.len()` bytes.
/// `len` bytes of `file` from `offset` into a new buffer, which is not zeroed first (the
/// standard library reads a file into spare capacity): a run of blocks served to a client is
/// then copied once, by the kernel, not cleared and then copied.
#[cfg(feature = "rocksdb")]
pub(crate) fn read_vec_at(
    file: &std::fs::File,
    offset: u64,
    len: usize,
) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek};
    let mut f = file;
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

pub(crate) fn read_exact_at(
    file: &std::fs::File,
    buf: &mut [u8],
    offset: u64,
) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek};
        let mut f = file;
        f.seek(std::io::SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}
