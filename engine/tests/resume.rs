//! A first download from an origin into an output that stops (cancelled here; killed in the
//! CLI's crash tests) leaves its part file, and the same fetch run again goes on from where it
//! stood, by range; what the part held that is not the content is taken again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pdist_engine::content::{ContentId, HashOptions, ServerSecret};
use pdist_engine::fetch::{FetchError, FetchEvent, FetchOptions, OriginClient, Source};
use pdist_engine::node::{Listen, Node, NodeConfig};
use pdist_engine::origin::mem::{MemOrigin, Resource};
use pdist_engine::peer::Transport;
use pdist_engine::peer::mem::MemNetwork;
use pdist_engine::store::{Leases, MemStore};
use pdist_engine::wire::ContentKeys;
use tokio_util::sync::CancellationToken;

const GROUP: &[u8] = b"resume test group";
const LEN: usize = (8 << 20) + 4321;

async fn alone(dir: &Path) -> Node {
    let net = MemNetwork::new();
    let cfg = NodeConfig {
        name: "n".into(),
        secret: ServerSecret::new(GROUP.to_vec()),
        listen: Listen::Mem(net.clone(), "10.8.0.1:7461".parse().unwrap()),
        cache: false,
        static_peers: Vec::new(),
        probe_interval: Duration::from_millis(200),
        hello_timeout: Duration::from_secs(1),
        scratch: dir.join("scratch"),
        corrupt_blocks: false,
        leases: Leases::new(),
    };
    let transport: Arc<dyn Transport> = Arc::new(net);
    Node::start(cfg, Arc::new(MemStore::new()), transport, None)
        .await
        .unwrap()
}

fn id_of(data: &[u8]) -> ContentId {
    let secret = ServerSecret::new(GROUP.to_vec());
    pdist_engine::content::hash_reader(data, &secret, &HashOptions::default(), &mut |_| {})
        .unwrap()
        .id()
}

/// The origin: the content, 64 KiB every `pace`.
fn origin(data: &[u8], pace: Duration) -> (MemOrigin, FetchOptions) {
    let o = MemOrigin::new();
    o.put("/d.bin", Resource::new(data.to_vec(), &[]).paced(pace));
    let client = OriginClient::with(
        Arc::new(o.clone()),
        "http://o.test/d.bin",
        Duration::from_secs(5),
    );
    let opts = FetchOptions {
        origin: Some(client.unwrap()),
        ..FetchOptions::default()
    };
    (o, opts)
}

/// Fetches `id` into `out`, to the end.
async fn fetch_to(
    node: &Node,
    id: ContentId,
    out: &Path,
    opts: FetchOptions,
) -> Result<
    (
        Arc<pdist_engine::content::ContentInfo>,
        pdist_engine::fetch::FetchReport,
    ),
    FetchError,
> {
    let fetch = node.fetch_into(
        id,
        Some(out),
        opts,
        Arc::new(|_| {}),
        CancellationToken::new(),
    );
    tokio::time::timeout(Duration::from_secs(20), fetch)
        .await
        .expect("the fetch ends within 20 s")
}

