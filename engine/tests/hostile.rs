//! Nodes with hostile members of their group among them ([`fixtures::hostile`]), over the
//! in-memory transport and over real sockets: whatever they lie about, a download finishes with
//! the right bytes in bounded time, and the report names each hostile peer dropped and why.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixtures::hostile::{HostileNet, HostilePeer, Lies};
use pdist_engine::content::{ContentId, HashOptions, ServerSecret};
use pdist_engine::fetch::{FetchOptions, FetchReport, OriginClient, Source};
use pdist_engine::node::{Listen, Node, NodeConfig};
use pdist_engine::origin::mem::{MemOrigin, Resource};
use pdist_engine::peer::Transport;
use pdist_engine::peer::http::HttpTransport;
use pdist_engine::peer::mem::MemNetwork;
use pdist_engine::store::{Leases, MemStore};
use pdist_engine::wire::{ContentKeys, NodeId};
use tokio_util::sync::CancellationToken;

const GROUP: &[u8] = b"hostile test group";

/// Where the nodes and the hostile peers meet.
#[derive(Debug, Clone, Copy)]
enum Over {
    /// The in-memory transport.
    Memory,
    /// HTTP over loopback sockets.
    Tcp,
}

/// Honest nodes (the last `corrupt` of them serve wrong bytes, sealed correctly) and hostile
/// peers, all of one group, every node knowing every other.
struct Lan {
    nodes: Vec<Node>,
    liars: Vec<SocketAddr>,
    /// The hostile peers in memory.
    hostile: HostileNet,
    /// The hostile peers on sockets (stopped when dropped).
    sockets: Vec<HostilePeer>,
}

async fn lan(over: Over, nodes: usize, corrupt: usize, lies: &[Lies], dir: &Path) -> Lan {
    let secret = ServerSecret::new(GROUP.to_vec());
    let mem = MemNetwork::new();
    let hostile = HostileNet::new(Arc::new(mem.clone()));
    let (mut liars, mut sockets) = (Vec::new(), Vec::new());
    for (i, l) in lies.iter().enumerate() {
        match over {
            Over::Memory => {
                let a: SocketAddr = format!("10.9.1.{}:7461", i + 1).parse().unwrap();
                hostile.add(a, &secret, *l);
                liars.push(a);
            }
            Over::Tcp => {
                let p = HostilePeer::listen(&secret, *l).await.unwrap();
                liars.push(p.addr());
                sockets.push(p);
            }
        }
    }
    let addrs: Vec<SocketAddr> = (0..nodes)
        .map(|i| match over {
            Over::Memory => format!("10.9.0.{}:7461", i + 1).parse().unwrap(),
            Over::Tcp => fixtures::free_loopback_addr().unwrap(),
        })
        .collect();
    let mut started = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        let cfg = NodeConfig {
            name: format!("n{i}"),
            secret: secret.clone(),
            listen: match over {
                Over::Memory => Listen::Mem(mem.clone(), *a),
                Over::Tcp => Listen::Tcp(*a),
            },
            cache: false,
            static_peers: addrs
                .iter()
                .filter(|p| *p != a)
                .chain(&liars)
                .copied()
                .collect(),
            probe_interval: Duration::from_millis(200),
            hello_timeout: Duration::from_secs(1),
            scratch: dir.join(format!("n{i}")),
            corrupt_blocks: i >= nodes - corrupt,
            leases: Leases::new(),
        };
        let transport: Arc<dyn Transport> = match over {
            Over::Memory => Arc::new(hostile.clone()),
            Over::Tcp => Arc::new(HttpTransport::new(Duration::from_secs(2))),
        };
        let node = Node::start(cfg, Arc::new(MemStore::new()), transport, None);
        started.push(node.await.unwrap());
    }
    // Every node sees every other, and the hostile peers, which answer hellos like anyone.
    let all = nodes - 1 + liars.len();
    for n in &started {
        let seen = n
            .wait_for_peers(all, Duration::from_secs(5), Duration::from_secs(5))
            .await;
        assert_eq!(seen, all, "every peer answers hellos");
    }
    Lan {
        nodes: started,
        liars,
        hostile,
        sockets,
    }
}

