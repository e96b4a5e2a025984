//! The registry of downloads in flight: one per URL (by index key), shared by every client that
//! asks for the URL while it runs (request coalescing). It owns only the registry and what each
//! download's clients see ([`Snap`]); spooling the body is [`crate::spool`]'s, deciding whether
//! to join or lead is the cache's.
//!
//! The first request to miss a URL leads ([`Downloads::join_or_lead`] gives it a [`Led`]);
//! the others join and read the download as it grows. A led download that ends without a
//! shareable answer (not storable, the origin failed, the leading request went away) is
//! abandoned: its waiting clients go to the origin themselves.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::policy::Policy;
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;

/// Why a download was not kept (or not shared): what its waiting clients are told.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// The leader gave up sharing it before it began (see the reason).
    #[error("not shared: {reason}")]
    Abandoned {
        /// Why.
        reason: &'static str,
    },
    /// The gateway is shutting down.
    #[error("the gateway is stopping")]
    Stopping,
    /// No byte of the body came for this long: the download was abandoned.
    #[error("no byte of the body for {secs} s: abandoned")]
    Stalled {
        /// The wait, in seconds.
        secs: u64,
    },
    /// The origin's body broke off.
    #[error("the origin's body broke off: {0}")]
    OriginBody(#[source] crate::body::BoxError),
    /// The peer gateway followed stopped, with no way to finish from the origin.
    #[error(transparent)]
    Peer(Box<engine::node::TailError>),
    /// The peer gateway followed stopped, and the origin could not send the rest.
    #[error("{peer}; then {origin}")]
    PeerThenOrigin {
        /// Why following stopped.
        peer: Box<engine::node::TailError>,
        /// Why the origin failed.
        origin: Box<engine::fetch::OriginError>,
    },
    /// The origin failed while sending the rest of a followed download.
    #[error(transparent)]
    Origin(Box<engine::fetch::OriginError>),
    /// The body is longer than its `Content-Length` or the largest object cached.
    #[error("the body is longer than announced or allowed (at most {limit} bytes)")]
    TooLong {
        /// The most bytes allowed.
        limit: u64,
    },
    /// The body ended before its `Content-Length`.
    #[error("the origin sent {got} of {expected} bytes")]
    Short {
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The spool failed and the rest could not be passed through.
    #[error(transparent)]
    Relay(#[from] crate::relay::RelayError),
}

impl From<engine::node::TailError> for DownloadError {
    fn from(e: engine::node::TailError) -> Self {
        DownloadError::Peer(Box::new(e))
    }
}

impl From<engine::fetch::OriginError> for DownloadError {
    fn from(e: engine::fetch::OriginError) -> Self {
        DownloadError::Origin(Box::new(e))
    }
}

/// What clients of a download see.
#[derive(Debug, Clone, Default)]
pub struct Snap {
    /// The response head, once the origin answered with something storable.
    pub head: Option<Arc<Head>>,
    /// Body bytes its clients can read so far (in the spool, or past it in memory).
    pub written: u64,
    /// The end: `Ok` when the whole body is in the spool, `Err` when the transfer failed or
    /// is not shared (the client then asks the origin itself).
    pub done: Option<Result<(), Arc<DownloadError>>>,
}

/// A download's response head.
#[derive(Debug)]
pub struct Head {
    /// Its status (200).
    pub status: StatusCode,
    /// Its end-to-end headers.
    pub headers: HeaderMap,
    /// Its caching policy.
    pub policy: Policy,
    /// The spool file (set when spooling starts).
    pub path: PathBuf,
    /// The request headers that select this response (see [`crate::record::selection`]).
    pub selection: String,
}

/// One download in progress, shared by the clients that asked for its URL.
#[derive(Debug)]
pub struct InFlight {
    tx: watch::Sender<Snap>,
    /// An unsafe request invalidated its URL meanwhile: the body is not kept.
    invalidated: std::sync::atomic::AtomicBool,
    /// The body past a spool that failed.
    relay: Arc<crate::relay::Relay>,
}

impl InFlight {
    fn new() -> InFlight {
        InFlight {
            tx: watch::Sender::new(Snap::default()),
            invalidated: Default::default(),
            relay: Arc::default(),
        }
    }

    /// The body past its spool, if the spool failed.
    pub(crate) fn relay(&self) -> Arc<crate::relay::Relay> {
        Arc::clone(&self.relay)
    }

    /// Whether its URL was invalidated while it ran (its body must not be kept).
    pub(crate) fn invalidated(&self) -> bool {
        self.invalidated.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many clients follow it (each holds a subscription until it has read what it needs).
    pub(crate) fn clients(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Its current state, and changes to come.
    pub fn subscribe(&self) -> watch::Receiver<Snap> {
        self.tx.subscribe()
    }

    /// Spooling began under `head`: clients may read the spool.
    pub(crate) fn started(&self, head: Arc<Head>) {
        self.tx.send_modify(|s| s.head = Some(head));
    }

    /// `n` body bytes are in the spool (flushed).
    pub(crate) fn written(&self, n: u64) {
        self.tx.send_modify(|s| s.written = n);
    }

    /// The download ended.
    pub(crate) fn finish(&self, r: Result<(), Arc<DownloadError>>) {
        self.tx.send_modify(|s| s.done = Some(r));
    }

    fn unstarted(&self) -> bool {
        let snap = self.tx.borrow();
        snap.head.is_none() && snap.done.is_none()
    }
}

/// Downloads in progress, by index key.
#[derive(Debug, Default)]
pub(crate) struct Downloads {
    map: Mutex<HashMap<Vec<u8>, Arc<InFlight>>>,
}

/// What a request that misses a URL does about the download of it.
pub(crate) enum Role<'a> {
    /// Another request leads a download of it: read that.
    Join(Arc<InFlight>),
    /// This request leads a new download.
    Lead(Led<'a>),
}

impl Downloads {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Arc<InFlight>>> {
        self.map.lock().expect("downloads lock")
    }

    /// Joins the download of `key`, or registers a new one that the caller leads.
    pub(crate) fn join_or_lead(&self, key: &[u8]) -> Role<'_> {
        let mut map = self.lock();
        if let Some(f) = map.get(key) {
            return Role::Join(Arc::clone(f));
        }
        let f = Arc::new(InFlight::new());
        map.insert(key.to_vec(), Arc::clone(&f));
        Role::Lead(Led {
            downloads: self,
            key: key.to_vec(),
            f,
        })
    }

    /// An unsafe request invalidated `key`: its download in flight, if any, is not kept, and
    /// later requests do not join it.
    pub(crate) fn invalidate(&self, key: &[u8]) {
        if let Some(f) = self.lock().remove(key) {
            f.invalidated
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Forgets the download of `key` if it is `f` (it ended).
    pub(crate) fn remove(&self, key: &[u8], f: &InFlight) {
        let mut map = self.lock();
        if map.get(key).is_some_and(|g| std::ptr::eq(g.as_ref(), f)) {
            map.remove(key);
        }
    }

    /// How many downloads run.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Held by the request that leads a download until it has started spooling or given up: if
/// that request goes away first (its client disconnected, or an error returned early), the
/// download is abandoned, so that clients waiting on it do not wait for ever.
pub(crate) struct Led<'a> {
    downloads: &'a Downloads,
    key: Vec<u8>,
    f: Arc<InFlight>,
}

impl Led<'_> {
    /// The URL's index key.
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    /// The download its clients wait on.
    pub(crate) fn flight(&self) -> &Arc<InFlight> {
        &self.f
    }

    /// Ends the download without sharing it (not storable, the origin failed, a peer has it):
    /// waiting clients go to the origin themselves.
    pub(crate) fn abandon(&self, reason: &'static str) {
        self.downloads.remove(&self.key, &self.f);
        self.f
            .finish(Err(Arc::new(DownloadError::Abandoned { reason })));
    }
}

impl Drop for Led<'_> {
    fn drop(&mut self) {
        if self.f.unstarted() {
            self.abandon("the leading request went away");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_leads_the_others_join_and_an_abandoned_download_ends_for_them() {
        let d = Downloads::default();
        let Role::Lead(led) = d.join_or_lead(b"k") else {
            panic!("the first leads");
        };
        let Role::Join(f) = d.join_or_lead(b"k") else {
            panic!("the second joins");
        };
        assert!(std::ptr::eq(f.as_ref(), led.flight().as_ref()));
        let rx = f.subscribe();
        drop(led);
        assert!(matches!(rx.borrow().done, Some(Err(_))), "told it ended");
        assert_eq!(d.len(), 0, "and forgotten");
        assert!(matches!(d.join_or_lead(b"k"), Role::Lead(_)));
    }

    #[test]
    fn a_started_download_outlives_its_leading_request() {
        let d = Downloads::default();
        let Role::Lead(led) = d.join_or_lead(b"k") else {
            panic!("the first leads");
        };
        let f = Arc::clone(led.flight());
        f.written(0);
        f.tx.send_modify(|s| s.done = Some(Ok(())));
        drop(led);
        assert_eq!(d.len(), 1, "still registered until its task removes it");
        d.remove(b"k", &f);
        assert_eq!(d.len(), 0);
    }
}
