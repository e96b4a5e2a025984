//! Branch gateways of a group whose peers are trusted, with a hostile member of the group
//! among their peers ([`fixtures::hostile`], on a real socket): whatever it lies about, clients
//! get the right bytes in bounded time, and what honest peers have still comes from them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::ServerSecret;
use engine::origin::mem::{MemOrigin, Resource};
use fixtures::hostile::{HostilePeer, Lies};
use pdist_http_gateway::GatewayConfig;

mod common;
use common::{Got, gateway, get, node, node_at, via};

const GROUP: &[u8] = b"office with a liar";
const URL: &str = "http://origin.test/f.bin";

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

/// An origin serving one file of `len` bytes with a strong entity tag (304 for
/// `If-None-Match`); with `paced`, at about 6.5 MB/s, as over a WAN.
fn origin(len: usize, paced: bool) -> MemOrigin {
    let o = MemOrigin::new();
    let mut file = Resource::new(
        content(len),
        &[("etag", "\"v1\""), ("cache-control", "max-age=60")],
    );
    if paced {
        file = file.paced(Duration::from_millis(10));
    }
    for path in ["/f.bin", "/g.bin", "/h.bin"] {
        o.put(path, file.clone());
    }
    o
}

/// What the origin sent: (whole answers, body bytes).
fn sent(o: &MemOrigin) -> (u64, u64) {
    let s = o.served("/f.bin");
    (s.bodies - s.ranges, s.bytes)
}

fn trusted(o: &MemOrigin) -> impl Fn(&mut GatewayConfig) + use<> {
    let o = o.clone();
    move |c: &mut GatewayConfig| {
        c.trust_peers = true;
        c.origin = Arc::new(o.clone());
        // A peer's download that stalls is given up after this.
        c.origin_read_timeout = Duration::from_secs(1);
    }
}

async fn liar(lies: Lies) -> HostilePeer {
    HostilePeer::listen(&ServerSecret::new(GROUP.to_vec()), lies)
        .await
        .unwrap()
}

/// A client's GET of `url` through `proxy`, which must be answered within 20 s.
async fn bounded_get_of(proxy: SocketAddr, url: &str) -> Got {
    tokio::time::timeout(Duration::from_secs(20), via(proxy, get(url, &[])))
        .await
        .expect("answered within 20 s")
}

