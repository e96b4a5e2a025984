//! Multi-node fetches in one process over the in-memory transport: honest, lying, slow,
//! disconnecting and vanishing peers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pdist_engine::content::{ContentInfo, HashOptions, ServerSecret, hash_reader};
use pdist_engine::fetch::{FetchError, FetchEvent, FetchOptions, Fetcher, PeerRef, Source};
use pdist_engine::peer::mem::{Fault, MemNetwork};
use pdist_engine::peer::{PeerClient, PeerService, ServeOptions, ServiceStats};
use pdist_engine::store::{MemStore, Origin, SegmentStore};
use pdist_engine::wire::{GroupKeys, NodeId};
use tokio_util::sync::CancellationToken;

struct Node {
    store: Arc<dyn SegmentStore>,
    addr: SocketAddr,
    svc: Arc<PeerService>,
}

fn secret() -> ServerSecret {
    ServerSecret::new(b"test group".to_vec())
}

fn info_for(data: &[u8]) -> ContentInfo {
    hash_reader(data, &secret(), &HashOptions::default(), &mut |_| {}).unwrap()
}

fn node(net: &MemNetwork, i: u16, opts: ServeOptions) -> Node {
    let store: Arc<dyn SegmentStore> = Arc::new(MemStore::new());
    let svc = PeerService::new(
        Arc::clone(&store),
        GroupKeys::new(&secret()),
        NodeId::random(),
        opts,
        None,
    )
    .unwrap();
    let addr: SocketAddr = format!("10.0.0.{i}:7000").parse().unwrap();
    net.attach(addr, Arc::clone(&svc));
    Node { store, addr, svc }
}

/// Stores all of `data` on `n` (as a seeder), or only the blocks `keep` says.
fn seed(n: &Node, info: &ContentInfo, data: &[u8], keep: impl Fn(u64) -> bool) {
    n.store.put_content(info, "x", Origin::Fetched).unwrap();
    let l = info.layout();
    for g in 0..l.block_count() {
        if keep(g) {
            let b = l.block_at(g).unwrap();
            let r = l.block_range(b);
            n.store
                .put_block(&info.id(), b, &data[r.start as usize..r.end as usize])
                .unwrap();
        }
    }
    n.svc.index(&info.id());
}

fn fetcher(net: &MemNetwork, n: &Node) -> Fetcher {
    let client = PeerClient::new(
        Arc::new(net.clone()),
        GroupKeys::new(&secret()),
        n.svc.node_id(),
    );
    Fetcher::new(
        client,
        Arc::clone(&n.store),
        Arc::new(ServiceStats::default()),
    )
}

fn refs(nodes: &[&Node]) -> Vec<PeerRef> {
    nodes
        .iter()
        .map(|n| PeerRef {
            addr: n.addr,
            node: Some(n.svc.node_id()),
            cache: false,
        })
        .collect()
}

fn fast() -> FetchOptions {
    FetchOptions {
        chunk_timeout: Duration::from_secs(2),
        ..FetchOptions::default()
    }
}

type Log = Arc<Mutex<Vec<FetchEvent>>>;

fn events() -> (Log, pdist_engine::fetch::Events) {
    let log: Log = Arc::default();
    let l2 = Arc::clone(&log);
    (log, Arc::new(move |e| l2.lock().unwrap().push(e)))
}

