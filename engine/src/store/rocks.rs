//! [`RocksStore`]: RocksDB for metadata, one plain file per segment for block bytes.
//!
//! Column families, keys laid out for prefix scans (content ID first, big-endian indices):
//!
//! | family    | key                    | value                                          |
//! |-----------|------------------------|------------------------------------------------|
//! | `info`    | content ID             | native content information (self-verifying)    |
//! | `record`  | content ID             | [`ContentRecord`] as JSON                      |
//! | `present` | content ID ‖ segment   | [`BlockSet`] bitmap of present, verified blocks |
//!
//! Block bytes live in `blocks/<content ID hex>/<segment, 8 hex digits>`, each block at its
//! offset within the segment. Ordering (DESIGN.md, "Store"): a block's bytes are written and
//! `fdatasync`ed (and a new file's directory entry synced) before the bitmap that marks it
//! present is written with a synced WAL write. A crash in between leaves bytes that nothing
//! marks present: they are overwritten when the block is stored again, never served.
//! RocksDB's lock file makes a second process opening the same directory fail cleanly.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::durable::{create_dirs, sync_dir};
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};

use super::{
    BlockSet, ContentRecord, Origin, OriginChange, SegmentStore, StoreError, Usage, now_ms,
    origin_change, read_published_block,
};
use crate::content::native;
use crate::content::{BlockIdx, ContentId, ContentInfo, SegmentIdx};

const CF_INFO: &str = "info";
const CF_RECORD: &str = "record";
const CF_PRESENT: &str = "present";
/// Per segment, a local checksum of each stored block (see [`block_sum`]).
const CF_SUMS: &str = "sums";
/// RocksDB's own write buffer for our small metadata: 16 MiB per column family.
const WRITE_BUFFER_BYTES: usize = 16 << 20;
/// Decoded content information kept in memory: at most this many contents (each holds its
/// block hashes: 512 KiB per GiB of content).
const INFO_CACHE_ENTRIES: usize = 32;
/// Reads update a content's last-used time at most this often (milliseconds).
const TOUCH_INTERVAL_MS: u64 = 1000;

/// How to open a [`RocksStore`].
#[derive(Debug, Clone)]
pub struct RocksStoreOptions {
    /// Sync every metadata write and block file (default `true`). Only tests and benchmarks of
    /// raw speed turn this off; a power loss may then lose recent blocks or leave their bytes
    /// wrong, which the hash check on every read turns into missing blocks, never wrong ones.
    pub sync: bool,
}

impl Default for RocksStoreOptions {
    fn default() -> Self {
        RocksStoreOptions { sync: true }
    }
}

/// The RocksDB-backed [`SegmentStore`].
pub struct RocksStore {
    db: DB,
    blocks_dir: PathBuf,
    opts: RocksStoreOptions,
    /// Serialises read-modify-write of records and bitmaps.
    write_lock: Mutex<()>,
    /// Decoded content information (decoding re-verifies it, so it is done once per content).
    infos: Mutex<HashMap<ContentId, Arc<ContentInfo>>>,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.db.path())
            .field("opts", &self.opts)
            .finish()
    }
}

fn backend(e: rocksdb::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn present_key(id: &ContentId, seg: u32) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(&id.0.0);
    k[32..].copy_from_slice(&seg.to_be_bytes());
    k
}

/// The local checksum of a stored block's bytes (XXH3-64; never 0, which means "none
/// recorded"). A block's SHA-256 is checked once, when it enters the store; its checksum,
/// written in the same batch as its present bit, is checked on every read. It catches what
/// the disk or a power loss did to the bytes (a torn or lost write), at about 20 times the
/// speed of SHA-256, so that serving a hit is not bound by hashing. Content published in place
/// is still checked against its SHA-256 on every read: its file is the user's to change.
fn block_sum(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data) | 1
}

