//! The gateway against the HTTP caching test suite (npm `http-cache-tests`, the suite behind
//! <https://cache-tests.fyi>), forward and reverse: the suite's own origin server, `pdist
//! gateway` in front of it, and the suite's client scored by `fixtures/cache-tests/score.mjs`
//! the way the suite's result pages score caches.
//!
//! The bar (issue 15): at least 195 tests pass and at most 8 required tests fail; more than
//! that, every required failure must be one of those known and argued for below, so a new one
//! fails the test by name.
//!
//! `./test.sh` installs node and the suite (`.ci/env.sh`, `PDIST_CACHE_TESTS`); where they are
//! missing the test says so and skips, except under CI, where it fails.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{NodeProc, poll};
use fixtures::nginx::free_port;

/// Required tests the gateway fails on purpose, in both modes:
/// * `age-parse-prefix`: `Age: 0,7200` is two values, and an `Age` that is not one
///   non-negative integer makes a response stale here (the suite's other `Age` tests want
///   exactly that for `0, 0`, `7200,0` and two lines; this one alone wants the first value).
/// * `stale-close-*`: a stale response that forbids serving it stale, whose origin then drops
///   the connection: the gateway answers 502 (never the stale response), and the suite counts
///   any answer that is not its origin's as "from the cache". Every cache in the suite's
///   published results fails these four.
const KNOWN_BOTH: &[&str] = &[
    "age-parse-prefix",
    "stale-close-must-revalidate",
    "stale-close-no-cache",
    "stale-close-proxy-revalidate",
    "stale-close-s-maxage=2",
];

/// And in forward mode only: `Surrogate-Control` is for the origin's own caches (origin mode
/// obeys it); a forward proxy does not.
const KNOWN_FORWARD: &[&str] = &["surrogate-fresh-cc-nostore", "surrogate-no-store-cc-fresh"];

/// The installed suite, or `None` (skipped; a failure under CI).
fn suite() -> Option<PathBuf> {
    let dir = std::env::var_os("PDIST_CACHE_TESTS").map(PathBuf::from);
    let found = dir.filter(|d| d.join("server/server.mjs").is_file());
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found.is_none() || !node {
        assert!(
            std::env::var_os("CI").is_none(),
            "node or the HTTP caching test suite is missing: .ci/env.sh installs them"
        );
        eprintln!(
            "SKIPPED: node or the HTTP caching test suite (PDIST_CACHE_TESTS) is missing; ./test.sh installs them"
        );
        return None;
    }
    found
}

/// The suite's origin server on a free loopback port, stopped on drop.
struct Origin {
    child: Child,
    port: u16,
}

impl Origin {
    fn start(suite: &Path, dir: &Path) -> Origin {
        let port = free_port().unwrap();
        let child = Command::new("node")
            .arg("server/server.mjs")
            .current_dir(suite)
            .env("npm_config_protocol", "http")
            .env("npm_config_port", port.to_string())
            .env("npm_config_pidfile", dir.join("server.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
            .spawn()
            .unwrap();
        poll(Duration::from_secs(15), "the suite's server", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Origin { child, port }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the suite says of every test: (kind, verdict).
fn score(
    suite: &Path,
    dir: &Path,
    target: &[&str],
    origin: &str,
) -> BTreeMap<String, (String, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/cache-tests/score.mjs");
    let json = dir.join("results.json");
    let out = Command::new("node")
        .arg(script)
        .arg("--suite")
        .arg(suite)
        .args(["--origin", origin])
        .args(target)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "score.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(id, r)| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (id.clone(), (s("kind"), s("verdict")))
        })
        .collect()
}

fn run(reverse: bool) {
    let Some(suite) = suite() else { return };
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(&suite, dir.path());
    let origin_url = format!("http://127.0.0.1:{}", origin.port);
    let listen = format!("127.0.0.1:{}", free_port().unwrap());
    let peer = format!("127.0.0.1:{}", free_port().unwrap());
    let mut args = vec![
        "--listen",
        &listen,
        "--peer-listen",
        &peer,
        "--no-mdns",
        "--rate",
        "0",
    ];
    if reverse {
        args.extend(["--reverse", &origin_url]);
    }
    let mut gw = NodeProc::start_cmd(&[], &dir.path().join("gw"), "gateway", &args);
    let base = format!("http://{listen}");
    let target: Vec<&str> = if reverse {
        vec!["--base", &base]
    } else {
        vec!["--proxy", &listen]
    };
    let results = score(&suite, dir.path(), &target, &origin_url);
    gw.stop();
    let passed = results.values().filter(|(_, v)| v == "✅").count();
    let known: Vec<&str> = KNOWN_BOTH
        .iter()
        .chain(if reverse { &[][..] } else { KNOWN_FORWARD })
        .copied()
        .collect();
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, (_, v))| v == "⛔️")
        .map(|(id, _)| id.as_str())
        .collect();
    let unknown: Vec<&&str> = failed.iter().filter(|id| !known.contains(id)).collect();
    assert!(passed >= 195, "{passed} tests passed, fewer than 195");
    assert!(
        failed.len() <= 8,
        "{} required failures: {failed:?}",
        failed.len()
    );
    assert!(unknown.is_empty(), "required tests failed: {unknown:?}");
}

#[test]
fn the_caching_suite_forward() {
    run(false);
}

#[test]
fn the_caching_suite_reverse() {
    run(true);
}
