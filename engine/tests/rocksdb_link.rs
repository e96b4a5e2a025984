//! The RocksDB build set-up works: the prebuilt static library (see `.ci/env.sh`) links and a
//! database opens, writes, reads back and reopens. The store itself lands with the store issue.
#![cfg(feature = "rocksdb")]

#[test]
fn rocksdb_opens_writes_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        let db = rocksdb::DB::open(&opts, dir.path()).unwrap();
        db.put(b"pdist", b"segment").unwrap();
        db.flush().unwrap();
    }
    let db = rocksdb::DB::open_default(dir.path()).unwrap();
    assert_eq!(db.get(b"pdist").unwrap().as_deref(), Some(&b"segment"[..]));
    // A second open of the same directory is refused by RocksDB's lock, not corrupted.
    assert!(rocksdb::DB::open_default(dir.path()).is_err());
}