/// The checksum of block `i` in a segment's checksums (`0`: none recorded).
fn sum_at(sums: &[u8], i: u32) -> u64 {
    let at = i as usize * 8;
    sums.get(at..at + 8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// Caches decoded content information. Crude but bounded: past the limit one entry goes
/// (decoding it again costs well under a millisecond per GiB of content).
fn cache_insert(cache: &mut HashMap<ContentId, Arc<ContentInfo>>, info: Arc<ContentInfo>) {
    if cache.len() >= INFO_CACHE_ENTRIES
        && let Some(k) = cache.keys().next().copied()
    {
        cache.remove(&k);
    }
    cache.insert(info.id(), info);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RocksStore {
    /// Opens (creating if needed) the store in `dir`. A directory another process has open is
    /// refused with an error that says so.
    pub fn open(dir: &Path, opts: RocksStoreOptions) -> Result<Self, StoreError> {
        create_dirs(dir, opts.sync).map_err(|e| StoreError::io_at("creating", dir, e))?;
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        let cfs = [CF_INFO, CF_RECORD, CF_PRESENT, CF_SUMS].map(|name| {
            let mut o = Options::default();
            o.set_write_buffer_size(WRITE_BUFFER_BYTES);
            ColumnFamilyDescriptor::new(name, o)
        });
        let db_path = dir.join("db");
        let db = DB::open_cf_descriptors(&db_opts, &db_path, cfs).map_err(|e| {
            if e.as_ref().contains("lock") {
                StoreError::InUse {
                    dir: dir.to_path_buf(),
                    source: Box::new(e),
                }
            } else {
                StoreError::Backend(Box::new(e))
            }
        })?;
        let blocks_dir = dir.join("blocks");
        fs::create_dir_all(&blocks_dir)
            .map_err(|e| StoreError::io_at("creating", &blocks_dir, e))?;
        if opts.sync {
            // The entries of `db` and `blocks` (a power cut must not lose either folder).
            sync_dir(dir).map_err(|e| StoreError::io_at("syncing", dir, e))?;
        }
        let store = RocksStore {
            db,
            blocks_dir,
            opts,
            write_lock: Mutex::new(()),
            infos: Mutex::new(HashMap::new()),
        };
        store.reconcile()?;
        Ok(store)
    }

    /// Makes metadata and block files agree after a crash: present bits of a segment whose
    /// file is gone are cleared (a crash inside `remove`), and block folders of content the
    /// database does not know are deleted (a crash inside `put_block` racing a removal).
    /// Costs one `stat` per stored segment.
    fn reconcile(&self) -> Result<(), StoreError> {
        let records = self.list()?;
        for r in &records {
            if matches!(r.origin, Origin::Published { .. }) {
                continue;
            }
            let info = self.info_or_unknown(&r.id)?;
            let mut present = 0u64;
            let mut batch = WriteBatch::default();
            for seg in info.layout().segments() {
                let set = self.present(&r.id, seg)?;
                if set.count() > 0 && !self.segment_path(&r.id, seg).exists() {
                    batch.delete_cf(self.cf(CF_PRESENT), present_key(&r.id, seg.get()));
                    batch.delete_cf(self.cf(CF_SUMS), present_key(&r.id, seg.get()));
                } else {
                    present += u64::from(set.count());
                }
            }
            // The count is rebuilt from the bitmaps, whatever it said.
            if present != r.blocks_present || !batch.is_empty() {
                let mut r = r.clone();
                r.blocks_present = present;
                Self::put_record(&mut batch, self.cf(CF_RECORD), &r);
                self.write(batch)?;
            }
        }
        // Content published in place has no block folder; one left by a crash goes too.
        let known: std::collections::HashSet<String> = records
            .iter()
            .filter(|r| !matches!(r.origin, Origin::Published { .. }))
            .map(|r| r.id.0.to_hex())
            .collect();
        let entries = fs::read_dir(&self.blocks_dir)
            .map_err(|e| StoreError::io_at("listing", &self.blocks_dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !known.contains(&name) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.write_with(batch, true)
    }

    /// Writes a batch, synced if the store syncs and `durable` asks for it.
    fn write_with(&self, batch: WriteBatch, durable: bool) -> Result<(), StoreError> {
        let mut w = WriteOptions::default();
        w.set_sync(self.opts.sync && durable);
        self.db.write_opt(batch, &w).map_err(backend)
    }

    fn load_record(&self, id: &ContentId) -> Result<Option<ContentRecord>, StoreError> {
        let Some(bytes) = self
            .db
            .get_cf(self.cf(CF_RECORD), id.0.0)
            .map_err(backend)?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::corrupt("record", &id.0.0, e))
    }

    fn record_or_unknown(&self, id: &ContentId) -> Result<ContentRecord, StoreError> {
        self.load_record(id)?
            .ok_or(StoreError::UnknownContent { id: *id })
    }

    fn put_record(batch: &mut WriteBatch, cf: &rocksdb::ColumnFamily, r: &ContentRecord) {
        let json = serde_json::to_vec(r).expect("records serialise");
        batch.put_cf(cf, r.id.0.0, json);
    }

    fn info_or_unknown(&self, id: &ContentId) -> Result<Arc<ContentInfo>, StoreError> {
        self.content_info(id)?
            .ok_or(StoreError::UnknownContent { id: *id })
    }

    fn segment_path(&self, id: &ContentId, seg: SegmentIdx) -> PathBuf {
        self.blocks_dir
            .join(id.0.to_hex())
            .join(format!("{:08x}", seg.get()))
    }

    /// Writes a block (or consecutive blocks of one segment) into its segment file and makes it
    /// durable (file data, and the directory
    /// entries of a file or directory created for it).
    fn write_block_file(
        &self,
        info: &ContentInfo,
        block: BlockIdx,
        data: &[u8],
        durable: bool,
    ) -> Result<(), StoreError> {
        let path = self.segment_path(&info.id(), block.segment());
        let dir = path.parent().expect("segment files have a parent");
        let new_dir = !dir.exists();
        if new_dir {
            fs::create_dir_all(dir)
                .map_err(|e| StoreError::io_at("creating the folder of", &path, e))?;
        }
        let new_file = !path.exists();
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io_at("opening", &path, e))?;
        let layout = info.layout();
        let offset = layout.block_offset(block) - layout.segment_offset(block.segment());
        write_all_at(&file, data, offset).map_err(|e| StoreError::io_at("writing", &path, e))?;
        if self.opts.sync && durable {
            file.sync_data()
                .map_err(|e| StoreError::io_at("syncing", &path, e))?;
            if new_file {
                sync_dir(dir).map_err(|e| StoreError::io_at("syncing the folder of", &path, e))?;
            }
            if new_dir {
                sync_dir(&self.blocks_dir)
                    .map_err(|e| StoreError::io_at("syncing the blocks folder for", &path, e))?;
            }
        }
        Ok(())
    }
}

impl RocksStore {
    /// Sets or clears one block's present bit and the record's count; see [`Self::set_present_many`].
    fn set_present(
        &self,
        id: &ContentId,
        block: BlockIdx,
        present: bool,
    ) -> Result<bool, StoreError> {
        self.set_present_many(
            id,
            block.segment(),
            &[block.index_in_segment()],
            &[],
            present,
            true,
        )
    }

    /// Sets or clears the present bits of blocks `indices` of segment `seg`, and the record's
    /// count, in one synced batch, with the blocks' checksums `sums` (one per index, or none)
    /// when setting; the caller holds `write_lock`. Returns whether anything changed.
    fn set_present_many(
        &self,
        id: &ContentId,
        seg: SegmentIdx,
        indices: &[u32],
        sums: &[u64],
        present: bool,
        durable: bool,
    ) -> Result<bool, StoreError> {
        let mut set = self.present(id, seg)?;
        let mut changed = 0u64;
        for &i in indices {
            let c = if present {
                set.insert(i)
            } else {
                set.remove(i)
            };
            changed += u64::from(c);
        }
        if changed == 0 {
            return Ok(false);
        }
        let mut r = self.record_or_unknown(id)?;
        if present {
            r.blocks_present += changed;
            r.last_used_ms = now_ms();
        } else {
            r.blocks_present -= changed;
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_PRESENT),
            present_key(id, seg.get()),
            set.to_bytes(),
        );
        if present && !sums.is_empty() {
            let mut all = self.sums(id, seg)?;
            for (&i, &sum) in indices.iter().zip(sums) {
                let at = i as usize * 8;
                if all.len() < at + 8 {
                    all.resize(at + 8, 0);
                }
                all[at..at + 8].copy_from_slice(&sum.to_le_bytes());
            }
            batch.put_cf(self.cf(CF_SUMS), present_key(id, seg.get()), all);
        }
        Self::put_record(&mut batch, self.cf(CF_RECORD), &r);
        self.write_with(batch, durable)?;
        Ok(true)
    }

    /// Stores a run of blocks of one segment: bytes (synced if `durable`), then the bits.
    fn put_run(
        &self,
        id: &ContentId,
        first: BlockIdx,
        data: &[u8],
        durable: bool,
    ) -> Result<(), StoreError> {
        let info = self.info_or_unknown(id)?;
        let blocks = super::split_blocks(id, info.layout(), first, data)?;
        for (block, bytes) in &blocks {
            info.verify_block(*block, bytes)?;
        }
        if matches!(self.record_or_unknown(id)?.origin, Origin::Published { .. }) {
            return Err(StoreError::PublishedInPlace { id: *id });
        }
        let seg = first.segment();
        let present = self.present(id, seg)?;
        if blocks
            .iter()
            .all(|(b, _)| present.contains(b.index_in_segment()))
        {
            return Ok(());
        }
        // All the bytes with one sync, then all the bits in one batch.
        self.write_block_file(&info, first, data, durable)?;
        let indices: Vec<u32> = blocks.iter().map(|(b, _)| b.index_in_segment()).collect();
        let sums: Vec<u64> = blocks.iter().map(|(_, d)| block_sum(d)).collect();
        let _w = lock(&self.write_lock);
        self.set_present_many(id, seg, &indices, &sums, true, durable)
            .map(drop)
    }

    /// The checksums recorded for a segment's blocks (empty when none are).
    fn sums(&self, id: &ContentId, seg: SegmentIdx) -> Result<Vec<u8>, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_SUMS), present_key(id, seg.get()))
            .map_err(backend)?
            .unwrap_or_default())
    }

    /// Whether stored bytes are a block's: its checksum when one is recorded, else its hash.
    fn intact(info: &ContentInfo, block: BlockIdx, bytes: &[u8], sum: u64) -> bool {
        if sum != 0 {
            block_sum(bytes) == sum
        } else {
            info.verify_block(block, bytes).is_ok()
        }
    }

    /// The bytes in a block's place in its segment file (unchecked); `None` when the file or
    /// that part of it does not exist.
    fn read_stored(
        &self,
        info: &ContentInfo,
        block: BlockIdx,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.segment_path(&info.id(), block.segment());
        let layout = info.layout();
        let mut buf = vec![0u8; layout.block_len(block) as usize];
        let offset = layout.block_offset(block) - layout.segment_offset(block.segment());
        let read = fs::File::open(&path).and_then(|f| super::read_exact_at(&f, &mut buf, offset));
        match read {
            Ok(()) => Ok(Some(buf)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(StoreError::io_at("reading", &path, e)),
        }
    }

    /// Bytes of the `present` blocks of `info`: full blocks, except a present short last block.
    /// `present` may be older than the block sets (a record read before a write that marked
    /// blocks present): the result is then short for a moment, never wrapped.
    fn present_bytes(&self, info: &ContentInfo, present: u64) -> Result<u64, StoreError> {
        let layout = info.layout();
        let mut bytes = present * u64::from(layout.block_size());
        if let Some(last) = layout.block_count().checked_sub(1) {
            let last = layout.block_at(last).map_err(StoreError::Layout)?;
            let short = layout.block_size() - layout.block_len(last);
            if short > 0
                && self
                    .present(&info.id(), last.segment())?
                    .contains(last.index_in_segment())
            {
                bytes = bytes.saturating_sub(u64::from(short));
            }
        }
        Ok(bytes)
    }

    /// [`RocksStore::touch`], best effort: a read never fails because its last-used time could
    /// not be written (a full disk, say); the first such failure is logged.
    fn touch_or_log(&self, record: &ContentRecord) {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if let Err(e) = self.touch(record)
            && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!("store: could not record a read's time (eviction order only): {e}");
        }
    }

    /// Records a read for least-recently-used eviction: at most once a second per content, and
    /// without a sync (losing it in a crash costs nothing but eviction order).
    fn touch(&self, record: &ContentRecord) -> Result<(), StoreError> {
        let now = now_ms();
        if now < record.last_used_ms + TOUCH_INTERVAL_MS {
            return Ok(());
        }
        let _w = lock(&self.write_lock);
        let Some(mut r) = self.load_record(&record.id)? else {
            return Ok(());
        };
        r.last_used_ms = now;
        let mut batch = WriteBatch::default();
        Self::put_record(&mut batch, self.cf(CF_RECORD), &r);
        self.db.write(batch).map_err(backend)
    }
}

