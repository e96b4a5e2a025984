//! What an observer of the wire learns: every message of an open-group swarm (an election, a
//! download followed as it arrives, block fetches) and of a seed is captured and opened with
//! the keys an outsider has (the open group's are public), and neither a byte of the content
//! nor the ticket is found in anything that opens.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pdist_engine::content::{ContentId, HashOptions, ServerSecret};
use pdist_engine::fetch::{FetchOptions, OriginClient};
use pdist_engine::node::{Listen, Node, NodeConfig};
use pdist_engine::origin::mem::{MemOrigin, Resource};
use pdist_engine::peer::Transport;
use pdist_engine::peer::http::HttpTransport;
use pdist_engine::peer::tap::{Exchange, Tap};
use pdist_engine::store::{CappedStore, Leases, MemStore, SegmentStore};
use pdist_engine::wire::{self, GroupKeys, Request, TailKey};
use tokio_util::sync::CancellationToken;

/// Every 16-byte window of `data` starting at a multiple of 512: any run of 528 content bytes
/// or more in a message contains one.
struct Windows(HashSet<[u8; 16]>);

impl Windows {
    fn of(data: &[u8]) -> Windows {
        Windows(
            (0..data.len().saturating_sub(16))
                .step_by(512)
                .map(|i| data[i..i + 16].try_into().unwrap())
                .collect(),
        )
    }

    fn found_in(&self, bytes: &[u8]) -> bool {
        bytes
            .windows(16)
            .any(|w| self.0.contains(<&[u8; 16]>::try_from(w).unwrap()))
    }
}

async fn open_group_nodes(dir: &Path, n: usize, log: &Arc<Mutex<Vec<Exchange>>>) -> Vec<Node> {
    let addrs: Vec<SocketAddr> = (0..n)
        .map(|_| fixtures::free_loopback_addr().unwrap())
        .collect();
    let mut nodes = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        let cache = i == n - 1;
        let leases = Leases::new();
        let store: Arc<dyn SegmentStore> = if cache {
            Arc::new(CappedStore::new(MemStore::new(), 1 << 30, leases.clone()))
        } else {
            Arc::new(MemStore::new())
        };
        let cfg = NodeConfig {
            name: format!("n{i}"),
            secret: ServerSecret::open_group(),
            listen: Listen::Tcp(*a),
            cache,
            static_peers: addrs.iter().filter(|p| *p != a).copied().collect(),
            probe_interval: Duration::from_millis(200),
            hello_timeout: Duration::from_secs(1),
            scratch: dir.join(format!("n{i}")),
            corrupt_blocks: false,
            leases,
        };
        std::fs::create_dir_all(&cfg.scratch).unwrap();
        let http: Arc<dyn Transport> = Arc::new(HttpTransport::new(Duration::from_secs(5)));
        let tap: Arc<dyn Transport> = Arc::new(Tap::with_log(http, Arc::clone(log)));
        nodes.push(Node::start(cfg, store, tap, None).await.unwrap());
    }
    for node in &nodes {
        let seen = node
            .wait_for_peers(n - 1, Duration::from_secs(10), Duration::from_secs(10))
            .await;
        assert_eq!(seen, n - 1, "a full mesh");
    }
    nodes
}

