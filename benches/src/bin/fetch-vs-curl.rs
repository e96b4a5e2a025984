//! `fetch-vs-curl [--size 1G] [--runs 3] [--rate RATE]` (root): `pdist fetch` from one peer,
//! and from three, against `curl` downloading the same file from nginx, over the same link,
//! side by side in one run. The bar (issue 4): pdist from one peer at least 0.8x curl's
//! throughput. Also prints the fetcher's peak RSS.
//!
//! It builds four hosts in network namespaces on one bridge (as the multi-host tests do):
//! h1 runs nginx and a pdist node, h2 and h3 more pdist nodes, all serving the same file
//! (published in place), and h4 fetches. `--rate` shapes the bridge port towards h4 with tbf
//! (e.g. `1gbit`); without it the link is an unshaped veth pair. Every run writes its output
//! into one folder on the same disk; runs alternate between the tools and medians are compared.
//! Everything it makes is removed at the end, also on failure. `pdist` is found beside this
//! program or at `$PDIST_BIN`; nginx and curl must be installed.

use std::process::Command;
use std::time::Instant;
use std::{fs, io};

use pdist_benches::args::Args;
use pdist_benches::lab::{Lab, median, pdist_bin, wait_until};

const BAR: f64 = 0.8;

struct Opts {
    size: u64,
    runs: usize,
    rate: Option<String>,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        size: 1 << 30,
        runs: 3,
        rate: None,
    };
    let mut args = Args::from_env();
    while let Some(a) = args.flag() {
        match a.as_str() {
            "--size" => o.size = args.size(&a)?,
            "--runs" => o.runs = args.parse(&a)?,
            "--rate" => o.rate = Some(args.value(&a)?),
            "-h" | "--help" => {
                println!("usage: fetch-vs-curl [--size 1G] [--runs 3] [--rate RATE]   (as root)");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn run() -> io::Result<()> {
    let o = parse_args().map_err(io::Error::other)?;
    let pdist = pdist_bin()?;
    let lab = Lab::new('b', 4, "10.79.0")?;
    let root = lab.dir.path().to_path_buf();
    let www = root.join("www");
    fs::create_dir_all(&www)?;
    let file = www.join("content.bin");
    eprintln!("writing {} bytes of test content", o.size);
    io::copy(
        &mut fixtures::ContentGen::new(42, o.size),
        &mut io::BufWriter::with_capacity(1 << 20, fs::File::create(&file)?),
    )?;
    let conf = root.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "daemon off; worker_processes 1; pid {r}/nginx.pid; error_log {r}/nginx.err;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; sendfile on; server {{ listen 10.79.0.1:8080; root {w}; }} }}\n",
            r = root.display(),
            w = www.display()
        ),
    )?;
    lab.spawn(1, &["nginx", "-c", conf.to_str().unwrap()], &[])?;
    let mut ticket = String::new();
    for h in 1..=3 {
        let data = root.join(format!("node{h}"));
        lab.spawn(
            h,
            &[
                pdist.to_str().unwrap(),
                "node",
                "--no-mdns",
                "--listen",
                "0.0.0.0:7461",
            ],
            &[("PDIST_DATA_DIR", &data)],
        )?;
        let pd = pdist.clone();
        wait_until("a node", || {
            Command::new(&pd)
                .env("PDIST_DATA_DIR", &data)
                .args(["status"])
                .output()
                .is_ok_and(|o| o.status.success())
        })?;
        let out = Command::new(&pdist)
            .env("PDIST_DATA_DIR", &data)
            .args(["publish", "--json", file.to_str().unwrap()])
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(io::Error::other)?;
        ticket = v[0]["ticket"].as_str().unwrap_or_default().to_string();
    }
    if let Some(rate) = &o.rate {
        lab.net.shape_to(4, rate)?;
    }
    let out = root.join("out.bin");
    let fetcher_data = root.join("fetcher");
    let h4 = lab.ns(4);
    let curl = || -> io::Result<f64> {
        let _ = fs::remove_file(&out);
        let t = Instant::now();
        let ok = Command::new("ip")
            .args([
                "netns",
                "exec",
                &h4,
                "curl",
                "-sf",
                "-o",
                out.to_str().unwrap(),
                "http://10.79.0.1:8080/content.bin",
            ])
            .status()?
            .success();
        let s = t.elapsed().as_secs_f64();
        if !ok || fs::metadata(&out)?.len() != o.size {
            return Err(io::Error::other("curl failed"));
        }
        Ok(s)
    };
    let fetch = |peers: &[&str]| -> io::Result<(f64, u64)> {
        let _ = fs::remove_file(&out);
        let _ = fs::remove_dir_all(&fetcher_data);
        let mut args = vec![
            "netns",
            "exec",
            &h4,
            pdist.to_str().unwrap(),
            "fetch",
            &ticket,
            "-o",
            out.to_str().unwrap(),
            "--no-mdns",
            "--json",
        ];
        for p in peers {
            args.extend_from_slice(&["--peer", p]);
        }
        let t = Instant::now();
        let r = Command::new("ip")
            .args(&args)
            .env("PDIST_DATA_DIR", &fetcher_data)
            .output()?;
        let s = t.elapsed().as_secs_f64();
        if !r.status.success() || fs::metadata(&out)?.len() != o.size {
            return Err(io::Error::other(format!(
                "pdist fetch failed: {}",
                String::from_utf8_lossy(&r.stderr)
            )));
        }
        let text = String::from_utf8_lossy(&r.stdout);
        let done: serde_json::Value =
            serde_json::from_str(text.lines().last().unwrap_or("{}")).map_err(io::Error::other)?;
        Ok((s, done["peak_rss_bytes"].as_u64().unwrap_or(0)))
    };
    let (mut tc, mut t1, mut t3, mut rss) = (Vec::new(), Vec::new(), Vec::new(), 0u64);
    for i in 0..o.runs {
        tc.push(curl()?);
        let (s, r) = fetch(&["10.79.0.1:7461"])?;
        t1.push(s);
        rss = rss.max(r);
        let (s, r) = fetch(&["10.79.0.1:7461", "10.79.0.2:7461", "10.79.0.3:7461"])?;
        t3.push(s);
        rss = rss.max(r);
        eprintln!(
            "run {}: curl {:.2} s, pdist 1 peer {:.2} s, 3 peers {:.2} s",
            i + 1,
            tc[i],
            t1[i],
            t3[i]
        );
    }
    let mb = o.size as f64 / 1e6;
    let (c, p1, p3) = (median(tc), median(t1), median(t3));
    println!(
        "fetch-vs-curl: {} MB, link {}, medians of {} runs",
        mb as u64,
        o.rate.as_deref().unwrap_or("unshaped veth"),
        o.runs
    );
    println!("  curl from nginx       {c:6.2} s  {:7.0} MB/s", mb / c);
    println!(
        "  pdist fetch, 1 peer   {p1:6.2} s  {:7.0} MB/s  {:.2}x curl (bar {BAR}x)",
        mb / p1,
        c / p1
    );
    println!(
        "  pdist fetch, 3 peers  {p3:6.2} s  {:7.0} MB/s  {:.2}x curl",
        mb / p3,
        c / p3
    );
    println!(
        "  pdist fetch peak RSS  {:.1} MiB",
        rss as f64 / (1 << 20) as f64
    );
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("fetch-vs-curl: {e}");
        std::process::exit(1);
    }
}
