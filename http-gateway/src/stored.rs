//! Answering from the store: a stored response's head, with the whole body, one range (206),
//! several (`multipart/byteranges`) or none (416), read block by block from the store, where
//! every block is checked against its hash as it is read. The content is leased from eviction
//! while it streams.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use engine::ContentId;
use engine::content::ContentInfo;
use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use http::{HeaderValue, Method, Response, StatusCode};

use crate::body::{Body, channel, empty};
use crate::headers::{self, CacheStatus, Provenance};
use crate::range::{self, Multipart, RangePlan, Validators};
use crate::state::Shared;

/// Blocks read per blocking call.
const BATCH_BLOCKS: u64 = 16;
/// Bodies up to this size are read before the answer is sent, in one piece.
const SMALL_BODY: u64 = 256 << 10;

/// The content's information if every block of it is in the store.
pub(crate) fn complete(sh: &Shared, id: &ContentId) -> Option<Arc<ContentInfo>> {
    let store = sh.node.store();
    let rec = store.record(id).ok()??;
    if rec.blocks_present != rec.blocks_total {
        return None;
    }
    store.content_info(id).ok()?
}

/// How an answer from the store is labelled: its `Cache-Status` entry, and where its bytes
/// came from (the store, or peers just now).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Label<'a> {
    pub status: CacheStatus,
    pub fwd: Option<u16>,
    pub detail: Option<&'a str>,
    pub from_peers: bool,
}

impl Label<'_> {
    fn credit(&self, n: u64) -> Provenance {
        if self.from_peers {
            Provenance {
                peers: n,
                ..Default::default()
            }
        } else {
            Provenance {
                store: n,
                ..Default::default()
            }
        }
    }
}

/// Answers `req` with the stored body of `info` under `head` (a stored response's head, as the
/// cache policy gives it).
pub(crate) async fn respond(
    sh: &Arc<Shared>,
    req: &http::request::Parts,
    mut head: http::response::Parts,
    info: Arc<ContentInfo>,
    label: Label<'_>,
) -> Response<Body> {
    let status = label.status;
    let len = info.layout().content_len();
    // Preconditions and ranges apply to a 200 (RFC 9110 §13.2.1, §14.2); another stored status
    // (a 404, a 301) is served whole, as stored.
    let ok = head.status == StatusCode::OK;
    let stored_status = head.status;
    let h = &mut head.headers;
    headers::strip_hop_by_hop(h);
    headers::add_via(h, req.version);
    headers::add_cache_status(h, &status.entry(label.fwd, label.detail));
    if ok {
        h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    sh.metrics.request(status);
    if ok && let Some(r) = crate::conditional::answer_instead(req, h) {
        return r;
    }
    let plan = if req.method == Method::GET && ok {
        let etag = h.get(http::header::ETAG).and_then(|v| v.to_str().ok());
        let lm = h
            .get(http::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok());
        range::plan(
            &req.headers,
            len,
            Validators {
                etag,
                last_modified: lm,
            },
        )
    } else {
        RangePlan::Full
    };
    let head_only = req.method == Method::HEAD;
    let (code, parts, frame) = match plan {
        RangePlan::Full => (stored_status, std::iter::once(0..len).collect(), None),
        RangePlan::Unsatisfiable => {
            let h = &mut head.headers;
            h.insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).expect("ASCII"),
            );
            h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            head.status = StatusCode::RANGE_NOT_SATISFIABLE;
            return Response::from_parts(head, empty());
        }
        RangePlan::Parts(p) if p.len() == 1 => {
            let r = &p[0];
            head.headers.insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&range::content_range(r, len)).expect("ASCII"),
            );
            (StatusCode::PARTIAL_CONTENT, p, None)
        }
        RangePlan::Parts(p) => {
            let ct = head
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let m = Multipart::new(&p, len, ct.as_deref(), &boundary());
            head.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_str(&m.content_type()).expect("ASCII"),
            );
            (StatusCode::PARTIAL_CONTENT, p, Some(m))
        }
    };
    let body_len = match &frame {
        Some(m) => m.body_len(&parts),
        None => parts.iter().map(|r| r.end - r.start).sum(),
    };
    head.status = code;
    head.headers
        .insert(CONTENT_LENGTH, HeaderValue::from(body_len));
    let sent: u64 = parts.iter().map(|r| r.end - r.start).sum();
    head.headers.insert(
        headers::BYTES_HEADER,
        label
            .credit(if head_only { 0 } else { sent })
            .header_value(),
    );
    if head_only {
        return Response::from_parts(head, empty());
    }
    if frame.is_none() && body_len <= SMALL_BODY {
        // Read before answering: one write for head and body, no streaming task.
        let (store, info2) = (Arc::clone(sh.node.store()), Arc::clone(&info));
        let lease = sh.node.lease(info.id());
        let r = parts[0].clone();
        let read = tokio::task::spawn_blocking(move || {
            let _lease = lease;
            read_small(store.as_ref(), &info2, &r)
        })
        .await;
        if let Ok(Ok(bytes)) = read {
            sh.metrics.sent(label.credit(bytes.len() as u64));
            return Response::from_parts(head, crate::body::full(bytes));
        }
    }
    Response::from_parts(head, stream(sh, info, parts, frame, label.from_peers))
}

