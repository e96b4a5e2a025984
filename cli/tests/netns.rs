//! Multi-host tests: `pdist node` processes in Linux network namespaces on one bridge, finding
//! each other with real mDNS. Needs root (CI runs as root); skips with a message otherwise.
//!
//! Hosts: n1 seeds, n2..n4 fetch, n5 is of another group, n6 serves corrupted blocks. The
//! namespaces and links are made per test run (names carry the PID) and removed by a guard,
//! also when the test fails.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{NodeProc, cmd, json, poll, run};

const GROUP: &str = "0ff1ce0ff1ce0ff1ce0ff1ce0123456789abcdef";
const OTHER: &str = "5724a93e5724a93e89abcdef01234567";

/// The hosts, and how to start a node on one.
struct Lab(fixtures::netns::Bridge);

impl Lab {
    fn new(hosts: usize) -> Lab {
        Lab(fixtures::netns::Bridge::new('t', hosts, "10.78.0").unwrap())
    }

    fn ns(&self, i: usize) -> String {
        self.0.ns(i)
    }

    /// Starts `pdist node` on host `i`, mDNS on its link only.
    fn node(&self, i: usize, dir: &Path, secret: &str, extra: &[&str]) -> NodeProc {
        let ns = self.ns(i);
        let v = self.0.veth(i);
        let name = format!("host{i}");
        let mut args = vec![
            "--secret",
            secret,
            "--listen",
            "0.0.0.0:7461",
            "--interface",
            &v,
            "--name",
            &name,
        ];
        args.extend_from_slice(extra);
        NodeProc::start(
            &["ip", "netns", "exec", &ns],
            &dir.join(format!("n{i}")),
            &args,
        )
    }
}

fn group_alive(n: &NodeProc) -> usize {
    n.peers()
        .iter()
        .filter(|p| p["group"] == true && p["alive"] == true)
        .count()
}

