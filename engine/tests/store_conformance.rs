//! One conformance suite, run against every SegmentStore: the in-memory twin and RocksDB.

use std::path::Path;
use std::sync::Arc;

use pdist_engine::content::{ContentInfo, HashOptions, ServerSecret, hash_reader};
use pdist_engine::store::{
    Leases, MemStore, Origin, SegmentStore, StoreError, evict_to, published_origin,
};

fn info_for(data: &[u8]) -> ContentInfo {
    hash_reader(
        data,
        &ServerSecret::open_group(),
        &HashOptions::default(),
        &mut |_| {},
    )
    .unwrap()
}

fn block_bytes<'a>(info: &ContentInfo, data: &'a [u8], global: u64) -> &'a [u8] {
    let r = info
        .layout()
        .block_range(info.layout().block_at(global).unwrap());
    &data[r.start as usize..r.end as usize]
}

/// Every behaviour a store must have. `dir` is scratch space for published files.
fn conformance(store: &dyn SegmentStore, dir: &Path) {
    fetched_blocks(store);
    block_runs(store);
    published_in_place(store, dir);
    unknown_content(store);
    repair(store, dir);
    eviction(store, dir);
}

/// Content with every block stored.
fn stored(store: &dyn SegmentStore, seed: u64, len: u64) -> (Vec<u8>, ContentInfo) {
    let data = fixtures::content(seed, len);
    let info = info_for(&data);
    store
        .put_content(&info, &format!("c{seed}"), Origin::Fetched)
        .unwrap();
    for g in 0..info.layout().block_count() {
        let b = info.layout().block_at(g).unwrap();
        store
            .put_block(&info.id(), b, block_bytes(&info, &data, g))
            .unwrap();
    }
    (data, info)
}

fn repair(store: &dyn SegmentStore, dir: &Path) {
    // Stored bytes that were marked missing come back once re-hashed.
    let (_, info) = stored(store, 21, 100_000);
    let id = info.id();
    let b = info.layout().block_at(1).unwrap();
    store.mark_missing(&id, b).unwrap();
    assert!(store.get_block(&id, b).unwrap().is_none());
    assert!(store.repair_block(&id, b).unwrap());
    assert!(store.get_block(&id, b).unwrap().is_some());
    assert_eq!(store.record(&id).unwrap().unwrap().blocks_present, 2);
    store.remove(&id).unwrap();

    // A published file that changed and was restored: missing, then present again.
    let data = fixtures::content(22, 100_000);
    let path = dir.join("restored.bin");
    std::fs::write(&path, &data).unwrap();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let info = info_for(&data);
    let id = info.id();
    store
        .put_content(&info, "restored.bin", published_origin(&path).unwrap())
        .unwrap();
    let mut bad = data.clone();
    bad[0] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let b0 = info.layout().block_at(0).unwrap();
    assert!(!store.repair_block(&id, b0).unwrap());
    assert!(store.get_block(&id, b0).unwrap().is_none());
    std::fs::write(&path, &data).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert!(store.repair_block(&id, b0).unwrap());
    assert_eq!(
        store.get_block(&id, b0).unwrap().as_deref(),
        Some(&data[..65_536])
    );
    store.remove(&id).unwrap();
}

