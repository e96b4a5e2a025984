//! Content streamed in before anyone can check it: a whole download of content known by its
//! ticket only (a node's, [`crate::node`]), or of a URL's body (the gateway's spool). Its bytes
//! arrive in order, from an origin or from a peer's download followed as it grows; a
//! [`Download`] writes each piece into a file at its offset and hashes it as it arrives, on a
//! blocking thread (the hashing on every core), and reports every byte written
//! ([`Download::new`]'s `written`, so the file can be offered to peers and read by local
//! readers as it grows, woken by the writes, never by a timer). At the end it gives the content
//! information of what arrived; the caller checks it against what it expected (the ticket) and
//! keeps the file ([`crate::node::Node::keep_file`]) or not.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

use crate::content::{ContentInfo, HashError, HashOptions, ServerSecret, hash_reader};

/// Pieces queued between the network and the writing thread.
const DEPTH: usize = 64;
/// Largest piece queued: longer ones are queued in slices of this, so the queue holds a few
/// MiB at most, whatever the pieces' sizes.
const SLICE: usize = 256 << 10;

/// Called with the bytes written into the file so far, after each write.
pub type Written = Box<dyn Fn(u64) + Send + 'static>;

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
    /// The writing thread stopped (a write failed; [`Download::finish`] says why).
    #[error("the download's file could not be written")]
    Stopped,
}

/// Why a download could not be finished.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FinishError {
    /// Writing the file failed, or what arrived cannot be described (too long).
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The writing thread failed.
    #[error("the download's writer failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A download in progress into a file.
#[derive(Debug)]
pub struct Download {
    tx: mpsc::Sender<Bytes>,
    hashing: tokio::task::JoinHandle<Result<ContentInfo, HashError>>,
    queued: u64,
    limit: u64,
}

impl Download {
    /// A download into `file` from its start, hashed under `secret`, of at most `limit` bytes;
    /// `written` hears of every byte written. Needs a tokio runtime (the writer is a blocking
    /// task).
    pub fn new(file: Arc<File>, secret: ServerSecret, limit: u64, written: Written) -> Download {
        let (tx, rx) = mpsc::channel(DEPTH);
        let writer = Writer {
            rx,
            cur: Bytes::new(),
            file,
            at: 0,
            written,
        };
        let hashing = tokio::task::spawn_blocking(move || {
            hash_reader(writer, &secret, &HashOptions::default(), &mut |_| {})
        });
        Download {
            tx,
            hashing,
            queued: 0,
            limit,
        }
    }

    /// Bytes taken so far.
    pub fn len(&self) -> u64 {
        self.queued
    }

    /// Whether nothing was taken yet.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queues the next bytes (waiting while the writer is behind).
    pub async fn put(&mut self, data: Bytes) -> Result<(), PutError> {
        let n = data.len() as u64;
        if self.queued + n > self.limit {
            return Err(PutError::TooLong { limit: self.limit });
        }
        for at in (0..data.len()).step_by(SLICE) {
            let piece = data.slice(at..data.len().min(at + SLICE));
            self.tx.send(piece).await.map_err(|_| PutError::Stopped)?;
        }
        self.queued += n;
        Ok(())
    }

    /// Waits until every byte is written and hashed: the content information of all of it.
    pub async fn finish(self) -> Result<ContentInfo, FinishError> {
        drop(self.tx);
        Ok(self.hashing.await??)
    }
}

/// What the hasher reads: pieces from the network, each written into the file at its offset
/// (and announced) before it is hashed.
struct Writer {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
    file: Arc<File>,
    at: u64,
    written: Written,
}

impl Read for Writer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            let Some(next) = self.rx.blocking_recv() else {
                return Ok(0);
            };
            self.file.write_all_at(&next, self.at)?;
            self.at += next.len() as u64;
            (self.written)(self.at);
            self.cur = next;
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test]
    async fn writes_hashes_and_reports_every_byte() {
        let data = fixtures_content(300_000);
        let file = Arc::new(tempfile::tempfile().unwrap());
        let seen = Arc::new(AtomicU64::new(0));
        let s2 = Arc::clone(&seen);
        let secret = ServerSecret::open_group();
        let written: Written = Box::new(move |n| s2.store(n, Ordering::Relaxed));
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
    async fn refuses_more_than_its_limit() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let mut d = Download::new(file, ServerSecret::open_group(), 10, Box::new(|_| {}));
        d.put(Bytes::from_static(b"0123456789")).await.unwrap();
        assert_eq!(
            d.put(Bytes::from_static(b"x")).await,
            Err(PutError::TooLong { limit: 10 })
        );
    }

    fn fixtures_content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }
}
