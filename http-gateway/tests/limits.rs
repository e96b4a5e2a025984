//! Clients that would hurt a proxy: CONNECT to places a tunnel must not reach, tunnels left
//! idle, more connections than the gateway has slots for, and heads sent too slowly.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{gateway, node};
use engine::origin::mem::{MemOrigin, Resource};
use pdist_http_gateway::allow::ConnectPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads until the end of a response head; returns it.
async fn head(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before a whole head: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.push(b[0]);
    }
    String::from_utf8(got).unwrap()
}

async fn connect_via(proxy: SocketAddr, target: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let h = head(&mut s).await;
    (s, h)
}

/// A TCP echo server on loopback; its address.
async fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Waits until `s` is closed by the other side (EOF or reset), at most `limit`; whether it
/// was, and the bytes that came before.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> (bool, Vec<u8>) {
    let mut b = [0u8; 64];
    let mut got = Vec::new();
    let end = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end.into(), s.read(&mut b)).await {
            Err(_) => return (false, got),
            Ok(Ok(0) | Err(_)) => return (true, got),
            Ok(Ok(n)) => got.extend_from_slice(&b[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_reaches_only_allowed_ports_of_other_machines_and_idle_tunnels_close() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(b"g", dir.path(), vec![]).await;
    let target = echo().await;

    // By default: port 443 only, and never this machine.
    let strict = gateway(&n, &dir.path().join("a"), |_| {}).await;
    let (_, h) = connect_via(strict.addr(), &target.to_string()).await;
    assert!(h.starts_with("HTTP/1.1 403"), "{h}");
    let (_, h) = connect_via(strict.addr(), "127.0.0.1:443").await;
    assert!(h.starts_with("HTTP/1.1 403"), "{h}");
    let (_, h) = connect_via(strict.addr(), "localhost:443").await;
    assert!(h.starts_with("HTTP/1.1 403"), "{h}");
    let (_, h) = connect_via(strict.addr(), "169.254.169.254:443").await;
    assert!(h.starts_with("HTTP/1.1 403"), "{h}");
    // The gateway's own peer endpoint, on its port, is refused even when the port is allowed.
    let own = gateway(&n, &dir.path().join("b"), |c| {
        c.connect.ports = vec![n.addr().port()];
    })
    .await;
    let (_, h) = connect_via(own.addr(), &n.addr().to_string()).await;
    assert!(h.starts_with("HTTP/1.1 403"), "{h}");

    // Allowed by the admin: the tunnel carries bytes both ways, and closes once idle.
    let open = gateway(&n, &dir.path().join("c"), |c| {
        c.connect = ConnectPolicy {
            ports: vec![target.port()],
            local: true,
            idle: Duration::from_millis(400),
        };
    })
    .await;
    let (mut t, h) = connect_via(open.addr(), &target.to_string()).await;
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    for _ in 0..3 {
        t.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        t.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // The last byte moved 150 ms ago: the tunnel closes about 250 ms from now, not at once.
    let idle_from = Instant::now();
    assert!(
        closed_within(&mut t, Duration::from_secs(5)).await.0,
        "idle tunnel closed"
    );
    assert!(idle_from.elapsed() >= Duration::from_millis(200));

    for g in [strict, own, open] {
        g.shutdown().await;
    }
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_limit_clients_get_503_and_slow_heads_lose_their_slot() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(b"g", dir.path(), vec![]).await;
    let o = MemOrigin::new();
    o.put(
        "/x",
        Resource::new(&b"hello"[..], &[("cache-control", "max-age=60")]),
    );
    let target = echo().await;
    let gw = gateway(&n, dir.path(), |c| {
        c.origin = std::sync::Arc::new(o.clone());
        c.max_connections = 2;
        c.head_timeout = Duration::from_millis(700);
        c.connect = ConnectPolicy {
            ports: vec![target.port()],
            local: true,
            idle: Duration::from_secs(60),
        };
    })
    .await;
    let p = gw.addr();
    let ask = |mut s: TcpStream| async move {
        s.write_all(b"GET http://origin.test/x HTTP/1.1\r\nHost: origin.test\r\n\r\n")
            .await
            .unwrap();
        head(&mut s).await
    };

    // A tunnel holds a slot for as long as it is open; a client sending its head byte by byte
    // holds the other.
    let (mut tunnel, h) = connect_via(p, &target.to_string()).await;
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    let mut slow = TcpStream::connect(p).await.unwrap();
    slow.write_all(b"GET http://origin.test/x HT")
        .await
        .unwrap();
    // Connections are accepted in the order they were made: `slow` has its slot before the
    // next one is looked at.

    // Full: a new client is told so, with Retry-After, not dropped without a word.
    let h = ask(TcpStream::connect(p).await.unwrap()).await;
    assert!(h.starts_with("HTTP/1.1 503"), "{h}");
    assert!(h.to_ascii_lowercase().contains("retry-after: 1"), "{h}");
    // So is a tunnel.
    let (_, h) = connect_via(p, &target.to_string()).await;
    assert!(h.starts_with("HTTP/1.1 503"), "{h}");

    // The slow head loses its slot after the head timeout; then clients are served again.
    let (closed, said) = closed_within(&mut slow, Duration::from_secs(5)).await;
    assert!(closed, "a slow head is cut off");
    assert!(
        !String::from_utf8_lossy(&said).contains(" 503 "),
        "the slow client had a slot: {}",
        String::from_utf8_lossy(&said)
    );
    all_served(p, 1).await;

    // The tunnel still works, and closing it frees its slot.
    tunnel.write_all(b"pong").await.unwrap();
    let mut b = [0u8; 4];
    tunnel.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"pong");
    drop(tunnel);
    // Its slot frees once both ends of the tunnel have closed: within 5 s, two clients at once
    // are both served. (A server notices a client's close a moment after the client made it, so
    // a slot is not free the instant a client hangs up: ask until it is, within a bound.)
    all_served(p, 2).await;

    gw.shutdown().await;
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_origin_is_abandoned_and_the_next_client_gets_a_fresh_download() {
    use engine::origin::mem::Fault;
    let dir = tempfile::tempdir().unwrap();
    let n = node(b"g", dir.path(), vec![]).await;
    let o = MemOrigin::new();
    let body = fixtures::content(5, 300_000);
    let h = [("cache-control", "max-age=60"), ("etag", "\"s1\"")];
    o.put(
        "/s",
        Resource::new(body.clone(), &h).with_fault(Fault::StallAfter(100_000)),
    );
    let gw = gateway(&n, dir.path(), |c| {
        c.origin = std::sync::Arc::new(o.clone());
        c.origin_read_timeout = Duration::from_millis(500);
    })
    .await;
    let p = gw.addr();
    let ask = || async {
        let mut s = TcpStream::connect(p).await.unwrap();
        s.write_all(
            b"GET http://origin.test/s HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let h = head(&mut s).await;
        let (closed, rest) = closed_within(&mut s, Duration::from_secs(10)).await;
        assert!(closed, "the transfer ends, one way or the other");
        (h, rest)
    };

    // The first client (and one that joins it) got a 200 with the length, then the origin
    // stalled: the transfer is cut off short once the read timeout passes.
    let started = Instant::now();
    let ((h1, b1), (h2, b2)) = tokio::join!(ask(), ask());
    for (h, b) in [(&h1, &b1), (&h2, &b2)] {
        assert!(h.starts_with("HTTP/1.1 200"), "{h}");
        assert!(
            h.to_ascii_lowercase().contains("content-length: 300000"),
            "{h}"
        );
        assert!(b.len() < body.len(), "cut off, not completed");
        assert_eq!(&b[..], &body[..b.len()], "what came is right");
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    // The origin recovers: the next client starts a fresh download and gets it all.
    o.put("/s", Resource::new(body.clone(), &h));
    let (h3, b3) = ask().await;
    assert!(h3.starts_with("HTTP/1.1 200"), "{h3}");
    assert_eq!(b3, body);
    assert_eq!(
        o.served("/s").bodies,
        2,
        "one abandoned download, one fresh"
    );

    gw.shutdown().await;
    n.shutdown().await;
}

/// Asserts that within 5 s, `n` clients asking at once all get a 200.
async fn all_served(p: SocketAddr, n: usize) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let mut asks = Vec::new();
        for _ in 0..n {
            asks.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(p).await.unwrap();
                s.write_all(
                    b"GET http://origin.test/x HTTP/1.1\r\nHost: origin.test\r\n\
                      Connection: close\r\n\r\n",
                )
                .await
                .unwrap();
                let h = head(&mut s).await;
                // Reads to the close, so this client's slot is given back before the next try.
                let _ = closed_within(&mut s, Duration::from_secs(5)).await;
                h
            }));
        }
        let mut heads = Vec::new();
        for a in asks {
            heads.push(a.await.unwrap());
        }
        if heads.iter().all(|h| h.starts_with("HTTP/1.1 200")) {
            return;
        }
        assert!(Instant::now() < end, "{heads:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_other_machines_cannot_reach_local_services_through_the_proxy() {
    use pdist_http_gateway::allow::AllowList;
    // A service that listens only on loopback, and counts who connects.
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    local.set_nonblocking(true).unwrap();
    let port = local.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let n = node(b"g", dir.path(), vec![]).await;
    let lan = || AllowList::new(vec!["10.0.0.0/8".parse().unwrap()]);
    let guarded = gateway(&n, &dir.path().join("a"), |c| {
        c.allow = lan();
        pdist_http_gateway::guard_origins(c);
    })
    .await;
    let ask = |p: SocketAddr, url: String| async move {
        let mut s = TcpStream::connect(p).await.unwrap();
        let host = url.split('/').nth(2).unwrap().to_string();
        let req = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        String::from_utf8_lossy(&got).into_owned()
    };
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let got = ask(guarded.addr(), url.clone()).await;
        assert!(got.starts_with("HTTP/1.1 502"), "{url}: {got}");
        assert!(got.contains("--connect-local"), "{url}: says why: {got}");
    }
    assert_eq!(
        local.accept().map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock),
        "nothing reached the local service"
    );

    // With --connect-local (or loopback clients only) the proxy reaches it.
    let open = gateway(&n, &dir.path().join("b"), |c| {
        c.allow = lan();
        c.connect.local = true;
        pdist_http_gateway::guard_origins(c);
    })
    .await;
    let served = tokio::spawn(async move {
        let got = ask(open.addr(), format!("http://127.0.0.1:{port}/")).await;
        open.shutdown().await;
        got
    });
    let end = Instant::now() + Duration::from_secs(5);
    let (mut conn, _) = loop {
        match local.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < end, "the local service was never asked");
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    // The request first (an answer before it would be one to nothing).
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            std::io::Read::read(&mut conn, &mut b).unwrap(),
            1,
            "a whole request"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"GET / HTTP/1.1"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    std::io::Write::write_all(
        &mut conn,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    )
    .unwrap();
    drop(conn);
    let got = served.await.unwrap();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    guarded.shutdown().await;
    n.shutdown().await;
}