fn eviction(store: &dyn SegmentStore, dir: &Path) {
    let leases = Leases::new();
    let (_, old) = stored(store, 31, 200_000);
    std::thread::sleep(std::time::Duration::from_millis(3)); // distinct last-used times
    let (_, pinned) = stored(store, 32, 200_000);
    store.set_pinned(&pinned.id(), true).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3));
    let (_, in_use) = stored(store, 33, 200_000);
    std::thread::sleep(std::time::Duration::from_millis(3));
    let (_, newest) = stored(store, 34, 200_000);
    let data = fixtures::content(35, 300_000);
    let path = dir.join("in-place.bin");
    std::fs::write(&path, &data).unwrap();
    let published = info_for(&data);
    store
        .put_content(&published, "in-place.bin", published_origin(&path).unwrap())
        .unwrap();
    assert_eq!(store.usage().unwrap().stored_bytes, 800_000);

    let lease = leases.lease(in_use.id());
    // Room for two contents: the oldest unpinned one goes; the one in use is skipped, so the
    // newest goes too; pinned and published content stay.
    let removed = evict_to(store, 400_000, &leases).unwrap();
    assert_eq!(removed, vec![old.id(), newest.id()]);
    let ids: Vec<_> = store.list().unwrap().into_iter().map(|r| r.id).collect();
    for kept in [pinned.id(), in_use.id(), published.id()] {
        assert!(ids.contains(&kept));
    }
    assert_eq!(store.usage().unwrap().stored_bytes, 400_000);
    // Nothing more can go while the lease is held; once dropped, it can.
    assert!(evict_to(store, 0, &leases).unwrap().is_empty());
    drop(lease);
    assert_eq!(evict_to(store, 0, &leases).unwrap(), vec![in_use.id()]);
    for id in [pinned.id(), published.id()] {
        store.remove(&id).unwrap();
    }
}

/// `put_blocks`: runs of blocks, checked block by block, counted once, bounded by a segment.
fn block_runs(store: &dyn SegmentStore) {
    let data = fixtures::content(12, 5 * 65_536 + 7);
    let info = info_for(&data);
    let id = info.id();
    store.put_content(&info, "run", Origin::Fetched).unwrap();
    let l = info.layout();
    let at = |g: u64| l.block_at(g).unwrap();
    // A run with one bad block is refused whole.
    let mut bad = data[65_536..3 * 65_536].to_vec();
    bad[70_000] ^= 1;
    assert!(matches!(
        store.put_blocks(&id, at(1), &bad),
        Err(StoreError::Verify(_))
    ));
    assert_eq!(store.record(&id).unwrap().unwrap().blocks_present, 0);
    // A run that stops inside a block is refused.
    assert!(matches!(
        store.put_blocks(&id, at(1), &data[65_536..100_000]),
        Err(StoreError::BadBlockRun { .. })
    ));
    store
        .put_blocks(&id, at(1), &data[65_536..3 * 65_536])
        .unwrap();
    // Overlapping runs count each block once; the short last block ends a run.
    store.put_blocks(&id, at(2), &data[2 * 65_536..]).unwrap();
    let r = store.record(&id).unwrap().unwrap();
    assert_eq!(r.blocks_present, 5);
    for g in 1..6 {
        assert_eq!(
            store.get_block(&id, at(g)).unwrap().as_deref(),
            Some(block_bytes(&info, &data, g))
        );
    }
    assert_eq!(store.get_block(&id, at(0)).unwrap(), None);
    // Runs read together: the same bytes as block by block; a missing block makes it `None`.
    assert_eq!(
        store.get_blocks(&id, at(1), 5).unwrap().as_deref(),
        Some(&data[65_536..])
    );
    assert_eq!(
        store.get_blocks(&id, at(2), 2).unwrap().as_deref(),
        Some(&data[2 * 65_536..4 * 65_536])
    );
    assert_eq!(store.get_blocks(&id, at(0), 2).unwrap(), None);
    assert!(matches!(
        store.get_blocks(&id, at(4), 3),
        Err(StoreError::BadBlockRun { .. })
    ));
    store.remove(&id).unwrap();
}

