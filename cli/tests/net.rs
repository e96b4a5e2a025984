//! The network commands as a user runs them, on loopback: `pdist node`, and publish, fetch,
//! ls, rm, peers, status through it, and `pdist fetch` without a node.

mod common;

use std::time::Duration;

use common::{NodeProc, json, ok, run};

#[test]
fn two_nodes_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    let mut a = NodeProc::start(&[], &da, &["--listen", "127.0.0.1:0", "--no-mdns"]);
    let data = fixtures::content(7, 40 << 20);
    let file = dir.path().join("f.bin");
    std::fs::write(&file, &data).unwrap();
    // publish goes through the running node (the store is the node's).
    let rows = json(&da, &["publish", "--json", file.to_str().unwrap()]);
    let ticket = rows[0]["ticket"].as_str().unwrap().to_string();
    assert!(ok(&da, &["ls"]).contains("f.bin"));
    assert_eq!(a.status()["usage"]["contents"], 1);

    let mut b = NodeProc::start(
        &[],
        &db,
        &["--listen", "127.0.0.1:0", "--no-mdns", "--peer", &a.addr()],
    );
    let out = dir.path().join("out.bin");
    let fetched = run(&db, &["fetch", &ticket, "-o", out.to_str().unwrap()]);
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    assert!(String::from_utf8_lossy(&fetched.stderr).contains("40.0 MiB from 127.0.0.1:"));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // The same content to standard output.
    let stdout = run(&db, &["fetch", &ticket, "-o", "-"]);
    assert!(stdout.status.success());
    assert_eq!(stdout.stdout, data);
    let peers = b.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["alive"], true);
    assert_eq!(peers[0]["group"], true);
    assert_eq!(peers[0]["bytes_from"], 40 << 20);
    assert_eq!(b.status()["bytes_received"], 40 << 20);
    assert_eq!(a.status()["bytes_served"], 40 << 20);
    let table = ok(&db, &["peers"]);
    assert!(table.contains("yes"), "{table}");
    assert!(ok(&db, &["status"]).contains("40.0 MiB received"));
    // rm through the node.
    assert!(ok(&db, &["rm", &ticket]).contains("removed"));
    assert!(!ok(&db, &["ls"]).contains(&ticket));
    // SIGTERM: a clean stop, the socket gone.
    assert!(b.stop().success(), "{}", b.log());
    assert!(!db.join("node.sock").exists());
    assert!(a.stop().success());
    assert!(a.log().contains("stopped"));
}

