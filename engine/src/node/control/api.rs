//! The control API's messages: the request and answer types its server and its client share,
//! as JSON (serde), and the kinds of failure with their one mapping to HTTP statuses.
//!
//! | route | request | answer |
//! |---|---|---|
//! | `GET /v1/status` | – | [`NodeStatus`] |
//! | `GET /v1/peers` | – | `[`[`PeerView`]`]` |
//! | `GET /v1/ls` | – | `[`[`ContentRecord`]`]` |
//! | `POST /v1/publish` | [`PublishRequest`] | `[`[`Published`]`]` |
//! | `POST /v1/rm` | [`RmRequest`] | `[`[`Removed`]`]` |
//! | `POST /v1/verify` | [`VerifyRequest`] | `[`[`Verified`]`]` |
//! | `POST /v1/seed` | [`SeedRequest`] | `[`[`SeedResult`]`]` |
//! | `POST /v1/fetch` | [`FetchRequest`] | JSON lines of [`FetchLine`], the last `done` or `error` |
//! | `GET /v1/content/TICKET` | – | the content's bytes |
//!
//! A refused request is answered with its [`ErrorKind`]'s status and a [`Failure`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::fetch::{FetchError, FetchEvent, FetchReport, Source};
use crate::origin::OriginError;
use crate::store::StoreError;

pub use super::super::{NodeStatus, PeerView, SeedResult};
pub use crate::store::{ContentRecord, Verified};

/// The socket's file name in the data directory.
pub const SOCKET_NAME: &str = "node.sock";

/// What kind of failure an error is (for exit codes and HTTP statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad arguments.
    Usage,
    /// Content nobody reachable has.
    Unavailable,
    /// Bytes or content information that do not verify.
    Data,
    /// A missing input file.
    NoInput,
    /// Disk or network I/O.
    Io,
    /// Anything else.
    Failure,
}

impl ErrorKind {
    /// The HTTP status of an error of this kind (the one place this mapping lives).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::Usage => StatusCode::BAD_REQUEST,
            ErrorKind::Unavailable => StatusCode::NOT_FOUND,
            ErrorKind::Data => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::NoInput => StatusCode::NOT_FOUND,
            ErrorKind::Io | ErrorKind::Failure => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind of a fetch error.
    pub fn of_fetch(e: &FetchError) -> ErrorKind {
        match e {
            FetchError::NoInfo { .. } | FetchError::Unavailable { .. } => ErrorKind::Unavailable,
            FetchError::Origin(OriginError::Changed(_)) => ErrorKind::Data,
            FetchError::Origin(OriginError::BadUrl(_) | OriginError::NotHttp { .. }) => {
                ErrorKind::Usage
            }
            FetchError::Origin(_) => ErrorKind::Unavailable,
            FetchError::Store(e) => ErrorKind::of_store(e),
            _ => ErrorKind::Failure,
        }
    }

    /// The kind of a publishing error.
    pub fn of_publish(e: &crate::store::PublishError) -> ErrorKind {
        match e {
            crate::store::PublishError::Open { .. } => ErrorKind::NoInput,
            crate::store::PublishError::Store { source, .. } => ErrorKind::of_store(source),
            _ => ErrorKind::Io,
        }
    }

    /// The kind of a store error.
    pub fn of_store(e: &StoreError) -> ErrorKind {
        match e {
            StoreError::Io { .. } | StoreError::MissingBlock { .. } => ErrorKind::Io,
            StoreError::Verify(_) => ErrorKind::Data,
            _ => ErrorKind::Failure,
        }
    }
}

/// What a failure lacked, when a client could supply it (the CLI turns these into hints about
/// its options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lacking {
    /// No peer is known at all.
    Peers,
    /// Blocks no peer holds, and no origin to take them from.
    Origin,
}

impl Lacking {
    /// What a fetch error lacked.
    pub fn of_fetch(e: &FetchError) -> Option<Lacking> {
        match e {
            FetchError::NoInfo { asked: 0, .. } => Some(Lacking::Peers),
            FetchError::Unavailable { .. } => Some(Lacking::Origin),
            _ => None,
        }
    }
}

/// A refused request, as the control API reports it across the socket: its kind, the error's
/// message (the error itself stays in the node), and what it lacked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The kind.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub error: String,
    /// What a client could supply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lacking: Option<Lacking>,
}

impl Failure {
    /// A failure of `kind`, saying `error`.
    pub fn new(kind: ErrorKind, error: impl std::fmt::Display) -> Failure {
        Failure {
            kind,
            error: error.to_string(),
            lacking: None,
        }
    }

    /// A failed fetch.
    pub fn of_fetch(e: &FetchError) -> Failure {
        Failure {
            lacking: Lacking::of_fetch(e),
            ..Failure::new(ErrorKind::of_fetch(e), e)
        }
    }

