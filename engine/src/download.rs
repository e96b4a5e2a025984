//! Content streamed in before anyone can check it: a whole download of content known by its
//! ticket only (a node's, [`crate::node`]), or of a URL's body (the gateway's spool). Its bytes
//! arrive in order, from an origin or from a peer's download followed as it grows; a
//! [`Download`] writes each piece into a file at its offset and hashes it
//! ([`crate::content::BlockHasher`]) on a blocking task, one piece at a time while the next one
//! arrives, and reports every byte written ([`Download::new`]'s `written`, so the file can be
//! offered to peers and read by local readers as it grows, woken by the writes, never by a
//! timer). A download waiting for its next bytes holds no thread, so thousands of slow ones
//! cost no more than their state. At the end it gives the content information of what
//! arrived; the caller checks it against what it expected (the ticket) and keeps the file
//! ([`crate::node::Node::keep_file`]) or not.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::content::{BlockHasher, ContentInfo, HashError, ServerSecret};

/// Called with the bytes written into the file so far, after each write.
pub type Written = Arc<dyn Fn(u64) + Send + Sync + 'static>;

/// Why a piece was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutError {
    /// It makes the content longer than allowed.
    #[error("longer than {limit} bytes")]
    TooLong {
        /// The most bytes allowed.
        limit: u64,
    },
    /// An earlier write failed ([`Download::finish`] says why).
    #[error("the download's file could not be written")]
    Stopped,
}