fn write_all_at(file: &fs::File, data: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, data, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, Write};
        let mut f = file;
        f.seek(std::io::SeekFrom::Start(offset))?;
        f.write_all(data)
    }
}

impl SegmentStore for RocksStore {
    fn put_content(
        &self,
        info: &ContentInfo,
        name: &str,
        origin: Origin,
    ) -> Result<bool, StoreError> {
        let _w = lock(&self.write_lock);
        let id = info.id();
        let published = matches!(origin, Origin::Published { .. });
        let layout = info.layout();
        let mut batch = WriteBatch::default();
        let full_sets = |batch: &mut WriteBatch| {
            for seg in layout.segments() {
                let set = BlockSet::full(layout.blocks_in_segment(seg));
                batch.put_cf(
                    self.cf(CF_PRESENT),
                    present_key(&id, seg.get()),
                    set.to_bytes(),
                );
            }
        };
        if let Some(mut r) = self.load_record(&id)? {
            r.last_used_ms = now_ms();
            let mut drop_files = false;
            match origin_change(&r.origin, origin) {
                OriginChange::Keep => {}
                OriginChange::InPlace(origin) => {
                    // Bytes now come from the user's file: stored copies are no longer needed.
                    r.origin = origin;
                    r.blocks_present = layout.block_count();
                    full_sets(&mut batch);
                    batch.delete_range_cf(
                        self.cf(CF_SUMS),
                        present_key(&id, 0),
                        present_key(&id, layout.segment_count()),
                    );
                    drop_files = true;
                }
                OriginChange::Copy => {
                    if matches!(r.origin, Origin::Published { .. }) {
                        r.blocks_present = 0;
                        batch.delete_range_cf(
                            self.cf(CF_PRESENT),
                            present_key(&id, 0),
                            present_key(&id, layout.segment_count()),
                        );
                    }
                    r.origin = Origin::Copied;
                }
            }
            Self::put_record(&mut batch, self.cf(CF_RECORD), &r);
            self.write(batch)?;
            if drop_files {
                let _ = fs::remove_dir_all(self.blocks_dir.join(id.0.to_hex()));
            }
            return Ok(false);
        }
        let record = ContentRecord {
            id,
            name: name.to_string(),
            len: layout.content_len(),
            blocks_total: layout.block_count(),
            blocks_present: if published { layout.block_count() } else { 0 },
            origin,
            pinned: false,
            last_used_ms: now_ms(),
        };
        batch.put_cf(self.cf(CF_INFO), id.0.0, native::encode_content_info(info));
        if published {
            full_sets(&mut batch);
        }
        Self::put_record(&mut batch, self.cf(CF_RECORD), &record);
        self.write(batch)?;
        cache_insert(&mut lock(&self.infos), Arc::new(info.clone()));
        Ok(true)
    }

