//! Whole nodes in one process: in-memory discovery and transport for groups and seeding, and
//! real TCP with an HTTP origin for the wire path.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pdist_engine::content::{ContentId, ContentInfo, HashOptions, ServerSecret};
use pdist_engine::discovery::{Discovery, MemBus};
use pdist_engine::fetch::{
    Events, FetchError, FetchEvent, FetchOptions, FetchReport, OriginClient, PeerRef, Source,
};
use pdist_engine::node::{Listen, Node, NodeConfig};
use pdist_engine::peer::http::HttpTransport;
use pdist_engine::peer::mem::MemNetwork;
use pdist_engine::peer::{TailSource, Transport};
use pdist_engine::store::{CappedStore, Leases, MemStore, SegmentStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn cfg(secret: &[u8], listen: Listen, dir: &Path, cache: bool) -> NodeConfig {
    NodeConfig {
        name: "test".into(),
        secret: ServerSecret::new(secret.to_vec()),
        listen,
        cache,
        static_peers: Vec::new(),
        probe_interval: Duration::from_millis(200),
        hello_timeout: Duration::from_secs(1),
        scratch: dir.to_path_buf(),
        corrupt_blocks: false,
        leases: pdist_engine::store::Leases::new(),
    }
}

async fn mem_node(
    net: &MemNetwork,
    bus: &MemBus,
    i: u8,
    secret: &[u8],
    dir: &Path,
    cache: bool,
) -> Node {
    let addr: SocketAddr = format!("10.1.0.{i}:7461").parse().unwrap();
    let leases = Leases::new();
    let store: Arc<dyn SegmentStore> = if cache {
        Arc::new(CappedStore::new(MemStore::new(), 1 << 30, leases.clone()))
    } else {
        Arc::new(MemStore::new())
    };
    let disc: Arc<dyn Discovery> = Arc::new(bus.member(addr.ip()));
    let mut c = cfg(secret, Listen::Mem(net.clone(), addr), dir, cache);
    c.leases = leases;
    Node::start(c, store, Arc::new(net.clone()), Some(disc))
        .await
        .unwrap()
}

fn no_events() -> Events {
    Arc::new(|_| {})
}

fn publish(node: &Node, dir: &Path, seed: u64, len: u64) -> (Vec<u8>, ContentInfo) {
    let data = fixtures::content(seed, len);
    let path = dir.join(format!("c{seed}.bin"));
    std::fs::write(&path, &data).unwrap();
    let (info, _) = node.publish(&path, false, &HashOptions::default()).unwrap();
    (data, info)
}

fn read_all(node: &Node, info: &ContentInfo) -> Vec<u8> {
    let mut out = Vec::new();
    pdist_engine::fetch::write_content(node.store().as_ref(), info, &mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_publish_on_one_fetch_from_three() {
    let dir = tempfile::tempdir().unwrap();
    let (net, bus) = (MemNetwork::new(), MemBus::new());
    let mut nodes = Vec::new();
    for i in 1..=4 {
        nodes.push(mem_node(&net, &bus, i, b"g", dir.path(), false).await);
    }
    for n in &nodes {
        assert_eq!(
            n.wait_for_peers(3, Duration::from_secs(5), Duration::ZERO)
                .await,
            3
        );
    }
    let (data, info) = publish(&nodes[0], dir.path(), 1, 40 << 20);
    for n in &nodes[1..3] {
        n.fetch(
            info.id(),
            FetchOptions::default(),
            no_events(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    }
    let (_, report) = nodes[3]
        .fetch(
            info.id(),
            FetchOptions::default(),
            no_events(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(read_all(&nodes[3], &info), data);
    let sources: Vec<_> = report.by_source.keys().collect();
    assert_eq!(sources.len(), 3, "fetched from three peers: {sources:?}");
    let st = nodes[0].status().unwrap();
    assert!(st.bytes_served > 0);
    assert_eq!(st.peers_alive, 3);
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_separate_and_caches_take_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let (net, bus) = (MemNetwork::new(), MemBus::new());
    let a = mem_node(&net, &bus, 1, b"office", dir.path(), false).await;
    let cache = mem_node(&net, &bus, 2, b"office", dir.path(), true).await;
    let stranger = mem_node(&net, &bus, 3, b"elsewhere", dir.path(), false).await;
    assert_eq!(
        a.wait_for_peers(1, Duration::from_secs(5), Duration::ZERO)
            .await,
        1
    );
    let (data, info) = publish(&a, dir.path(), 2, 5 << 20);
    // The stranger sees a pdist node, but not as one of its group, and can fetch nothing.
    stranger.probe_now().await;
    let views = stranger.peer_views();
    assert_eq!(views.len(), 2);
    assert!(views.iter().all(|v| !v.group && !v.alive), "{views:?}");
    let err = stranger
        .fetch(
            info.id(),
            FetchOptions::default(),
            no_events(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::NoInfo { asked: 0, .. }), "{err}");
    // Seeding: the cache node fetches and keeps it.
    let results = a.seed(info.id(), None).await;
    assert_eq!(results.len(), 1);
    assert!(results[0].accepted);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache
        .store()
        .record(&info.id())
        .unwrap()
        .is_none_or(|r| r.blocks_present < r.blocks_total)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the cache did not fetch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(read_all(&cache, &info), data);
    // A seed naming a node that is not a cache goes nowhere.
    assert!(a.seed(info.id(), Some("nobody")).await.is_empty());
    for n in [&a, &cache, &stranger] {
        n.shutdown().await;
    }
}

/// A tiny HTTP origin that serves one body, with single ranges; counts bytes sent.
async fn origin(data: Arc<Vec<u8>>) -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    paced_origin(data, None).await
}

/// An HTTP origin serving `data` (whole or by range, including open-ended ranges), counting the
/// body bytes it sent; with `pace`, bodies go out `chunk` bytes at a time with `gap` between,
/// as over a slow WAN link.
async fn paced_origin(
    data: Arc<Vec<u8>>,
    pace: Option<(usize, Duration)>,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s2 = Arc::clone(&sent);
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = l.accept().await.unwrap();
            let data = Arc::clone(&data);
            let sent = Arc::clone(&s2);
            tokio::spawn(async move {
                loop {
                    let mut req = Vec::new();
                    let mut b = [0u8; 1];
                    while !req.ends_with(b"\r\n\r\n") {
                        if sock.read(&mut b).await.unwrap_or(0) == 0 {
                            return;
                        }
                        req.push(b[0]);
                    }
                    let req = String::from_utf8_lossy(&req).to_lowercase();
                    let range = req
                        .lines()
                        .find_map(|l| l.strip_prefix("range: bytes="))
                        .map(|r| {
                            let (a, b) = r.trim().split_once('-').unwrap();
                            let b = b.parse::<usize>().unwrap_or(data.len() - 1);
                            (a.parse::<usize>().unwrap(), b)
                        });
                    let (head, body) = match range {
                        Some((a, b)) => (
                            format!(
                                "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes {a}-{b}/{}\r\ncontent-length: {}\r\n\r\n",
                                data.len(),
                                b + 1 - a
                            ),
                            &data[a..=b],
                        ),
                        None => (
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", data.len()),
                            &data[..],
                        ),
                    };
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let (chunk, gap) = pace.unwrap_or((body.len().max(1), Duration::ZERO));
                    for part in body.chunks(chunk) {
                        if sock.write_all(part).await.is_err() {
                            return;
                        }
                        sent.fetch_add(part.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(gap).await;
                    }
                }
            });
        }
    });
    (addr, sent)
}

/// Content information as the TCP nodes' group hashes it.
fn tcp_info(data: &[u8]) -> ContentInfo {
    pdist_engine::content::hash_reader(
        data,
        &ServerSecret::new(b"tcp".to_vec()),
        &HashOptions::default(),
        &mut |_| {},
    )
    .unwrap()
}

async fn tcp_node(dir: &Path, peers: Vec<SocketAddr>) -> Node {
    let mut c = cfg(
        b"tcp",
        Listen::Tcp("127.0.0.1:0".parse().unwrap()),
        dir,
        false,
    );
    c.static_peers = peers;
    let transport: Arc<dyn Transport> = Arc::new(HttpTransport::new(Duration::from_secs(5)));
    Node::start(c, Arc::new(MemStore::new()), transport, None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp_with_an_origin_for_what_no_peer_has() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixtures::content(3, 3 * (32 << 20) + 999);
    let path = dir.path().join("x.bin");
    std::fs::write(&path, &data).unwrap();
    let (addr, sent) = origin(Arc::new(data.clone())).await;
    let url = format!("http://{addr}/x.bin");
    let opts = || FetchOptions {
        origin: Some(OriginClient::new(&url, Duration::from_secs(5)).unwrap()),
        ..FetchOptions::default()
    };
    // Nobody has it: the first node bootstraps from the origin, checked against the ticket.
    let info = tcp_info(&data);
    let first = tcp_node(dir.path(), vec![]).await;
    let (_, r) = first
        .fetch(info.id(), opts(), no_events(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.by_source.get(&Source::Origin), Some(&(data.len() as u64)));
    assert_eq!(read_all(&first, &info), data);
    // It then loses segment 1; a second node takes segments 0 and 2 from it over TCP and only
    // segment 1 from the origin, by range.
    let seg1 = info.layout().segment(1).unwrap();
    for b in info.layout().blocks(seg1) {
        first.store().mark_missing(&info.id(), b).unwrap();
    }
    let before = sent.load(std::sync::atomic::Ordering::Relaxed);
    let second = tcp_node(dir.path(), vec![first.addr()]).await;
    assert_eq!(
        second
            .wait_for_peers(1, Duration::from_secs(5), Duration::ZERO)
            .await,
        1
    );
    // Into an output file: runs from the peer and from the origin all land in it.
    let out = dir.path().join("out2.bin");
    let part = pdist_engine::fetch::PartFile::create(&out).unwrap();
    let with_sink = FetchOptions {
        sink: Some(part.sink()),
        ..opts()
    };
    let (_, r) = second
        .fetch(info.id(), with_sink, no_events(), CancellationToken::new())
        .await
        .unwrap();
    part.commit().unwrap();
    second.keep_in_place(&info, &out).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // Served from the output file now.
    assert_eq!(read_all(&second, &info), data);
    let from_origin = sent.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert_eq!(from_origin, 32 << 20, "only segment 1 came from the origin");
    assert_eq!(r.by_source.get(&Source::Origin), Some(&(32 << 20)));
    assert_eq!(
        r.by_source.get(&Source::Peer(first.addr())),
        Some(&(2 * (32 << 20) + 999))
    );
    // Without an origin the missing segment is named.
    let third = tcp_node(dir.path(), vec![first.addr()]).await;
    third
        .wait_for_peers(1, Duration::from_secs(5), Duration::ZERO)
        .await;
    let err = third
        .fetch(
            info.id(),
            FetchOptions::default(),
            no_events(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("segment(s) 1 "), "{err}");
    // A wrong ticket with an origin: the origin's bytes are refused.
    let other = pdist_engine::content::ContentId(pdist_engine::Hash([9; 32]));
    let fourth = tcp_node(dir.path(), vec![]).await;
    let err = fourth
        .fetch(other, opts(), no_events(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not the content of the ticket"),
        "{err}"
    );
    for n in [&first, &second, &third, &fourth] {
        n.shutdown().await;
    }
}

/// `n` TCP nodes of the "tcp" group, each listing every other (addresses known up front).
async fn mesh(dir: &Path, n: usize) -> Vec<Node> {
    let addrs: Vec<SocketAddr> = (0..n)
        .map(|_| fixtures::free_loopback_addr().unwrap())
        .collect();
    let mut nodes: Vec<Node> = Vec::new();
    for a in &addrs {
        let mut c = cfg(b"tcp", Listen::Tcp(*a), dir, false);
        c.static_peers = addrs.iter().filter(|p| *p != a).copied().collect();
        let transport: Arc<dyn Transport> = Arc::new(HttpTransport::new(Duration::from_secs(5)));
        nodes.push(
            Node::start(c, Arc::new(MemStore::new()), transport, None)
                .await
                .unwrap(),
        );
    }
    for node in &nodes {
        assert_eq!(
            node.wait_for_peers(n - 1, Duration::from_secs(10), Duration::from_secs(10))
                .await,
            n - 1,
            "a full mesh"
        );
    }
    nodes
}

/// Every node of `nodes` fetches `id` from `url` at once; with each fetch's bytes from the
/// origin so far, and a token that stops it.
struct AllAtOnce {
    set: tokio::task::JoinSet<(usize, Result<FetchReport, FetchError>)>,
    from_origin: Vec<Arc<std::sync::atomic::AtomicU64>>,
    cancels: Vec<CancellationToken>,
}

fn all_at_once(nodes: &[Node], id: ContentId, url: &str) -> AllAtOnce {
    let mut all = AllAtOnce {
        set: tokio::task::JoinSet::new(),
        from_origin: Vec::new(),
        cancels: Vec::new(),
    };
    for (i, n) in nodes.iter().enumerate() {
        let opts = FetchOptions {
            origin: Some(OriginClient::new(url, Duration::from_secs(5)).unwrap()),
            ..FetchOptions::default()
        };
        let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = Arc::clone(&counted);
        let events: Events = Arc::new(move |e| {
            if let FetchEvent::Progress {
                source: Source::Origin,
                bytes,
            } = e
            {
                c.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let cancel = CancellationToken::new();
        let (n, c) = (n.clone(), cancel.clone());
        all.set.spawn(async move {
            let r = n.fetch(id, opts, events, c).await;
            (i, r.map(|(_, report)| report))
        });
        all.from_origin.push(counted);
        all.cancels.push(cancel);
    }
    all
}

impl AllAtOnce {
    async fn reports(mut self) -> Vec<Result<FetchReport, FetchError>> {
        let mut reports = Vec::new();
        while let Some(r) = self.set.join_next().await {
            reports.push(r.unwrap());
        }
        reports.sort_by_key(|(i, _)| *i);
        reports.into_iter().map(|(_, r)| r).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_wanting_the_same_content_at_once_make_the_origin_send_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixtures::content(4, (32 << 20) + 5_000);
    // A slow origin: the others take the content from the leader's download as it arrives.
    let pace = Some((256 << 10, Duration::from_millis(4)));
    let (addr, sent) = paced_origin(Arc::new(data.clone()), pace).await;
    let info = tcp_info(&data);
    let nodes = mesh(dir.path(), 4).await;
    let reports = all_at_once(&nodes, info.id(), &format!("http://{addr}/x.bin"))
        .reports()
        .await;
    let mut leaders = 0;
    for (n, r) in nodes.iter().zip(reports) {
        let report = r.unwrap();
        assert_eq!(read_all(n, &info), data);
        if report.by_source.contains_key(&Source::Origin) {
            leaders += 1;
        } else {
            let from_peers: u64 = report.by_source.values().sum();
            assert_eq!(from_peers, data.len() as u64, "{report:?}");
        }
    }
    assert_eq!(leaders, 1, "one node downloaded it");
    assert_eq!(
        sent.load(std::sync::atomic::Ordering::Relaxed),
        data.len() as u64,
        "the origin sent it once"
    );
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_stops_another_goes_on_from_the_origin_where_it_stands() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixtures::content(5, (16 << 20) + 777);
    let len = data.len() as u64;
    let pace = Some((64 << 10, Duration::from_millis(5)));
    let (addr, sent) = paced_origin(Arc::new(data.clone()), pace).await;
    let info = tcp_info(&data);
    let nodes = mesh(dir.path(), 4).await;
    let all = all_at_once(&nodes, info.id(), &format!("http://{addr}/x.bin"));
    // The leader is stopped once it has a quarter of the content.
    let leader = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let at = all
                .from_origin
                .iter()
                .position(|c| c.load(std::sync::atomic::Ordering::Relaxed) >= len / 4);
            if let Some(i) = at {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a leader downloads");
    all.cancels[leader].cancel();
    let reports = all.reports().await;
    let mut resumed = 0;
    for (i, (n, r)) in nodes.iter().zip(reports).enumerate() {
        if i == leader {
            assert!(matches!(r, Err(FetchError::Cancelled)), "{r:?}");
            continue;
        }
        let report = r.unwrap();
        assert_eq!(read_all(n, &info), data);
        if let Some(o) = report.by_source.get(&Source::Origin) {
            assert!(
                *o < len,
                "went on where it stood, not from the start: {report:?}"
            );
            resumed += 1;
        }
    }
    assert_eq!(resumed, 1, "one node took over");
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sent <= len + len / 4,
        "the origin sent {sent} bytes for {len}: a new leader goes on where it stands"
    );
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stops_when_the_download_offered_under_its_key_changes() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = mesh(dir.path(), 2).await;
    let key = pdist_engine::wire::LookupKey([9; 32]);
    let file = |bytes: &[u8]| {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        Arc::new(f)
    };
    let seal = || pdist_engine::wire::TailKey::from_secret([7; 32]);
    let first = TailSource::with_meta(file(b"first download"), 5, b"one".to_vec(), seal());
    let offer = nodes[0].offer_tail(key, Arc::clone(&first));
    let leader = PeerRef {
        addr: nodes[0].addr(),
        node: Some(nodes[0].id()),
        cache: false,
    };
    let mut reader = nodes[1].follow_tail(key, seal(), leader, 0, Duration::from_secs(5));
    let cancel = CancellationToken::new();
    assert_eq!(&reader.next(&cancel).await.unwrap().unwrap()[..], b"first");
    assert_eq!(reader.meta(), Some(&b"one"[..]));
    // The first ends; another download is offered under the same key.
    drop(offer);
    let second = TailSource::with_meta(file(b"other bytes here"), 16, b"two".to_vec(), seal());
    second.finish();
    let _offer = nodes[0].offer_tail(key, second);
    let err = reader.next(&cancel).await.unwrap_err();
    assert!(err.to_string().contains("another download"), "{err}");
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_is_read_in_order_as_it_arrives_and_its_failure_reaches_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (net, bus) = (MemNetwork::new(), MemBus::new());
    let a = mem_node(&net, &bus, 1, b"g", dir.path(), false).await;
    let b = mem_node(&net, &bus, 2, b"g", dir.path(), false).await;
    assert_eq!(
        b.wait_for_peers(1, Duration::from_secs(5), Duration::ZERO)
            .await,
        1
    );
    let (data, info) = publish(&a, dir.path(), 7, (33 << 20) + 12_345);
    let fetch = b.start_fetch(
        info.id(),
        FetchOptions::default(),
        no_events(),
        CancellationToken::new(),
    );
    let mut reader = fetch.reader();
    let mut got = Vec::new();
    let mut runs = 0;
    while let Some(run) = reader.next().await {
        got.extend_from_slice(&run.unwrap());
        runs += 1;
    }
    assert!(got == data, "the content, in order");
    assert!(runs > 2, "in runs as it arrived ({runs})");
    let (done, report) = fetch.done().await.unwrap();
    assert_eq!(done.id(), info.id());
    assert_eq!(report.by_source.values().sum::<u64>(), data.len() as u64);

    // Content nobody has, and no origin: the reader hears why.
    let (_, other) = publish(&a, dir.path(), 8, 1000);
    assert!(a.remove(&other.id()).unwrap());
    let fetch = b.start_fetch(
        other.id(),
        FetchOptions::default(),
        no_events(),
        CancellationToken::new(),
    );
    let mut reader = fetch.reader();
    match reader.next().await {
        Some(Err(pdist_engine::node::ReadError::Fetch(e))) => {
            assert!(matches!(*e, FetchError::NoInfo { .. }), "{e}")
        }
        other => panic!("the fetch's failure, not {other:?}"),
    }
    assert!(fetch.done().await.is_err());
    a.shutdown().await;
    b.shutdown().await;
}
