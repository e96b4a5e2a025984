//! The swarm lab's scenarios: N hosts on one bridge and an origin host behind a shaped WAN
//! uplink, each host fetching the same file at once (or staggered, or through gateways, or
//! with a serving node killed, or with curl from the origin as the baseline), with per-host
//! timings, the origin's bytes (from nginx's access log) and the LAN bytes each node served.
//!
//! Host 1 is the origin (nginx); hosts 2..=N+1 are the office. Every scenario starts fresh
//! nodes with empty data directories and stops them at its end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{fs, io};

use serde::Serialize;

use crate::lab::{Lab, pdist_bin, wait_until};
use fixtures::nginx::Nginx;

/// The lab's subnet.
pub const NET: &str = "10.75.0";
const SECRET: &str = "5a4f6f6f5a4f6f6f0123456789abcdef";

/// A scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Scenario {
    /// (a) every host runs `pdist fetch --origin` at once.
    AllAtOnce,
    /// (b) the same, hosts arriving one after another.
    Staggered,
    /// (c) a gateway on every host, curl through it, all at once.
    Gateways,
    /// (d) as (a), with the first host's node killed mid-run.
    KilledPeer,
    /// (e) the baseline: curl from the origin on every host at once.
    Baseline,
}

impl Scenario {
    /// Its letter and name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::AllAtOnce => "a: pdist fetch, all at once",
            Scenario::Staggered => "b: pdist fetch, staggered",
            Scenario::Gateways => "c: gateways + curl",
            Scenario::KilledPeer => "d: a serving node killed",
            Scenario::Baseline => "e: curl from the origin",
        }
    }

    /// From its letter.
    pub fn parse(s: &str) -> Option<Scenario> {
        Some(match s {
            "a" => Scenario::AllAtOnce,
            "b" => Scenario::Staggered,
            "c" => Scenario::Gateways,
            "d" => Scenario::KilledPeer,
            "e" => Scenario::Baseline,
            _ => return None,
        })
    }
}

/// One host's part in a run.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    /// Host number.
    pub host: usize,
    /// When it started, seconds from the run's start.
    pub start_s: f64,
    /// When it had the whole file, seconds from the run's start (`None`: it failed).
    pub done_s: Option<f64>,
    /// Bytes its node served to peers.
    pub served: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// One scenario's run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Which.
    pub scenario: Scenario,
    /// The file's size.
    pub size: u64,
    /// Body bytes the origin sent.
    pub origin_bytes: u64,
    /// Seconds one WAN transfer of the file takes (measured alone).
    pub wan_one_s: f64,
    /// Per host.
    pub hosts: Vec<HostResult>,
}

impl RunResult {
    /// Completion times of the hosts that completed, sorted.
    pub fn times(&self) -> Vec<f64> {
        let mut t: Vec<f64> = self.hosts.iter().filter_map(|h| h.done_s).collect();
        t.sort_by(f64::total_cmp);
        t
    }

    /// The `q` quantile of completion times (nearest rank).
    pub fn quantile(&self, q: f64) -> f64 {
        let t = self.times();
        if t.is_empty() {
            return f64::NAN;
        }
        let i = ((q * t.len() as f64).ceil() as usize).clamp(1, t.len()) - 1;
        t[i]
    }

    /// When the last host completed.
    pub fn makespan(&self) -> f64 {
        self.times().last().copied().unwrap_or(f64::NAN)
    }
}

/// The lab with its origin running and the file in place.
pub struct Swarm {
    /// The hosts.
    pub lab: Lab,
    origin: Nginx,
    pdist: PathBuf,
    /// Office hosts.
    pub hosts: usize,
    /// The file's size.
    pub size: u64,
    ticket: String,
    /// Seconds one WAN transfer takes (measured alone).
    pub wan_one_s: f64,
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm").field("hosts", &self.hosts).finish()
    }
}

const PATH: &str = "/file.bin";

