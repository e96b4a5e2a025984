//! `pdist fetch` of content known only by its ticket, from an origin into an output, killed
//! with SIGKILL part of the way: run again, it goes on from where it stood, by range, so the
//! origin sends only the rest (nginx, rate-limited like a WAN link, is the origin).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

mod common;
use common::{cmd, ok, poll, rate_limited_nginx};

const LEN: u64 = 24 << 20;

/// The part file of a fetch into `out` (in `dir`), if there is one.
fn part_in(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(".out.bin.") && n.ends_with(".pdist-part")
        })
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

#[test]
fn a_killed_first_download_goes_on_by_range() {
    if !fixtures::nginx::available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "nginx is missing: .ci/env.sh installs it"
        );
        eprintln!("SKIPPED: nginx is not installed (./test.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let content = fixtures::content(5, LEN);
    let file = www.join("big.bin");
    std::fs::write(&file, &content).unwrap();
    let (nginx, port) = rate_limited_nginx(dir.path(), &www, "8m");
    let data = dir.path().join("data");
    let ticket = ok(&data, &["hash", file.to_str().unwrap()]);
    let ticket = ticket.lines().next().unwrap().to_string();
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("out.bin");
    let url = format!("http://127.0.0.1:{port}/big.bin");
    let fetch = || {
        let mut c = cmd(&data);
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
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        c
    };
    // Killed once a quarter of it has arrived.
    let mut first = fetch().spawn().unwrap();
    let part = poll(Duration::from_secs(20), "a quarter of the download", || {
        part_in(&out_dir).filter(|p| size(p) >= LEN / 4)
    });
    first.kill().unwrap();
    first.wait().unwrap();
    let held = size(&part);
    assert!(!out.exists(), "nothing in place");
    // Run again: it goes on from byte `held`.
    let status = fetch().status().unwrap();
    assert!(status.success());
    assert!(std::fs::read(&out).unwrap() == content, "the right bytes");
    assert!(part_in(&out_dir).is_none(), "the part became the output");
    let ranged = poll(Duration::from_secs(5), "nginx to log the range", || {
        nginx.log().into_iter().find(|l| l.status == 206)
    });
    assert_eq!(ranged.bytes, LEN - held, "the origin sent only the rest");
    // The first, cut short by the kill (logged once nginx notices).
    let whole = nginx.log().iter().filter(|l| l.status == 200).count();
    assert!(whole <= 1, "no second whole answer");
    eprintln!(
        "killed at {held} of {LEN} bytes; the second run took the other {} by range",
        LEN - held
    );
}