/// Why a download could not be finished.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FinishError {
    /// Writing the file failed.
    #[error("writing the download: {0}")]
    Io(#[from] io::Error),
    /// What arrived cannot be described (longer than the largest content).
    #[error(transparent)]
    Hash(#[from] HashError),
    /// A write did not finish.
    #[error("the download's writer failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One piece being written and hashed, with the hasher it hands back.
type Writing = JoinHandle<Result<BlockHasher, (io::Error, BlockHasher)>>;

/// A download in progress into a file.
pub struct Download {
    file: Arc<File>,
    secret: ServerSecret,
    hasher: Option<BlockHasher>,
    writing: Option<Writing>,
    failed: Option<FinishError>,
    written: Written,
    queued: u64,
    limit: u64,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("queued", &self.queued)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// A download into `file` from its start, hashed under `secret`, of at most `limit` bytes;
    /// `written` hears of every byte written. Needs a tokio runtime (writes are blocking
    /// tasks).
    pub fn new(file: Arc<File>, secret: ServerSecret, limit: u64, written: Written) -> Download {
        Download {
            file,
            secret,
            hasher: Some(BlockHasher::new()),
            writing: None,
            failed: None,
            written,
            queued: 0,
            limit,
        }
    }

    /// A download that goes on from the first `have` bytes `file` holds already (left by an
    /// earlier one that stopped): they are read back and hashed first, on a blocking task, and
    /// `written` hears of them. Nothing vouches for them; the caller checks the whole at the
    /// end as always. More than `limit` bytes: [`PutError::TooLong`] as an I/O error.
    pub async fn resume(
        file: Arc<File>,
        secret: ServerSecret,
        limit: u64,
        written: Written,
        have: u64,
    ) -> Result<Download, FinishError> {
        let mut d = Download::new(file, secret, limit, written);
        if have == 0 {
            return Ok(d);
        }
        if have > limit {
            return Err(io::Error::other(PutError::TooLong { limit }).into());
        }
        let (file, mut hasher) = (Arc::clone(&d.file), d.hasher.take().expect("new"));
        let hashed = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < have {
                let n = (have - at).min(buf.len() as u64) as usize;
                file.read_exact_at(&mut buf[..n], at)?;
                hasher.update(&buf[..n]).map_err(io::Error::other)?;
                at += n as u64;
            }
            Ok::<_, io::Error>(hasher)
        });
        d.hasher = Some(hashed.await??);
        d.queued = have;
        (d.written)(have);
        Ok(d)
    }

    /// Bytes taken so far.
    pub fn len(&self) -> u64 {
        self.queued
    }

    /// Whether nothing was taken yet.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Waits for the piece being written; false if writing failed.
    async fn settle(&mut self) -> bool {
        if let Some(w) = self.writing.take() {
            match w.await {
                Ok(Ok(h)) => self.hasher = Some(h),
                Ok(Err((e, h))) => {
                    self.hasher = Some(h);
                    self.failed = Some(e.into());
                }
                Err(e) => self.failed = Some(e.into()),
            }
        }
        self.failed.is_none()
    }

    /// Takes the next bytes: they are written and hashed while the caller waits for the ones
    /// after (one piece at a time).
    pub async fn put(&mut self, data: Bytes) -> Result<(), PutError> {
        let n = data.len() as u64;
        if self.queued + n > self.limit {
            return Err(PutError::TooLong { limit: self.limit });
        }
        if !self.settle().await {
            return Err(PutError::Stopped);
        }
        let mut hasher = self.hasher.take().expect("settled");
        let (file, written, at) = (
            Arc::clone(&self.file),
            Arc::clone(&self.written),
            self.queued,
        );
        self.writing = Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = file.write_all_at(&data, at) {
                return Err((e, hasher));
            }
            written(at + data.len() as u64);
            match hasher.update(&data) {
                Ok(()) => Ok(hasher),
                Err(e) => Err((io::Error::other(e), hasher)),
            }
        }));
        self.queued += n;
        Ok(())
    }

    /// Waits for the write in flight, if any: a download given up leaves its file as written
    /// so far, and nothing writes into it afterwards.
    pub async fn stop(&mut self) {
        self.settle().await;
    }

    /// Waits until every byte is written and hashed: the content information of all of it.
    pub async fn finish(mut self) -> Result<ContentInfo, FinishError> {
        if !self.settle().await {
            return Err(self.failed.take().expect("failed"));
        }
        let hasher = self.hasher.take().expect("settled");
        let secret = self.secret.clone();
        Ok(tokio::task::spawn_blocking(move || hasher.finish(&secret)).await??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{HashOptions, hash_reader};
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn writes_hashes_and_reports_every_byte() {
        let data = content(300_000);
        let file = Arc::new(tempfile::tempfile().unwrap());
        let seen = Arc::new(AtomicU64::new(0));
        let s2 = Arc::clone(&seen);
        let secret = ServerSecret::open_group();
        let written: Written = Arc::new(move |n| s2.store(n, Ordering::Relaxed));
        let mut d = Download::new(Arc::clone(&file), secret.clone(), 1 << 20, written);
        for piece in data.chunks(70_001) {
            d.put(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        assert_eq!(d.len(), 300_000);
        let info = d.finish().await.unwrap();
        let want = hash_reader(&data[..], &secret, &HashOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(info.id(), want.id());
        assert_eq!(seen.load(Ordering::Relaxed), 300_000);
        let mut back = vec![0u8; data.len()];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, data);
    }

    #[tokio::test]
    async fn refuses_more_than_its_limit_and_reports_a_failed_write() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let mut d = Download::new(file, ServerSecret::open_group(), 10, Arc::new(|_| {}));
        d.put(Bytes::from_static(b"0123456789")).await.unwrap();
        assert_eq!(
            d.put(Bytes::from_static(b"x")).await,
            Err(PutError::TooLong { limit: 10 })
        );
        // A file opened read-only: the first write fails, the next piece is refused, and
        // finishing says why.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        let ro = Arc::new(File::open(&path).unwrap());
        let mut d = Download::new(ro, ServerSecret::open_group(), 100, Arc::new(|_| {}));
        d.put(Bytes::from_static(b"abc")).await.unwrap();
        assert_eq!(
            d.put(Bytes::from_static(b"def")).await,
            Err(PutError::Stopped)
        );
        assert!(matches!(d.finish().await, Err(FinishError::Io(_))));
    }

    #[tokio::test]
    async fn a_resumed_download_hashes_what_the_file_held_and_goes_on() {
        let data = content(300_000);
        let file = Arc::new(tempfile::tempfile().unwrap());
        file.write_all_at(&data[..123_457], 0).unwrap();
        let secret = ServerSecret::open_group();
        let seen = Arc::new(AtomicU64::new(0));
        let s2 = Arc::clone(&seen);
        let written: Written = Arc::new(move |n| s2.store(n, Ordering::Relaxed));
        let mut d = Download::resume(Arc::clone(&file), secret.clone(), 1 << 20, written, 123_457)
            .await
            .unwrap();
        assert_eq!((d.len(), seen.load(Ordering::Relaxed)), (123_457, 123_457));
        d.put(Bytes::copy_from_slice(&data[123_457..]))
            .await
            .unwrap();
        let info = d.finish().await.unwrap();
        let want = hash_reader(&data[..], &secret, &HashOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(info.id(), want.id());
        // A file shorter than it is said to hold, or more than the limit: refused.
        let short = Download::resume(
            Arc::clone(&file),
            secret.clone(),
            1 << 20,
            Arc::new(|_| {}),
            400_000,
        );
        assert!(matches!(short.await, Err(FinishError::Io(_))));
        let long = Download::resume(file, secret, 100, Arc::new(|_| {}), 123_457);
        assert!(matches!(long.await, Err(FinishError::Io(_))));
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }
}
