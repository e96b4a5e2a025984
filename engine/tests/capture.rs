//! What an observer of the wire learns: every message of an open-group swarm (an election, a
//! download followed as it arrives, block fetches) and of a seed is captured and opened with
//! the keys an outsider has (the open group's are public), and neither a byte of the content
//! nor the ticket is found in anything that opens. In a group with its own secret, nothing
//! opens at all for an outsider (not even with a guess of the secret one bit off).

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

async fn group_nodes(
    secret: &ServerSecret,
    dir: &Path,
    n: usize,
    log: &Arc<Mutex<Vec<Exchange>>>,
) -> Vec<Node> {
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
            secret: secret.clone(),
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

fn id_of(data: &[u8], secret: &ServerSecret) -> ContentId {
    pdist_engine::content::hash_reader(data, secret, &HashOptions::default(), &mut |_| {})
        .unwrap()
        .id()
}

/// What a swarm and a seed moved: each content and its ID.
struct Moved {
    swarm: Vec<u8>,
    swarm_id: ContentId,
    seeded: Vec<u8>,
    seeded_id: ContentId,
}

/// Three nodes of the group of `secret` (the last a cache node), their traffic logged into
/// `log`: all three want a file at once from a slow origin (one downloads it, the others follow
/// its download as it arrives), then a file published on one is seeded to the cache node.
async fn swarm_and_seed(
    secret: &ServerSecret,
    dir: &Path,
    log: &Arc<Mutex<Vec<Exchange>>>,
) -> Moved {
    let nodes = group_nodes(secret, dir, 3, log).await;

    // A swarm: all three want the same file at once from a slow origin; one downloads it, the
    // others follow its download as it arrives.
    let swarm = fixtures::content(31, (6 << 20) + 777);
    let swarm_id = id_of(&swarm, secret);
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
    let path = dir.join("seeded.bin");
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
    Moved {
        swarm,
        swarm_id,
        seeded,
        seeded_id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_group_observer_reads_no_content_and_no_ticket() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let Moved {
        swarm,
        swarm_id,
        seeded,
        seeded_id,
    } = swarm_and_seed(&ServerSecret::open_group(), dir.path(), &log).await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_of_a_group_with_a_secret_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let secret = ServerSecret::new(b"capture test: a group's own 256-bit secret".to_vec());
    let moved = swarm_and_seed(&secret, dir.path(), &log).await;
    let contents = [Windows::of(&moved.swarm), Windows::of(&moved.seeded)];
    let ids = [moved.swarm_id, moved.seeded_id];
    // Outsiders: the open group's keys, and a guess of the secret that is off by one byte.
    let mut guess = b"capture test: a group's own 256-bit secret".to_vec();
    guess[0] ^= 1;
    let outsiders = [
        GroupKeys::new(&ServerSecret::open_group()),
        GroupKeys::new(&ServerSecret::new(guess)),
    ];
    let member = GroupKeys::new(&secret);
    let exchanges = log.lock().unwrap().clone();
    let mut replies = 0;
    for x in &exchanges {
        let reply = x.reply.lock().unwrap().clone();
        for bytes in [&x.request, &reply] {
            assert!(
                !contents.iter().any(|w| w.found_in(bytes)),
                "content on the wire"
            );
            assert!(
                !ids.iter()
                    .any(|id| bytes.windows(32).any(|w| w == id.as_hash().0)),
                "a content ID on the wire"
            );
        }
        for k in &outsiders {
            assert!(
                wire::open_plain(k, &x.request, None).is_err(),
                "a request opened"
            );
        }
        // So the check can fail: a member opens it.
        let env = wire::decode_request(&member, &x.request).expect("a member opens requests");
        if x.status != 200 || reply.is_empty() || matches!(env.request, Request::Blocks { .. }) {
            continue;
        }
        for k in &outsiders {
            assert!(
                wire::open_plain(k, &reply, Some(&x.request)).is_err(),
                "a reply opened"
            );
        }
        wire::open_plain(&member, &reply, Some(&x.request)).expect("a member opens replies");
        replies += 1;
    }
    eprintln!(
        "captured {} exchanges of a group with a secret ({replies} replies): none opens with the \
         open group's keys or a near guess of the secret",
        exchanges.len()
    );
    assert!(
        exchanges.len() > 50 && replies > 20,
        "{} exchanges",
        exchanges.len()
    );
}