/// The part file a fetch of `id` into `out` keeps.
fn part_of(out: &Path, id: &ContentId) -> PathBuf {
    let tag = hex::encode(&ContentKeys::new(id).lookup.0[..8]);
    let name = out.file_name().unwrap().to_string_lossy();
    out.with_file_name(format!(".{name}.{tag}.pdist-part"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_first_download_goes_on_from_where_it_stood() {
    let dir = tempfile::tempdir().unwrap();
    let node = alone(dir.path()).await;
    let data = fixtures::content(61, LEN as u64);
    let id = id_of(&data);
    let out = dir.path().join("out.bin");
    let (o, opts) = origin(&data, Duration::from_millis(2));
    // Stopped once 3 MiB have arrived.
    let cancel = CancellationToken::new();
    let got = Arc::new(AtomicU64::new(0));
    let (c2, g2) = (cancel.clone(), Arc::clone(&got));
    let events = Arc::new(move |e: FetchEvent| {
        if let FetchEvent::Progress { bytes, .. } = e
            && g2.fetch_add(bytes, Ordering::Relaxed) + bytes >= 3 << 20
        {
            c2.cancel();
        }
    });
    let first = node
        .fetch_into(id, Some(&out), opts.clone(), events, cancel)
        .await;
    assert!(matches!(first, Err(FetchError::Cancelled)), "{first:?}");
    assert!(!out.exists(), "nothing in place");
    let held = std::fs::metadata(part_of(&out, &id)).unwrap().len();
    // Every byte put before the stop was written (the write in flight is waited for).
    assert!(held >= 3 << 20, "the part keeps what arrived: {held}");
    let before = o.served("/d.bin").bytes;
    // The same fetch again: from byte `held`, by range.
    let (_, report) = fetch_to(&node, id, &out, opts).await.unwrap();
    assert!(std::fs::read(&out).unwrap() == data, "the right bytes");
    assert_eq!(report.present, held);
    let rest = LEN as u64 - held;
    assert_eq!(report.by_source.get(&Source::Origin), Some(&rest));
    assert_eq!(
        o.served("/d.bin").bytes - before,
        rest,
        "the origin sent only the rest"
    );
    assert!(!part_of(&out, &id).exists(), "the part became the output");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_part_held_that_is_not_the_content_is_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    let node = alone(dir.path()).await;
    let data = fixtures::content(62, LEN as u64);
    let id = id_of(&data);
    let out = dir.path().join("out.bin");
    let (o, opts) = origin(&data, Duration::ZERO);
    // A part that holds other bytes (the machine lost power before they reached the disk, or
    // the origin changed since).
    let wrong = 2 << 20;
    std::fs::write(part_of(&out, &id), vec![0u8; wrong]).unwrap();
    let (_, report) = fetch_to(&node, id, &out, opts).await.unwrap();
    assert!(std::fs::read(&out).unwrap() == data, "the right bytes");
    assert_eq!(report.present, 0, "nothing of the part counted");
    assert_eq!(report.by_source.get(&Source::Origin), Some(&(LEN as u64)));
    // The rest by range, then the part's range again.
    assert_eq!(o.served("/d.bin").bytes, LEN as u64);
    node.shutdown().await;
    // A part longer than the content: the origin cannot go on from its end, so it starts over
    // (a node that does not know the content yet).
    let node = alone(&dir.path().join("again")).await;
    let out = dir.path().join("out2.bin");
    std::fs::write(part_of(&out, &id), vec![1u8; LEN + 10]).unwrap();
    let (o, opts) = origin(&data, Duration::ZERO);
    node.fetch_into(
        id,
        Some(&out),
        opts,
        Arc::new(|_| {}),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(std::fs::read(&out).unwrap() == data, "the right bytes");
    assert_eq!(o.served("/d.bin").bytes, LEN as u64);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fetches_into_one_output_do_not_share_its_part() {
    let dir = tempfile::tempdir().unwrap();
    let node = alone(dir.path()).await;
    let data = fixtures::content(63, LEN as u64);
    let id = id_of(&data);
    let out = dir.path().join("out.bin");
    let (_, opts) = origin(&data, Duration::from_millis(5));
    let cancel = CancellationToken::new();
    let n2 = node.clone();
    let (o2, opts2, c2) = (out.clone(), opts.clone(), cancel.clone());
    let first = tokio::spawn(async move {
        n2.fetch_into(id, Some(&o2), opts2, Arc::new(|_| {}), c2)
            .await
    });
    // Once the first holds its part, a second fetch into the same output is refused.
    let part = part_of(&out, &id);
    let started = tokio::time::timeout(Duration::from_secs(10), async {
        while std::fs::metadata(&part).map_or(0, |m| m.len()) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    started.await.expect("the first fetch writes within 10 s");
    let second = fetch_to(&node, id, &out, opts).await;
    let err = second.unwrap_err().to_string();
    assert!(err.contains("another fetch is writing it"), "{err}");
    cancel.cancel();
    assert!(matches!(first.await.unwrap(), Err(FetchError::Cancelled)));
    node.shutdown().await;
}
