//! The gateway's RFC 9111 behaviour against an origin (the twin), forward and reverse: one test
//! per rule the HTTP caching test suite found broken (issue 15), each run in both modes, and
//! requests arriving in each phase of a download (while its body streams, just after its last
//! byte). Nothing waits on time: a phase is reached by what the origin has been asked and has
//! served. `cli/tests/http_caching.rs` runs the whole suite against the real binary.

use std::net::SocketAddr;

use bytes::Bytes;
use engine::node::Node;
use engine::origin::mem::{Fault, MemOrigin, Resource};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use pdist_http_gateway::Gateway;

mod common;
use common::{Got, gateway, node, via};

const ORIGIN: &str = "http://origin.test";

/// A gateway in front of the twin, forward (`http_proxy` clients) or in origin mode.
struct Rig {
    o: MemOrigin,
    gw: Gateway,
    reverse: bool,
    _n: Node,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn new(reverse: bool) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let o = MemOrigin::new();
        let n = node(b"rfc", dir.path(), vec![]).await;
        let o2 = o.clone();
        let gw = gateway(&n, dir.path(), move |c| {
            c.origin = std::sync::Arc::new(o2);
            if reverse {
                c.reverse = Some(ORIGIN.parse().unwrap());
            }
        })
        .await;
        Rig {
            o,
            gw,
            reverse,
            _n: n,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gw.addr()
    }

    /// A request for `path` as a client in this mode sends it.
    fn req(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
        let (uri, host) = if self.reverse {
            (path.to_string(), self.addr().to_string())
        } else {
            (format!("{ORIGIN}{path}"), "origin.test".to_string())
        };
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Full::new(Bytes::from_static(b"x"))).unwrap()
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Got {
        via(self.addr(), self.req("GET", path, headers)).await
    }

    /// GETs of `path` the origin was asked.
    fn asked(&self, path: &str) -> Vec<engine::origin::mem::Asked> {
        self.o
            .asked()
            .into_iter()
            .filter(|a| a.path == path && a.method == http::Method::GET)
            .collect()
    }

    /// Whether a GET of `path` now is answered from the cache (the origin is not asked).
    async fn cached(&self, path: &str) -> bool {
        let before = self.asked(path).len();
        let r = self.get(path, &[]).await;
        assert!(r.status.as_u16() < 500, "{path}: {}", r.status);
        self.asked(path).len() == before
    }
}

fn put(r: &Rig, path: &str, status: u16, headers: &[(&str, &str)]) {
    r.o.put(
        path,
        Resource::new(format!("body of {path}"), headers).with_status(status),
    );
}