    fn content_info(&self, id: &ContentId) -> Result<Option<Arc<ContentInfo>>, StoreError> {
        // The cache lock is held across the database read, so that `remove` (which drops the
        // entry after its write) cannot be overtaken by a stale insert.
        let mut cache = lock(&self.infos);
        if let Some(info) = cache.get(id) {
            return Ok(Some(info.clone()));
        }
        let Some(bytes) = self.db.get_cf(self.cf(CF_INFO), id.0.0).map_err(backend)? else {
            return Ok(None);
        };
        let info = native::decode_content_info_for(&bytes, id)
            .map_err(|e| StoreError::corrupt("info", &id.0.0, e))?;
        let info = Arc::new(info);
        cache_insert(&mut cache, info.clone());
        Ok(Some(info))
    }

    fn record(&self, id: &ContentId) -> Result<Option<ContentRecord>, StoreError> {
        self.load_record(id)
    }

    fn list(&self) -> Result<Vec<ContentRecord>, StoreError> {
        self.db
            .iterator_cf(self.cf(CF_RECORD), IteratorMode::Start)
            .map(|item| {
                let (key, value) = item.map_err(backend)?;
                serde_json::from_slice(&value).map_err(|e| StoreError::corrupt("record", &key, e))
            })
            .collect()
    }

