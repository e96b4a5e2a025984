//! A full disk: the store lives on a 4 MiB tmpfs this test mounts (root only; skipped with a
//! message otherwise). Writes that fail for lack of space leave the store consistent, the error
//! names the cause, and what is stored keeps being served.
#![cfg(all(feature = "rocksdb", target_os = "linux"))]

use fixtures::disk::Tmpfs;
use pdist_engine::content::{HashOptions, ServerSecret, hash_reader};
use pdist_engine::store::{Origin, RocksStore, RocksStoreOptions, SegmentStore, StoreError};

#[test]
fn a_full_disk_leaves_the_store_consistent_and_serving() {
    let dir = tempfile::tempdir().unwrap();
    let disk = match Tmpfs::mount(dir.path(), "4m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let store = RocksStore::open(&dir.path().join("store"), RocksStoreOptions::default()).unwrap();
    let data = fixtures::content(9, 8 << 20);
    let info = hash_reader(
        &data[..],
        &ServerSecret::open_group(),
        &HashOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let id = info.id();
    store.put_content(&info, "big", Origin::Fetched).unwrap();
    let layout = info.layout();
    let mut stored = Vec::new();
    let mut failure = None;
    for g in 0..layout.block_count() {
        let b = layout.block_at(g).unwrap();
        let r = layout.block_range(b);
        match store.put_block(&id, b, &data[r.start as usize..r.end as usize]) {
            Ok(()) => stored.push(b),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let err = failure.expect("8 MiB of blocks cannot fit on a 4 MiB filesystem");
    let msg = err.to_string();
    match &err {
        StoreError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{msg}")
        }
        StoreError::Backend(e) => assert!(e.to_string().contains("space"), "{msg}"),
        other => panic!("unexpected error: {other}"),
    }
    assert!(!stored.is_empty(), "some blocks fit");
    // Reads record their time at most once a second (for eviction order); past that second,
    // with the disk full to the last byte, that record cannot be written, and reads go on
    // regardless.
    disk.fill();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Consistent: exactly the blocks that were stored are present, and each one serves right.
    let r = store.record(&id).unwrap().unwrap();
    assert_eq!(r.blocks_present, stored.len() as u64, "{msg}");
    for b in &stored {
        let bytes = store
            .get_block(&id, *b)
            .unwrap()
            .expect("stored blocks keep serving");
        info.verify_block(*b, &bytes).unwrap();
    }
    // Space freed by removing content makes the store writable again.
    disk.unfill();
    assert!(store.remove(&id).unwrap());
    store.put_content(&info, "big", Origin::Fetched).unwrap();
    let b0 = layout.block_at(0).unwrap();
    store.put_block(&id, b0, &data[..65_536]).unwrap();
    assert!(store.get_block(&id, b0).unwrap().is_some());
}
