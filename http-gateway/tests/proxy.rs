//! The gateway with real sockets to its clients and between nodes on loopback, requests sent
//! through the proxy as a client with `http_proxy` would send them; origins are the twin
//! ([`MemOrigin`]), but for a gateway in origin mode that other gateways reach over TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use engine::node::Node;
use engine::origin::mem::{Fault, MemOrigin, Resource};
use http_body_util::Full;
use hyper::{Request, StatusCode};
use pdist_http_gateway::GatewayConfig;
use pdist_http_gateway::headers::Provenance;
use pdist_http_gateway::record::UrlKeys;

mod common;
use common::{gateway, get, node, via};

const ORIGIN: &str = "http://origin.test";

fn body_of(path: &str, len: usize) -> Vec<u8> {
    let seed = path
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

/// An origin twin: `/f/<len>/<max-age>/<name>` is `len` bytes with a strong ETag (304 to
/// If-None-Match, 206 to a range); `/vary` varies on Accept-Language; `/nostore` says
/// no-store; `/echo` echoes what is POSTed; `/down` refuses the connection.
fn origin() -> MemOrigin {
    let o = MemOrigin::new();
    o.route("/vary", |req, _| {
        let lang = req
            .headers
            .get("accept-language")
            .map_or("none".to_string(), |v| v.to_str().unwrap().to_string());
        let etag = format!("\"{lang}\"");
        let h = [
            ("vary", "Accept-Language"),
            ("cache-control", "max-age=60"),
            ("etag", etag.as_str()),
        ];
        Resource::new(lang.clone(), &h)
    });
    o.put(
        "/nostore",
        Resource::new(&b"private"[..], &[("cache-control", "no-store")]),
    );
    o.route("/echo", |_, body| Resource::new(body.clone(), &[]));
    let sessions = std::sync::atomic::AtomicUsize::new(0);
    o.route("/cookie", move |_, _| {
        let n = sessions.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let cookie = format!("session={n}");
        let h = [
            ("cache-control", "public, max-age=60"),
            ("set-cookie", cookie.as_str()),
        ];
        Resource::new(cookie.clone(), &h)
    });
    o.put(
        "/down",
        Resource::new(Bytes::new(), &[]).with_fault(Fault::Refuse),
    );
    o
}

/// Serves `path` (`/f/<len>/<max-age>/<name>`) at the twin; its URL.
fn file(o: &MemOrigin, path: &str) -> String {
    let mut it = path.strip_prefix("/f/").unwrap().split('/');
    let len: usize = it.next().unwrap().parse().unwrap();
    let max_age = format!("max-age={}", it.next().unwrap());
    let h = [
        ("etag", "\"v1\""),
        ("cache-control", max_age.as_str()),
        ("content-type", "application/x-test"),
    ];
    o.put(path, Resource::new(body_of(path, len), &h));
    format!("{ORIGIN}{path}")
}

/// What the twin sent for `path`: (answers with a body, body bytes, 304s).
fn sent(o: &MemOrigin, path: &str) -> (u64, u64, u64) {
    let s = o.served(path);
    (s.bodies, s.bytes, s.not_modified)
}

fn twin(o: &MemOrigin) -> impl Fn(&mut GatewayConfig) + use<> {
    let o = o.clone();
    move |c: &mut GatewayConfig| c.origin = Arc::new(o.clone())
}

async fn status_codes(p: SocketAddr, url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(via(p, get(url, &[])).await.status.as_u16());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_ranges_revalidation_vary_and_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let o = origin();
    let n = node(b"g", dir.path(), vec![]).await;
    let gw = gateway(&n, dir.path(), twin(&o)).await;
    let p = gw.addr();
    let url = file(&o, "/f/300000/60/a");
    let want = body_of("/f/300000/60/a", 300_000);

    let first = via(p, get(&url, &[])).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, want);
    assert!(
        first.h("cache-status").contains("stored"),
        "{}",
        first.h("cache-status")
    );
    assert!(first.h("via").contains("pdist"));

    // The download is kept once it ends; then it is a hit, and the origin is not asked.
    gw.settled().await;
    let hit = via(p, get(&url, &[])).await;
    assert_eq!(hit.h("cache-status"), "pdist; hit");
    assert_eq!(hit.body, want);
    assert_eq!(
        Provenance::parse(hit.h("pdist-bytes")).unwrap().store,
        300_000
    );
    let sent_before = sent(&o, "/f/300000/60/a");

    // One range, several, If-Range, and an unsatisfiable one: all from the store.
    let r = via(p, get(&url, &[("range", "bytes=70000-70009")])).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, want[70000..70010]);
    assert_eq!(r.h("content-range"), "bytes 70000-70009/300000");
    let r = via(p, get(&url, &[("range", "bytes=0-1,-2")])).await;
    assert_eq!(r.status, 206);
    assert!(r.h("content-type").starts_with("multipart/byteranges"));
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(text.contains("Content-Range: bytes 299998-299999/300000"));
    let r = via(
        p,
        get(&url, &[("range", "bytes=0-9"), ("if-range", "\"old\"")]),
    )
    .await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 300_000));
    let r = via(p, get(&url, &[("range", "bytes=400000-")])).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.h("content-range"), "bytes */300000");
    assert_eq!(sent(&o, "/f/300000/60/a"), sent_before);

    // A stale copy is revalidated: the origin answers 304 and sends no body.
    let stale = file(&o, "/f/1000/0/b");
    via(p, get(&stale, &[])).await;
    gw.settled().await;
    let r = via(p, get(&stale, &[])).await;
    assert_eq!(r.h("cache-status"), "pdist; hit; fwd=stale; fwd-status=304");
    assert_eq!(r.body, body_of("/f/1000/0/b", 1000));
    assert!(sent(&o, "/f/1000/0/b").2 >= 1);

    // Vary: each language is its own variant.
    let vary = format!("{ORIGIN}/vary");
    for lang in ["en", "fr", "en", "fr"] {
        let r = via(p, get(&vary, &[("accept-language", lang)])).await;
        assert_eq!(r.body, lang.as_bytes());
        gw.settled().await;
    }
    assert_eq!(sent(&o, "/vary").0, 2, "one origin fetch per language");

    // no-store is never stored.
    let ns = format!("{ORIGIN}/nostore");
    for _ in 0..2 {
        let r = via(p, get(&ns, &[])).await;
        assert_eq!(r.h("cache-status"), "pdist; fwd=uri-miss; fwd-status=200");
    }
    assert_eq!(sent(&o, "/nostore").0, 2);

    // A response that sets a cookie is never given to another client: not from the store, not
    // by joining a download in flight.
    let ck = format!("{ORIGIN}/cookie");
    let (a, b) = tokio::join!(via(p, get(&ck, &[])), via(p, get(&ck, &[])));
    let c = via(p, get(&ck, &[])).await;
    let mut cookies = vec![a.h("set-cookie"), b.h("set-cookie"), c.h("set-cookie")];
    for r in [&a, &b, &c] {
        assert_eq!(r.body, r.h("set-cookie").as_bytes());
    }
    cookies.sort();
    cookies.dedup();
    assert_eq!(cookies.len(), 3, "each client its own session");
    assert_eq!(sent(&o, "/cookie").0, 3);

    // A gateway whose peers are not trusted tells them nothing: a node of its group that
    // knows the URL finds no claim for it.
    let curious = node(b"g", &dir.path().join("curious"), vec![n.addr()]).await;
    assert_eq!(
        curious
            .wait_for_peers(1, Duration::from_secs(5), Duration::ZERO)
            .await,
        1
    );
    let keys = UrlKeys::new(curious.secret());
    assert!(
        curious
            .ask_name(keys.name_key(&url), |_, s| Some(s.to_vec()))
            .await
            .is_none()
    );
    curious.shutdown().await;

    // Other methods pass through with their bodies.
    let post = Request::post(format!("{ORIGIN}/echo"))
        .header("host", "origin.test")
        .body(Full::new(Bytes::from_static(b"ping")))
        .unwrap();
    let r = via(p, post).await;
    assert_eq!(r.body, b"ping");
    assert!(r.h("cache-status").contains("bypass"));

    // The gateway's own routes, and requests that are not for a proxy.
    let metrics = Request::get("/metrics")
        .header("host", p.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let m = via(p, metrics).await;
    let m = String::from_utf8(m.body).unwrap();
    assert!(
        m.contains("pdist_gateway_requests_total{cache=\"hit\"}"),
        "{m}"
    );
    let bad = Request::get("/nothing")
        .header("host", p.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(via(p, bad).await.status, 404);
    let down = via(p, get(&format!("{ORIGIN}/down"), &[])).await;
    assert_eq!(down.status, 502);
    assert!(String::from_utf8_lossy(&down.body).contains("unreachable"));
    gw.shutdown().await;
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_one_origin_fetch_and_clients_outside_the_allow_list_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = origin();
    let n = node(b"g", dir.path(), vec![]).await;
    let gw = gateway(&n, dir.path(), twin(&o)).await;
    let url = file(&o, "/f/3000000/60/c");
    let want = body_of("/f/3000000/60/c", 3_000_000);
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (p, url) = (gw.addr(), url.clone());
        clients.push(tokio::spawn(async move { via(p, get(&url, &[])).await }));
    }
    for c in clients {
        assert_eq!(c.await.unwrap().body, want);
    }
    assert_eq!(
        sent(&o, "/f/3000000/60/c").0,
        1,
        "coalesced into one transfer"
    );
    gw.shutdown().await;

    // A gateway that serves only 10.9.0.0/16 refuses this (loopback) client with a clear 403.
    let only = gateway(&n, dir.path(), |c| {
        twin(&o)(c);
        c.allow = pdist_http_gateway::allow::AllowList::only(vec!["10.9.0.0/16".parse().unwrap()]);
    })
    .await;
    let r = via(only.addr(), get(&url, &[])).await;
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("not among the client networks"));
    only.shutdown().await;

    // A client over its request rate gets 429.
    let limited = gateway(&n, dir.path(), |c| {
        twin(&o)(c);
        c.rate_per_client = 2;
    })
    .await;
    let codes: Vec<u16> = status_codes(limited.addr(), &url, 4).await;
    assert!(codes.contains(&429), "{codes:?}");
    limited.shutdown().await;
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_takes_the_body_from_the_first_and_the_origin_sends_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = origin();
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    let na = node(b"office", &da, vec![]).await;
    let nb = node(b"office", &db, vec![na.addr()]).await;
    let trusted = |c: &mut GatewayConfig| {
        twin(&o)(c);
        c.trust_peers = true;
        c.origin_for_peered = false;
    };
    let ga = gateway(&na, &da, trusted).await;
    let gb = gateway(&nb, &db, trusted).await;
    let path = "/f/5000000/60/d";
    let url = file(&o, path);
    let want = body_of(path, 5_000_000);

    let a = via(ga.addr(), get(&url, &[])).await;
    assert_eq!(a.body, want);
    // A has kept it and filed its claim.
    ga.settled().await;
    assert!(
        nb.wait_for_peers(1, Duration::from_secs(5), Duration::ZERO)
            .await
            >= 1
    );
    let before = sent(&o, path);
    let b = via(gb.addr(), get(&url, &[])).await;
    assert_eq!(b.status, 200);
    assert_eq!(b.body, want);
    assert!(
        b.h("cache-status").contains("detail=peers"),
        "{}",
        b.h("cache-status")
    );
    let after = sent(&o, path);
    assert_eq!(after.0, before.0, "the origin sent B no body");
    assert_eq!(after.1, before.1, "the origin sent no body bytes for B");
    assert_eq!(
        after.2,
        before.2 + 1,
        "B confirmed the validator with one 304"
    );
    assert_eq!(gb.snapshot().bytes_peers, 5_000_000);
    // B kept it too: a hit now.
    gb.settled().await;
    assert_eq!(
        via(gb.addr(), get(&url, &[])).await.h("cache-status"),
        "pdist; hit"
    );

    // A range at a third gateway of the group: only its covering block, from the peers.
    let dd = dir.path().join("d");
    let nd = node(b"office", &dd, vec![na.addr()]).await;
    let gd = gateway(&nd, &dd, trusted).await;
    assert!(
        nd.wait_for_peers(1, Duration::from_secs(5), Duration::ZERO)
            .await
            >= 1
    );
    let r = via(gd.addr(), get(&url, &[("range", "bytes=100-199")])).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, want[100..200]);
    assert!(r.h("cache-status").contains("detail=peers"));
    let now = sent(&o, path);
    assert_eq!(
        (now.1, now.2),
        (after.1, after.2 + 1),
        "one 304, no body bytes"
    );
    assert_eq!(c_id_blocks(&nd), 1);
    gd.shutdown().await;
    nd.shutdown().await;

    // A gateway of another group gets nothing from them.
    let dc = dir.path().join("c");
    let nc = node(b"elsewhere", &dc, vec![na.addr()]).await;
    let gc = gateway(&nc, &dc, |c| {
        twin(&o)(c);
        c.trust_peers = true;
    })
    .await;
    let c = via(gc.addr(), get(&url, &[])).await;
    assert_eq!(c.body, want);
    assert!(!c.h("cache-status").contains("peers"));
    assert_eq!(sent(&o, path).1, now.1 + 5_000_000);
    for g in [ga, gb, gc] {
        g.shutdown().await;
    }
    for n in [na, nb, nc] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_mode_answers_requests_for_content_information() {
    let dir = tempfile::tempdir().unwrap();
    let o = origin();
    let n = node(b"g", dir.path(), vec![]).await;
    let gw = gateway(&n, dir.path(), |c| {
        twin(&o)(c);
        c.reverse = Some(ORIGIN.parse().unwrap());
    })
    .await;
    let p = gw.addr();
    let path = "/f/40000000/60/e";
    file(&o, path);
    let want = body_of(path, 40_000_000);
    let ask = |extra: &[(&str, &str)]| {
        let mut b = Request::get(path).header("host", p.to_string());
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        b.body(Full::new(Bytes::new())).unwrap()
    };
    // Plain clients get the body, through the cache.
    let r = via(p, ask(&[])).await;
    assert_eq!(r.body, want);
    gw.settled().await;

    // pdist's negotiation: the native content information, which matches its ticket.
    let r = via(p, ask(&[("accept-encoding", "gzip, x-pdist-info")])).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.h("content-encoding"), "x-pdist-info");
    assert_eq!(r.h("pdist-content-length"), "40000000");
    assert!(r.h("vary").to_ascii_lowercase().contains("accept-encoding"));
    let info = engine::content::native::decode_content_info(&r.body).unwrap();
    assert_eq!(info.id().ticket().to_string(), r.h("pdist-ticket"));
    assert_eq!(info.layout().content_len(), 40_000_000);

    // BranchCache's: PCCRC V1, whole and for a range (the segments it touches).
    let pd = [
        ("accept-encoding", "peerdist"),
        ("x-p2p-peerdist", "Version=1.1"),
        (
            "x-p2p-peerdistex",
            "MinContentInformation=1.0, MaxContentInformation=1.0",
        ),
    ];
    let r = via(p, ask(&pd)).await;
    assert_eq!(r.h("content-encoding"), "peerdist");
    assert_eq!(r.h("x-p2p-peerdist"), "Version=1.1, ContentLength=40000000");
    let v1 = engine::pccrc::v1::ContentInfoV1::decode(&r.body).unwrap();
    assert_eq!(v1.range(), 0..40_000_000);
    assert_eq!(v1.to_content_info().unwrap().id(), info.id());
    let mut ranged = pd.to_vec();
    ranged.push(("range", "bytes=34000000-34000099"));
    let r = via(p, ask(&ranged)).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.h("content-range"), "bytes 34000000-34000099/40000000");
    let v1 = engine::pccrc::v1::ContentInfoV1::decode(&r.body).unwrap();
    assert_eq!(v1.range(), 34_000_000..34_000_100);

    // V2 for clients that allow it: hashed on the first request (which gets the body and the
    // hint), then answered.
    let pd2 = [
        ("accept-encoding", "peerdist"),
        ("x-p2p-peerdist", "Version=1.1"),
        (
            "x-p2p-peerdistex",
            "MinContentInformation=1.0, MaxContentInformation=2.0",
        ),
    ];
    let r = via(p, ask(&pd2)).await;
    assert_eq!(r.body, want);
    assert_eq!(r.h("x-p2p-peerdistex"), "MakeHashRequest=true");
    let mut tries = 0;
    let r = loop {
        let r = via(p, ask(&pd2)).await;
        if r.h("content-encoding") == "peerdist" {
            break r;
        }
        tries += 1;
        assert!(tries < 500, "V2 information within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let v2 = engine::pccrc::v2::ContentInfoV2::decode(&r.body).unwrap();
    assert_eq!(v2.range(), 0..40_000_000);
    let expect = engine::pccrc::v2::hash_reader_v2(&want[..], n.secret()).unwrap();
    assert_eq!(v2, expect);
    let mut ranged = pd2.to_vec();
    ranged.push(("range", "bytes=1000-1999"));
    let r = via(p, ask(&ranged)).await;
    assert_eq!(r.status, 206);
    let v2 = engine::pccrc::v2::ContentInfoV2::decode(&r.body).unwrap();
    assert_eq!(v2.range(), 1000..2000);
    assert_eq!(sent(&o, path).0, 1, "the backend sent the body once");

    // Content not hashed yet: the body, with the hint to ask again.
    let other = "/f/1000/60/f";
    file(&o, other);
    let r = via(
        p,
        Request::get(other)
            .header("host", p.to_string())
            .header("accept-encoding", "peerdist")
            .header("x-p2p-peerdist", "Version=1.0")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.body, body_of(other, 1000));
    assert_eq!(r.h("x-p2p-peerdistex"), "MakeHashRequest=true");
    gw.shutdown().await;
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_gateways_take_what_a_pdist_origin_vouched_for_from_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let o = origin();
    let d = |n: &str| dir.path().join(n);
    let no = node(b"datacentre", &d("o"), vec![]).await;
    let go = gateway(&no, &d("o"), |c| {
        twin(&o)(c);
        c.reverse = Some(ORIGIN.parse().unwrap());
    })
    .await;
    // Two branch gateways of one group that do not trust each other's claims.
    let nb = node(b"branch", &d("b"), vec![]).await;
    let nc = node(b"branch", &d("c"), vec![nb.addr()]).await;
    let gb = gateway(&nb, &d("b"), |_| {}).await;
    let gc = gateway(&nc, &d("c"), |_| {}).await;
    let path = "/f/3000000/60/v";
    file(&o, path);
    // The branch gateways reach the origin gateway over TCP (hyper's client).
    let url = format!("http://{}{path}", go.addr());
    let want = body_of(path, 3_000_000);

    // The origin hashes the body on its first request.
    assert_eq!(via(go.addr(), get(&url, &[])).await.body, want);
    go.settled().await;
    // B: the origin vouches; no peer has it yet, so its blocks come from the origin by range.
    let b = via(gb.addr(), get(&url, &[])).await;
    assert_eq!(b.body, want);
    assert!(
        b.h("cache-status").contains("detail=origin-vouched"),
        "{}",
        b.h("cache-status")
    );
    gb.settled().await;
    assert!(
        nc.wait_for_peers(1, Duration::from_secs(5), Duration::ZERO)
            .await
            >= 1
    );
    // C: the origin vouches again, and the bytes come from B, checked against its word.
    let sent_before = go.snapshot().bytes_store;
    let c = via(gc.addr(), get(&url, &[])).await;
    assert_eq!(c.status, 200);
    assert_eq!(c.body, want);
    assert!(c.h("cache-status").contains("detail=origin-vouched"));
    gc.settled().await;
    assert_eq!(
        go.snapshot().bytes_store,
        sent_before,
        "the origin sent C no body bytes"
    );
    assert!(nb.status().unwrap().bytes_served >= 3_000_000);
    assert_eq!(sent(&o, path).0, 1, "the backend sent the body once");
    // C kept it: a hit now, and B's content is the origin's (one ticket for the URL).
    assert_eq!(
        via(gc.addr(), get(&url, &[])).await.h("cache-status"),
        "pdist; hit"
    );
    // A range at a fourth gateway: only its covering blocks, from peers.
    let ne = node(b"branch", &d("e"), vec![nb.addr()]).await;
    let ge = gateway(&ne, &d("e"), |_| {}).await;
    assert!(
        ne.wait_for_peers(1, Duration::from_secs(5), Duration::ZERO)
            .await
            >= 1
    );
    let r = via(ge.addr(), get(&url, &[("range", "bytes=2000000-2099999")])).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, want[2_000_000..2_100_000]);
    assert_eq!(r.h("content-range"), "bytes 2000000-2099999/3000000");
    assert!(r.h("cache-status").contains("detail=origin-vouched"));
    assert_eq!(r.h("pdist-bytes"), "store=0, peers=100000, origin=0");
    assert_eq!(
        c_id_blocks(&ne),
        3,
        "bytes 2000000..2100000 lie in blocks 30 to 32"
    );
    assert_eq!(go.snapshot().bytes_store, sent_before);
    // A gateway that does not ask for information gets the body itself.
    let nd = node(b"branch", &d("d"), vec![]).await;
    let gd = gateway(&nd, &d("d"), |c| c.origin_info = false).await;
    let r = via(gd.addr(), get(&url, &[])).await;
    assert_eq!(r.body, want);
    assert!(!r.h("cache-status").contains("vouched"));
    for g in [go, gb, gc, gd, ge] {
        g.shutdown().await;
    }
    for n in [no, nb, nc, nd, ne] {
        n.shutdown().await;
    }
}

/// How many blocks a node holds of the one content its store knows.
fn c_id_blocks(n: &Node) -> u64 {
    let all = n.store().list().unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].blocks_present
}