fn id_of(data: &[u8]) -> ContentId {
    pdist_engine::content::hash_reader(
        data,
        &ServerSecret::open_group(),
        &HashOptions::default(),
        &mut |_| {},
    )
    .unwrap()
    .id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_group_observer_reads_no_content_and_no_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let nodes = open_group_nodes(dir.path(), 3, &log).await;

    // A swarm: all three want the same file at once from a slow origin; one downloads it, the
    // others follow its download as it arrives.
    let swarm = fixtures::content(31, (6 << 20) + 777);
    let swarm_id = id_of(&swarm);
    let origin = MemOrigin::new();
    origin.put(
        "/f.bin",
        Resource::new(swarm.clone(), &[]).paced(Duration::from_millis(10)),
    );
    let mut set = tokio::task::JoinSet::new();
    for n in &nodes {
        let n = n.clone();
        let o = OriginClient::with(
            Arc::new(origin.clone()),
            "http://origin.test/f.bin",
            Duration::from_secs(5),
        )
        .unwrap();
        set.spawn(async move {
            let opts = FetchOptions {
                origin: Some(o),
                ..FetchOptions::default()
            };
            n.fetch(swarm_id, opts, Arc::new(|_| {}), CancellationToken::new())
                .await
                .map(|_| ())
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(
        origin.served("/f.bin").bytes,
        swarm.len() as u64,
        "the origin sent it once: the others followed"
    );

    // A seed: a file published on one node, seeded to the cache node, which fetches it.
    let seeded = fixtures::content(32, (3 << 20) + 99);
    let path = dir.path().join("seeded.bin");
    std::fs::write(&path, &seeded).unwrap();
    let (info, _) = nodes[0]
        .publish(&path, false, &HashOptions::default())
        .unwrap();
    let seeded_id = info.id();
    let results = nodes[0].seed(seeded_id, None).await;
    assert!(results.len() == 1 && results[0].accepted, "{results:?}");
    let cache = &nodes[2];
    let end = Instant::now() + Duration::from_secs(20);
    while cache
        .store()
        .record(&seeded_id)
        .unwrap()
        .is_none_or(|r| r.blocks_present < r.blocks_total)
    {
        assert!(Instant::now() < end, "the cache did not take the seed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in &nodes {
        n.shutdown().await;
    }

    // The audit, with the open group's keys: what opens holds no content and no ticket.
    let outsider = GroupKeys::new(&ServerSecret::open_group());
    let contents = [Windows::of(&swarm), Windows::of(&seeded)];
    let ids = [swarm_id, seeded_id];
    let tickets: Vec<String> = ids.iter().map(|id| id.ticket().to_string()).collect();
    let secret_in = |bytes: &[u8]| {
        contents.iter().any(|w| w.found_in(bytes))
            || ids
                .iter()
                .any(|id| bytes.windows(32).any(|w| w == id.as_hash().0))
            || tickets
                .iter()
                .any(|t| bytes.windows(t.len()).any(|w| w == t.as_bytes()))
    };
    let exchanges = log.lock().unwrap().clone();
    let (mut kinds, mut tail_data, mut opened_tails) = (HashSet::new(), 0usize, Vec::new());
    for x in &exchanges {
        let reply = x.reply.lock().unwrap().clone();
        assert!(!secret_in(&x.request), "a request's bytes on the wire");
        assert!(!secret_in(&reply), "a reply's bytes on the wire");
        let plain = wire::open_plain(&outsider, &x.request, None)
            .expect("in the open group, every request opens with public keys");
        assert!(!secret_in(&plain), "an opened request");
        let env = wire::decode_request(&outsider, &x.request).unwrap();
        let kind = format!("{:?}", env.request);
        kinds.insert(kind.split([' ', '{']).next().unwrap().to_string());
        if let Request::Blocks { .. } = env.request {
            continue; // a stream of frames, each sealed under its segment's key
        }
        if x.status != 200 || reply.is_empty() {
            continue;
        }
        let plain = wire::open_plain(&outsider, &reply, Some(&x.request)).unwrap();
        assert!(!secret_in(&plain), "an opened reply to {kind}");
        if let Ok(wire::Reply::Tail { data, .. }) = wire::decode_reply(
            &outsider,
            x.request[x.request.len() - 16..].try_into().unwrap(),
            &reply,
        ) && !data.is_empty()
            && let Request::Tail { offset, .. } = env.request
        {
            tail_data += data.len();
            opened_tails.push((offset, data));
        }
    }
    let bytes: usize = exchanges
        .iter()
        .map(|x| x.request.len() + x.reply.lock().unwrap().len())
        .sum();
    eprintln!(
        "captured {} exchanges ({bytes} bytes; {tail_data} bytes of followed downloads); \
         opened every request and reply with the open group's keys: no content, no ticket",
        exchanges.len()
    );
    // What was captured is what the test says: an election, following, block fetches, a seed.
    for k in ["Intent", "Tail", "Blocks", "Seed", "Info"] {
        assert!(kinds.contains(k), "no {k} request captured: {kinds:?}");
    }
    assert!(
        tail_data > 1 << 20,
        "followers took {tail_data} bytes as they arrived"
    );
    // And the check can fail: with the key only takers of the ticket derive, the same tail
    // bytes do open, and hold the content.
    let key = TailKey::for_content(&swarm_id);
    let (offset, sealed) = &opened_tails[0];
    let plain = key.open(*offset, sealed).unwrap();
    assert!(contents[0].found_in(&plain) || plain.len() < 528);
    assert_eq!(
        &plain[..],
        &swarm[*offset as usize..*offset as usize + plain.len()]
    );
}
