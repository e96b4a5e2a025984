//! Branch gateways missing the same URL at once: one downloads it, the others follow its
//! download as it arrives, and the origin sends the body once. Real sockets, a real origin that
//! sends slowly (as over a WAN), real nodes on loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pdist_http_gateway::GatewayConfig;
use pdist_http_gateway::body::Body;

mod common;
use common::{gateway, get, mesh, via};

const ETAG: &str = "\"s1\"";

/// What the slow origin did.
#[derive(Default, Debug)]
struct Sent {
    /// Body bytes sent (counted as they go out).
    bytes: AtomicU64,
    /// Whole answers (200).
    whole: AtomicU64,
    /// Range answers (206).
    ranges: AtomicU64,
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

/// An origin serving one file of `len` bytes at about 6.5 MB/s (64 KiB every 10 ms), with a
/// strong entity tag, 304 for `If-None-Match`, and ranges (`bytes=A-` and `bytes=A-B`). With
/// `hold`, a whole answer stops after that many bytes and sends no more (ranges go on).
async fn slow_origin(len: usize, hold: Option<usize>) -> (SocketAddr, Arc<Sent>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(Sent::default());
    let data = Arc::new(content(len));
    let s2 = Arc::clone(&sent);
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let (sent, data) = (Arc::clone(&s2), Arc::clone(&data));
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    std::future::ready(answer(Arc::clone(&sent), Arc::clone(&data), hold, req))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, sent)
}

fn answer(
    sent: Arc<Sent>,
    data: Arc<Vec<u8>>,
    hold: Option<usize>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let r = Response::builder()
        .header("etag", ETAG)
        .header("cache-control", "max-age=60");
    if req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        == Some(ETAG)
    {
        return Ok(r
            .status(304)
            .body(pdist_http_gateway::body::empty())
            .unwrap());
    }
    let len = data.len();
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok()?.strip_prefix("bytes=")?.split_once('-'))
        .map(|(a, b)| {
            let a: usize = a.parse().unwrap();
            (a, b.parse::<usize>().map_or(len - 1, |b| b.min(len - 1)))
        });
    let (r, (a, b), hold) = match range {
        Some((a, b)) => {
            sent.ranges.fetch_add(1, Ordering::Relaxed);
            let r = r
                .status(206)
                .header("content-range", format!("bytes {a}-{b}/{len}"));
            (r, (a, b), None)
        }
        None => {
            sent.whole.fetch_add(1, Ordering::Relaxed);
            (r.status(200), (0, len - 1), hold)
        }
    };
    let (tx, body) = pdist_http_gateway::body::channel(2);
    tokio::spawn(async move {
        let end = hold.map_or(b + 1, |h| (a + h).min(b + 1));
        for chunk in data[a..end].chunks(64 << 10) {
            if tx.send(Ok(Bytes::copy_from_slice(chunk))).await.is_err() {
                return;
            }
            sent.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if end <= b {
            // Held: the answer stays open, sending nothing, until the client goes away.
            tx.closed().await;
        }
    });
    Ok(r.header("content-length", b + 1 - a).body(body).unwrap())
}

fn trusted(c: &mut GatewayConfig) {
    c.trust_peers = true;
}

/// Polls `cond` every 10 ms, for at most 20 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_missing_a_url_at_once_follow_one_download_and_the_origin_sends_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let len = 8 << 20;
    let (o, sent) = slow_origin(len, None).await;
    let nodes = mesh(b"office", dir.path(), 3).await;
    let mut gws = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        gws.push(gateway(n, &dir.path().join(format!("n{i}")), trusted).await);
    }
    let url = format!("http://{o}/big.iso");
    let (a, b, c) = tokio::join!(
        via(gws[0].addr(), get(&url, &[])),
        via(gws[1].addr(), get(&url, &[])),
        via(gws[2].addr(), get(&url, &[])),
    );
    let want = content(len);
    for got in [&a, &b, &c] {
        assert_eq!(got.status, 200);
        assert!(got.body == want, "every client gets the file");
    }
    assert_eq!(
        sent.bytes.load(Ordering::Relaxed),
        len as u64,
        "the origin sent it once"
    );
    assert_eq!(sent.whole.load(Ordering::Relaxed), 1);
    let snaps: Vec<_> = gws.iter().map(|g| g.snapshot()).collect();
    let origin: u64 = snaps.iter().map(|s| s.bytes_origin).sum();
    let peers: u64 = snaps.iter().map(|s| s.bytes_peers).sum();
    assert_eq!((origin, peers), (len as u64, 2 * len as u64), "{snaps:?}");
    // Each follower kept what it followed: a hit now.
    for g in &gws {
        g.settled().await;
        assert_eq!(
            via(g.addr(), get(&url, &[])).await.h("cache-status"),
            "pdist; hit"
        );
    }
    for g in gws {
        g.shutdown().await;
    }
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_leader_stops_takes_the_rest_from_the_origin_by_range() {
    let dir = tempfile::tempdir().unwrap();
    let len = 8 << 20;
    // A's answer stops half-way, so that A is still downloading when it stops.
    let (o, sent) = slow_origin(len, Some(len / 2)).await;
    let nodes = mesh(b"office", dir.path(), 2).await;
    let ga = gateway(&nodes[0], &dir.path().join("n0"), trusted).await;
    let gb = gateway(&nodes[1], &dir.path().join("n1"), trusted).await;
    let url = format!("http://{o}/big.iso");
    let (pa, u) = (ga.addr(), url.clone());
    let first = tokio::spawn(async move { via(pa, get(&u, &[])).await });
    until("A to lead", || sent.bytes.load(Ordering::Relaxed) > 0).await;
    let (pb, u) = (gb.addr(), url.clone());
    let second = tokio::spawn(async move { via(pb, get(&u, &[])).await });
    until("B to take all A has", || {
        gb.snapshot().bytes_peers >= len as u64 / 2
    })
    .await;
    // A stops mid-way: its download ends unfinished and is no longer offered.
    ga.shutdown().await;
    let b = second.await.unwrap();
    assert_eq!(b.status, 200);
    assert!(b.body == content(len), "B's client gets the whole file");
    let _ = first.await;
    assert_eq!(
        sent.ranges.load(Ordering::Relaxed),
        1,
        "B asked the origin for the rest"
    );
    assert_eq!(
        sent.bytes.load(Ordering::Relaxed),
        len as u64,
        "half to A, the rest to B: nothing twice"
    );
    gb.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}
