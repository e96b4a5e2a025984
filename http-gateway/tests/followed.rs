//! Branch gateways missing the same URL at once: one downloads it, the others follow its
//! download as it arrives, and the origin sends the body once. Real sockets between gateways,
//! clients and nodes on loopback; an origin twin that sends slowly (as over a WAN).

use std::sync::Arc;
use std::time::Duration;

use engine::origin::mem::{Fault, MemOrigin, Resource};
use pdist_http_gateway::GatewayConfig;

mod common;
use common::{gateway, get, mesh, via};

const ETAG: &str = "\"s1\"";
const URL: &str = "http://origin.test/big.iso";

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

/// An origin serving one file of `len` bytes at about 6.5 MB/s (64 KiB every 10 ms), with a
/// strong entity tag, 304 for `If-None-Match`, and ranges. With `hold`, a whole answer stops
/// after that many bytes and sends no more (ranges go on).
fn slow_origin(len: usize, hold: Option<usize>) -> MemOrigin {
    let o = MemOrigin::new();
    let file = Resource::new(
        content(len),
        &[("etag", ETAG), ("cache-control", "max-age=60")],
    )
    .paced(Duration::from_millis(10));
    o.route("/big.iso", move |req, _| match hold {
        Some(h) if !req.headers.contains_key("range") => {
            file.clone().with_fault(Fault::StallAfter(h))
        }
        _ => file.clone(),
    });
    o
}

/// What the origin sent: (body bytes, whole answers, range answers).
fn sent(o: &MemOrigin) -> (u64, u64, u64) {
    let s = o.served("/big.iso");
    (s.bytes, s.bodies - s.ranges, s.ranges)
}

fn trusted(o: &MemOrigin) -> impl Fn(&mut GatewayConfig) + use<> {
    let o = o.clone();
    move |c: &mut GatewayConfig| {
        c.trust_peers = true;
        c.origin = Arc::new(o.clone());
    }
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
    let o = slow_origin(len, None);
    let nodes = mesh(b"office", dir.path(), 3).await;
    let mut gws = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        gws.push(gateway(n, &dir.path().join(format!("n{i}")), trusted(&o)).await);
    }
    let url = URL;
    let (a, b, c) = tokio::join!(
        via(gws[0].addr(), get(url, &[])),
        via(gws[1].addr(), get(url, &[])),
        via(gws[2].addr(), get(url, &[])),
    );
    let want = content(len);
    for got in [&a, &b, &c] {
        assert_eq!(got.status, 200);
        assert!(got.body == want, "every client gets the file");
    }
    let (bytes, whole, _) = sent(&o);
    assert_eq!(bytes, len as u64, "the origin sent it once");
    assert_eq!(whole, 1);
    let snaps: Vec<_> = gws.iter().map(|g| g.snapshot()).collect();
    let origin: u64 = snaps.iter().map(|s| s.bytes_origin).sum();
    let peers: u64 = snaps.iter().map(|s| s.bytes_peers).sum();
    assert_eq!((origin, peers), (len as u64, 2 * len as u64), "{snaps:?}");
    // Each follower kept what it followed: a hit now.
    for g in &gws {
        g.settled().await;
        assert_eq!(
            via(g.addr(), get(url, &[])).await.h("cache-status"),
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
    let o = slow_origin(len, Some(len / 2));
    let nodes = mesh(b"office", dir.path(), 2).await;
    let ga = gateway(&nodes[0], &dir.path().join("n0"), trusted(&o)).await;
    let gb = gateway(&nodes[1], &dir.path().join("n1"), trusted(&o)).await;
    let pa = ga.addr();
    let first = tokio::spawn(async move { via(pa, get(URL, &[])).await });
    until("A to lead", || sent(&o).0 > 0).await;
    let (pb, u) = (gb.addr(), URL);
    let second = tokio::spawn(async move { via(pb, get(u, &[])).await });
    // (B's client has all of it but the last byte, which a gateway hands on only once the body
    // is kept.)
    until("B to take all A has", || {
        gb.snapshot().bytes_peers >= len as u64 / 2 - 1
    })
    .await;
    // A stops mid-way: its download ends unfinished and is no longer offered.
    ga.shutdown().await;
    let b = second.await.unwrap();
    assert_eq!(b.status, 200);
    assert!(b.body == content(len), "B's client gets the whole file");
    let _ = first.await;
    let (bytes, _, ranges) = sent(&o);
    assert_eq!(ranges, 1, "B asked the origin for the rest");
    assert_eq!(bytes, len as u64, "half to A, the rest to B: nothing twice");
    gb.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}