async fn bounded_get(proxy: SocketAddr) -> Got {
    bounded_get_of(proxy, URL).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_answering_lookups_with_garbage_hides_no_claim_and_holds_no_block() {
    let dir = tempfile::tempdir().unwrap();
    let lies = Lies {
        garbage_names: true,
        claims_everything: true,
        busy_forever: true,
        ..Lies::default()
    };
    let liar = liar(lies).await;
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    let na = node(GROUP, &da, vec![liar.addr()]).await;
    let nb = node(GROUP, &db, vec![na.addr(), liar.addr()]).await;
    let len = 5_000_000;
    let o = origin(len, false);
    let ga = gateway(&na, &da, trusted(&o)).await;
    let gb = gateway(&nb, &db, trusted(&o)).await;
    let a = bounded_get(ga.addr()).await;
    assert!(a.body == content(len), "A: the right bytes");
    ga.settled().await;
    let seen = nb
        .wait_for_peers(2, Duration::from_secs(5), Duration::from_secs(5))
        .await;
    assert_eq!(seen, 2, "B sees A and the hostile peer");
    let before = sent(&o);
    let b = bounded_get(gb.addr()).await;
    assert_eq!(b.status, 200);
    assert!(b.body == content(len), "B: the right bytes");
    // The hostile peer's garbage record did not hide A's claim, nor did its claim to hold
    // every block and its "busy" answers keep B from A's blocks.
    assert!(
        b.h("cache-status").contains("detail=peers"),
        "{}",
        b.h("cache-status")
    );
    assert_eq!(sent(&o).1, before.1, "the origin sent no body bytes for B");
    assert!(liar.asked("name") >= 1, "the hostile peer was asked");
    for g in [ga, gb] {
        g.shutdown().await;
    }
    for n in [na, nb] {
        n.shutdown().await;
    }
}

/// Two gateways miss the URL at once with a hostile peer among them that says it is
/// downloading every URL, and then offers `then`'s download.
async fn a_miss_with_a_member_that_says_it_downloads_everything(then: Lies) -> HostilePeer {
    let dir = tempfile::tempdir().unwrap();
    let liar = liar(Lies {
        downloading_forever: true,
        ..then
    })
    .await;
    let addrs = [
        fixtures::free_loopback_addr().unwrap(),
        fixtures::free_loopback_addr().unwrap(),
    ];
    let len = 4 << 20;
    let o = origin(len, true);
    let mut nodes = Vec::new();
    let mut gws = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        let d = dir.path().join(format!("n{i}"));
        let peers = vec![addrs[1 - i], liar.addr()];
        let n = node_at(GROUP, &d, *a, peers).await;
        gws.push(gateway(&n, &d, trusted(&o)).await);
        nodes.push(n);
    }
    for n in &nodes {
        let seen = n
            .wait_for_peers(2, Duration::from_secs(5), Duration::from_secs(5))
            .await;
        assert_eq!(seen, 2, "each sees the other and the hostile peer");
    }
    // Each gateway alone misses a URL: the hostile peer is the only one downloading it, so
    // each follows it, gives up on it, and takes the body from the origin.
    for (g, url) in gws.iter().zip([URL, "http://origin.test/g.bin"]) {
        let started = Instant::now();
        let got = bounded_get_of(g.addr(), url).await;
        assert_eq!(got.status, 200);
        assert!(got.body == content(len), "the right bytes");
        println!("{url}: served in {:?}", started.elapsed());
    }
    assert!(liar.asked("intent") >= 2, "the hostile peer was asked");
    // Both miss a third URL at once: neither follows the hostile peer again (each left it out
    // of its elections), and the origin sends the body once.
    let asked = liar.asked("tail");
    let url = "http://origin.test/h.bin";
    let started = Instant::now();
    let (a, b) = tokio::join!(
        bounded_get_of(gws[0].addr(), url),
        bounded_get_of(gws[1].addr(), url)
    );
    for got in [&a, &b] {
        assert_eq!(got.status, 200);
        assert!(got.body == content(len), "the right bytes");
    }
    println!("{url}: both clients served in {:?}", started.elapsed());
    assert_eq!(liar.asked("tail"), asked, "not followed again");
    let h = o.served("/h.bin");
    assert_eq!(h.bodies - h.ranges, 1, "the origin sent the third URL once");
    for g in gws {
        g.shutdown().await;
    }
    for n in nodes {
        n.shutdown().await;
    }
    liar
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_download_never_grows_holds_no_miss() {
    let liar = a_miss_with_a_member_that_says_it_downloads_everything(Lies {
        stuck_tail: true,
        ..Lies::default()
    })
    .await;
    assert!(liar.asked("tail") >= 1, "its download was followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_offering_garbage_as_its_download_holds_no_miss() {
    let liar = a_miss_with_a_member_that_says_it_downloads_everything(Lies {
        garbage_tail: true,
        ..Lies::default()
    })
    .await;
    assert!(liar.asked("tail") >= 1, "its download was followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_offering_nothing_holds_no_miss() {
    a_miss_with_a_member_that_says_it_downloads_everything(Lies {
        empty_tail: true,
        ..Lies::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vouched_miss_among_members_that_claim_every_block() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let len = 3_000_000;
    let o = origin(len, false);
    // A pdist origin (reverse proxy in front of the backend) vouches for the body's content.
    let no = node(b"datacentre", &d("o"), vec![]).await;
    let go = gateway(&no, &d("o"), |c| {
        c.origin = Arc::new(o.clone());
        c.reverse = Some("http://origin.test".parse().unwrap());
    })
    .await;
    let claims = Lies {
        claims_everything: true,
        garbage_names: true,
        ..Lies::default()
    };
    let busy = liar(Lies {
        busy_forever: true,
        ..claims
    })
    .await;
    let garbage = liar(Lies {
        garbage_blocks: true,
        ..claims
    })
    .await;
    // Branch gateways that do not trust claims, B and C, and the hostile members.
    let nb = node(GROUP, &d("b"), vec![]).await;
    let nc = node(GROUP, &d("c"), vec![nb.addr(), busy.addr(), garbage.addr()]).await;
    let gb = gateway(&nb, &d("b"), |_| {}).await;
    let gc = gateway(&nc, &d("c"), |_| {}).await;
    let url = format!("http://{}/f.bin", go.addr());
    // The origin hashes the body on its first request; B takes it by range, vouched for.
    assert!(bounded_get_of(go.addr(), &url).await.body == content(len));
    go.settled().await;
    let b = bounded_get_of(gb.addr(), &url).await;
    assert!(b.body == content(len), "B: the right bytes");
    gb.settled().await;
    let seen = nc
        .wait_for_peers(3, Duration::from_secs(5), Duration::from_secs(5))
        .await;
    assert_eq!(seen, 3, "C sees B and both hostile members");
    // C: the origin vouches again; the hostile members claim every block and send none, so
    // the bytes come from B, checked against the origin's word.
    let before = go.snapshot().bytes_store;
    let c = bounded_get_of(gc.addr(), &url).await;
    assert_eq!(c.status, 200);
    assert!(c.body == content(len), "C: the right bytes");
    assert!(
        c.h("cache-status").contains("detail=origin-vouched"),
        "{}",
        c.h("cache-status")
    );
    assert_eq!(
        go.snapshot().bytes_store,
        before,
        "the origin sent C no body bytes"
    );
    for l in [&busy, &garbage] {
        assert!(l.asked("have") >= 1, "each hostile member was asked");
    }
    for g in [go, gb, gc] {
        g.shutdown().await;
    }
    for n in [no, nb, nc] {
        n.shutdown().await;
    }
}