fn fetched_blocks(store: &dyn SegmentStore) {
    let data = fixtures::content(11, 3 * 65_536 + 100);
    let info = info_for(&data);
    let id = info.id();
    assert!(store.put_content(&info, "a.bin", Origin::Fetched).unwrap());
    assert!(
        !store
            .put_content(&info, "other-name", Origin::Fetched)
            .unwrap(),
        "stored once"
    );
    let r = store.record(&id).unwrap().unwrap();
    assert_eq!(
        (r.name.as_str(), r.len, r.blocks_total, r.blocks_present),
        ("a.bin", 196_708, 4, 0)
    );
    assert_eq!(store.content_info(&id).unwrap().unwrap().id(), id);
    assert!(store.list().unwrap().iter().any(|r| r.id == id));

    let seg = info.layout().segment(0).unwrap();
    let b1 = info.layout().block_at(1).unwrap();
    assert_eq!(store.get_block(&id, b1).unwrap(), None);
    // Wrong bytes are refused and nothing becomes present.
    let mut wrong = block_bytes(&info, &data, 1).to_vec();
    wrong[7] ^= 1;
    assert!(matches!(
        store.put_block(&id, b1, &wrong),
        Err(StoreError::Verify(_))
    ));
    assert_eq!(store.present(&id, seg).unwrap().count(), 0);
    // Right bytes are stored, served, and counted once.
    store
        .put_block(&id, b1, block_bytes(&info, &data, 1))
        .unwrap();
    store
        .put_block(&id, b1, block_bytes(&info, &data, 1))
        .unwrap();
    let present = store.present(&id, seg).unwrap();
    assert_eq!(present.iter().collect::<Vec<_>>(), vec![1]);
    assert_eq!(
        store.get_block(&id, b1).unwrap().as_deref(),
        Some(block_bytes(&info, &data, 1))
    );
    let last = info.layout().block_at(3).unwrap();
    store
        .put_block(&id, last, block_bytes(&info, &data, 3))
        .unwrap();
    assert_eq!(
        store.get_block(&id, last).unwrap().unwrap().len(),
        100,
        "short last block"
    );
    assert_eq!(store.record(&id).unwrap().unwrap().blocks_present, 2);
    assert_eq!(
        store.usage().unwrap().stored_bytes,
        65_536 + 100,
        "a short last block counts its bytes"
    );

    store.mark_missing(&id, b1).unwrap();
    assert_eq!(store.get_block(&id, b1).unwrap(), None);
    assert_eq!(store.record(&id).unwrap().unwrap().blocks_present, 1);
    assert_eq!(
        store.usage().unwrap().stored_bytes,
        100,
        "missing blocks do not count"
    );

    store.set_pinned(&id, true).unwrap();
    assert!(store.record(&id).unwrap().unwrap().pinned);
    assert!(store.remove(&id).unwrap());
    assert!(!store.remove(&id).unwrap());
    assert!(store.record(&id).unwrap().is_none());
    assert!(matches!(
        store.put_block(&id, b1, block_bytes(&info, &data, 1)),
        Err(StoreError::UnknownContent { .. })
    ));
}

fn published_in_place(store: &dyn SegmentStore, dir: &Path) {
    let data = fixtures::content(12, 200_000);
    let path = dir.join("published.bin");
    std::fs::write(&path, &data).unwrap();
    let info = info_for(&data);
    let id = info.id();
    let origin = published_origin(&path).unwrap();
    assert!(store.put_content(&info, "published.bin", origin).unwrap());
    let r = store.record(&id).unwrap().unwrap();
    assert_eq!(r.blocks_present, 4, "published content is present at once");
    assert!(store.usage().unwrap().in_place_bytes >= 200_000);
    let b0 = info.layout().block_at(0).unwrap();
    let b2 = info.layout().block_at(2).unwrap();
    assert_eq!(
        store.get_block(&id, b0).unwrap().as_deref(),
        Some(block_bytes(&info, &data, 0))
    );
    assert!(matches!(
        store.put_block(&id, b0, block_bytes(&info, &data, 0)),
        Err(StoreError::PublishedInPlace { .. })
    ));

    // Same size, same modification time, different bytes: caught by the hash on read.
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut changed = data.clone();
    changed[2 * 65_536 + 5] ^= 0xff;
    std::fs::write(&path, &changed).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(
        store.get_block(&id, b2).unwrap(),
        None,
        "a changed block is never served"
    );
    assert!(
        !store.present(&id, b2.segment()).unwrap().contains(2),
        "and is marked missing"
    );
    assert!(
        store.get_block(&id, b0).unwrap().is_some(),
        "unchanged blocks still serve"
    );

    // A file whose size or time changed serves nothing.
    std::fs::write(&path, &data[..1000]).unwrap();
    assert_eq!(store.get_block(&id, b0).unwrap(), None);

    // Fetched content that is then published becomes fully present.
    let data2 = fixtures::content(13, 70_000);
    let info2 = info_for(&data2);
    store.put_content(&info2, "x", Origin::Fetched).unwrap();
    let path2 = dir.join("x.bin");
    std::fs::write(&path2, &data2).unwrap();
    assert!(
        !store
            .put_content(&info2, "x", published_origin(&path2).unwrap())
            .unwrap()
    );
    assert_eq!(
        store.record(&info2.id()).unwrap().unwrap().blocks_present,
        2
    );
    // Copying published content: blocks are present once copied, and the file may then go.
    let r2 = store.put_content(&info2, "x", Origin::Copied).unwrap();
    assert!(!r2);
    assert_eq!(
        store.record(&info2.id()).unwrap().unwrap().blocks_present,
        0
    );
    for g in 0..2 {
        let b = info2.layout().block_at(g).unwrap();
        store
            .put_block(&info2.id(), b, block_bytes(&info2, &data2, g))
            .unwrap();
    }
    std::fs::remove_file(&path2).unwrap();
    let b1 = info2.layout().block_at(1).unwrap();
    assert_eq!(
        store.get_block(&info2.id(), b1).unwrap().as_deref(),
        Some(block_bytes(&info2, &data2, 1))
    );
    // Publishing in place what is already copied keeps the copy.
    std::fs::write(&path2, &data2).unwrap();
    store
        .put_content(&info2, "x", published_origin(&path2).unwrap())
        .unwrap();
    assert_eq!(
        store.record(&info2.id()).unwrap().unwrap().origin,
        Origin::Copied
    );
    assert!(store.remove(&id).unwrap() && store.remove(&info2.id()).unwrap());
}