#[test]
fn fetch_without_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    let a = NodeProc::start(&[], &da, &["--listen", "127.0.0.1:0", "--no-mdns"]);
    let data = fixtures::content(8, 3 << 20);
    let file = dir.path().join("g.bin");
    std::fs::write(&file, &data).unwrap();
    let ticket = json(&da, &["publish", "--json", file.to_str().unwrap()])[0]["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let out = dir.path().join("out.bin");
    let r = run(
        &db,
        &[
            "fetch",
            &ticket,
            "-o",
            out.to_str().unwrap(),
            "--peer",
            &a.addr(),
            "--no-mdns",
            "--json",
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(r.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "started");
    assert_eq!(lines.last().unwrap()["event"], "done");
    let progress: u64 = lines
        .iter()
        .filter(|l| l["event"] == "progress")
        .map(|l| l["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(progress, data.len() as u64);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // Fetched content stays in the store.
    assert!(ok(&db, &["ls"]).contains("3.0 MiB"));

    // Nobody has it: exit 69 and a message that says what to do.
    let unknown = "pd1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let r = run(
        &db,
        &[
            "fetch",
            &ticket,
            "-o",
            out.to_str().unwrap(),
            "--no-mdns",
            "--wait",
            "0",
        ],
    );
    assert!(r.status.success(), "present content needs no peer");
    let r = run(
        &dir.path().join("c"),
        &["fetch", &ticket, "-o", "x", "--no-mdns", "--wait", "0"],
    );
    assert_eq!(r.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--peer HOST:PORT"));
    let r = run(&db, &["fetch", unknown, "-o", "x"]);
    assert_eq!(r.status.code(), Some(2), "a bad ticket is a usage error");
    // Commands that need a node say so.
    let r = run(&db, &["status"]);
    assert_eq!(r.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&r.stderr).contains("no pdist node is running"));
}

#[test]
fn a_killed_fetch_resumes_from_what_it_verified() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    let a = NodeProc::start(&[], &da, &["--listen", "127.0.0.1:0", "--no-mdns"]);
    let data = fixtures::content(9, 256 << 20);
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &data).unwrap();
    let ticket = json(&da, &["publish", "--json", file.to_str().unwrap()])[0]["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let out = dir.path().join("out.bin");
    let args = [
        "fetch",
        &ticket,
        "-o",
        out.to_str().unwrap(),
        "--peer",
        &a.addr(),
        "--no-mdns",
        "--json",
    ];
    let mut child = common::cmd(&db)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut got = 0u64;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        got += v["bytes"].as_u64().unwrap_or(0);
        if got >= 32 << 20 {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert!(!out.exists(), "no partial output under the final name");
    // The second run takes only what the first did not verify.
    let r = run(&db, &args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let done: serde_json::Value =
        serde_json::from_str(String::from_utf8(r.stdout).unwrap().lines().last().unwrap()).unwrap();
    let present = done["present"].as_u64().unwrap();
    assert!(present >= 16 << 20, "resumed with {present} bytes present");
    let fetched: u64 = done["by_source"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(present + fetched, data.len() as u64);
    assert_eq!(std::fs::read(&out).unwrap(), data);
}

#[test]
fn verify_runs_through_a_running_node_and_scratch_is_cleaned_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let da = dir.path().join("a");
    // What a killed run left of a whole download is removed at start.
    std::fs::create_dir_all(da.join("tmp")).unwrap();
    std::fs::write(da.join("tmp").join("origin-stale"), vec![7u8; 5000]).unwrap();
    let mut a = NodeProc::start(&[], &da, &["--listen", "127.0.0.1:0", "--no-mdns"]);
    // (`status` answers from the store before the node has it: wait for the node's word.)
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !a.log().contains("removed 1 scratch files (5000 bytes)") {
        assert!(std::time::Instant::now() < end, "{}", a.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!da.join("tmp").join("origin-stale").exists());
    let data = fixtures::content(8, 200_000);
    let file = dir.path().join("v.bin");
    std::fs::write(&file, &data).unwrap();
    let rows = json(&da, &["publish", "--json", file.to_str().unwrap()]);
    let ticket = rows[0]["ticket"].as_str().unwrap().to_string();
    let out = ok(&da, &["verify"]);
    assert!(out.contains("4/4 blocks good"), "{out}");

    // A byte of the published file changes, its size and time kept: the node stops serving
    // that block, and says so.
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let mut changed = data.clone();
    changed[70_000] ^= 1;
    std::fs::write(&file, &changed).unwrap();
    let f = std::fs::File::options().write(true).open(&file).unwrap();
    f.set_modified(mtime).unwrap();
    let out = run(&da, &["verify", &ticket]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3/4 blocks good, 1 no longer match"),
        "{text}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 blocks no longer matched"), "{err}");
    // Restored: the node serves it again.
    std::fs::write(&file, &data).unwrap();
    let f = std::fs::File::options().write(true).open(&file).unwrap();
    f.set_modified(mtime).unwrap();
    let v = json(&da, &["verify", &ticket, "--json"]);
    assert_eq!(v[0]["blocks_good"], 4);
    assert_eq!(v[0]["blocks_restored"], 1);
    assert_eq!(
        a.status()["usage"]["contents"],
        1,
        "the node ran throughout"
    );
    a.stop();
}