impl Swarm {
    /// Builds `hosts` office hosts and the origin behind a `wan` uplink; `lan` shapes what each
    /// office host receives. Measures one WAN transfer of a `size` file.
    pub fn new(hosts: usize, size: u64, wan: &str, lan: Option<&str>) -> io::Result<Swarm> {
        let lab = Lab::new('s', hosts + 1, NET)?;
        let root = lab.dir.path().to_path_buf();
        let www = root.join("www");
        fs::create_dir_all(&www)?;
        let file = www.join("file.bin");
        io::copy(
            &mut fixtures::ContentGen::new(99, size),
            &mut io::BufWriter::with_capacity(1 << 20, fs::File::create(&file)?),
        )?;
        let pdist = pdist_bin()?;
        let out = Command::new(&pdist)
            .env("PDIST_DATA_DIR", root.join("hash"))
            .args(["--secret", SECRET, "hash", "--json"])
            .arg(&file)
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(io::Error::other)?;
        let ticket = v["ticket"]
            .as_str()
            .or_else(|| v[0]["ticket"].as_str())
            .ok_or_else(|| io::Error::other(format!("pdist hash said {v}")))?
            .to_string();
        let h1 = lab.ns(1);
        let origin = Nginx::start(
            &["ip", "netns", "exec", &h1],
            &root.join("origin"),
            2,
            &format!("{NET}.1:80"),
            "",
            &format!("root {};", www.display()),
        )?;
        lab.net.shape_from(1, wan)?;
        if let Some(rate) = lan {
            for h in 2..=hosts + 1 {
                lab.net.shape_to(h, rate)?;
            }
        }
        let mut s = Swarm {
            lab,
            origin,
            pdist,
            hosts,
            size,
            ticket,
            wan_one_s: 0.0,
        };
        let t = Instant::now();
        s.curl(2, None)?;
        s.wan_one_s = t.elapsed().as_secs_f64();
        let _ = fs::remove_file(s.out(2));
        Ok(s)
    }

    fn data(&self, host: usize) -> PathBuf {
        self.lab.dir.path().join(format!("data-h{host}"))
    }

    fn out(&self, host: usize) -> PathBuf {
        self.lab.dir.path().join(format!("out-h{host}.bin"))
    }

    fn url(&self) -> String {
        format!("http://{NET}.1{PATH}")
    }

    /// curl on `host` (through `proxy` if given) into its output file.
    fn curl(&self, host: usize, proxy: Option<&str>) -> io::Result<()> {
        let out = self.out(host);
        let mut args = vec!["curl", "-sS", "-f", "-o", out.to_str().unwrap()];
        if let Some(p) = proxy {
            args.extend(["-x", p]);
        }
        let url = self.url();
        args.push(&url);
        let o = self.lab.on(host, &args).env_remove("no_proxy").output()?;
        self.check(host, o.status.success(), &o.stderr)
    }