fn read_all(n: &Node, info: &ContentInfo) -> Vec<u8> {
    let mut out = Vec::new();
    pdist_engine::fetch::write_content(n.store.as_ref(), info, &mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_from_three_peers_and_verifies_everything() {
    let net = MemNetwork::new();
    let data = fixtures::content(1, 3 * 32 * 1024 * 1024 + 12_345);
    let info = info_for(&data);
    let seeders: Vec<Node> = (1..=3)
        .map(|i| node(&net, i, ServeOptions::default()))
        .collect();
    for s in &seeders {
        seed(s, &info, &data, |_| true);
    }
    let me = node(&net, 9, ServeOptions::default());
    let f = fetcher(&net, &me);
    let peers = refs(&seeders.iter().collect::<Vec<_>>());
    let got = f
        .content_info(&info.id(), &peers, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(got.id(), info.id());
    let (log, ev) = events();
    let report = f
        .fetch(got, &peers, &fast(), ev, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(read_all(&me, &info), data);
    let total: u64 = report.by_source.values().sum();
    assert_eq!(total, data.len() as u64);
    assert_eq!(
        report.by_source.len(),
        3,
        "every peer contributed: {:?}",
        report.by_source
    );
    assert!(report.dropped.is_empty());
    let progress: u64 = log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            FetchEvent::Progress { bytes, .. } => Some(*bytes),
            _ => None,
        })
        .sum();
    assert_eq!(progress, data.len() as u64);
    // Fetched content is served onwards.
    me.svc.index(&info.id());
    let third = node(&net, 10, ServeOptions::default());
    let f3 = fetcher(&net, &third);
    let peers = refs(&[&me]);
    let info3 = f3
        .content_info(&info.id(), &peers, Duration::from_secs(2))
        .await
        .unwrap();
    f3.fetch(info3, &peers, &fast(), events().1, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(read_all(&third, &info), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_peer_is_dropped_and_its_blocks_come_from_others() {
    let net = MemNetwork::new();
    let data = fixtures::content(2, 40 * 1024 * 1024);
    let info = info_for(&data);
    let liar = node(
        &net,
        1,
        ServeOptions {
            corrupt_blocks: true,
            ..ServeOptions::default()
        },
    );
    let honest = node(&net, 2, ServeOptions::default());
    seed(&liar, &info, &data, |_| true);
    seed(&honest, &info, &data, |_| true);
    let me = node(&net, 9, ServeOptions::default());
    let f = fetcher(&net, &me);
    let peers = refs(&[&liar, &honest]);
    let info2 = f
        .content_info(&info.id(), &peers, Duration::from_secs(2))
        .await
        .unwrap();
    let report = f
        .fetch(info2, &peers, &fast(), events().1, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(read_all(&me, &info), data);
    assert_eq!(report.dropped.len(), 1);
    assert_eq!(report.dropped[0].0, liar.addr);
    assert!(
        report.dropped[0].1.contains("verification"),
        "{:?}",
        report.dropped
    );
    assert!(!report.by_source.contains_key(&Source::Peer(liar.addr)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_disconnecting_peers_do_not_stop_a_fetch() {
    let net = MemNetwork::new();
    let data = fixtures::content(3, 24 * 1024 * 1024);
    let info = info_for(&data);
    let slow = node(&net, 1, ServeOptions::default());
    let cut = node(&net, 2, ServeOptions::default());
    let good = node(&net, 3, ServeOptions::default());
    for n in [&slow, &cut, &good] {
        seed(n, &info, &data, |_| true);
    }
    let me = node(&net, 9, ServeOptions::default());
    let f = fetcher(&net, &me);
    let peers = refs(&[&slow, &cut, &good]);
    let info2 = f
        .content_info(&info.id(), &peers, Duration::from_secs(2))
        .await
        .unwrap();
    net.set_fault(slow.addr, Some(Fault::Slow(Duration::from_millis(30))));
    net.set_fault(cut.addr, Some(Fault::CutAfter(3)));
    let report = f
        .fetch(info2, &peers, &fast(), events().1, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(read_all(&me, &info), data);
    let from = |n: &Node| {
        report
            .by_source
            .get(&Source::Peer(n.addr))
            .copied()
            .unwrap_or(0)
    };
    assert!(
        from(&good) > from(&slow),
        "the fast peer gets more: {:?}",
        report.by_source
    );
    assert!(
        report.dropped.iter().any(|(a, _)| *a == cut.addr),
        "{:?}",
        report.dropped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_segments_are_named_and_a_fetch_resumes() {
    let net = MemNetwork::new();
    let data = fixtures::content(4, 3 * 32 * 1024 * 1024);
    let info = info_for(&data);
    // The seeder holds segments 0 and 2 only.
    let partial = node(&net, 1, ServeOptions::default());
    seed(&partial, &info, &data, |g| g / 512 != 1);
    let me = node(&net, 9, ServeOptions::default());
    let f = fetcher(&net, &me);
    let peers = refs(&[&partial]);
    let info2 = f
        .content_info(&info.id(), &peers, Duration::from_secs(2))
        .await
        .unwrap();
    let err = f
        .fetch(
            Arc::clone(&info2),
            &peers,
            &fast(),
            events().1,
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Unavailable { segments, .. } if segments == &[1]),
        "{err}"
    );
    assert!(err.to_string().contains("segment(s) 1"), "{err}");
    // A peer with everything appears; only what is missing is fetched.
    let full = node(&net, 2, ServeOptions::default());
    seed(&full, &info, &data, |_| true);
    let peers = refs(&[&partial, &full]);
    let mut done = 0;
    // First a run that gets segment 0 only: the full peer holds it, then goes down.
    let report = f
        .fetch(info2, &peers, &fast(), events().1, CancellationToken::new())
        .await
        .unwrap();
    done += report.by_source.values().sum::<u64>();
    assert_eq!(done, data.len() as u64);
    assert_eq!(read_all(&me, &info), data);
    // Everything is present now: a further fetch transfers nothing.
    let again = f
        .fetch(
            me.store.content_info(&info.id()).unwrap().unwrap(),
            &peers,
            &fast(),
            events().1,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(again.by_source.is_empty());
    assert_eq!(again.present, data.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_goes_down_mid_fetch_is_dropped() {
    let net = MemNetwork::new();
    let data = fixtures::content(5, 16 * 1024 * 1024);
    let info = info_for(&data);
    let a = node(&net, 1, ServeOptions::default());
    let b = node(&net, 2, ServeOptions::default());
    seed(&a, &info, &data, |_| true);
    seed(&b, &info, &data, |_| true);
    let me = node(&net, 9, ServeOptions::default());
    let f = fetcher(&net, &me);
    let peers = refs(&[&a, &b]);
    let info2 = f
        .content_info(&info.id(), &peers, Duration::from_secs(2))
        .await
        .unwrap();
    // a dies as soon as the first bytes arrive.
    let net2 = net.clone();
    let a_addr = a.addr;
    let ev: pdist_engine::fetch::Events = Arc::new(move |e| {
        if matches!(e, FetchEvent::Progress { .. }) {
            net2.set_fault(a_addr, Some(Fault::Down));
        }
    });
    let report = f
        .fetch(info2, &peers, &fast(), ev, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(read_all(&me, &info), data);
    assert!(
        report.dropped.iter().any(|(p, _)| *p == a.addr),
        "{:?}",
        report.dropped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_group_learns_nothing() {
    let net = MemNetwork::new();
    let data = fixtures::content(6, 1024 * 1024);
    let info = info_for(&data);
    let a = node(&net, 1, ServeOptions::default());
    seed(&a, &info, &data, |_| true);
    let stranger_store: Arc<dyn SegmentStore> = Arc::new(MemStore::new());
    let client = PeerClient::new(
        Arc::new(net.clone()),
        GroupKeys::new(&ServerSecret::new(b"other group".to_vec())),
        NodeId::random(),
    );
    let f = Fetcher::new(client, stranger_store, Arc::new(ServiceStats::default()));
    let err = f
        .content_info(&info.id(), &refs(&[&a]), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::NoInfo { asked: 1, .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_sealed_and_cannot_be_replayed() {
    use pdist_engine::peer::{Transport, TransportError};
    use pdist_engine::wire::{self, Request};
    let net = MemNetwork::new();
    let a = node(
        &net,
        1,
        ServeOptions {
            name: "secret-name".into(),
            ..ServeOptions::default()
        },
    );
    let keys = GroupKeys::new(&secret());
    let me = NodeId::random();
    let (req, mac) = wire::encode_request(&keys, &me, &NodeId::ANY, &Request::Hello);
    let first = net.call(a.addr, req.clone()).await.unwrap();
    let body = first.body.collect(4096).await.unwrap();
    assert!(
        !body.windows(11).any(|w| w == b"secret-name"),
        "the hello is sealed"
    );
    let Ok(wire::Reply::Hello(h)) = wire::decode_reply(&keys, &mac, &body) else {
        panic!("a hello reply");
    };
    // A request names its recipient: one for `a`, captured and sent to `b`, is refused
    // there; `a` answers it.
    let b = node(&net, 2, ServeOptions::default());
    let info_req = Request::Info {
        lookup: wire::LookupKey([7; 32]),
    };
    let (for_a, _) = wire::encode_request(&keys, &me, &h.node, &info_req);
    let err = net.call(b.addr, for_a.clone()).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Status { status: 403, .. }),
        "{err}"
    );
    assert_eq!(net.call(a.addr, for_a).await.unwrap().status, 200);
    // Only a hello may be for any node.
    let (anyone, _) = wire::encode_request(&keys, &me, &NodeId::ANY, &info_req);
    let err = net.call(a.addr, anyone).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Status { status: 403, .. }),
        "{err}"
    );
    // The same bytes again (a captured request): refused.
    let again = net.call(a.addr, req).await.unwrap_err();
    assert!(
        matches!(again, TransportError::Status { status: 403, .. }),
        "{again}"
    );
    // A request of another group: refused the same way.
    let other = GroupKeys::new(&ServerSecret::new(b"other".to_vec()));
    let (req, _) = wire::encode_request(&other, &NodeId::random(), &NodeId::ANY, &Request::Hello);
    let err = net.call(a.addr, req).await.unwrap_err();
    assert!(
        matches!(err, TransportError::Status { status: 403, .. }),
        "{err}"
    );
}

#[test]
fn a_replay_is_refused_even_after_the_table_of_seen_requests_overflows() {
    use pdist_engine::wire::{self, Request};
    let net = MemNetwork::new();
    let a = node(
        &net,
        1,
        ServeOptions {
            requests_per_sender: 0,
            ..ServeOptions::default()
        },
    );
    let keys = GroupKeys::new(&secret());
    let me = NodeId::random();
    let hello = || wire::encode_request(&keys, &me, &NodeId::ANY, &Request::Hello).0;
    let from: SocketAddr = "10.0.0.9:7000".parse().unwrap();
    let captured = hello();
    assert_eq!(a.svc.handle(from, &captured).status, 200);
    // More requests than the node remembers (65,536), all within the freshness window: it
    // forgets the oldest, and from then on refuses anything sent no later than they were.
    for _ in 0..(1 << 16) {
        a.svc.handle(from, &hello());
    }
    assert_eq!(
        a.svc.handle(from, &captured).status,
        403,
        "the captured request, replayed after its tag was forgotten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_fetches_only_the_blocks_that_cover_it() {
    let net = MemNetwork::new();
    let data = fixtures::content(8, 34 * 1024 * 1024);
    let info = info_for(&data);
    let seeder = node(&net, 1, ServeOptions::default());
    seed(&seeder, &info, &data, |_| true);
    let me = node(&net, 9, ServeOptions::default());
    me.store.put_content(&info, "x", Origin::Fetched).unwrap();
    let f = fetcher(&net, &me);
    let peers = refs(&[&seeder]);
    // Bytes 100000..33600000: blocks 1..=512 (across the segment boundary at block 512).
    let only = 100_000..33_600_000;
    let opts = FetchOptions {
        only: Some(only.clone()),
        ..fast()
    };
    let report = f
        .fetch(
            Arc::new(info.clone()),
            &peers,
            &opts,
            events().1,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let l = info.layout();
    let held: Vec<u64> = (0..l.block_count())
        .filter(|&g| {
            let b = l.block_at(g).unwrap();
            me.store
                .present(&info.id(), b.segment())
                .unwrap()
                .contains(b.index_in_segment())
        })
        .collect();
    assert_eq!(held, (1..=512).collect::<Vec<_>>());
    assert_eq!(report.by_source.values().sum::<u64>(), 512 * 65_536);
    let b = l.block_at(300).unwrap();
    let r = l.block_range(b);
    assert_eq!(
        me.store.get_block(&info.id(), b).unwrap().unwrap(),
        &data[r.start as usize..r.end as usize]
    );
}
