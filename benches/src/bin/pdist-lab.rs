//! `pdist-lab` (root): the swarm lab. Builds hosts in network namespaces on one bridge and an
//! origin host (nginx) behind a WAN uplink shaped with tbf, runs scenarios, and reports per
//! host and per run, as a table, as JSON and as a PNG chart of completions over time.
//!
//! ```text
//! pdist-lab [--hosts 8] [--size 256M] [--wan 100mbit] [--lan RATE] [--scenarios abcde]
//!           [--stagger 2] [--kill-after SECS] [--json FILE] [--chart FILE]
//! pdist-lab --discovery 32
//! ```
//!
//! Scenarios: (a) every host runs `pdist fetch --origin` at once; (b) the same with hosts
//! arriving `--stagger` seconds apart; (c) a `pdist gateway` on every host and curl through it;
//! (d) as (a), with the node serving peers the most killed once it has served a tenth of the
//! file (or after `--kill-after` seconds, default two WAN transfers, whichever node has served
//! most then); (e) the baseline, curl from the origin on every host. The bars
//! (BRIEF.md): in (a) with a 100 Mbit/s WAN link the origin sends at most 1.05x the file and the
//! last host finishes within 1.3x one WAN transfer.
//!
//! `--discovery N` instead starts N nodes on one bridge and measures how long until every node
//! sees every other, and from `pdist fetch` to its first byte.
//!
//! Everything the lab makes is removed at the end, on failure and on Ctrl-C. `pdist` is found
//! beside this program or at `$PDIST_BIN`; nginx and curl must be installed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use std::{fs, io};

use pdist_benches::args::Args;
use pdist_benches::lab::{Lab, clean_up_on_interrupt, pdist_bin};
use pdist_benches::swarm::{Scenario, Swarm, served_by_host, table, write_json};

