//! A download whose spool can no longer be written (a full disk, a failing one) goes on from
//! memory: the rest of its body passes through to the clients already reading it, uncached,
//! instead of cutting them off. It owns that memory ([`Relay`]: a window of the body past the
//! last byte spooled, let go once every reader has passed it, so the download waits for its
//! slowest reader, as a socket would) and the gateway's note of whether its disk takes writes
//! ([`DiskState`], which logs when that changes rather than at every failed write).
//!
//! The spool keeps the bytes written before the failure; a reader reads those from the file
//! and the rest from here. A reader that joins after bytes were let go cannot be served
//! ([`Relay::reader`] says so) and asks the origin itself; a reader that makes no progress for
//! the download's patience is cut off so that it cannot hold the others for ever.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

/// Most body bytes held in memory for one download's readers.
pub(crate) const WINDOW: u64 = 4 << 20;

/// Why the relay could not take more bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayError {
    /// Every client of the download went away: nobody to pass the rest to.
    #[error("every client of the download went away")]
    NoReaders,
}

/// The body past the spool, for the readers of one download.
#[derive(Debug, Default)]
pub(crate) struct Relay {
    state: Mutex<State>,
    /// Woken when bytes are let go (room for more).
    room: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Where relaying began (the spool holds the bytes before it); `None` while the spool
    /// takes every byte.
    from: Option<u64>,
    /// The offset of the first byte held.
    base: u64,
    /// The bytes held, from `base`.
    chunks: VecDeque<Bytes>,
    /// The offset after the last byte held.
    end: u64,
    /// Each reader's next offset, by reader number.
    readers: HashMap<u64, u64>,
    next_reader: u64,
}

impl State {
    /// Lets go of the bytes every reader has passed.
    fn trim(&mut self) -> bool {
        let low = self.readers.values().copied().min().unwrap_or(self.end);
        let mut trimmed = false;
        while let Some(c) = self.chunks.front() {
            let n = c.len() as u64;
            if self.base + n > low {
                break;
            }
            self.chunks.pop_front();
            self.base += n;
            trimmed = true;
        }
        trimmed
    }
}

impl Relay {
    /// A new reader of the body from its start; `None` if bytes past the spool were let go
    /// already (this reader came too late to be served).
    pub(crate) fn reader(self: &Arc<Self>) -> Option<Reader> {
        let mut s = self.lock();
        if s.from.is_some_and(|from| s.base > from) {
            return None;
        }
        let id = s.next_reader;
        s.next_reader += 1;
        s.readers.insert(id, 0);
        Some(Reader {
            relay: Arc::clone(self),
            id,
        })
    }

    /// The spool failed after `at` bytes: the body goes on from memory from there.
    pub(crate) fn begin(&self, at: u64) {
        let mut s = self.lock();
        s.from = Some(at);
        s.base = at;
        s.end = at;
    }

    /// Where relaying began, if it did.
    pub(crate) fn from(&self) -> Option<u64> {
        self.lock().from
    }

    /// Adds the next bytes of the body, once the window has room for them; the offset after
    /// them. A reader that holds the window full for `patience` is cut off. With no reader
    /// registered, nothing is held (a client of the download that registers later finds the
    /// bytes gone and asks the origin itself); whether the download still has clients at all
    /// is the caller's to judge ([`RelayError::NoReaders`]).
    pub(crate) async fn push(&self, data: Bytes, patience: Duration) -> u64 {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut s = self.lock();
                s.trim();
                // Always room for one piece, however large (the feed's pieces are bounded).
                if s.end - s.base < WINDOW || s.chunks.is_empty() {
                    s.end += data.len() as u64;
                    s.chunks.push_back(data);
                    return s.end;
                }
            }
            if tokio::time::timeout(patience, room).await.is_err() {
                self.cut_slowest();
            }
        }
    }

    /// Cuts off the readers furthest behind, and lets go of what only they needed.
    fn cut_slowest(&self) {
        let mut s = self.lock();
        let Some(low) = s.readers.values().copied().min() else {
            return;
        };
        s.readers.retain(|_, at| *at > low);
        tracing::info!(
            "a client of a download passed through uncached was cut off: it read nothing for too long"
        );
        s.trim();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("relay lock")
    }
}

/// One client reading a download: its place in the body, which holds the bytes after it in
/// memory until it has read them. Dropping it lets them go.
#[derive(Debug)]
pub(crate) struct Reader {
    relay: Arc<Relay>,
    id: u64,
}

