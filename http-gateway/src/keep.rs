//! Keeping a body: a complete spooled body goes into the store (through the node's one door
//! for content downloaded whole, [`engine::node::Node::keep_file`]: every block checked on the
//! way in, then announced to peers), and only then is the URL's record written, with the claim
//! peers look up for responses that have a validator. In that order, so a record never names
//! content that is not stored. Content fetched from peers is recorded the same way once the
//! fetch has stored it.

use std::sync::Arc;

use crate::policy::Policy;
use engine::{ContentId, ContentInfo};
use http::{HeaderMap, StatusCode};

use engine::node::Node;

use crate::index::{Index, IndexError};
use crate::record::{Claim, UrlKeys, UrlRecord, Variant, index_key};

/// Why a body could not be kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeepError {
    /// The store refused it.
    #[error("storing the body: {0}")]
    Store(#[from] engine::store::StoreError),
    /// The index refused the URL's record or claim.
    #[error("recording the URL: {0}")]
    Index(#[from] IndexError),
    /// Recording did not finish.
    #[error("recording the URL: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A stored response of a URL, to record.
pub(crate) struct Kept {
    /// The URL.
    pub url: String,
    /// Its caching policy.
    pub policy: Policy,
    /// Its end-to-end headers (those a claim carries).
    pub headers: HeaderMap,
    /// The request headers that select it.
    pub selection: String,
    /// File a claim for peers under these keys (only in a group whose peers are trusted).
    pub claim: Option<UrlKeys>,
}

/// Puts a complete spooled body (`file`, which hashes to `info`) into the store, then records
/// the URL in `index` and files its claim.
pub(crate) async fn keep(
    node: &Node,
    index: Arc<dyn Index>,
    info: ContentInfo,
    file: Arc<std::fs::File>,
    kept: Kept,
) -> Result<(), KeepError> {
    let info = Arc::new(info);
    let id = info.id();
    let len = info.layout().content_len();
    // Not evicted before its record names it (a capped store).
    let lease = node.lease(id);
    node.keep_file(&info, &display_name(&kept.url), file)
        .await?;
    tokio::task::spawn_blocking(move || {
        let _lease = lease;
        record_variant(index.as_ref(), &id, len, kept)
    })
    .await?
}

/// Adds a stored body to the URL's record (replacing the variant its request selects) and,
/// when the response has a validator and claims are shared, files the claim peers look up.
pub(crate) fn record_variant(
    index: &dyn Index,
    id: &ContentId,
    len: u64,
    kept: Kept,
) -> Result<(), KeepError> {
    // Peers are told of 200s only: a claim is a body for the URL.
    let ok = kept.policy.status() == StatusCode::OK;
    let key = index_key(&kept.url);
    let mut record = index
        .get(&key)?
        .map(|b| UrlRecord::from_bytes(&b))
        .unwrap_or_default();
    record.add(Variant {
        policy: kept.policy,
        ticket: id.ticket().to_string(),
        len,
        selection: kept.selection,
    });
    index.put(&key, &record.to_bytes())?;
    let h = &kept.headers;
    let validator =
        h.contains_key(http::header::ETAG) || h.contains_key(http::header::LAST_MODIFIED);
    if let Some(keys) = kept.claim.as_ref().filter(|_| validator && ok) {
        let claim = Claim::new(id, len, StatusCode::OK, h);
        let (name, sealed) = (keys.name_key(&kept.url), claim.seal(keys, &kept.url));
        crate::index::file_claim(index, &name, &sealed)?;
    }
    Ok(())
}

/// A URL as the store's name of its content (at most 200 characters).
fn display_name(url: &str) -> String {
    let mut s: String = url.chars().take(200).collect();
    if s.len() < url.len() {
        s.push('…');
    }
    s
}
