//! Downloads in progress that peers take as they arrive ([`crate::wire::Request::Tail`]): the
//! node downloading content from an origin writes it into a file, and its peers that want the
//! same content read that file behind it. Nothing is checked here: the content is known only
//! by its ticket until the whole has arrived, so each taker hashes what it took and keeps it
//! only if it hashes to the ticket. A gateway offers its downloads of URLs the same way, under
//! the URL's name key, with the response head sealed for those who know the URL as the
//! source's metadata.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::wire::{MAX_TAIL_CHUNK, MAX_TAIL_META, Reply, TailKey};

/// A download being written into a file, front to back.
#[derive(Debug)]
pub struct TailSource {
    file: Arc<File>,
    have: AtomicU64,
    complete: AtomicBool,
    meta: Vec<u8>,
    key: TailKey,
}

impl TailSource {
    /// A download into `file`, whose first `have` bytes are written already; its bytes go out
    /// sealed under `key`, which only its takers can derive.
    pub fn new(file: Arc<File>, have: u64, key: TailKey) -> Arc<TailSource> {
        TailSource::with_meta(file, have, Vec::new(), key)
    }

    /// [`TailSource::new`], with `meta` (at most [`MAX_TAIL_META`] bytes, else dropped) sent
    /// with every answer: whatever the offering component wants its takers to know, sealed by
    /// it; the node passes it on without reading it.
    pub fn with_meta(
        file: Arc<File>,
        have: u64,
        mut meta: Vec<u8>,
        key: TailKey,
    ) -> Arc<TailSource> {
        if meta.len() > MAX_TAIL_META {
            meta.clear();
        }
        Arc::new(TailSource {
            file,
            have: AtomicU64::new(have),
            complete: AtomicBool::new(false),
            meta,
            key,
        })
    }

    /// The first `have` bytes are in the file now.
    pub fn advance(&self, have: u64) {
        self.have.fetch_max(have, Ordering::Release);
    }

    /// The download is complete: what the file has is the whole content.
    pub fn finish(&self) {
        self.complete.store(true, Ordering::Release);
    }

    /// The file.
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Whether the download is complete.
    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    /// Bytes in the file so far.
    pub fn have(&self) -> u64 {
        self.have.load(Ordering::Acquire)
    }

    /// The answer to a tail request from `offset`: up to [`MAX_TAIL_CHUNK`] bytes of what the
    /// file has, sealed under the download's key. `None` if the file cannot be read.
    pub fn read(&self, offset: u64) -> Option<Reply> {
        // Completeness first: when it is set, `have` is final.
        let complete = self.is_complete();
        let have = self.have();
        let n = have.saturating_sub(offset).min(MAX_TAIL_CHUNK as u64) as usize;
        let mut data = vec![0; n];
        self.file.read_exact_at(&mut data, offset).ok()?;
        let data = if data.is_empty() {
            data
        } else {
            self.key.seal(offset, &data)
        };
        Some(Reply::Tail {
            have,
            complete,
            meta: self.meta.clone(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn key() -> TailKey {
        TailKey::from_secret([3; 32])
    }

    #[test]
    fn reads_only_what_was_written_sealed_and_says_when_it_is_whole() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789").unwrap();
        let t = TailSource::new(Arc::new(f), 4, key());
        let tail = |offset| match t.read(offset) {
            Some(Reply::Tail {
                have,
                complete,
                data,
                ..
            }) => {
                let plain = if data.is_empty() {
                    data
                } else {
                    assert!(
                        TailKey::from_secret([4; 32]).open(offset, &data).is_err(),
                        "sealed: another key opens nothing"
                    );
                    assert!(
                        key().open(offset + 1, &data).is_err(),
                        "bound to its offset"
                    );
                    key().open(offset, &data).unwrap()
                };
                (have, complete, plain)
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(tail(0), (4, false, b"0123".to_vec()));
        assert_eq!(tail(3), (4, false, b"3".to_vec()));
        assert_eq!(tail(4), (4, false, vec![]));
        assert_eq!(tail(9), (4, false, vec![]));
        t.advance(10);
        t.advance(7);
        t.finish();
        assert_eq!(tail(4), (10, true, b"456789".to_vec()));
        assert_eq!(tail(10), (10, true, vec![]));
    }

    #[test]
    fn a_file_shorter_than_it_claims_is_an_error_not_a_short_answer() {
        let t = TailSource::new(Arc::new(tempfile::tempfile().unwrap()), 8, key());
        assert!(t.read(0).is_none());
    }
}