    /// A failed store operation.
    pub fn of_store(e: &StoreError) -> Failure {
        Failure::new(ErrorKind::of_store(e), e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

impl std::error::Error for Failure {}

/// A request to fetch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The ticket.
    pub ticket: String,
    /// Write the content here (absolute path) once fetched.
    pub output: Option<PathBuf>,
    /// Origin URL for blocks no peer holds.
    pub origin: Option<String>,
    /// Peers to add (HOST:PORT) before fetching.
    #[serde(default)]
    pub peers: Vec<String>,
}

/// A request to publish.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishRequest {
    /// Absolute paths.
    pub paths: Vec<PathBuf>,
    /// Copy into the store.
    pub copy: bool,
}

/// One published file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Its ticket.
    pub ticket: String,
    /// Its name in the store.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Its length.
    pub size: u64,
    /// Its blocks.
    pub blocks: u64,
    /// Whether the store did not have it before.
    pub new: bool,
    /// Whether its bytes were copied into the store.
    pub copied: bool,
}

impl Published {
    /// The row of `path`, published as `info` (`new` to the store; `copied` into it).
    pub fn new(info: &crate::ContentInfo, path: &std::path::Path, new: bool, copied: bool) -> Self {
        Published {
            ticket: info.id().ticket().to_string(),
            name: crate::store::name_of(path),
            path: path.to_path_buf(),
            size: info.layout().content_len(),
            blocks: info.layout().block_count(),
            new,
            copied,
        }
    }
}

/// A request to remove contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RmRequest {
    /// Their tickets.
    pub tickets: Vec<String>,
}

/// One content asked to be removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// Its ticket.
    pub ticket: String,
    /// Whether it was in the store.
    pub removed: bool,
}

/// A request to check what the store holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// One content's ticket; `None`: every content.
    pub ticket: Option<String>,
}

/// A request to seed cache nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedRequest {
    /// The content's ticket.
    pub ticket: String,
    /// Only the cache node of this name or node ID prefix.
    pub on: Option<String>,
}

/// A peer dropped from a fetch, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// The peer.
    pub peer: String,
    /// Why.
    pub reason: String,
}

/// The last line of a successful fetch: where the bytes came from, and who was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchDone {
    /// The ticket.
    pub ticket: String,
    /// The content's length.
    pub len: u64,
    /// Bytes that were here already.
    pub present: u64,
    /// Bytes by source: a peer's address, or `origin`.
    pub by_source: BTreeMap<String, u64>,
    /// Peers dropped.
    pub dropped: Vec<Dropped>,
    /// The fetching process's peak resident set size, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
}

impl FetchDone {
    /// The summary of a fetch of `id` (`len` bytes) that did `report`.
    pub fn new(id: &crate::ContentId, len: u64, report: &FetchReport) -> FetchDone {
        FetchDone {
            ticket: id.ticket().to_string(),
            len,
            present: report.present,
            by_source: report
                .by_source
                .iter()
                .map(|(s, n)| (source_name(s), *n))
                .collect(),
            dropped: report
                .dropped
                .iter()
                .map(|(p, w)| Dropped {
                    peer: p.to_string(),
                    reason: w.clone(),
                })
                .collect(),
            peak_rss_bytes: None,
        }
    }
}

/// One line of a fetch's answer (`pdist fetch --json` prints the same lines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FetchLine {
    /// Work is planned.
    Started {
        /// Content length.
        len: u64,
        /// Bytes already in the store.
        present: u64,
        /// Peers that hold some of it.
        peers: usize,
    },
    /// Verified bytes stored.
    Progress {
        /// From where: a peer's address, or `origin`.
        source: String,
        /// How many bytes.
        bytes: u64,
    },
    /// A peer was dropped from this transfer.
    PeerDropped {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The fetch is done.
    Done(FetchDone),
    /// The fetch failed.
    Error(Failure),
}

impl From<&FetchEvent> for FetchLine {
    fn from(e: &FetchEvent) -> FetchLine {
        match e {
            FetchEvent::Started {
                len,
                present,
                peers,
            } => FetchLine::Started {
                len: *len,
                present: *present,
                peers: *peers,
            },
            FetchEvent::Progress { source, bytes } => FetchLine::Progress {
                source: source_name(source),
                bytes: *bytes,
            },
            FetchEvent::PeerDropped { peer, reason } => FetchLine::PeerDropped {
                peer: peer.to_string(),
                reason: reason.clone(),
            },
        }
    }
}

/// How a source is named in events and reports: a peer's address, or "origin".
pub fn source_name(s: &Source) -> String {
    match s {
        Source::Peer(a) => a.to_string(),
        Source::Origin => "origin".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_json_shape() {
        let started = FetchLine::Started {
            len: 9,
            present: 1,
            peers: 2,
        };
        assert_eq!(
            serde_json::to_value(&started).unwrap(),
            serde_json::json!({"event": "started", "len": 9, "present": 1, "peers": 2})
        );
        let failed = FetchLine::Error(Failure::new(ErrorKind::Unavailable, "nobody has it"));
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            serde_json::json!({"event": "error", "kind": "unavailable", "error": "nobody has it"})
        );
        let done = FetchLine::Done(FetchDone {
            ticket: "t".into(),
            len: 3,
            present: 0,
            by_source: [("origin".to_string(), 3)].into(),
            dropped: vec![],
            peak_rss_bytes: None,
        });
        let v = serde_json::to_value(&done).unwrap();
        assert_eq!(v["event"], "done");
        assert_eq!(v["by_source"]["origin"], 3);
        for line in [started, failed, done] {
            let back: FetchLine =
                serde_json::from_str(&serde_json::to_string(&line).unwrap()).unwrap();
            assert_eq!(back, line);
        }
    }
}
