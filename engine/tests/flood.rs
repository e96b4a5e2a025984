//! A hostile member of the LAN at a node's peer endpoint, over real sockets: 3,000 malformed
//! requests of every kind (garbage, truncations, bit flips, another group's keys, oversized,
//! replays, other methods and paths, broken HTTP) leave the node alive and serving, and a
//! member of the group that floods it with valid requests is held to its rate while another
//! member is served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pdist_engine::content::{HashOptions, ServerSecret, hash_reader};
use pdist_engine::fetch::{FetchOptions, Fetcher, PeerRef};
use pdist_engine::peer::http::HttpTransport;
use pdist_engine::peer::{PeerClient, PeerService, ServeOptions, ServiceStats, Transport};
use pdist_engine::store::{MemStore, Origin, SegmentStore};
use pdist_engine::wire::{self, GroupKeys, NodeId, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn secret() -> ServerSecret {
    ServerSecret::new(b"flood test group secret".to_vec())
}

struct Served {
    addr: SocketAddr,
    svc: Arc<PeerService>,
    store: Arc<dyn SegmentStore>,
    stop: CancellationToken,
}

async fn serve(opts: ServeOptions) -> Served {
    let store: Arc<dyn SegmentStore> = Arc::new(MemStore::new());
    let keys = GroupKeys::new(&secret());
    let svc = PeerService::new(Arc::clone(&store), keys, NodeId::random(), opts, None).unwrap();
    let listener = tokio::net::TcpListener::bind(fixtures::free_loopback_addr().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(pdist_engine::peer::http::serve(
        listener,
        Arc::clone(&svc),
        stop.clone(),
        TaskTracker::new(),
    ));
    Served {
        addr,
        svc,
        store,
        stop,
    }
}

/// A tiny deterministic generator, so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The status a raw body posted to the endpoint gets (0: the connection broke).
async fn post(t: &HttpTransport, to: SocketAddr, body: Vec<u8>) -> u16 {
    match t.call(to, body).await {
        Ok(r) => r.status,
        Err(pdist_engine::peer::TransportError::Status { status, .. }) => status,
        Err(_) => 0,
    }
}

/// Sends raw bytes on a new connection; what comes back within 5 s (empty: closed silently).
async fn raw(to: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_malformed_requests_leave_the_node_serving() {
    let node = serve(ServeOptions::default()).await;
    let data = fixtures::content(31, 3 << 20);
    let info = hash_reader(&data[..], &secret(), &HashOptions::default(), &mut |_| {}).unwrap();
    node.store.put_content(&info, "x", Origin::Fetched).unwrap();
    let l = info.layout();
    for g in 0..l.block_count() {
        let b = l.block_at(g).unwrap();
        let r = l.block_range(b);
        node.store
            .put_block(&info.id(), b, &data[r.start as usize..r.end as usize])
            .unwrap();
    }
    node.svc.index(&info.id());

    let t = HttpTransport::new(Duration::from_secs(5));
    let keys = GroupKeys::new(&secret());
    let other = GroupKeys::new(&ServerSecret::new(b"another group's secret!".to_vec()));
    let me = NodeId::random();
    let to = node.svc.node_id();
    let valid = |r: &Request| wire::encode_request(&keys, &me, &to, r).0;
    let lookup = wire::ContentKeys::new(&info.id()).lookup;
    let kinds = [
        Request::Hello,
        Request::Info { lookup },
        Request::Have {
            lookup,
            first: 0,
            count: 48,
        },
        Request::Blocks {
            lookup,
            seg: 0,
            first: 0,
            count: 4,
        },
        Request::Tail { lookup, offset: 0 },
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut answers = std::collections::BTreeMap::<(&str, u16), u32>::new();
    let mut sent = 0;
    let started = Instant::now();
    for i in 0..2_900 {
        let good = valid(&kinds[i % kinds.len()]);
        let (what, body) = match i % 6 {
            0 => {
                let n = rng.next() as usize % 1100;
                ("garbage", rng.bytes(n))
            }
            1 => {
                let n = rng.next() as usize % good.len();
                ("truncated", good[..n].to_vec())
            }
            2 => {
                let mut b = good.clone();
                let at = rng.next() as usize % b.len();
                b[at] ^= 1 << (rng.next() % 8);
                ("bit flipped", b)
            }
            3 => {
                let r = &kinds[i % kinds.len()];
                ("another group", wire::encode_request(&other, &me, &to, r).0)
            }
            4 => ("oversized", rng.bytes(wire::MAX_REQUEST_LEN + 1 + i)),
            _ => {
                // A valid request, then its replay.
                let first = post(&t, node.addr, good.clone()).await;
                assert_eq!(first, 200, "the original is answered");
                ("replayed", good)
            }
        };
        let status = post(&t, node.addr, body).await;
        assert_ne!(status, 200, "{what} answered as valid");
        *answers.entry((what, status)).or_default() += 1;
        sent += 1;
    }
    // Broken HTTP on raw connections: other methods and paths, garbage heads, huge heads.
    let raws: [&[u8]; 4] = [
        b"GET /pdist/v1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage that is not http\r\n\r\n",
        b"POST /pdist/v1 HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ];
    for i in 0..100 {
        let got = if i % 5 == 4 {
            let mut head = b"POST /pdist/v1 HTTP/1.1\r\nX: ".to_vec();
            head.extend(std::iter::repeat_n(b'a', 100_000));
            raw(node.addr, &head).await
        } else {
            raw(node.addr, raws[i % 4]).await
        };
        assert!(
            !got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        sent += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{sent} malformed requests in {secs:.1} s; answers (kind, status): {answers:?}");
    assert_eq!(sent, 3_000);

    // Alive and serving: a fetch of the content from it.
    let store: Arc<dyn SegmentStore> = Arc::new(MemStore::new());
    let client = PeerClient::new(Arc::new(t.clone()), keys.clone(), me);
    let f = Fetcher::new(
        client,
        Arc::clone(&store),
        Arc::new(ServiceStats::default()),
    );
    let peers = [PeerRef {
        addr: node.addr,
        node: Some(to),
        cache: false,
    }];
    let got = f
        .content_info(&info.id(), &peers, Duration::from_secs(5))
        .await
        .unwrap();
    let events: pdist_engine::fetch::Events = Arc::new(|_| {});
    f.fetch(
        got,
        &peers,
        &FetchOptions::default(),
        events,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    for g in 0..l.block_count() {
        let b = l.block_at(g).unwrap();
        let r = l.block_range(b);
        let block = store.get_block(&info.id(), b).unwrap().unwrap();
        assert_eq!(&block[..], &data[r.start as usize..r.end as usize]);
    }
    node.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_floods_is_held_to_its_rate_and_others_are_served() {
    let rate = 100;
    let node = serve(ServeOptions {
        requests_per_sender: rate,
        ..ServeOptions::default()
    })
    .await;
    let t = HttpTransport::new(Duration::from_secs(5));
    let keys = GroupKeys::new(&secret());
    let (flooder, other) = (NodeId::random(), NodeId::random());
    let to = node.svc.node_id();
    let hello = |from: &NodeId| wire::encode_request(&keys, from, &to, &Request::Hello).0;
    let started = Instant::now();
    let (mut ok, mut busy) = (0u64, 0u64);
    for _ in 0..1_000 {
        match post(&t, node.addr, hello(&flooder)).await {
            200 => ok += 1,
            503 => busy += 1,
            s => panic!("a flood's request answered {s}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // A burst of `rate`, then `rate` a second.
    let most = rate as f64 * (1.0 + secs) + 1.0;
    eprintln!("a flood of 1000 requests in {secs:.2} s: {ok} answered, {busy} busy");
    assert!(ok as f64 <= most, "{ok} answered in {secs} s");
    assert_eq!(ok + busy, 1_000);
    // Another member is served meanwhile: its own bucket.
    assert_eq!(post(&t, node.addr, hello(&other)).await, 200);
    node.stop.cancel();
}