fn unknown_content(store: &dyn SegmentStore) {
    let info = info_for(b"never stored");
    let id = info.id();
    let b = info.layout().block_at(0).unwrap();
    assert!(store.content_info(&id).unwrap().is_none());
    assert!(matches!(
        store.get_block(&id, b),
        Err(StoreError::UnknownContent { .. })
    ));
    assert!(matches!(
        store.set_pinned(&id, true),
        Err(StoreError::UnknownContent { .. })
    ));
}

fn capped<S: SegmentStore>(inner: S) {
    use pdist_engine::store::CappedStore;
    let store = CappedStore::new(inner, 10 << 20, Leases::new());
    // Four contents of 6 MiB (96 blocks each, past the 64-block check interval).
    let mut ids = Vec::new();
    for seed in 0..4 {
        let (_, info) = stored(&store, 40 + seed, 6 << 20);
        ids.push(info.id());
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    let kept: Vec<_> = store.list().unwrap().into_iter().map(|r| r.id).collect();
    let held = store.usage().unwrap().stored_bytes;
    assert!(
        held <= (10 << 20) + 64 * 65_536,
        "at most one check interval over the cap: {held}"
    );
    assert!(
        kept.contains(&ids[3]),
        "the content being written is never evicted"
    );
    assert!(
        !kept.contains(&ids[0]),
        "the least recently used goes first"
    );
    // A leased content cannot be removed through the capped store.
    let lease = store.leases().lease(ids[3]);
    assert!(!store.remove(&ids[3]).unwrap());
    drop(lease);
    assert!(store.remove(&ids[3]).unwrap());
}

#[test]
fn a_capped_store_evicts_past_its_cap_but_not_what_it_is_writing() {
    capped(MemStore::new());
}

#[test]
fn mem_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&MemStore::new(), dir.path());
}

#[cfg(feature = "rocksdb")]
mod rocks {
    use super::*;
    use pdist_engine::store::{RocksStore, RocksStoreOptions};