/// `range` of a stored body, read at once (a small body).
fn read_small(
    store: &dyn engine::store::SegmentStore,
    info: &ContentInfo,
    range: &Range<u64>,
) -> std::io::Result<Bytes> {
    let bs = u64::from(info.layout().block_size());
    let (mut block, last) = (range.start / bs, (range.end.max(1) - 1) / bs);
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    while block <= last && range.end > range.start {
        let n = run_len(info, block, last);
        out.extend_from_slice(&read_blocks(store, info, block, n, range)?);
        block += n;
    }
    Ok(Bytes::from(out))
}

fn boundary() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("the OS random source");
    format!(
        "pdist-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// A body of `parts` of the stored content, framed by `frame` when there are several.
fn stream(
    sh: &Arc<Shared>,
    info: Arc<ContentInfo>,
    parts: Vec<Range<u64>>,
    frame: Option<Multipart>,
    from_peers: bool,
) -> Body {
    let label = Label {
        status: CacheStatus::Hit,
        fwd: None,
        detail: None,
        from_peers,
    };
    let (tx, body) = channel(4);
    let store = Arc::clone(sh.node.store());
    let metrics = Arc::clone(&sh.metrics);
    let lease = sh.node.lease(info.id());
    sh.tasks.spawn(async move {
        let _lease = lease;
        for (i, r) in parts.iter().enumerate() {
            if let Some(m) = &frame
                && tx.send(Ok(Bytes::from(m.heads[i].clone()))).await.is_err()
            {
                return;
            }
            let bs = u64::from(info.layout().block_size());
            let mut block = r.start / bs;
            let last = (r.end - 1) / bs;
            while block <= last {
                let n = run_len(&info, block, last);
                let (store, info2) = (Arc::clone(&store), Arc::clone(&info));
                let range = r.clone();
                let read = tokio::task::spawn_blocking(move || {
                    read_blocks(store.as_ref(), &info2, block, n, &range)
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                let ok = read.is_ok();
                if let Ok(b) = &read {
                    metrics.sent(label.credit(b.len() as u64));
                }
                if tx.send(read).await.is_err() || !ok {
                    return;
                }
                block += n;
            }
        }
        if let Some(m) = &frame {
            let _ = tx.send(Ok(Bytes::from(m.tail.clone()))).await;
        }
    });
    body
}

/// How many blocks to read from `block` on: at most a batch, within its segment, up to `last`.
fn run_len(info: &ContentInfo, block: u64, last: u64) -> u64 {
    let layout = info.layout();
    let in_segment = layout.block_at(block).map_or(1, |b| {
        u64::from(layout.blocks_in_segment(b.segment()) - b.index_in_segment())
    });
    BATCH_BLOCKS.min(last - block + 1).min(in_segment)
}

/// Blocks `first..first+n` (global indexes, within one segment), clipped to `range`, as one
/// buffer: one read and one checksum per block ([`engine::store::SegmentStore::get_blocks`]).
fn read_blocks(
    store: &dyn engine::store::SegmentStore,
    info: &ContentInfo,
    first: u64,
    n: u64,
    range: &Range<u64>,
) -> std::io::Result<Bytes> {
    let layout = info.layout();
    let id = info.id();
    let block = layout.block_at(first).map_err(std::io::Error::other)?;
    let data = store
        .get_blocks(&id, block, n as u32)
        .map_err(std::io::Error::other)?
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "blocks {first}..{} of {} are no longer stored",
                first + n,
                id.ticket()
            ))
        })?;
    let at = layout.block_offset(block);
    let from = range.start.saturating_sub(at) as usize;
    let to = (range.end - at).min(data.len() as u64) as usize;
    let mut data = Bytes::from(data);
    // The whole run when the range covers it (no copy), else the part asked for.
    if from > 0 || to < data.len() {
        data = data.slice(from..to);
    }
    Ok(data)
}