    fn put_block(&self, id: &ContentId, block: BlockIdx, data: &[u8]) -> Result<(), StoreError> {
        let info = self.info_or_unknown(id)?;
        info.verify_block(block, data)?;
        if matches!(self.record_or_unknown(id)?.origin, Origin::Published { .. }) {
            return Err(StoreError::PublishedInPlace { id: *id });
        }
        let seg = block.segment();
        if self.present(id, seg)?.contains(block.index_in_segment()) {
            return Ok(());
        }
        // Bytes first, durable; only then the bit that says they are there.
        self.write_block_file(&info, block, data, true)?;
        let _w = lock(&self.write_lock);
        self.set_present_many(
            id,
            seg,
            &[block.index_in_segment()],
            &[block_sum(data)],
            true,
            true,
        )
        .map(drop)
    }

    fn put_blocks(&self, id: &ContentId, first: BlockIdx, data: &[u8]) -> Result<(), StoreError> {
        self.put_run(id, first, data, true)
    }

    fn put_blocks_lazy(
        &self,
        id: &ContentId,
        first: BlockIdx,
        data: &[u8],
    ) -> Result<(), StoreError> {
        self.put_run(id, first, data, false)
    }

    fn sync_content(&self, id: &ContentId) -> Result<(), StoreError> {
        let dir = self.blocks_dir.join(id.0.to_hex());
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io_at("listing", &dir, e)),
        };
        for entry in entries {
            let path = entry
                .map_err(|e| StoreError::io_at("listing", &dir, e))?
                .path();
            fs::File::open(&path)
                .and_then(|f| f.sync_data())
                .map_err(|e| StoreError::io_at("syncing", &path, e))?;
        }
        sync_dir(&dir).map_err(|e| StoreError::io_at("syncing", &dir, e))?;
        sync_dir(&self.blocks_dir)
            .map_err(|e| StoreError::io_at("syncing the parent of", &dir, e))?;
        self.db.flush_wal(true).map_err(backend)
    }

    fn get_block(&self, id: &ContentId, block: BlockIdx) -> Result<Option<Vec<u8>>, StoreError> {
        let info = self.info_or_unknown(id)?;
        if !self
            .present(id, block.segment())?
            .contains(block.index_in_segment())
        {
            return Ok(None);
        }
        let record = self.record_or_unknown(id)?;
        let bytes = if matches!(record.origin, Origin::Published { .. }) {
            read_published_block(&info, &record.origin, block)?
        } else {
            let sum = sum_at(&self.sums(id, block.segment())?, block.index_in_segment());
            self.read_stored(&info, block)?
                .filter(|bytes| Self::intact(&info, block, bytes, sum))
        };
        if bytes.is_some() {
            self.touch_or_log(&record);
        }
        if bytes.is_none() {
            self.mark_missing(id, block)?;
        }
        Ok(bytes)
    }

    fn get_blocks(
        &self,
        id: &ContentId,
        first: BlockIdx,
        count: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let info = self.info_or_unknown(id)?;
        let blocks = super::run_blocks(id, info.layout(), first, count)?;
        let record = self.record_or_unknown(id)?;
        let seg = first.segment();
        let present = self.present(id, seg)?;
        if !blocks
            .iter()
            .all(|b| present.contains(b.index_in_segment()))
        {
            return Ok(None);
        }
        // Stored content: one read of the run and one checksum per block. Anything amiss (or
        // content published in place) goes block by block, which marks what is bad.
        let one_by_one = || super::concat_blocks(self, id, &blocks);
        if matches!(record.origin, Origin::Published { .. }) || blocks.is_empty() {
            return one_by_one();
        }
        let layout = info.layout();
        let len: u64 = blocks.iter().map(|b| u64::from(layout.block_len(*b))).sum();
        let at = layout.block_offset(first) - layout.segment_offset(seg);
        let path = self.segment_path(id, seg);
        let Ok(buf) = fs::File::open(&path).and_then(|f| super::read_vec_at(&f, at, len as usize))
        else {
            return one_by_one();
        };
        let sums = self.sums(id, seg)?;
        let mut off = 0usize;
        for b in &blocks {
            let n = layout.block_len(*b) as usize;
            let sum = sum_at(&sums, b.index_in_segment());
            if !Self::intact(&info, *b, &buf[off..off + n], sum) {
                return one_by_one();
            }
            off += n;
        }
        self.touch_or_log(&record);
        Ok(Some(buf))
    }

    fn present(&self, id: &ContentId, seg: SegmentIdx) -> Result<BlockSet, StoreError> {
        let info = self.info_or_unknown(id)?;
        let n = info.layout().blocks_in_segment(seg);
        match self
            .db
            .get_cf(self.cf(CF_PRESENT), present_key(id, seg.get()))
            .map_err(backend)?
        {
            None => Ok(BlockSet::new(n)),
            Some(bytes) => BlockSet::from_bytes(&bytes, n).ok_or_else(|| {
                let bad = super::BadBitmap {
                    len: bytes.len(),
                    blocks: n,
                };
                StoreError::corrupt("present", &present_key(id, seg.get()), bad)
            }),
        }
    }

    fn mark_missing(&self, id: &ContentId, block: BlockIdx) -> Result<(), StoreError> {
        let _w = lock(&self.write_lock);
        self.set_present(id, block, false).map(drop)
    }

    fn repair_block(&self, id: &ContentId, block: BlockIdx) -> Result<bool, StoreError> {
        let info = self.info_or_unknown(id)?;
        let record = self.record_or_unknown(id)?;
        let (good, sums) = match &record.origin {
            Origin::Published { .. } => (
                read_published_block(&info, &record.origin, block)?.is_some(),
                vec![],
            ),
            _ => match self.read_stored(&info, block)? {
                Some(bytes) if info.verify_block(block, &bytes).is_ok() => {
                    (true, vec![block_sum(&bytes)])
                }
                _ => (false, vec![]),
            },
        };
        let _w = lock(&self.write_lock);
        let i = [block.index_in_segment()];
        self.set_present_many(id, block.segment(), &i, &sums, good, true)?;
        Ok(good)
    }

    fn set_pinned(&self, id: &ContentId, pinned: bool) -> Result<(), StoreError> {
        let _w = lock(&self.write_lock);
        let mut r = self.record_or_unknown(id)?;
        r.pinned = pinned;
        let mut batch = WriteBatch::default();
        Self::put_record(&mut batch, self.cf(CF_RECORD), &r);
        self.write(batch)
    }

    fn remove(&self, id: &ContentId) -> Result<bool, StoreError> {
        let _w = lock(&self.write_lock);
        let Some(info) = self.content_info(id)? else {
            return Ok(false);
        };
        let segments = info.layout().segment_count();
        let batch = || {
            let mut batch = WriteBatch::default();
            batch.delete_cf(self.cf(CF_INFO), id.0.0);
            batch.delete_cf(self.cf(CF_RECORD), id.0.0);
            for cf in [CF_PRESENT, CF_SUMS] {
                batch.delete_range_cf(self.cf(cf), present_key(id, 0), present_key(id, segments));
            }
            batch
        };
        // Files first: a full disk refuses even a metadata write (RocksDB's WAL), and RocksDB
        // then refuses every later write until it is reopened, while removing is how a user
        // makes room. A crash between the two leaves present bits whose files are gone:
        // `reconcile` clears them at the next open, and until then such blocks read as
        // missing (and are marked so), never as wrong bytes.
        let dir = self.blocks_dir.join(id.0.to_hex());
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io_at("removing", &dir, e)),
        }
        self.write(batch())?;
        lock(&self.infos).remove(id);
        Ok(true)
    }

    fn usage(&self) -> Result<Usage, StoreError> {
        let mut u = Usage::default();
        for r in self.list()? {
            u.contents += 1;
            match r.origin {
                Origin::Published { .. } => u.in_place_bytes += r.len,
                _ => {
                    // Content removed since the list was read (evicted by another writer)
                    // counts for nothing.
                    let bytes = self
                        .content_info(&r.id)?
                        .map(|info| self.present_bytes(&info, r.blocks_present))
                        .transpose();
                    match bytes {
                        Ok(b) => u.stored_bytes += b.unwrap_or(0),
                        Err(StoreError::UnknownContent { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{HashOptions, ServerSecret, hash_reader};

    /// The open group's content information of `data`.
    fn info_of(data: &[u8]) -> ContentInfo {
        hash_reader(
            data,
            &ServerSecret::open_group(),
            &HashOptions::default(),
            &mut |_| {},
        )
        .unwrap()
    }

    /// A usage count taken from a record older than its block sets (another writer marked the
    /// short last block present in between) is short, never wrapped: a wrapped count evicted
    /// everything evictable.
    #[test]
    fn a_stale_count_never_wraps_the_usage() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), RocksStoreOptions { sync: false }).unwrap();
        let data = fixtures::content(71, 100);
        let info = info_of(&data);
        store.put_content(&info, "short", Origin::Fetched).unwrap();
        store
            .put_blocks(&info.id(), info.layout().block_at(0).unwrap(), &data)
            .unwrap();
        assert_eq!(store.present_bytes(&info, 1).unwrap(), 100);
        assert_eq!(
            store.present_bytes(&info, 0).unwrap(),
            0,
            "the count read before the write"
        );
        assert_eq!(store.usage().unwrap().stored_bytes, 100);
    }

    /// Blocks stored before checksums were recorded (or whose checksums are lost) are checked
    /// against their SHA-256 instead: served when right, never when wrong.
    #[test]
    fn blocks_without_checksums_fall_back_to_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), RocksStoreOptions { sync: false }).unwrap();
        let data = fixtures::content(70, 3 * 65_536);
        let info = info_of(&data);
        let id = info.id();
        store.put_content(&info, "old", Origin::Fetched).unwrap();
        let b0 = info.layout().block_at(0).unwrap();
        store.put_blocks(&id, b0, &data).unwrap();
        assert_ne!(sum_at(&store.sums(&id, b0.segment()).unwrap(), 2), 0);
        store
            .db
            .delete_cf(store.cf(CF_SUMS), present_key(&id, 0))
            .unwrap();
        assert_eq!(
            store.get_blocks(&id, b0, 3).unwrap().as_deref(),
            Some(&data[..])
        );
        let seg_file = dir
            .path()
            .join("blocks")
            .join(id.0.to_hex())
            .join("00000000");
        let mut bytes = fs::read(&seg_file).unwrap();
        bytes[65_536] ^= 4;
        fs::write(&seg_file, &bytes).unwrap();
        assert_eq!(store.get_blocks(&id, b0, 3).unwrap(), None);
        assert!(!store.present(&id, b0.segment()).unwrap().contains(1));
    }
}