    #[test]
    fn a_capped_rocks_store_evicts_past_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        capped(RocksStore::open(dir.path(), RocksStoreOptions { sync: false }).unwrap());
    }

    #[test]
    fn stored_bytes_are_checked_on_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), RocksStoreOptions::default()).unwrap();
        let (data, info) = stored(&store, 60, 200_000);
        let id = info.id();
        // Damage block 1 on disk behind the store's back (bit rot, a stray write).
        let seg_file = dir
            .path()
            .join("blocks")
            .join(id.0.to_hex())
            .join("00000000");
        let mut bytes = std::fs::read(&seg_file).unwrap();
        bytes[65_536 + 10] ^= 0x20;
        std::fs::write(&seg_file, &bytes).unwrap();
        let b1 = info.layout().block_at(1).unwrap();
        assert_eq!(
            store.get_block(&id, b1).unwrap(),
            None,
            "wrong bytes are never served"
        );
        assert!(!store.present(&id, b1.segment()).unwrap().contains(1));
        // Stored again, it serves again.
        store
            .put_block(&id, b1, block_bytes(&info, &data, 1))
            .unwrap();
        assert!(store.get_block(&id, b1).unwrap().is_some());
        // Read as a run, a damaged block makes the run `None` and only that block missing.
        let b0 = info.layout().block_at(0).unwrap();
        assert_eq!(
            store.get_blocks(&id, b0, 4).unwrap().as_deref(),
            Some(&data[..])
        );
        let mut bytes = std::fs::read(&seg_file).unwrap();
        bytes[2 * 65_536 + 99] ^= 0x01;
        std::fs::write(&seg_file, &bytes).unwrap();
        assert_eq!(store.get_blocks(&id, b0, 4).unwrap(), None);
        let present = store.present(&id, b0.segment()).unwrap();
        assert_eq!(
            (0..4).map(|i| present.contains(i)).collect::<Vec<_>>(),
            [true, true, false, true]
        );
    }

    #[test]
    fn rocks_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            RocksStore::open(&dir.path().join("store"), RocksStoreOptions::default()).unwrap();
        conformance(&store, dir.path());
    }

    #[test]
    fn reopening_after_a_crash_inside_remove_clears_what_is_gone() {
        // `remove` deletes block files before metadata; a crash between leaves present bits
        // whose files are gone. The next open clears them (and deletes unknown block folders).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let info = {
            let store = RocksStore::open(&path, RocksStoreOptions::default()).unwrap();
            let (_, info) = stored(&store, 50, 33 << 20); // two segments
            info
        };
        let hex = info.id().0.to_hex();
        std::fs::remove_file(path.join("blocks").join(&hex).join("00000001")).unwrap();
        std::fs::create_dir_all(path.join("blocks").join("not-a-content")).unwrap();
        let store = RocksStore::open(&path, RocksStoreOptions::default()).unwrap();
        let r = store.record(&info.id()).unwrap().unwrap();
        assert_eq!(r.blocks_present, 512, "segment 0 stays, segment 1 is gone");
        let seg1 = info.layout().segment(1).unwrap();
        assert_eq!(store.present(&info.id(), seg1).unwrap().count(), 0);
        assert!(!path.join("blocks").join("not-a-content").exists());
    }

    #[test]
    fn rocks_store_survives_reopen_and_refuses_a_second_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let data = fixtures::content(14, 150_000);
        let info = info_for(&data);
        let id = info.id();
        {
            let store = RocksStore::open(&path, RocksStoreOptions::default()).unwrap();
            store.put_content(&info, "a", Origin::Fetched).unwrap();
            for g in [0u64, 2] {
                let b = info.layout().block_at(g).unwrap();
                store
                    .put_block(&id, b, block_bytes(&info, &data, g))
                    .unwrap();
            }
            store.set_pinned(&id, true).unwrap();
            let second = RocksStore::open(&path, RocksStoreOptions::default()).unwrap_err();
            assert!(
                second.to_string().contains("in use by another pdist"),
                "{second}"
            );
        }
        let store = Arc::new(RocksStore::open(&path, RocksStoreOptions::default()).unwrap());
        let r = store.record(&id).unwrap().unwrap();
        assert_eq!((r.blocks_present, r.pinned), (2, true));
        let seg = info.layout().segment(0).unwrap();
        assert_eq!(
            store.present(&id, seg).unwrap().iter().collect::<Vec<_>>(),
            vec![0, 2]
        );
        let b2 = info.layout().block_at(2).unwrap();
        assert_eq!(
            store.get_block(&id, b2).unwrap().as_deref(),
            Some(block_bytes(&info, &data, 2))
        );
        assert_eq!(store.content_info(&id).unwrap().unwrap().id(), id);
    }
}
