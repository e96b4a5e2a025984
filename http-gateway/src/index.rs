//! The gateway's index: URL records and the claims filed for peers, in a small key-value store.
//! [`RocksIndex`] keeps it in its own RocksDB beside the node's store (so the node's store stays
//! unaware of HTTP); [`MemIndex`] is its in-memory twin for tests. Both answer peers' name
//! lookups ([`engine::peer::NameIndex`]).
//!
//! Crash rule: a URL record is written only after its content is durable in the store, so a
//! record never names content that is not there; content evicted later is noticed on the next
//! request (the record is dropped and the URL fetched again).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use engine::peer::NameIndex;

/// Why the index failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// It could not be opened.
    #[error("opening the gateway's index {}: {source}", .path.display())]
    Open {
        /// Where it is.
        path: std::path::PathBuf,
        /// The database's error.
        source: crate::body::BoxError,
    },
    /// A read or write failed.
    #[error("the gateway's index failed: {0}")]
    Db(#[source] crate::body::BoxError),
}

/// A small key-value store.
pub trait Index: Send + Sync + std::fmt::Debug + 'static {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, IndexError>;
    /// Puts `value` under `key`, durably.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), IndexError>;
    /// Removes `key`.
    fn delete(&self, key: &[u8]) -> Result<(), IndexError>;
}

fn claim_key(name: &[u8; 32]) -> Vec<u8> {
    let mut k = b"name\0".to_vec();
    k.extend_from_slice(name);
    k
}

/// Files `sealed` for peers under `name`.
pub fn file_claim(index: &dyn Index, name: &[u8; 32], sealed: &[u8]) -> Result<(), IndexError> {
    index.put(&claim_key(name), sealed)
}

/// Withdraws the claim under `name`.
pub fn withdraw_claim(index: &dyn Index, name: &[u8; 32]) -> Result<(), IndexError> {
    index.delete(&claim_key(name))
}

/// Peers' view of an index: the claims filed in it.
#[derive(Debug, Clone)]
pub struct Claims(pub Arc<dyn Index>);

impl NameIndex for Claims {
    fn lookup(&self, key: &[u8; 32]) -> Option<Vec<u8>> {
        self.0.get(&claim_key(key)).ok().flatten()
    }
}

#[cfg(feature = "rocksdb")]
pub use rocks::RocksIndex;

#[cfg(feature = "rocksdb")]
mod rocks {
    use std::path::Path;

    use super::{Index, IndexError};

    /// The index in its own RocksDB.
    pub struct RocksIndex {
        db: rocksdb::DB,
    }

    impl std::fmt::Debug for RocksIndex {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("RocksIndex").finish_non_exhaustive()
        }
    }

    impl RocksIndex {
        /// Opens (or creates) the index at `path`.
        pub fn open(path: &Path) -> Result<RocksIndex, IndexError> {
            let mut opts = rocksdb::Options::default();
            opts.create_if_missing(true);
            opts.set_keep_log_file_num(2);
            let db = rocksdb::DB::open(&opts, path).map_err(|e| IndexError::Open {
                path: path.to_path_buf(),
                source: Box::new(e),
            })?;
            Ok(RocksIndex { db })
        }
    }

    fn rocks_err(e: rocksdb::Error) -> IndexError {
        IndexError::Db(Box::new(e))
    }

    impl Index for RocksIndex {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, IndexError> {
            self.db.get(key).map_err(rocks_err)
        }

        fn put(&self, key: &[u8], value: &[u8]) -> Result<(), IndexError> {
            let mut w = rocksdb::WriteOptions::default();
            w.set_sync(true);
            self.db.put_opt(key, value, &w).map_err(rocks_err)
        }

        fn delete(&self, key: &[u8]) -> Result<(), IndexError> {
            self.db.delete(key).map_err(rocks_err)
        }
    }
}

/// The index in memory (tests).
#[derive(Debug, Default)]
pub struct MemIndex(RwLock<HashMap<Vec<u8>, Vec<u8>>>);

impl Index for MemIndex {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, IndexError> {
        Ok(self.0.read().expect("index lock").get(key).cloned())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), IndexError> {
        self.0
            .write()
            .expect("index lock")
            .insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<(), IndexError> {
        self.0.write().expect("index lock").remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conformance(i: Arc<dyn Index>) {
        assert_eq!(i.get(b"a").unwrap(), None);
        i.put(b"a", b"1").unwrap();
        i.put(b"a", b"2").unwrap();
        assert_eq!(i.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
        i.delete(b"a").unwrap();
        assert_eq!(i.get(b"a").unwrap(), None);
        let claims = Claims(Arc::clone(&i));
        file_claim(i.as_ref(), &[7; 32], b"sealed").unwrap();
        assert_eq!(claims.lookup(&[7; 32]).as_deref(), Some(&b"sealed"[..]));
        assert_eq!(claims.lookup(&[8; 32]), None);
        withdraw_claim(i.as_ref(), &[7; 32]).unwrap();
        assert_eq!(claims.lookup(&[7; 32]), None);
    }

    #[test]
    fn mem_index() {
        conformance(Arc::new(MemIndex::default()));
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn rocks_index_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        conformance(Arc::new(RocksIndex::open(dir.path()).unwrap()));
        RocksIndex::open(dir.path())
            .unwrap()
            .put(b"k", b"v")
            .unwrap();
        let again = RocksIndex::open(dir.path()).unwrap();
        assert_eq!(again.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
