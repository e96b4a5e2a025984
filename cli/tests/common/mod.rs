//! What the CLI tests that run nodes share: data directories, running `pdist`, and node
//! processes that are stopped (SIGTERM, then SIGKILL) when the test ends, also on failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use engine::store::{RocksStore, SegmentStore};

pub fn pdist_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pdist")
}

/// A `pdist` command for data directory `data`, with the environment cleaned.
pub fn cmd(data: &Path) -> Command {
    let mut c = Command::new(pdist_bin());
    c.env_remove("PDIST_SECRET")
        .env_remove("PDIST_JSON")
        .env_remove("PDIST_ORIGIN")
        .env("PDIST_DATA_DIR", data);
    c
}

pub fn run(data: &Path, args: &[&str]) -> Output {
    cmd(data).args(args).output().unwrap()
}

pub fn ok(data: &Path, args: &[&str]) -> String {
    let out = run(data, args);
    assert!(
        out.status.success(),
        "{args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn json(data: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(data, args)).unwrap()
}

/// Polls `check` every 20 ms until it gives a value or `limit` passes.
pub fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `pdist node`.
pub struct NodeProc {
    pub child: Option<Child>,
    pub data: PathBuf,
    pub log: PathBuf,
}

impl NodeProc {
    /// Starts `pdist node ARGS` (under `prefix`, e.g. `ip netns exec NS`) and waits until its
    /// control socket answers.
    pub fn start(prefix: &[&str], data: &Path, args: &[&str]) -> NodeProc {
        NodeProc::start_cmd(prefix, data, "node", args)
    }

    /// Starts `pdist SUB ARGS` (`node` or `gateway`) and waits until its control socket
    /// answers.
    pub fn start_cmd(prefix: &[&str], data: &Path, sub: &str, args: &[&str]) -> NodeProc {
        std::fs::create_dir_all(data).unwrap();
        let log = data.with_extension("log");
        let mut c = match prefix.split_first() {
            Some((p, rest)) => {
                let mut c = Command::new(p);
                c.args(rest).arg(pdist_bin());
                c
            }
            None => Command::new(pdist_bin()),
        };
        c.env_remove("PDIST_SECRET")
            .env("PDIST_DATA_DIR", data)
            .env("PDIST_LOG", "info")
            .arg(sub)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = c.spawn().unwrap();
        let n = NodeProc {
            child: Some(child),
            data: data.to_path_buf(),
            log,
        };
        poll(Duration::from_secs(15), "the node's control socket", || {
            run(data, &["status", "--json"])
                .status
                .success()
                .then_some(())
        });
        n
    }

    pub fn status(&self) -> serde_json::Value {
        json(&self.data, &["status", "--json"])
    }

    /// The peer endpoint's address.
    pub fn addr(&self) -> String {
        self.status()["listen"].as_str().unwrap().to_string()
    }

    /// The gateway's address (`pdist gateway` only).
    pub fn gateway(&self) -> String {
        self.status()["gateway"]["listen"]
            .as_str()
            .expect("a gateway")
            .to_string()
    }

    pub fn peers(&self) -> Vec<serde_json::Value> {
        json(&self.data, &["peers", "--json"])
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops with SIGTERM and returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("node did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills with SIGKILL (no goodbye).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            signal(c.id(), "TERM");
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Checks every record and every present block of the store in `data`.
pub fn check_store(data: &Path, round: usize) -> u64 {
    let store = RocksStore::open(data, Default::default()).unwrap_or_else(|e| {
        panic!("round {round}: store does not open after a kill or a power cut: {e}")
    });
    let mut present_total = 0;
    for r in store.list().unwrap() {
        let info = store
            .content_info(&r.id)
            .unwrap()
            .unwrap_or_else(|| panic!("round {round}: record without content information"));
        let layout = info.layout();
        let mut present = 0u64;
        for seg in layout.segments() {
            let set = store.present(&r.id, seg).unwrap();
            for i in set.iter() {
                let block = layout.block(seg, i).unwrap();
                let bytes = store
                    .get_block(&r.id, block)
                    .unwrap()
                    .unwrap_or_else(|| panic!("round {round}: present block {block:?} unreadable"));
                info.verify_block(block, &bytes)
                    .unwrap_or_else(|e| panic!("round {round}: present block is wrong: {e}"));
            }
            present += u64::from(set.count());
        }
        assert_eq!(
            r.blocks_present, present,
            "round {round}: record count and bitmaps agree"
        );
        present_total += present;
    }
    present_total
}

/// Deterministic pseudo-random numbers (splitmix64) from `seed`, or from `PDIST_CRASH_SEED`
/// when set (to replay or vary the random moments of the crash tests).
pub fn randoms(seed: u64) -> impl FnMut() -> u64 {
    let mut state: u64 = std::env::var("PDIST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(seed);
    move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// nginx serving the files of `www` on a free loopback port at `rate` (a `limit_rate`
/// value, as over a WAN link), its files under `dir`; and its port.
pub fn rate_limited_nginx(dir: &Path, www: &Path, rate: &str) -> (fixtures::nginx::Nginx, u16) {
    let port = fixtures::nginx::free_port().unwrap();
    let nginx = fixtures::nginx::Nginx::start(
        &[],
        &dir.join("nginx"),
        1,
        &format!("127.0.0.1:{port}"),
        "",
        &format!("root {}; limit_rate {rate};", www.display()),
    )
    .unwrap();
    (nginx, port)
}
