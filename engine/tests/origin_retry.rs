//! A request that meets a pooled connection the origin closed while it was idle: an idempotent
//! one is sent again on a fresh connection and answered; a POST is not repeated. The origin is
//! a raw TCP server on loopback that answers the first request of its first connection, then
//! reads the next request on it and closes without answering (as an origin whose keep-alive
//! timeout struck at that moment would); every later connection is answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use pdist_engine::origin::{HttpOrigin, HyperOrigin, empty_body};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads one request head (no body) from `s`; false when the connection ended.
async fn read_head(s: &mut tokio::net::TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    true
}

/// The origin; counts requests that arrived on the first connection after its first answer.
async fn origin() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = Arc::clone(&dropped);
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let was_first = std::mem::replace(&mut first, false);
            let d = Arc::clone(&d);
            tokio::spawn(async move {
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if was_first {
                    if !read_head(&mut s).await {
                        return;
                    }
                    s.write_all(ok).await.unwrap();
                    if read_head(&mut s).await {
                        d.fetch_add(1, Ordering::SeqCst);
                    }
                    return; // closed, unanswered
                }
                while read_head(&mut s).await {
                    if s.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, dropped)
}

async fn send(o: &HyperOrigin, method: &str, url: &str) -> Result<Vec<u8>, String> {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(empty_body())
        .unwrap();
    let resp = o.send(req).await.map_err(|e| e.to_string())?;
    Ok(resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec())
}

/// Sends a first request, then `method` on what should be the same pooled connection; the
/// second's result, or `None` if the pool opened a new connection after all (not what this
/// test is about: the caller tries again).
async fn second_on_a_closed_connection(method: &str) -> Option<Result<Vec<u8>, String>> {
    let (addr, dropped) = origin().await;
    let o = HyperOrigin::new(Duration::from_secs(5));
    let url = format!("http://{addr}/");
    assert_eq!(send(&o, "GET", &url).await.unwrap(), b"ok");
    // The first connection goes back to the pool once its answer is read.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    let r = send(&o, method, &url).await;
    (dropped.load(Ordering::SeqCst) == 1).then_some(r)
}

#[tokio::test]
async fn an_idempotent_request_is_sent_again_a_post_is_not() {
    for (method, answered) in [("GET", true), ("PUT", true), ("POST", false)] {
        let r = loop {
            if let Some(r) = second_on_a_closed_connection(method).await {
                break r;
            }
        };
        assert_eq!(r.is_ok(), answered, "{method}: {r:?}");
    }
}
