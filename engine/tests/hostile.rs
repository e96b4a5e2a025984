//! Nodes with a hostile member of their group among them ([`fixtures::hostile`]): whatever it
//! lies about, a download finishes with the right bytes in bounded time, and the report names
//! the peer dropped and why.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixtures::hostile::{HostileNet, Lies};
use pdist_engine::content::{ContentId, HashOptions, ServerSecret};
use pdist_engine::fetch::{FetchOptions, FetchReport, OriginClient};
use pdist_engine::node::{Listen, Node, NodeConfig};
use pdist_engine::origin::mem::{MemOrigin, Resource};
use pdist_engine::peer::Transport;
use pdist_engine::peer::mem::MemNetwork;
use pdist_engine::store::{Leases, MemStore};
use tokio_util::sync::CancellationToken;

const GROUP: &[u8] = b"hostile test group";

fn liar_addr() -> SocketAddr {
    "10.9.0.99:7461".parse().unwrap()
}

async fn honest(net: &MemNetwork, hostile: &HostileNet, i: u8, dir: &Path) -> Node {
    let addr: SocketAddr = format!("10.9.0.{i}:7461").parse().unwrap();
    let others = (1..=2u8)
        .filter(|j| *j != i)
        .map(|j| format!("10.9.0.{j}:7461").parse().unwrap())
        .chain([liar_addr()])
        .collect();
    let cfg = NodeConfig {
        name: format!("n{i}"),
        secret: ServerSecret::new(GROUP.to_vec()),
        listen: Listen::Mem(net.clone(), addr),
        cache: false,
        static_peers: others,
        probe_interval: Duration::from_millis(200),
        hello_timeout: Duration::from_secs(1),
        scratch: dir.join(format!("n{i}")),
        corrupt_blocks: false,
        leases: Leases::new(),
    };
    let transport: Arc<dyn Transport> = Arc::new(hostile.clone());
    Node::start(cfg, Arc::new(MemStore::new()), transport, None)
        .await
        .unwrap()
}

fn id_of(data: &[u8]) -> ContentId {
    pdist_engine::content::hash_reader(
        data,
        &ServerSecret::new(GROUP.to_vec()),
        &HashOptions::default(),
        &mut |_| {},
    )
    .unwrap()
    .id()
}

/// Two honest nodes and one that lies as `lies` say want the same content from an origin at
/// once; returns their reports and the bytes the origin sent.
async fn first_download_with(lies: Lies) -> (Vec<FetchReport>, u64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let net = MemNetwork::new();
    let hostile = HostileNet::new(Arc::new(net.clone()));
    hostile.add(liar_addr(), &ServerSecret::new(GROUP.to_vec()), lies);
    let nodes = [
        honest(&net, &hostile, 1, dir.path()).await,
        honest(&net, &hostile, 2, dir.path()).await,
    ];
    for n in &nodes {
        // Each sees the other and the hostile peer, which answers hellos like anyone.
        assert_eq!(
            n.wait_for_peers(2, Duration::from_secs(5), Duration::from_secs(5))
                .await,
            2
        );
    }
    let data = fixtures::content(44, (2 << 20) + 321);
    let id = id_of(&data);
    let origin = MemOrigin::new();
    origin.put(
        "/d.bin",
        Resource::new(data.clone(), &[]).paced(Duration::from_millis(5)),
    );
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, n) in nodes.iter().enumerate() {
        let (n, o) = (n.clone(), origin.clone());
        let out = dir.path().join(format!("out{i}"));
        set.spawn(async move {
            let opts = FetchOptions {
                origin: Some(
                    OriginClient::with(Arc::new(o), "http://o.test/d.bin", Duration::from_secs(5))
                        .unwrap(),
                ),
                follow_patience: Duration::from_secs(1),
                ..FetchOptions::default()
            };
            let fetch = n.fetch_into(
                id,
                Some(&out),
                opts,
                Arc::new(|_| {}),
                CancellationToken::new(),
            );
            let (_, report) = tokio::time::timeout(Duration::from_secs(20), fetch)
                .await
                .expect("the download finishes within 20 s")
                .unwrap();
            (std::fs::read(&out).unwrap(), report)
        });
    }
    let mut reports = Vec::new();
    while let Some(r) = set.join_next().await {
        let (got, report) = r.unwrap();
        assert!(got == data, "the right bytes");
        reports.push(report);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "bounded: {took:?}");
    for n in nodes {
        n.shutdown().await;
    }
    let sent = origin.served("/d.bin").bytes;
    (reports, sent, data.len())
}

/// Why the hostile peer was dropped, as a report names it.
fn why_the_liar_was_dropped(reports: &[FetchReport]) -> String {
    reports
        .iter()
        .flat_map(|r| r.dropped.iter())
        .find(|(p, _)| *p == liar_addr())
        .unwrap_or_else(|| panic!("no report names the hostile peer: {reports:?}"))
        .1
        .clone()
}

/// The lies of every test: it says it downloads whatever anyone wants, and then...
fn downloading_forever(then: Lies) -> Lies {
    Lies {
        downloading_forever: true,
        ..then
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_says_it_downloads_everything_and_offers_nothing_holds_nobody() {
    let lies = downloading_forever(Lies {
        empty_tail: true,
        ..Lies::default()
    });
    let (reports, sent, len) = first_download_with(lies).await;
    why_the_liar_was_dropped(&reports);
    assert!(sent <= 2 * len as u64, "the origin sent {sent} for {len}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_offer_never_grows_holds_nobody() {
    let lies = downloading_forever(Lies {
        stuck_tail: true,
        ..Lies::default()
    });
    let (reports, _, _) = first_download_with(lies).await;
    let why = why_the_liar_was_dropped(&reports);
    assert!(why.contains("no new byte"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_offering_garbage_is_dropped_at_its_first_answer() {
    let lies = downloading_forever(Lies {
        garbage_tail: true,
        ..Lies::default()
    });
    let (reports, _, _) = first_download_with(lies).await;
    let why = why_the_liar_was_dropped(&reports);
    assert!(why.contains("do not open"), "{why}");
}
