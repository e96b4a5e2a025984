//! Power cuts, not only kills: the data directory on a filesystem that loses everything not
//! synced when the power is cut (`fixtures::powercut`). `pdist publish --copy` and `pdist fetch`
//! from an origin are killed at random moments and the power cut each time; after every cut
//! the store opens, is consistent, and holds no block marked present whose bytes are wrong, and
//! no output is in place that is not the whole content; final runs complete.

use std::process::{Command, Stdio};
use std::time::Duration;

use fixtures::powercut::PowerCut;

mod common;
use common::{check_store, randoms, rate_limited_nginx};

fn skip(what: &str) -> bool {
    assert!(
        std::env::var_os("CI").is_none() || what.contains("FUSE"),
        "{what} is missing: .ci/env.sh installs it"
    );
    eprintln!("SKIPPED: {what} is not available");
    true
}

#[test]
fn power_cuts_at_random_points_never_leave_a_wrong_block_or_output() {
    if !fixtures::powercut::available() && skip("FUSE as root (/dev/fuse)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    std::fs::create_dir_all(&mnt).unwrap();
    let disk = PowerCut::mount(&mnt).unwrap();
    let data = mnt.join("data");
    let big = dir.path().join("big.bin");
    let small = dir.path().join("small.bin");
    let big_bytes = fixtures::content(11, 12 << 20);
    std::fs::write(&big, &big_bytes).unwrap();
    std::fs::write(&small, fixtures::content(12, 300_000)).unwrap();
    let pdist = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pdist"));
        c.env_remove("PDIST_SECRET")
            .env_remove("PDIST_ORIGIN")
            .env("PDIST_DATA_DIR", &data)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let mut next = randoms(0xc0ffee);
    let ticket_of = |path: &std::path::Path| {
        let out = pdist()
            .arg("hash")
            .arg(path)
            .stdout(Stdio::piped())
            .output();
        let out = String::from_utf8(out.unwrap().stdout).unwrap();
        out.lines().next().unwrap().to_string()
    };
    let big_ticket = ticket_of(&big);
    const ROUNDS: usize = 12;
    let mut cut_with = Vec::new();
    for round in 0..ROUNDS {
        let mut child = pdist()
            .args(["publish", "--copy"])
            .arg(&small)
            .arg(&big)
            .spawn()
            .unwrap();
        // A whole publish takes about 70 ms here.
        std::thread::sleep(Duration::from_millis(next() % 160));
        let _ = child.kill();
        child.wait().unwrap();
        disk.cut();
        let present = check_store(&data, round);
        cut_with.push(present);
        if present == 192 + 5 {
            // Complete: removed, the power cut at a random moment of that too, so that later
            // cuts land mid-copy again.
            let mut rm = pdist().args(["rm", &big_ticket]).spawn().unwrap();
            std::thread::sleep(Duration::from_micros(next() % 30_000));
            let _ = rm.kill();
            rm.wait().unwrap();
            disk.cut();
            cut_with.push(check_store(&data, round));
            let _ = pdist().args(["rm", &big_ticket]).status();
        }
    }
    eprintln!("blocks present after each power cut of publish: {cut_with:?}");
    let started = std::time::Instant::now();
    let status = pdist()
        .args(["publish", "--copy"])
        .arg(&small)
        .arg(&big)
        .status()
        .unwrap();
    assert!(status.success());
    eprintln!("a whole publish took {:?}", started.elapsed());
    assert_eq!(
        check_store(&data, ROUNDS),
        192 + 5,
        "every block of both files"
    );
    assert!(pdist().arg("verify").status().unwrap().success());

    // Fetches of content known by its ticket only, from an origin, into an output on the
    // same disk: killed, the power cut; the output is never in place unless whole.
    if !fixtures::nginx::available() && skip("nginx") {
        return;
    }
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let other = fixtures::content(13, 16 << 20);
    std::fs::write(www.join("other.bin"), &other).unwrap();
    let (_nginx, port) = rate_limited_nginx(dir.path(), &www, "16m");
    let ticket = ticket_of(&www.join("other.bin"));
    let out = mnt.join("other.bin");
    let url = format!("http://127.0.0.1:{port}/other.bin");
    let fetch = || {
        let mut c = pdist();
        c.args([
            "fetch",
            &ticket,
            "--origin",
            &url,
            "--no-mdns",
            "--wait",
            "0",
            "-o",
        ])
        .arg(&out);
        c
    };
    for round in 0..4 {
        let mut child = fetch().spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200 + next() % 800));
        let _ = child.kill();
        child.wait().unwrap();
        disk.cut();
        check_store(&data, ROUNDS + 1 + round);
        if let Ok(got) = std::fs::read(&out) {
            assert!(
                got == other,
                "round {round}: an output in place is the whole content"
            );
        }
    }
    assert!(fetch().status().unwrap().success());
    assert!(std::fs::read(&out).unwrap() == other, "the right bytes");
    disk.cut();
    // Put in place means synced: it survives a cut right after.
    assert!(
        std::fs::read(&out).unwrap() == other,
        "still there after a cut"
    );
    check_store(&data, ROUNDS + 5);
}