/// Runs `case` forward and in origin mode.
macro_rules! both_modes {
    ($($name:ident => $case:expr;)*) => {$(
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn forward() {
                $case(Rig::new(false).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reverse() {
                $case(Rig::new(true).await).await;
            }
        }
    )*};
}

async fn what_is_stored_and_reused(r: Rig) {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let past = "Thu, 01 Jan 2015 00:00:00 GMT";
    type Row<'a> = (&'a str, u16, Vec<(&'a str, &'a str)>, bool);
    let rows: Vec<Row> = vec![
        ("/fresh", 200, vec![("cache-control", "max-age=60")], true),
        (
            "/case",
            200,
            vec![("cache-control", "No-StOrE, max-age=60")],
            false,
        ),
        (
            "/vary-star",
            200,
            vec![("cache-control", "max-age=60"), ("vary", "*")],
            false,
        ),
        (
            "/no-cache",
            200,
            vec![("cache-control", "max-age=60, no-cache")],
            false,
        ),
        (
            "/expired",
            200,
            vec![("expires", past), ("date", &date)],
            false,
        ),
        (
            "/bad-expires",
            200,
            vec![("expires", "Mon, 30 Nov 2099 00:00:00 +0000")],
            false,
        ),
        (
            "/age-list",
            200,
            vec![("cache-control", "max-age=3600"), ("age", "7200, 0")],
            false,
        ),
        (
            "/age-old",
            200,
            vec![("cache-control", "max-age=3600"), ("age", "7200")],
            false,
        ),
        (
            "/not-found",
            404,
            vec![("cache-control", "max-age=60")],
            true,
        ),
        (
            "/gone-by-default",
            410,
            vec![("last-modified", past), ("date", &date)],
            true,
        ),
        (
            "/redirect-no-freshness",
            302,
            vec![("location", "/fresh")],
            false,
        ),
    ];
    for (path, status, h, want) in rows {
        put(&r, path, status, &h);
        let first = r.get(path, &[]).await;
        assert_eq!(first.status.as_u16(), status, "{path}");
        assert_eq!(r.cached(path).await, want, "{path}");
    }
    // A hit keeps the origin's Date and says its age; a stored 404 is served as a 404.
    let sent = std::time::SystemTime::now() - std::time::Duration::from_secs(30);
    let sent = httpdate::fmt_http_date(sent);
    put(
        &r,
        "/dated",
        200,
        &[("cache-control", "max-age=3600"), ("date", &sent)],
    );
    r.get("/dated", &[]).await;
    let hit = r.get("/dated", &[]).await;
    assert!(hit.h("cache-status").contains("hit"), "{:?}", hit.headers);
    assert_eq!(hit.h("date"), sent);
    assert!(hit.h("age").parse::<u64>().unwrap() >= 30);
    // only-if-cached: what is stored, or 504 without asking the origin.
    let cached = r
        .get("/fresh", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(cached.status, 200);
    put(&r, "/never-asked", 200, &[]);
    let none = r
        .get("/never-asked", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(none.status, 504);
    assert!(r.asked("/never-asked").is_empty());
    let nf = r.get("/not-found", &[]).await;
    assert_eq!(nf.status, 404);
    assert_eq!(nf.body, b"body of /not-found");
}

async fn unsafe_methods_invalidate(r: Rig) {
    for (method, status, invalidates) in [
        ("POST", 200, true),
        ("PUT", 201, true),
        ("DELETE", 204, true),
        ("M-SEARCH", 200, true),
        ("POST", 500, false),
        ("OPTIONS", 200, false),
    ] {
        let path = format!("/doc-{method}-{status}");
        put(&r, &path, 200, &[("cache-control", "max-age=60")]);
        r.get(&path, &[]).await;
        assert!(r.cached(&path).await, "{path} is stored");
        // The unsafe request's answer (the twin answers every method from the same resource).
        r.o.put(&path, Resource::new("changed", &[]).with_status(status));
        let got = via(r.addr(), r.req(method, &path, &[])).await;
        assert_eq!(got.status.as_u16(), status);
        put(&r, &path, 200, &[("cache-control", "max-age=60")]);
        assert_eq!(!r.cached(&path).await, invalidates, "{method} {status}");
    }
    // Location and Content-Location on the same origin, not on another.
    for p in ["/loc", "/cloc", "/elsewhere"] {
        put(&r, p, 200, &[("cache-control", "max-age=60")]);
        r.get(p, &[]).await;
    }
    let (loc, cloc) = if r.reverse {
        (format!("http://{}/loc", r.addr()), "/cloc".to_string())
    } else {
        (format!("{ORIGIN}/loc"), "/cloc".to_string())
    };
    let h = [
        ("location", loc.as_str()),
        ("content-location", cloc.as_str()),
    ];
    r.o.put("/post", Resource::new("made", &h).with_status(201));
    via(r.addr(), r.req("POST", "/post", &[])).await;
    assert!(!r.cached("/loc").await, "Location");
    assert!(!r.cached("/cloc").await, "Content-Location");
    r.o.put(
        "/post2",
        Resource::new("made", &[("location", "http://other.test/elsewhere")]).with_status(201),
    );
    via(r.addr(), r.req("POST", "/post2", &[])).await;
    assert!(r.cached("/elsewhere").await, "not another origin's");
}

/// A request for `path` whose head has come (its body may not): the answer's `Cache-Status`.
async fn head_of(r: &Rig, path: &str) -> (String, tokio::task::JoinHandle<()>) {
    let s = tokio::net::TcpStream::connect(r.addr()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    let req = r.req("GET", path, &[]);
    let t = tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = send.send_request(req).await.unwrap();
    let status = resp
        .headers()
        .get("cache-status")
        .map_or(String::new(), |v| v.to_str().unwrap().to_string());
    let (_, mut body) = resp.into_parts();
    let reader = tokio::spawn(async move {
        let _keep = send;
        while let Some(Ok(_)) = body.frame().await {}
        t.abort();
    });
    (status, reader)
}

/// Until the origin has been asked for `path` `n` times (bounded).
async fn until_asked(r: &Rig, path: &str, n: usize) {
    for _ in 0..2000 {
        if r.asked(path).len() >= n {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the origin was not asked for {path} {n} times");
}

async fn requests_in_every_phase_of_a_download(r: Rig) {
    let body = vec![7u8; 300_000];
    // While the body streams (the origin stalls half-way): a request for a fresh response joins
    // the download; for a no-cache one, it asks the origin itself.
    for (path, cc, joins) in [
        ("/stream-fresh", "max-age=60", true),
        ("/stream-no-cache", "max-age=60, no-cache", false),
    ] {
        let res = Resource::new(body.clone(), &[("cache-control", cc), ("etag", "\"s\"")])
            .with_fault(Fault::StallAfter(100_000));
        r.o.put(path, res);
        let (_, first) = head_of(&r, path).await;
        until_asked(&r, path, 1).await;
        let (status, second) = head_of(&r, path).await;
        if joins {
            assert!(status.contains("collapsed"), "{path}: {status}");
            assert_eq!(r.asked(path).len(), 1);
        } else {
            until_asked(&r, path, 2).await;
            assert!(!status.contains("collapsed"), "{path}: {status}");
        }
        first.abort();
        second.abort();
    }
    // Just after the last byte: the answer is in the store already.
    r.o.put(
        "/whole",
        Resource::new(
            body.clone(),
            &[("cache-control", "max-age=60"), ("etag", "\"w\"")],
        ),
    );
    let a = r.get("/whole", &[]).await;
    assert_eq!(a.body, body);
    let b = r.get("/whole", &[]).await;
    assert!(
        b.h("cache-status").contains("hit"),
        "{}",
        b.h("cache-status")
    );
    assert_eq!(r.asked("/whole").len(), 1);
    // A no-cache answer just kept is revalidated, not handed on.
    r.o.put(
        "/whole-no-cache",
        Resource::new(
            body.clone(),
            &[("cache-control", "no-cache"), ("etag", "\"n\"")],
        ),
    );
    r.get("/whole-no-cache", &[]).await;
    let again = r.get("/whole-no-cache", &[]).await;
    assert_eq!(again.body, body);
    let asked = r.asked("/whole-no-cache");
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[1].headers["if-none-match"], "\"n\"");
}

async fn stale_when_the_origin_fails(r: Rig) {
    let date =
        httpdate::fmt_http_date(std::time::SystemTime::now() - std::time::Duration::from_secs(100));
    for (path, cc, down, served) in [
        ("/down", "max-age=10", Fault::Refuse, true),
        (
            "/down-must",
            "max-age=10, must-revalidate",
            Fault::Refuse,
            false,
        ),
        ("/error", "max-age=10", Fault::None, true),
        (
            "/error-bounded",
            "max-age=10, stale-if-error=5",
            Fault::None,
            false,
        ),
    ] {
        put(
            &r,
            path,
            200,
            &[("cache-control", cc), ("date", &date), ("etag", "\"e\"")],
        );
        // Stored, already stale (its Date is 100 s old).
        r.get(path, &[]).await;
        r.get(path, &[]).await;
        let failing = Resource::new("sorry", &[])
            .with_status(503)
            .with_fault(down);
        r.o.put(path, failing);
        let got = r.get(path, &[]).await;
        if served {
            assert_eq!(got.status, 200, "{path}");
            assert_eq!(got.body, format!("body of {path}").as_bytes());
            assert!(
                got.h("cache-status").contains("hit; fwd=stale"),
                "{path}: {}",
                got.h("cache-status")
            );
        } else {
            assert!(got.status.is_server_error(), "{path}: {}", got.status);
        }
    }
}

async fn stale_while_revalidating(r: Rig) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
    let old = httpdate::fmt_http_date(old);
    let h = [
        ("cache-control", "max-age=10, stale-while-revalidate=3600"),
        ("date", old.as_str()),
        ("etag", "\"v\""),
    ];
    put(&r, "/swr", 200, &h);
    r.get("/swr", &[]).await;
    // Stale now: served at once, and the origin asked meanwhile, conditionally.
    let got = r.get("/swr", &[]).await;
    assert_eq!(got.body, b"body of /swr");
    assert!(
        got.h("cache-status").contains("stale-while-revalidate"),
        "{}",
        got.h("cache-status")
    );
    until_asked(&r, "/swr", 2).await;
    assert_eq!(r.asked("/swr")[1].headers["if-none-match"], "\"v\"");
}

both_modes! {
    swr => stale_while_revalidating;
    stale => stale_when_the_origin_fails;
    stored_and_reused => what_is_stored_and_reused;
    invalidation => unsafe_methods_invalidate;
    phases => requests_in_every_phase_of_a_download;
}
