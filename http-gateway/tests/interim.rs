//! 1xx interim answers: an origin's `103 Early Hints` reaches an HTTP/1.1 client before the
//! final answer, forward and in origin mode; never an HTTP/1.0 client; never stored (a hit
//! has none). The origin is a raw TCP server on loopback (the twin cannot send a 1xx), and the
//! clients write and read raw bytes, so that what goes over the wire is what is checked.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{gateway, node};

const EARLY: &[u8] = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n";
const FINAL: &[u8] =
    b"HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 5\r\n\r\nhello";

/// Answers every request with a 103, then the 200; counts requests.
async fn origin() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = std::sync::Arc::clone(&n);
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let n = std::sync::Arc::clone(&n2);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&b[..k]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if s.write_all(EARLY).await.is_err() || s.write_all(FINAL).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, n)
}

/// Sends `request` raw to the gateway and reads until the body `hello` has come.
async fn raw(gw: SocketAddr, request: String) -> String {
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while !got.ends_with(b"hello") {
        let k = s.read(&mut b).await.unwrap();
        assert!(k > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&b[..k]);
    }
    String::from_utf8(got).unwrap()
}

async fn early_hints_reach_the_client(reverse: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (o, asked) = origin().await;
    let n = node(b"interim", dir.path(), vec![]).await;
    let backend = format!("http://{o}");
    let gw = gateway(&n, dir.path(), |c| {
        if reverse {
            c.reverse = Some(backend.parse().unwrap());
        }
    })
    .await;
    let target = |path: &str| {
        if reverse {
            path.to_string()
        } else {
            format!("http://{o}{path}")
        }
    };
    let host = if reverse {
        gw.addr().to_string()
    } else {
        o.to_string()
    };
    let get = |path: &str, version: &str| {
        format!(
            "GET {} HTTP/{version}\r\nhost: {host}\r\n\r\n",
            target(path)
        )
    };
    // HTTP/1.1: the 103, then the 200.
    let text = raw(gw.addr(), get("/page", "1.1")).await;
    assert!(text.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{text}");
    let hints = text
        .find("link: </style.css>; rel=preload")
        .expect("the hints");
    let last = text.find("HTTP/1.1 200 OK").expect("the final answer");
    assert!(hints < last, "{text}");
    // Stored, without its interim answer: a hit has none.
    let hit = raw(gw.addr(), get("/page", "1.1")).await;
    assert!(hit.starts_with("HTTP/1.1 200 OK"), "{hit}");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    // HTTP/1.0: never.
    let old = raw(gw.addr(), get("/other", "1.0")).await;
    assert!(
        old.starts_with("HTTP/1.0 200") || old.starts_with("HTTP/1.1 200"),
        "{old}"
    );
    assert!(!old.contains(" 103 "), "{old}");
    gw.shutdown().await;
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_reach_the_client_forward() {
    early_hints_reach_the_client(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_hints_reach_the_client_reverse() {
    early_hints_reach_the_client(true).await;
}