impl Lan {
    /// Gives every hostile peer a node ID that outranks every node in an election of `id`
    /// (the lowest hash of node ID and lookup key), and waits until every node knows it.
    async fn outrank(&self, id: &ContentId) {
        let key = ContentKeys::new(id).lookup;
        let rank = |node: &NodeId| {
            let mut b = node.0.to_vec();
            b.extend_from_slice(&key.0);
            pdist_engine::content::sha256(&b).0
        };
        let best = self.nodes.iter().map(|n| rank(&n.id())).min().unwrap();
        let mut liar_id = NodeId::random();
        while rank(&liar_id) >= best {
            liar_id = NodeId::random();
        }
        for (i, a) in self.liars.iter().enumerate() {
            match self.sockets.get(i) {
                Some(s) => s.set_id(liar_id),
                None => self.hostile.set_id(*a, liar_id),
            }
        }
        let hex = liar_id.to_hex();
        let known = |n: &Node| {
            n.peer_views()
                .iter()
                .filter(|v| v.id.as_deref() == Some(hex.as_str()))
                .count()
                == self.liars.len()
        };
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            while !self.nodes.iter().all(known) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        waited
            .await
            .expect("the nodes learn the new ID within 10 s");
    }

    async fn shutdown(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
    }
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

fn origin_for(origin: &MemOrigin) -> OriginClient {
    OriginClient::with(
        Arc::new(origin.clone()),
        "http://o.test/d.bin",
        Duration::from_secs(5),
    )
    .unwrap()
}

/// The content of [`first_download_with`].
fn first_content() -> Vec<u8> {
    fixtures::content(44, (2 << 20) + 321)
}

/// Two honest nodes and a peer that lies as `lies` say want the same content from an origin at
/// once; returns their reports, the hostile peer's address and the bytes the origin sent.
async fn first_download_with(over: Over, lies: Lies) -> (Vec<FetchReport>, SocketAddr, u64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let lan = lan(over, 2, 0, &[lies], dir.path()).await;
    let data = first_content();
    let id = id_of(&data);
    if lies.wants_forever {
        lan.outrank(&id).await;
    }
    let origin = MemOrigin::new();
    origin.put(
        "/d.bin",
        Resource::new(data.clone(), &[]).paced(Duration::from_millis(5)),
    );
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, n) in lan.nodes.iter().enumerate() {
        let (n, o) = (n.clone(), origin.clone());
        let out = dir.path().join(format!("out{i}"));
        set.spawn(async move {
            let opts = FetchOptions {
                origin: Some(origin_for(&o)),
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
    let liar = lan.liars[0];
    lan.shutdown().await;
    let sent = origin.served("/d.bin").bytes;
    (reports, liar, sent, data.len())
}

/// Why hostile peer `liar` was dropped, as a report names it.
fn why_dropped(reports: &[FetchReport], liar: SocketAddr) -> String {
    reports
        .iter()
        .flat_map(|r| r.dropped.iter())
        .find(|(p, _)| *p == liar)
        .unwrap_or_else(|| panic!("no report names the hostile peer {liar}: {reports:?}"))
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

async fn says_it_downloads_everything_and_offers_nothing(over: Over) {
    let lies = downloading_forever(Lies {
        empty_tail: true,
        ..Lies::default()
    });
    let (reports, liar, sent, len) = first_download_with(over, lies).await;
    why_dropped(&reports, liar);
    assert!(sent <= 2 * len as u64, "the origin sent {sent} for {len}");
}

async fn offers_a_download_that_never_grows(over: Over) {
    let lies = downloading_forever(Lies {
        stuck_tail: true,
        ..Lies::default()
    });
    let (reports, liar, _, _) = first_download_with(over, lies).await;
    let why = why_dropped(&reports, liar);
    assert!(why.contains("less than 64 KiB in 1 s"), "{why}");
}

async fn offers_garbage(over: Over) {
    let lies = downloading_forever(Lies {
        garbage_tail: true,
        ..Lies::default()
    });
    let (reports, liar, _, _) = first_download_with(over, lies).await;
    let why = why_dropped(&reports, liar);
    assert!(why.contains("do not open"), "{why}");
}

async fn offers_other_bytes_sealed_right(over: Over) {
    let data = first_content();
    let len = data.len() as u64;
    let lies = downloading_forever(Lies {
        wrong_tail: Some((id_of(&data), len)),
        ..Lies::default()
    });
    let (reports, liar, sent, _) = first_download_with(over, lies).await;
    let why = why_dropped(&reports, liar);
    assert!(why.contains("did not hash to the ticket"), "{why}");
    // What came from the hostile peer came again from the origin, by range; nothing more.
    assert!(sent <= 2 * len, "the origin sent {sent} for {len}");
    for r in &reports {
        assert!(!r.by_source.contains_key(&Source::Peer(liar)), "{r:?}");
    }
}

async fn trickles_its_download(over: Over) {
    let data = first_content();
    let lies = downloading_forever(Lies {
        wrong_tail: Some((id_of(&data), data.len() as u64)),
        trickle: true,
        ..Lies::default()
    });
    let (reports, liar, _, _) = first_download_with(over, lies).await;
    let why = why_dropped(&reports, liar);
    assert!(why.contains("less than 64 KiB in 1 s"), "{why}");
}

/// It outranks everyone in the election, says it wants the content, and never downloads it:
/// left out of the election after a few seconds, and the honest nodes elect one of themselves.
async fn wants_it_first_and_never_downloads(over: Over) {
    let lies = Lies {
        wants_forever: true,
        ..Lies::default()
    };
    let (_, _, sent, len) = first_download_with(over, lies).await;
    assert!(sent <= 2 * len as u64, "the origin sent {sent} for {len}");
}

/// A fetch of known content: one honest node holds the first half of it, and a node that
/// serves wrong bytes and four hostile peers claim all of it: one is busy for ever, one
/// stalls every block request, one sends garbage for blocks, one stalls every question. Each is
/// dropped and named, and what only they claimed comes from the origin, by range.
async fn a_fetch_among_peers_that_claim_everything(over: Over) {
    let dir = tempfile::tempdir().unwrap();
    let claims = Lies {
        claims_everything: true,
        ..Lies::default()
    };
    let lies = [
        Lies {
            busy_forever: true,
            ..claims
        },
        Lies {
            stalled_blocks: true,
            ..claims
        },
        Lies {
            garbage_blocks: true,
            ..claims
        },
        Lies {
            slow: Duration::from_secs(3600),
            ..claims
        },
    ];
    // Node 0 holds the first half, node 1 fetches, node 2 holds all of it and corrupts it.
    let lan = lan(over, 3, 1, &lies, dir.path()).await;
    let (seeder, corrupt, me) = (&lan.nodes[0], &lan.nodes[2], &lan.nodes[1]);
    let data = fixtures::content(45, (4 << 20) + 321);
    let path = dir.path().join("d.bin");
    std::fs::write(&path, &data).unwrap();
    let (info, _) = seeder
        .publish(&path, true, &HashOptions::default())
        .unwrap();
    corrupt
        .publish(&path, true, &HashOptions::default())
        .unwrap();
    let layout = info.layout();
    let half = layout.block_count() / 2;
    for g in half..layout.block_count() {
        let b = layout.block_at(g).unwrap();
        seeder.store().mark_missing(&info.id(), b).unwrap();
    }
    let origin = MemOrigin::new();
    origin.put("/d.bin", Resource::new(data.clone(), &[]));
    let opts = FetchOptions {
        origin: Some(origin_for(&origin)),
        chunk_timeout: Duration::from_secs(1),
        max_busy: 5,
        ..FetchOptions::default()
    };
    let started = Instant::now();
    let fetch = me.fetch(info.id(), opts, Arc::new(|_| {}), CancellationToken::new());
    let (_, report) = tokio::time::timeout(Duration::from_secs(20), fetch)
        .await
        .expect("the fetch finishes within 20 s")
        .unwrap();
    let took = started.elapsed();
    let mut got = Vec::new();
    pdist_engine::fetch::write_content(me.store().as_ref(), &info, &mut got).unwrap();
    assert!(got == data, "the right bytes");
    let reports = [report];
    let why = |i: usize| why_dropped(&reports, lan.liars[i]);
    assert!(why(0).contains("busy for 5 answers"), "{}", why(0));
    assert!(why(1).contains("failed requests in a row"), "{}", why(1));
    assert!(why(2).contains("malformed block frame"), "{}", why(2));
    assert!(why(3).contains("did not say what it holds"), "{}", why(3));
    let corrupt_addr = corrupt.addr();
    let why_corrupt = why_dropped(&reports, corrupt_addr);
    assert!(why_corrupt.contains("verification"), "{why_corrupt}");
    let report = &reports[0];
    assert!(!report.by_source.contains_key(&Source::Peer(corrupt_addr)));
    let from_origin = report.by_source.get(&Source::Origin).copied().unwrap_or(0);
    let second_half = data.len() as u64 - layout.block_range(layout.block_at(half).unwrap()).start;
    assert!(
        from_origin <= second_half,
        "the origin sent {from_origin}, only the half no honest peer holds is {second_half}"
    );
    println!(
        "{over:?}: fetched among liars in {took:?}; {:?}",
        report.dropped
    );
    lan.shutdown().await;
}

macro_rules! over_both {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Over::Memory).await
                }
            )*
        }
        mod tcp {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Over::Tcp).await
                }
            )*
        }
    };
}

over_both!(
    says_it_downloads_everything_and_offers_nothing,
    offers_a_download_that_never_grows,
    offers_garbage,
    offers_other_bytes_sealed_right,
    wants_it_first_and_never_downloads,
    trickles_its_download,
    a_fetch_among_peers_that_claim_everything,
);
