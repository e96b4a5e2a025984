//! A flood at the gateway, on loopback: 300 connections that send their heads too slowly hold
//! slots while 1,000 clients ask at once. Every client gets a whole 200 or a 503 with
//! `Retry-After` (never a silent close or a cut body), a client that keeps asking is served
//! within 5 s, and the slow connections lose their slots after the head timeout. Prints the
//! figures.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{gateway, node};
use engine::origin::mem::{MemOrigin, Resource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENTS: usize = 1_000;
const SLOW: usize = 300;

/// Lets this process hold the sockets of both ends of every connection.
fn enough_files() {
    use rustix::process::{Resource as R, getrlimit, setrlimit};
    let l = getrlimit(R::Nofile);
    let want = 8_192u64;
    if l.current.is_some_and(|c| c < want) {
        let max = l.maximum;
        let mut raised = l;
        raised.current = Some(max.map_or(want, |m| m.min(want)));
        setrlimit(R::Nofile, raised).expect("raising the open files limit");
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Outcome {
    Whole200,
    Busy503,
}

/// One client: a GET with `Connection: close`, read to the end.
async fn client(p: SocketAddr, body: &[u8]) -> Result<Outcome, String> {
    let mut s = TcpStream::connect(p).await.map_err(|e| e.to_string())?;
    s.write_all(
        b"GET http://origin.test/o HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.map_err(|e| e.to_string())?;
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!(
            "no whole head: {:?}",
            String::from_utf8_lossy(&got)
        ));
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let rest = &got[end + 4..];
    if head.starts_with("http/1.1 200") && rest == body {
        return Ok(Outcome::Whole200);
    }
    if head.starts_with("http/1.1 503") && head.contains("retry-after:") {
        return Ok(Outcome::Busy503);
    }
    Err(format!("{head} with {} body bytes", rest.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_and_three_hundred_slow_heads_each_get_an_answer() {
    enough_files();
    // Room for all (the slow heads too, so that no answer depends on how fast the others
    // finish): served as fast as the machine goes.
    let roomy = flood(CLIENTS + SLOW + 8).await;
    assert_eq!(roomy.get(&Outcome::Whole200), Some(&CLIENTS));
    // Slots for the slow heads and 100 more: most clients are told to come back.
    let tight = flood(400).await;
    assert!(
        tight.get(&Outcome::Busy503).is_some_and(|&n| n > 0),
        "{tight:?}"
    );
}

/// Floods a gateway of `slots` connections; what the clients got.
async fn flood(slots: usize) -> std::collections::BTreeMap<Outcome, usize> {
    let dir = tempfile::tempdir().unwrap();
    let n = node(b"g", dir.path(), vec![]).await;
    let o = MemOrigin::new();
    let body = fixtures::content(41, 10 * 1024);
    o.put(
        "/o",
        Resource::new(body.clone(), &[("cache-control", "max-age=600")]),
    );
    let gw = gateway(&n, dir.path(), |c| {
        c.origin = std::sync::Arc::new(o.clone());
        c.head_timeout = Duration::from_secs(3);
        c.rate_per_client = 0;
        c.max_connections = slots;
    })
    .await;
    let p = gw.addr();
    assert_eq!(client(p, &body).await, Ok(Outcome::Whole200), "stored");

    // Slow heads: a few bytes of a head, then nothing.
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(p).await.unwrap();
        s.write_all(b"GET http://origin.test/o HT").await.unwrap();
        slow.push(s);
    }
    let started = Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let body = body.clone();
        flood.spawn(async move {
            let t = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(20), client(p, &body)).await;
            (
                r.unwrap_or_else(|_| Err("no answer within 20 s".into())),
                t.elapsed(),
            )
        });
    }
    // Meanwhile a client that keeps asking (as one told Retry-After would) is served within 5 s.
    let patient = tokio::spawn({
        let body = body.clone();
        async move {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if client(p, &body).await == Ok(Outcome::Whole200) {
                    return Some(t.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None
        }
    });
    let mut outcomes = std::collections::BTreeMap::<Outcome, usize>::new();
    let mut times = Vec::new();
    let mut failures = Vec::new();
    while let Some(r) = flood.join_next().await {
        let (r, took) = r.unwrap();
        match r {
            Ok(o) => *outcomes.entry(o).or_default() += 1,
            Err(e) => failures.push(e),
        }
        times.push(took);
    }
    let all = started.elapsed();
    times.sort();
    let patient = patient.await.unwrap();
    eprintln!(
        "{slots} slots, {CLIENTS} clients, {SLOW} slow heads: {outcomes:?} in {:.2} s; per client \
         median {:.0} ms, 99th percentile {:.0} ms; a patient client served after {patient:?}",
        all.as_secs_f64(),
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() * 99 / 100].as_secs_f64() * 1e3,
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(outcomes.get(&Outcome::Whole200).is_some_and(|&n| n > 0));
    assert!(
        patient.is_some(),
        "a patient client was not served within 5 s"
    );

    // The slow heads lose their slots after the head timeout: each is closed, none answered.
    for s in &mut slow {
        let mut b = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut b)).await;
        assert!(r.is_ok(), "a slow head kept its slot");
        assert!(!String::from_utf8_lossy(&b).contains(" 200 "));
    }
    gw.shutdown().await;
    n.shutdown().await;
    outcomes
}