struct Opts {
    hosts: usize,
    size: u64,
    wan: String,
    lan: Option<String>,
    scenarios: Vec<Scenario>,
    stagger: f64,
    kill_after: Option<f64>,
    json: Option<PathBuf>,
    chart: Option<PathBuf>,
    discovery: Option<usize>,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        hosts: 8,
        size: 256 << 20,
        wan: "100mbit".into(),
        lan: None,
        scenarios: "abcde"
            .chars()
            .filter_map(|c| Scenario::parse(&c.to_string()))
            .collect(),
        stagger: 2.0,
        kill_after: None,
        json: None,
        chart: None,
        discovery: None,
    };
    let mut args = Args::from_env();
    while let Some(a) = args.flag() {
        match a.as_str() {
            "--hosts" => o.hosts = args.parse(&a)?,
            "--size" => o.size = args.size(&a)?,
            "--wan" => o.wan = args.value(&a)?,
            "--lan" => o.lan = Some(args.value(&a)?),
            "--scenarios" => {
                o.scenarios = args
                    .value(&a)?
                    .chars()
                    .map(|c| Scenario::parse(&c.to_string()).ok_or(format!("no scenario {c}")))
                    .collect::<Result<_, _>>()?
            }
            "--stagger" => o.stagger = args.parse(&a)?,
            "--kill-after" => o.kill_after = Some(args.parse(&a)?),
            "--json" => o.json = Some(args.value(&a)?.into()),
            "--chart" => o.chart = Some(args.value(&a)?.into()),
            "--discovery" => o.discovery = Some(args.parse(&a)?),
            "-h" | "--help" => {
                println!(
                    "usage: pdist-lab [--hosts 8] [--size 256M] [--wan 100mbit] [--lan RATE] \
                     [--scenarios abcde] [--stagger 2] [--kill-after SECS] [--json FILE] \
                     [--chart FILE]\n       pdist-lab --discovery 32   (as root)"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.hosts < 2 {
        return Err("--hosts must be at least 2".into());
    }
    Ok(o)
}

fn swarm(o: &Opts) -> io::Result<()> {
    eprintln!(
        "building {} hosts and an origin behind {}; measuring one WAN transfer of {} bytes",
        o.hosts, o.wan, o.size
    );
    let mut s = Swarm::new(o.hosts, o.size, &o.wan, o.lan.as_deref())?;
    clean_up_on_interrupt(&s.lab)?;
    eprintln!("one WAN transfer: {:.2} s", s.wan_one_s);
    let kill_after = Duration::from_secs_f64(o.kill_after.unwrap_or(s.wan_one_s * 2.0));
    let mut runs = Vec::new();
    for sc in &o.scenarios {
        eprintln!("running {}", sc.name());
        let r = s.run(*sc, Duration::from_secs_f64(o.stagger), kill_after)?;
        for h in &r.hosts {
            if let Some(e) = &h.error {
                eprintln!("  host {}: {e}", h.host);
            }
        }
        runs.push(r);
    }
    println!(
        "pdist-lab: {} hosts, {} MB, WAN {}, LAN {}; one WAN transfer {:.2} s",
        o.hosts,
        o.size / 1_000_000,
        o.wan,
        o.lan.as_deref().unwrap_or("unshaped veth"),
        s.wan_one_s
    );
    print!("{}", table(&runs));
    println!("LAN bytes served, by host: {:?}", served_by_host(&runs));
    if let Some(p) = &o.json {
        write_json(p, &runs)?;
    }
    if let Some(p) = &o.chart {
        let title = format!(
            "{} hosts fetch {} MB; origin behind {}",
            o.hosts,
            o.size / 1_000_000,
            o.wan
        );
        pdist_benches::chart::completion_chart(p, &title, &runs)?;
    }
    Ok(())
}

/// `n` nodes on one bridge: time until each sees all others, then time to first byte.
fn discovery(n: usize) -> io::Result<()> {
    let pdist = pdist_bin()?;
    let lab = Lab::new('d', n, "10.74.0")?;
    clean_up_on_interrupt(&lab)?;
    let data = |h: usize| lab.dir.path().join(format!("d{h}"));
    let t0 = Instant::now();
    for h in 1..=n {
        let (veth, name, d) = (lab.net.veth(h), format!("n{h}"), data(h));
        lab.spawn(
            h,
            &[
                pdist.to_str().unwrap(),
                "--secret",
                "0d15c0e70123456789abcdef0d15c0e7",
                "node",
                "--listen",
                "0.0.0.0:7461",
                "--interface",
                &veth,
                "--name",
                &name,
            ],
            &[("PDIST_DATA_DIR", &d)],
        )?;
    }
    let alive = |h: usize| -> usize {
        Command::new(&pdist)
            .env("PDIST_DATA_DIR", data(h))
            .args(["status", "--json"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v["peers_alive"].as_u64())
            .unwrap_or(0) as usize
    };
    let mut seen_all: Vec<Option<f64>> = vec![None; n + 1];
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen_all[1..].iter().any(Option::is_none) {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "not every node saw every other within 120 s: {seen_all:?}"
            )));
        }
        for (h, seen) in seen_all.iter_mut().enumerate().skip(1) {
            if seen.is_none() && alive(h) == n - 1 {
                *seen = Some(t0.elapsed().as_secs_f64());
            }
        }
    }
    let mut times: Vec<f64> = seen_all[1..].iter().flatten().copied().collect();
    times.sort_by(f64::total_cmp);
    let file = lab.dir.path().join("x.bin");
    io::copy(
        &mut fixtures::ContentGen::new(5, 64 << 20),
        &mut fs::File::create(&file)?,
    )?;
    let out = Command::new(&pdist)
        .env("PDIST_DATA_DIR", data(1))
        .args(["publish", "--json"])
        .arg(&file)
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(io::Error::other)?;
    let ticket = v[0]["ticket"].as_str().unwrap_or_default().to_string();
    let t = Instant::now();
    let mut child = Command::new(&pdist)
        .env("PDIST_DATA_DIR", data(n))
        .args(["fetch", &ticket, "--json", "-o"])
        .arg(lab.dir.path().join("y.bin"))
        .stdout(Stdio::piped())
        .spawn()?;
    let mut first = None;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        if first.is_none() && line?.contains("\"progress\"") {
            first = Some(t.elapsed().as_secs_f64());
        }
    }
    let whole = t.elapsed().as_secs_f64();
    if !child.wait()?.success() {
        return Err(io::Error::other("the fetch failed"));
    }
    println!("pdist-lab --discovery: {n} nodes on one bridge, mDNS");
    println!(
        "  every node sees every other after {:.2} s (first node {:.2} s, median {:.2} s)",
        times[times.len() - 1],
        times[0],
        times[times.len() / 2]
    );
    println!(
        "  pdist fetch of 64 MiB from one of them: first byte after {:.3} s, all after {whole:.2} s",
        first.unwrap_or(f64::NAN)
    );
    Ok(())
}

fn main() {
    let r = parse_args()
        .map_err(io::Error::other)
        .and_then(|o| match o.discovery {
            Some(n) => discovery(n),
            None => swarm(&o),
        });
    if let Err(e) = r {
        eprintln!("pdist-lab: {e}");
        std::process::exit(1);
    }
}
