//! Repairing a whole download that did not hash to its ticket after bytes were taken from a
//! peer's download ([`super::whole`]). A followed download is sealed under a key every holder of
//! the ticket has, so a hostile member of the group can send other bytes than the origin's,
//! sealed correctly; only the hash at the end tells, and it cannot say which bytes are wrong.
//! What came from peers is therefore taken again from the origin, by range, written over what
//! the peers sent, and the whole file is hashed again. The same goes for what an earlier fetch
//! into the same output left and this one went on from (the origin may have changed since, or
//! the machine lost power before the bytes reached the disk). It costs nothing unless the hash
//! failed.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::content::{ContentInfo, HashOptions, ServerSecret, hash_reader};
use crate::fetch::{FetchError, FetchReport, Source};
use crate::origin::{Mismatch, OriginClient, OriginError};
use crate::peer::PeerAddr;
use crate::store::StoreError;

/// Where bytes nothing vouched for came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Taken {
    /// A peer's download, followed.
    Peer(PeerAddr),
    /// The output, as an earlier fetch left it.
    Resumed,
}

/// Bytes asked of the origin at a time (each piece is held in memory while it is written).
const PIECE: u64 = 8 << 20;

/// A download's file to repair from its origin.
pub(super) struct Repair<'a> {
    /// The origin of the content.
    pub origin: &'a OriginClient,
    /// The download's file.
    pub file: &'a Arc<File>,
    /// The download's length.
    pub len: u64,
    /// The group secret the content is hashed under.
    pub secret: &'a ServerSecret,
}

impl Repair<'_> {
    /// Takes the `unverified` ranges again from the origin and hashes the file again: the
    /// content information of what the file holds now, or `None` if the origin could not send
    /// them (the caller reports the mismatch). The report moves those bytes from the peers (or
    /// what was present) to the origin and names each peer whose bytes were replaced.
    pub async fn run(
        &self,
        unverified: &[(Taken, Range<u64>)],
        report: &mut FetchReport,
        cancel: &CancellationToken,
    ) -> Result<Option<ContentInfo>, FetchError> {
        let bytes: u64 = unverified.iter().map(|(_, r)| r.end - r.start).sum();
        tracing::warn!(
            "a download did not hash to its ticket: taking the {bytes} bytes that came from \
             peers or an earlier fetch again from the origin"
        );
        for (_, r) in unverified {
            match self.rewrite(r.clone(), cancel).await {
                Ok(()) => {}
                Err(FetchError::Origin(e)) => {
                    tracing::warn!("cannot repair the download from the origin: {e}");
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        let info = self.hash().await?;
        for (taken, r) in unverified {
            let n = r.end - r.start;
            *report.by_source.entry(Source::Origin).or_default() += n;
            let peer = match taken {
                Taken::Peer(peer) => *peer,
                Taken::Resumed => {
                    report.present = report.present.saturating_sub(n);
                    continue;
                }
            };
            if let Some(from_peer) = report.by_source.get_mut(&Source::Peer(peer)) {
                *from_peer = from_peer.saturating_sub(n);
            }
            let why = format!(
                "the download followed from it did not hash to the ticket: bytes {}..{} taken \
                 again from the origin",
                r.start, r.end
            );
            report.dropped.push((peer, why));
        }
        report.by_source.retain(|_, n| *n > 0);
        Ok(Some(info))
    }

    /// Writes the origin's bytes of `range` over the file's.
    async fn rewrite(
        &self,
        range: Range<u64>,
        cancel: &CancellationToken,
    ) -> Result<(), FetchError> {
        let mut at = range.start;
        while at < range.end {
            let end = (at + PIECE).min(range.end);
            let data = tokio::select! {
                r = self.origin.get_range(at..end) => r?,
                _ = cancel.cancelled() => return Err(FetchError::Cancelled),
            };
            if data.len() as u64 != end - at {
                let short = Mismatch::Length {
                    got: data.len() as u64,
                    want: end - at,
                };
                return Err(OriginError::from(short).into());
            }
            let file = Arc::clone(self.file);
            let written = tokio::task::spawn_blocking(move || file.write_all_at(&data, at)).await;
            written
                .unwrap_or_else(|e| Err(io::Error::other(e)))
                .map_err(|e| StoreError::io("repairing the download", e))?;
            at = end;
        }
        Ok(())
    }

    /// The content information of the file as it is now.
    async fn hash(&self) -> Result<ContentInfo, FetchError> {
        let (file, len, secret) = (Arc::clone(self.file), self.len, self.secret.clone());
        let hashed = tokio::task::spawn_blocking(move || {
            let reader = At {
                file: &file,
                pos: 0,
                end: len,
            };
            hash_reader(reader, &secret, &HashOptions::default(), &mut |_| {})
        })
        .await
        .map_err(|e| StoreError::io("hashing the download", io::Error::other(e)))?;
        hashed.map_err(|e| OriginError::from(Mismatch::from(e)).into())
    }
}

/// A file read from its start to `end`, by position (the file's own offset is not used).
struct At<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = (self.end - self.pos).min(buf.len() as u64) as usize;
        if left == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..left], self.pos)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        Ok(n)
    }
}
