//! A full disk under the gateway: its spool lives on a 2 MiB tmpfs this test mounts (root only;
//! skipped with a message otherwise). A body larger than the disk, asked for by three clients at
//! once, reaches each of them whole from one origin transfer (the rest past the failed spool
//! passes through from memory), uncached; with the disk filled to the last byte, a response
//! still passes through; once space returns, caching resumes.

mod common;

use std::time::Duration;

use common::{gateway, get, node, via};
use engine::origin::mem::{MemOrigin, Resource};
use fixtures::disk::Tmpfs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_cuts_a_client_off_and_caching_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let disk = match Tmpfs::mount(&spool, "2m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let n = node(b"g", dir.path(), vec![]).await;
    let o = MemOrigin::new();
    let big = fixtures::content(21, 12 << 20);
    let small = fixtures::content(22, 300_000);
    let h = [("cache-control", "max-age=600")];
    // Paced (64 KiB a millisecond), so that the three clients join one download.
    o.put(
        "/big",
        Resource::new(big.clone(), &h).paced(Duration::from_millis(1)),
    );
    o.put("/small", Resource::new(small.clone(), &h));
    o.put("/filled", Resource::new(small.clone(), &h));
    let gw = gateway(&n, dir.path(), |c| {
        c.origin = std::sync::Arc::new(o.clone());
    })
    .await;
    let p = gw.addr();
    let url = "http://origin.test/big";

    // Three clients at once, a body six times the disk: each gets all of it, right.
    let (a, b, c) = tokio::join!(
        via(p, get(url, &[])),
        via(p, get(url, &[])),
        via(p, get(url, &[]))
    );
    for g in [&a, &b, &c] {
        assert_eq!(g.status, 200);
        assert_eq!(g.body.len(), big.len());
        assert!(g.body == big, "the right bytes");
    }
    assert_eq!(
        o.served("/big").bodies,
        1,
        "one origin transfer fed all three"
    );
    // Not cached: the next client is served by the origin again.
    let again = via(p, get(url, &[])).await;
    assert!(again.body == big);
    assert_eq!(o.served("/big").bodies, 2, "not cached");
    assert!(
        std::fs::read_dir(&spool).unwrap().next().is_none(),
        "no spool file left behind"
    );

    // The disk filled to the last byte: a response still passes through, uncached.
    disk.fill();
    let surl = "http://origin.test/filled";
    for i in 1..=2 {
        let g = via(p, get(surl, &[])).await;
        assert_eq!(g.status, 200);
        assert!(g.body == small, "the right bytes");
        assert_eq!(o.served("/filled").bodies, i, "not cached");
    }

    // Space returns: caching resumes.
    disk.unfill();
    let surl = "http://origin.test/small";
    let first = via(p, get(surl, &[])).await;
    assert!(first.body == small);
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let g = via(p, get(surl, &[])).await;
        assert!(g.body == small);
        if g.h("cache-status").contains("hit") {
            break;
        }
        // Kept once its download ends, a moment after its last byte went out.
        assert!(std::time::Instant::now() < end, "{}", g.h("cache-status"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(o.served("/small").bodies, 1, "cached again");

    gw.shutdown().await;
    n.shutdown().await;
    drop(disk);
}
