//! Durability: `pdist publish` killed with SIGKILL at random moments, many times; after every
//! kill the store must open, be consistent, and hold no block marked present whose bytes are
//! wrong. A final run resumes and completes. (Issue 3: "a crash never leaves a block that is
//! served but wrong".)

use std::process::{Command, Stdio};
use std::time::Duration;

use engine::store::{RocksStore, SegmentStore};

mod common;
use common::{check_store, randoms};

#[test]
fn sigkill_at_random_points_never_leaves_a_wrong_block() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let big = dir.path().join("big.bin");
    let small = dir.path().join("small.bin");
    std::fs::write(&big, fixtures::content(1, 24 << 20)).unwrap();
    std::fs::write(&small, fixtures::content(2, 300_000)).unwrap();
    let pdist = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pdist"));
        c.env_remove("PDIST_SECRET")
            .env("PDIST_DATA_DIR", &data)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    // Deterministic pseudo-random kill times (splitmix64); override with PDIST_CRASH_SEED.
    let mut next = randoms(0x5eed);
    let hashed = Command::new(env!("CARGO_BIN_EXE_pdist"))
        .arg("hash")
        .arg(&big)
        .output()
        .unwrap();
    let big_ticket: engine::Ticket = String::from_utf8(hashed.stdout)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    const ROUNDS: usize = 16;
    for round in 0..ROUNDS {
        let mut cmd = pdist();
        cmd.arg("publish");
        if round % 4 != 3 {
            cmd.arg("--copy");
        }
        cmd.arg(&small).arg(&big);
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(next() % 400));
        let _ = child.kill(); // SIGKILL on Unix; it may already have finished.
        child.wait().unwrap();
        let present = check_store(&data, round);
        eprintln!("round {round}: {present} blocks present after the kill");
        if present == 384 + 5 {
            // Complete: remove the big file with `pdist rm`, killed at a random moment too, so
            // that later kills land mid-copy again.
            let mut rm = pdist()
                .arg("rm")
                .arg(big_ticket.to_string())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_micros(next() % 20_000));
            let _ = rm.kill();
            rm.wait().unwrap();
            let present = check_store(&data, round);
            eprintln!("round {round}: {present} blocks present after killing rm");
            let store = RocksStore::open(&data, Default::default()).unwrap();
            store.remove(&big_ticket.content_id()).unwrap();
        }
    }
    // Resume: a run to completion stores everything, and verify agrees.
    let status = pdist()
        .args(["publish", "--copy"])
        .arg(&small)
        .arg(&big)
        .status()
        .unwrap();
    assert!(status.success());
    let total = check_store(&data, ROUNDS);
    assert_eq!(total, 384 + 5, "every block of both files is present");
    let verify = pdist().arg("verify").status().unwrap();
    assert!(verify.success());
}