    fn check(&self, host: usize, ok: bool, stderr: &[u8]) -> io::Result<()> {
        let len = fs::metadata(self.out(host)).map(|m| m.len()).unwrap_or(0);
        if ok && len == self.size {
            // The file stays until the run ends: a node serves what it fetched from it.
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "host {host}: {} ({len} of {} bytes)",
                String::from_utf8_lossy(stderr).trim(),
                self.size
            )))
        }
    }

    /// Starts `pdist SUB` (`node` or `gateway`) on every office host, and waits until each
    /// sees all the others.
    fn start_nodes(&mut self, sub: &str) -> io::Result<()> {
        for h in 2..=self.hosts + 1 {
            let _ = fs::remove_dir_all(self.data(h));
            let (veth, name) = (self.lab.net.veth(h), format!("h{h}"));
            let pdist = self.pdist.to_str().unwrap().to_string();
            let mut args = vec![
                pdist.as_str(),
                "--secret",
                SECRET,
                sub,
                "--interface",
                &veth,
                "--name",
                &name,
            ];
            if sub == "gateway" {
                args.extend(["--peer-listen", "0.0.0.0:7461", "--rate", "0"]);
            } else {
                args.extend(["--listen", "0.0.0.0:7461"]);
            }
            let data = self.data(h);
            self.lab.spawn(h, &args, &[("PDIST_DATA_DIR", &data)])?;
        }
        let want = self.hosts as u64 - 1;
        for h in 2..=self.hosts + 1 {
            wait_until("every node to see every other", || {
                self.status(h)["peers_alive"].as_u64() == Some(want)
            })
            .map_err(|e| io::Error::other(format!("{e}\n{}", self.lab.logs())))?;
        }
        Ok(())
    }

    fn status(&self, host: usize) -> serde_json::Value {
        Command::new(&self.pdist)
            .env("PDIST_DATA_DIR", self.data(host))
            .args(["status", "--json"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or_default()
    }

    /// Runs a scenario. `stagger` spaces arrivals (b); `kill_after` is when the first host's
    /// node is killed (d).
    pub fn run(
        &mut self,
        scenario: Scenario,
        stagger: Duration,
        kill_after: Duration,
    ) -> io::Result<RunResult> {
        self.lab.stop_all();
        match scenario {
            Scenario::Baseline => {}
            Scenario::Gateways => self.start_nodes("gateway")?,
            _ => self.start_nodes("node")?,
        }
        let sent_before = self.origin.bytes_sent(PATH);
        let t0 = Instant::now();
        let me = Arc::new(&*self);
        let results: Vec<HostResult> = std::thread::scope(|s| {
            let mut handles = Vec::new();
            for (k, h) in (2..=me.hosts + 1).enumerate() {
                let me = Arc::clone(&me);
                let delay = if scenario == Scenario::Staggered {
                    stagger * k as u32
                } else {
                    Duration::ZERO
                };
                handles.push(s.spawn(move || {
                    std::thread::sleep(delay);
                    let start_s = t0.elapsed().as_secs_f64();
                    let r = me.one(scenario, h);
                    HostResult {
                        host: h,
                        start_s,
                        done_s: r.as_ref().ok().map(|_| t0.elapsed().as_secs_f64()),
                        served: 0,
                        error: r.err().map(|e| e.to_string()),
                    }
                }));
            }
            if scenario == Scenario::KilledPeer {
                me.kill_a_server(t0, kill_after);
            }
            handles
                .into_iter()
                .map(|h| h.join().expect("host thread"))
                .collect()
        });
        let mut results = results;
        for r in &mut results {
            r.served = self.status(r.host)["bytes_served"].as_u64().unwrap_or(0);
        }
        let origin_bytes = self.origin.bytes_sent(PATH) - sent_before;
        self.lab.stop_all();
        for h in 2..=self.hosts + 1 {
            let _ = fs::remove_file(self.out(h));
        }
        Ok(RunResult {
            scenario,
            size: self.size,
            origin_bytes,
            wan_one_s: self.wan_one_s,
            hosts: results,
        })
    }

    /// Kills (SIGKILL) the node that is serving peers the most, once it has served a tenth of
    /// the file, or at `limit` whichever node has served most.
    fn kill_a_server(&self, t0: Instant, limit: Duration) {
        loop {
            let served: Vec<(u64, usize)> = (2..=self.hosts + 1)
                .map(|h| (self.status(h)["bytes_served"].as_u64().unwrap_or(0), h))
                .collect();
            let (most, host) = served.into_iter().max().unwrap_or((0, 2));
            if most >= self.size / 10 || t0.elapsed() >= limit {
                eprintln!(
                    "  killing host {host}'s node after {:.2} s ({most} bytes served)",
                    t0.elapsed().as_secs_f64()
                );
                self.lab.kill_first_on(host);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One host's download in `scenario`.
    fn one(&self, scenario: Scenario, h: usize) -> io::Result<()> {
        match scenario {
            Scenario::Baseline => self.curl(h, None),
            Scenario::Gateways => self.curl(h, Some("http://127.0.0.1:7480")),
            _ => {
                let out = self.out(h);
                let o = Command::new(&self.pdist)
                    .env("PDIST_DATA_DIR", self.data(h))
                    .args(["fetch", &self.ticket, "--origin", &self.url(), "-o"])
                    .arg(&out)
                    .stdout(Stdio::null())
                    .output()?;
                self.check(h, o.status.success(), &o.stderr)
            }
        }
    }
}

/// A table of runs, as text.
pub fn table(runs: &[RunResult]) -> String {
    let mut s = format!(
        "{:<30} {:>12} {:>8} {:>8} {:>8} {:>10} {:>10}\n",
        "scenario", "origin/size", "p50 s", "p99 s", "max s", "max/WAN", "LAN MB"
    );
    for r in runs {
        let lan: u64 = r.hosts.iter().map(|h| h.served).sum();
        let failed = r.hosts.iter().filter(|h| h.done_s.is_none()).count();
        s.push_str(&format!(
            "{:<30} {:>12.3} {:>8.2} {:>8.2} {:>8.2} {:>10.2} {:>10.0}{}\n",
            r.scenario.name(),
            r.origin_bytes as f64 / r.size as f64,
            r.quantile(0.5),
            r.quantile(0.99),
            r.makespan(),
            r.makespan() / r.wan_one_s,
            lan as f64 / 1e6,
            if failed > 0 {
                format!("  ({failed} failed)")
            } else {
                String::new()
            }
        ));
    }
    s
}

/// LAN bytes served, by host, for each run.
pub fn served_by_host(runs: &[RunResult]) -> BTreeMap<String, BTreeMap<usize, u64>> {
    runs.iter()
        .map(|r| {
            (
                r.scenario.name().to_string(),
                r.hosts.iter().map(|h| (h.host, h.served)).collect(),
            )
        })
        .collect()
}

/// Writes the runs as JSON.
pub fn write_json(path: &Path, runs: &[RunResult]) -> io::Result<()> {
    fs::write(
        path,
        serde_json::to_vec_pretty(runs).map_err(io::Error::other)?,
    )
}