/// Fetches through node `n`'s control socket; returns the final JSON line.
fn fetch(n: &NodeProc, ticket: &str, out: &Path) -> serde_json::Value {
    let o = run(
        &n.data,
        &["fetch", ticket, "-o", out.to_str().unwrap(), "--json"],
    );
    assert!(
        o.status.success(),
        "fetch on {}: {}\n{}",
        n.data.display(),
        String::from_utf8_lossy(&o.stderr),
        n.log()
    );
    let text = String::from_utf8(o.stdout).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn publish(n: &NodeProc, file: &Path) -> String {
    json(&n.data, &["publish", "--json", file.to_str().unwrap()])[0]["ticket"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn hosts_on_a_bridge() {
    if !fixtures::netns::available() {
        eprintln!("SKIPPED: multi-host tests need root and iproute2 (CI runs them as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new(6);
    let n1 = lab.node(1, dir.path(), GROUP, &[]);
    let mut n2 = lab.node(2, dir.path(), GROUP, &[]);
    let n3 = lab.node(3, dir.path(), GROUP, &[]);
    let n4 = lab.node(4, dir.path(), GROUP, &[]);
    let n5 = lab.node(5, dir.path(), OTHER, &[]);
    let n6 = lab.node(6, dir.path(), GROUP, &["--serve-corrupt"]);
    // Real mDNS: every group member finds the other four, by its own hellos.
    for n in [&n1, &n2, &n3, &n4] {
        poll(Duration::from_secs(20), "mDNS discovery", || {
            (group_alive(n) == 4).then_some(())
        });
    }
    // Another group sees pdist nodes but none of its group, and can fetch nothing.
    let seen = n5.peers();
    assert!(seen.len() >= 5, "{seen:?}");
    assert!(
        seen.iter()
            .all(|p| p["group"] == false && p["alive"] == false),
        "{seen:?}"
    );

    let data = fixtures::content(21, 48 << 20);
    let file = dir.path().join("x.bin");
    std::fs::write(&file, &data).unwrap();
    let ticket = publish(&n1, &file);
    assert_eq!(publish(&n6, &file), ticket, "one group, one content ID");
    let r = run(
        &n5.data,
        &[
            "fetch",
            &ticket,
            "-o",
            dir.path().join("no").to_str().unwrap(),
        ],
    );
    assert_eq!(
        r.status.code(),
        Some(69),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );

    // n2 fetches from n1 and the corrupt n6: n6 is caught and dropped, the bytes are right.
    let out = dir.path().join("o2.bin");
    let done = fetch(&n2, &ticket, &out);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let dropped = done["dropped"].as_array().unwrap();
    assert!(
        dropped
            .iter()
            .any(|d| d["peer"].as_str().unwrap().starts_with("10.78.0.6:")),
        "{done}"
    );
    assert!(
        dropped
            .iter()
            .any(|d| d["reason"].as_str().unwrap().contains("verification")),
        "{done}"
    );
    fetch(&n3, &ticket, &dir.path().join("o3.bin"));
    // n4 fetches from three honest peers at once.
    let done = fetch(&n4, &ticket, &dir.path().join("o4.bin"));
    let sources = done["by_source"].as_object().unwrap();
    assert!(sources.len() >= 3, "fetched from three peers: {done}");
    assert_eq!(std::fs::read(dir.path().join("o4.bin")).unwrap(), data);

    // A serving node killed mid-fetch: n4's link is shaped so that the fetch takes seconds.
    let big = fixtures::content(22, 96 << 20);
    let file = dir.path().join("y.bin");
    std::fs::write(&file, &big).unwrap();
    let ticket = publish(&n1, &file);
    fetch(&n2, &ticket, &dir.path().join("y2.bin"));
    fetch(&n3, &ticket, &dir.path().join("y3.bin"));
    lab.0.shape_to(4, "300mbit").unwrap();
    let out = dir.path().join("y4.bin");
    let mut child = cmd(&n4.data)
        .args(["fetch", &ticket, "-o", out.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last = String::new();
    let mut killed = false;
    for line in lines.by_ref() {
        last = line.unwrap();
        if !killed && last.contains("\"progress\"") {
            n2.kill();
            killed = true;
        }
    }
    assert!(child.wait().unwrap().success(), "{last}\n{}", n4.log());
    assert!(killed);
    assert_eq!(std::fs::read(&out).unwrap(), big);
    let done: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(done["event"], "done");
}

/// The office: an origin behind a 50 Mbit/s uplink (h1), two gateways of one group on the LAN
/// (h2, h3), each with a curl client on its own host. The file a client of the first gateway
/// fetched is taken by the second from the first, over the LAN; the origin's log shows one
/// transfer and one conditional request (the second gateway confirming the validator).
#[test]
fn two_gateways_share_over_the_lan() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixtures::content(23, 6 << 20);
    let Some((lab, origin)) = office(dir.path(), 'g', 3, "10.77.0", "50mbit", "update.bin", &data)
    else {
        return;
    };
    let gateway = |i: usize| {
        let (ns, v, name) = (lab.ns(i), lab.veth(i), format!("gw{i}"));
        let args = [
            "--secret",
            GROUP,
            "--listen",
            "127.0.0.1:7480",
            "--peer-listen",
            "0.0.0.0:7461",
            "--interface",
            &v,
            "--name",
            &name,
        ];
        let data = dir.path().join(format!("gw{i}"));
        NodeProc::start_cmd(&["ip", "netns", "exec", &ns], &data, "gateway", &args)
    };
    let (a, b) = (gateway(2), gateway(3));
    for g in [&a, &b] {
        poll(
            Duration::from_secs(20),
            "the gateways to find each other",
            || (group_alive(g) == 1).then_some(()),
        );
    }
    let url = "http://10.77.0.1/update.bin";
    let curl = |i: usize, out: &Path| {
        let o = std::process::Command::new("ip")
            .args(["netns", "exec", &lab.ns(i), "curl", "-sS", "-f"])
            .args(["-x", "http://127.0.0.1:7480", "-D", "-", "-o"])
            .arg(out)
            .arg(url)
            .env_remove("no_proxy")
            .env_remove("NO_PROXY")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::read(out).unwrap() == data, "the client's bytes");
        String::from_utf8(o.stdout).unwrap().to_ascii_lowercase()
    };
    let head = curl(2, &dir.path().join("c2.bin"));
    assert!(head.contains("fwd=uri-miss"), "{head}");
    poll(
        Duration::from_secs(20),
        "gateway A to keep the file",
        || (a.status()["gateway"]["keeping"] == 0).then_some(()),
    );
    let head = curl(3, &dir.path().join("c3.bin"));
    assert!(
        head.contains(&format!("peers={}", data.len())),
        "all bytes from the peer: {head}"
    );
    let log = origin.log();
    let full: Vec<_> = log.iter().filter(|l| l.status == 200).collect();
    let confirmed: Vec<_> = log.iter().filter(|l| l.status == 304).collect();
    assert_eq!(full.len(), 1, "sent once: {log:?}");
    assert_eq!(full[0].bytes, data.len() as u64);
    assert_eq!(confirmed.len(), 1, "one conditional request: {log:?}");
    let sent_by_a = a.status()["bytes_served"].as_u64().unwrap();
    assert!(sent_by_a >= data.len() as u64, "A served it: {sent_by_a}");
    assert_eq!(b.status()["gateway"]["bytes_peers"], data.len() as u64);
}

/// The swarm lab's scenario (a), small: four hosts fetch the same 32 MiB at once with
/// `pdist fetch --origin`, the origin behind a 200 Mbit/s uplink. Every host gets the right
/// bytes and the origin sends the file once (one host downloads it; the others take it from
/// the LAN).
#[test]
fn four_hosts_fetch_at_once_and_the_origin_sends_the_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixtures::content(24, 32 << 20);
    let Some((lab, origin)) = office(dir.path(), 'f', 5, "10.73.0", "200mbit", "big.bin", &data)
    else {
        return;
    };
    let www = dir.path().join("www");
    let hashed = json(
        &dir.path().join("hash"),
        &[
            "--secret",
            GROUP,
            "hash",
            "--json",
            www.join("big.bin").to_str().unwrap(),
        ],
    );
    let ticket = hashed["ticket"].as_str().unwrap().to_string();
    let nodes: Vec<NodeProc> = (2..=5)
        .map(|i| {
            let (ns, v, name) = (lab.ns(i), lab.veth(i), format!("host{i}"));
            let args = [
                "--secret",
                GROUP,
                "--listen",
                "0.0.0.0:7461",
                "--interface",
                &v,
                "--name",
                &name,
            ];
            NodeProc::start(
                &["ip", "netns", "exec", &ns],
                &dir.path().join(format!("n{i}")),
                &args,
            )
        })
        .collect();
    for n in &nodes {
        poll(Duration::from_secs(20), "mDNS discovery", || {
            (group_alive(n) == 3).then_some(())
        });
    }
    let fetches: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let out = dir.path().join(format!("out{k}.bin"));
            let child = cmd(&n.data)
                .args([
                    "fetch",
                    &ticket,
                    "--origin",
                    "http://10.73.0.1/big.bin",
                    "-o",
                ])
                .arg(&out)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    for (child, out) in fetches {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            std::fs::read(&out).unwrap() == data,
            "{} has the bytes",
            out.display()
        );
    }
    let sent = origin.bytes_sent("/big.bin");
    assert!(
        sent as f64 <= 1.05 * data.len() as f64,
        "the origin sent {sent} bytes for a file of {}",
        data.len()
    );
    let served: u64 = nodes
        .iter()
        .map(|n| n.status()["bytes_served"].as_u64().unwrap())
        .sum();
    assert!(
        served >= 3 * data.len() as u64,
        "the LAN carried the rest: {served}"
    );
}

/// `hosts` hosts on a bridge (`kind`, `subnet`), host 1 the origin: nginx serving `data` as
/// `/{file}` (cacheable for an hour) behind an uplink of `uplink`. `None`, after saying so,
/// where namespaces or nginx are not available (CI has both: there it fails instead).
fn office(
    dir: &Path,
    kind: char,
    hosts: usize,
    subnet: &str,
    uplink: &str,
    file: &str,
    data: &[u8],
) -> Option<(fixtures::netns::Bridge, fixtures::nginx::Nginx)> {
    if !fixtures::netns::available() || !fixtures::nginx::available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with nginx installed"
        );
        eprintln!("SKIPPED: multi-host tests need root, iproute2 and nginx (CI has them)");
        return None;
    }
    let lab = fixtures::netns::Bridge::new(kind, hosts, subnet).unwrap();
    lab.shape_from(1, uplink).unwrap();
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join(file), data).unwrap();
    let ns1 = lab.ns(1);
    let origin = fixtures::nginx::Nginx::start(
        &["ip", "netns", "exec", &ns1],
        &dir.join("nginx"),
        1,
        &format!("{subnet}.1:80"),
        "",
        &format!("root {}; expires 1h;", www.display()),
    )
    .unwrap();
    Some((lab, origin))
}