impl Reader {
    /// Up to `max` bytes from `at`, which must be past where relaying began; `None` if this
    /// reader was cut off (it fell behind for too long) or the bytes were let go.
    pub(crate) fn read(&self, at: u64, max: usize) -> Option<Bytes> {
        let s = self.relay.lock();
        if !s.readers.contains_key(&self.id) || at < s.base {
            return None;
        }
        let mut start = s.base;
        for c in &s.chunks {
            let n = c.len() as u64;
            if at < start + n {
                let off = (at - start) as usize;
                let take = (c.len() - off).min(max);
                return Some(c.slice(off..off + take));
            }
            start += n;
        }
        Some(Bytes::new())
    }

    /// This reader has read everything before `at`.
    pub(crate) fn passed(&self, at: u64) {
        let mut s = self.relay.lock();
        if let Some(p) = s.readers.get_mut(&self.id) {
            *p = at;
        }
        if s.trim() {
            self.relay.room.notify_waiters();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut s = self.relay.lock();
        s.readers.remove(&self.id);
        s.trim();
        drop(s);
        // Also wakes a download whose last reader went away.
        self.relay.room.notify_waiters();
    }
}

/// Whether the gateway's disk takes writes, as its last spool or store write found: the change
/// is logged once each way, and counted, not every failed write.
#[derive(Debug, Default)]
pub(crate) struct DiskState {
    failing: AtomicBool,
}

impl DiskState {
    /// A write to the spool or the store failed with `e`.
    pub(crate) fn failed(&self, e: &dyn std::fmt::Display) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the cache cannot write ({e}): responses pass through uncached until it can again"
            );
        } else {
            tracing::debug!("the cache cannot write: {e}");
        }
    }

    /// A body was kept: the disk takes writes.
    pub(crate) fn wrote(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("the cache can write again: caching resumed");
        }
    }

    /// Whether the last write failed.
    #[cfg(test)]
    pub(crate) fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(n: usize, b: u8) -> Bytes {
        Bytes::from(vec![b; n])
    }

    #[tokio::test]
    async fn readers_get_every_byte_and_the_window_waits_for_the_slowest() {
        let r = Arc::new(Relay::default());
        let (a, b) = (r.reader().unwrap(), r.reader().unwrap());
        r.begin(100);
        let p = Duration::from_secs(5);
        let mut end = 0;
        for i in 0..4u8 {
            end = r.push(piece(1 << 20, i), p).await;
        }
        assert_eq!(end, 100 + (4 << 20));
        // The window is full: the next piece waits until both readers passed the first.
        let r2 = Arc::clone(&r);
        let more = tokio::spawn(async move { r2.push(piece(10, 9), p).await });
        tokio::task::yield_now().await;
        assert!(!more.is_finished());
        assert_eq!(a.read(100, 5).unwrap(), piece(5, 0));
        assert_eq!(
            a.read(100 + (1 << 20) + 1, usize::MAX).unwrap().len(),
            (1 << 20) - 1
        );
        a.passed(100 + (1 << 20));
        tokio::task::yield_now().await;
        assert!(!more.is_finished(), "b has not read yet");
        b.passed(100 + (2 << 20));
        assert_eq!(more.await.unwrap(), 100 + (4 << 20) + 10);
        // Let go of: a reader may not go back; a new reader cannot start.
        assert!(a.read(100, 1).is_none());
        assert!(r.reader().is_none());
        assert_eq!(r.from(), Some(100));
        // Every reader gone: nothing is held.
        drop((a, b));
        let end = r.push(piece(1, 1), p).await;
        r.push(piece(1, 1), p).await;
        assert_eq!(r.lock().base, end, "let go");
    }

    #[tokio::test]
    async fn a_reader_stuck_for_the_patience_is_cut_off_and_the_others_go_on() {
        let r = Arc::new(Relay::default());
        let (stuck, live) = (r.reader().unwrap(), r.reader().unwrap());
        r.begin(0);
        let p = Duration::from_millis(50);
        for _ in 0..5 {
            let end = r.push(piece(1 << 20, 1), p).await;
            live.passed(end);
        }
        assert!(stuck.read(0, 1).is_none(), "cut off");
        assert_eq!(live.read(5 << 20, 1).unwrap().len(), 0, "nothing yet");
    }

    #[test]
    fn the_disk_state_changes_once_each_way() {
        let d = DiskState::default();
        assert!(!d.failing());
        d.failed(&"no space left on device");
        d.failed(&"no space left on device");
        assert!(d.failing());
        d.wrote();
        assert!(!d.failing());
    }
}
