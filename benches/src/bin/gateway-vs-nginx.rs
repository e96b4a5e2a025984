//! `gateway-vs-nginx [--size 1G] [--runs 3] [--small 100] [--offload 64M] [--wan 100mbit]
//! [--rate RATE]` (root): `pdist gateway` side by side with nginx, in one run, on hosts in network namespaces.
//!
//! - **Hit**: a `--size` file already cached, fetched with curl through the gateway, against
//!   curl fetching it from nginx directly (the origin, `sendfile`). The bar (issue 5): 0.8x.
//! - **Small objects**: `--small` objects of 10 KiB, cached, fetched by wrk at 64 connections
//!   through the gateway, against nginx as a caching proxy (`proxy_cache`) on the same host.
//! - **Offload**: the origin's uplink shaped to `--wan` (tbf); a client of gateway A fetches an
//!   `--offload` file, then a client of gateway B (same group, other host) fetches it: B takes
//!   it from A over the LAN. Prints the origin's bytes over the file's size and both times.
//!
//! Hosts: h1 the origin (nginx), h2 gateway A and the nginx caching proxy, h3 gateway B, h4 the
//! clients. Clients write to `/dev/null`, so both sides pay only for serving. `--rate` shapes
//! the clients' link (tbf, e.g. `1gbit`); without it the links are unshaped veth pairs. Everything is
//! removed at the end, also on failure. Needs nginx, curl and wrk; `pdist` is found beside this
//! program or at `$PDIST_BIN`.

use std::process::Command;
use std::time::Instant;
use std::{fs, io};

use fixtures::nginx::Nginx;
use pdist_benches::args::Args;
use pdist_benches::lab::{Lab, median, pdist_bin, wait_until};

const BAR: f64 = 0.8;
const NET: &str = "10.76.0";
const SECRET: &str = "6a7e3a7ab1e5ec7e0123456789abcdef";

struct Opts {
    size: u64,
    runs: usize,
    small: usize,
    offload: u64,
    wan: String,
    rate: Option<String>,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        size: 1 << 30,
        runs: 3,
        small: 100,
        offload: 64 << 20,
        wan: "100mbit".into(),
        rate: None,
    };
    let mut args = Args::from_env();
    while let Some(a) = args.flag() {
        match a.as_str() {
            "--size" => o.size = args.size(&a)?,
            "--runs" => o.runs = args.parse(&a)?,
            "--small" => o.small = args.parse(&a)?,
            "--offload" => o.offload = args.size(&a)?,
            "--wan" => o.wan = args.value(&a)?,
            "--rate" => o.rate = Some(args.value(&a)?),
            "-h" | "--help" => {
                println!(
                    "usage: gateway-vs-nginx [--size 1G] [--runs 3] [--small 100] [--offload 64M] [--wan 100mbit] [--rate RATE]   (as root)"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn write_content(path: &std::path::Path, seed: u64, len: u64) -> io::Result<()> {
    io::copy(
        &mut fixtures::ContentGen::new(seed, len),
        &mut io::BufWriter::with_capacity(1 << 20, fs::File::create(path)?),
    )?;
    Ok(())
}

/// The lab with its servers running.
struct Office {
    lab: Lab,
    pdist: std::path::PathBuf,
    _origin: Nginx,
    _proxy: Nginx,
}

impl Office {
    fn start(o: &Opts) -> io::Result<Office> {
        let lab = Lab::new('w', 4, NET)?;
        let root = lab.dir.path().to_path_buf();
        let www = root.join("www");
        fs::create_dir_all(www.join("small"))?;
        eprintln!("writing {} bytes of test content", o.size + o.offload);
        write_content(&www.join("big.bin"), 61, o.size)?;
        write_content(&www.join("offload.bin"), 62, o.offload)?;
        for i in 0..o.small {
            write_content(
                &www.join(format!("small/{i}.bin")),
                1000 + i as u64,
                10 << 10,
            )?;
        }
        let (h1, h2) = (lab.ns(1), lab.ns(2));
        let origin = Nginx::start(
            &["ip", "netns", "exec", &h1],
            &root.join("origin"),
            2,
            &format!("{NET}.1:80"),
            "",
            &format!("root {}; expires 1h;", www.display()),
        )?;
        let cache = root.join("proxy-cache");
        let proxy = Nginx::start(
            &["ip", "netns", "exec", &h2],
            &root.join("proxy"),
            2,
            &format!("{NET}.2:8080"),
            &format!(
                "proxy_cache_path {} levels=1:2 keys_zone=pc:10m max_size=2g inactive=1h use_temp_path=off;",
                cache.display()
            ),
            &format!(
                "location / {{ proxy_pass http://{NET}.1; proxy_cache pc; proxy_http_version 1.1; \
                 proxy_set_header Connection \"\"; }}"
            ),
        )?;
        let pdist = pdist_bin()?;
        for (host, name) in [(2, "a"), (3, "b")] {
            let data = root.join(format!("gw-{name}"));
            let veth = lab.net.veth(host);
            let allow = format!("{NET}.0/24");
            lab.spawn(
                host,
                &[
                    pdist.to_str().unwrap(),
                    "gateway",
                    "--listen",
                    "0.0.0.0:7480",
                    "--allow",
                    &allow,
                    "--rate",
                    "0",
                    "--peer-listen",
                    "0.0.0.0:7461",
                    "--secret",
                    SECRET,
                    "--interface",
                    &veth,
                    "--name",
                    name,
                ],
                &[("PDIST_DATA_DIR", &data)],
            )?;
        }
        let office = Office {
            lab,
            pdist,
            _origin: origin,
            _proxy: proxy,
        };
        for g in ["a", "b"] {
            wait_until("the gateways to find each other", || {
                office.status(g)["peers_alive"].as_u64() == Some(1)
            })
            .map_err(|e| io::Error::other(format!("{e}\n{}", office.lab.logs())))?;
        }
        Ok(office)
    }

    /// Gateway `g`'s status.
    fn status(&self, g: &str) -> serde_json::Value {
        Command::new(&self.pdist)
            .env(
                "PDIST_DATA_DIR",
                self.lab.dir.path().join(format!("gw-{g}")),
            )
            .args(["status", "--json"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or_default()
    }

    /// Waits until gateway `g` has kept what it fetched.
    fn settled(&self, g: &str) -> io::Result<()> {
        wait_until("the gateway to keep its download", || {
            self.status(g)["gateway"]["keeping"] == 0
        })
    }

    /// curl on h4 (through `proxy` if given) into /dev/null; returns seconds and the
    /// response headers.
    fn curl(&self, proxy: Option<&str>, path: &str, want: u64) -> io::Result<(f64, String)> {
        let mut args = vec!["curl", "-sS", "-f", "-o", "/dev/null", "-D", "-"];
        if let Some(p) = proxy {
            args.extend(["-x", p]);
        }
        let url = format!("http://{NET}.1{path}");
        args.extend(["-w", "%{size_download}\n", &url]);
        let t = Instant::now();
        let out = self.lab.on(4, &args).env_remove("no_proxy").output()?;
        let s = t.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let got = text
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<u64>().ok());
        if !out.status.success() || got != Some(want) {
            return Err(io::Error::other(format!(
                "curl {url}: {}{text}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok((s, text.to_ascii_lowercase()))
    }

    /// wrk on h4 at 64 connections for `secs` against `base`, cycling through the small
    /// objects in absolute form (a proxy request); returns requests per second.
    fn wrk(&self, base: &str, objects: usize, secs: u32) -> io::Result<f64> {
        let script = self.lab.dir.path().join("cycle.lua");
        fs::write(
            &script,
            format!(
                "local n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(\"GET\", \
                 string.format(\"http://{NET}.1/small/%d.bin\", n % {objects}))\nend\n"
            ),
        )?;
        let out = self
            .lab
            .on(
                4,
                &[
                    "wrk",
                    "-t2",
                    "-c64",
                    &format!("-d{secs}s"),
                    "-s",
                    script.to_str().unwrap(),
                    base,
                ],
            )
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() || text.contains("Non-2xx") || text.contains("Socket errors") {
            return Err(io::Error::other(format!("wrk against {base}:\n{text}")));
        }
        text.lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("no rate in wrk's output:\n{text}")))
    }
}

fn run() -> io::Result<()> {
    let o = parse_args().map_err(io::Error::other)?;
    let office = Office::start(&o)?;
    if let Some(rate) = &o.rate {
        office.lab.net.shape_to(4, rate)?;
    }
    let (gw_a, gw_b, proxy) = (
        format!("http://{NET}.2:7480"),
        format!("http://{NET}.3:7480"),
        format!("http://{NET}.2:8080"),
    );
    let mb = o.size as f64 / 1e6;

    // 1. A cached file through the gateway against nginx sending it from its disk.
    eprintln!("hit: filling the gateway's cache");
    office.curl(Some(&gw_a), "/big.bin", o.size)?;
    office.settled("a")?;
    let (mut direct, mut hit) = (Vec::new(), Vec::new());
    for i in 0..o.runs {
        direct.push(office.curl(None, "/big.bin", o.size)?.0);
        let (s, head) = office.curl(Some(&gw_a), "/big.bin", o.size)?;
        if !head.contains("cache-status: pdist; hit") {
            return Err(io::Error::other(format!("not a hit:\n{head}")));
        }
        hit.push(s);
        eprintln!(
            "run {}: nginx {:.2} s, gateway hit {:.2} s",
            i + 1,
            direct[i],
            hit[i]
        );
    }
    let (d, h) = (median(direct), median(hit));

    // 2. Small objects at 64 connections: the gateway against nginx's proxy_cache.
    eprintln!("small objects: warming both caches");
    office.wrk(&gw_a, o.small, 1)?;
    office.wrk(&proxy, o.small, 1)?;
    office.settled("a")?;
    let (mut rg, mut rn) = (Vec::new(), Vec::new());
    for i in 0..o.runs {
        rn.push(office.wrk(&proxy, o.small, 5)?);
        rg.push(office.wrk(&gw_a, o.small, 5)?);
        eprintln!(
            "run {}: nginx proxy_cache {:.0} req/s, gateway {:.0} req/s",
            i + 1,
            rn[i],
            rg[i]
        );
    }
    let (qn, qg) = (median(rn), median(rg));

    // 3. Offload: the origin behind a WAN link; B takes from A what A's client fetched.
    office.lab.net.shape_from(1, &o.wan)?;
    let before = office.status("a")["gateway"]["bytes_origin"]
        .as_u64()
        .unwrap_or(0);
    let (t_a, _) = office.curl(Some(&gw_a), "/offload.bin", o.offload)?;
    office.settled("a")?;
    let (t_b, head) = office.curl(Some(&gw_b), "/offload.bin", o.offload)?;
    let from_origin = office.status("a")["gateway"]["bytes_origin"]
        .as_u64()
        .unwrap_or(0)
        - before
        + office.status("b")["gateway"]["bytes_origin"]
            .as_u64()
            .unwrap_or(0);
    let peers = office.status("b")["gateway"]["bytes_peers"]
        .as_u64()
        .unwrap_or(0);

    println!(
        "gateway-vs-nginx: medians of {} runs, clients' link {}",
        o.runs,
        o.rate.as_deref().unwrap_or("unshaped veth")
    );
    println!("  {} MB cached file, curl to /dev/null:", mb as u64);
    println!(
        "    from nginx directly      {d:6.2} s  {:6.0} MB/s",
        mb / d
    );
    println!(
        "    through pdist gateway    {h:6.2} s  {:6.0} MB/s  {:.2}x nginx (bar {BAR}x)",
        mb / h,
        d / h
    );
    println!("  {} cached 10 KiB objects, wrk -c64:", o.small);
    println!("    nginx proxy_cache        {qn:8.0} req/s");
    println!(
        "    pdist gateway            {qg:8.0} req/s  {:.2}x nginx",
        qg / qn
    );
    println!(
        "  offload, {} MB behind a {} origin link, gateway B after gateway A:",
        o.offload / 1_000_000,
        o.wan
    );
    println!("    client of A (origin)     {t_a:6.2} s");
    println!(
        "    client of B (from A)     {t_b:6.2} s  {:.1}x faster; {} MB from peers",
        t_a / t_b,
        peers / 1_000_000
    );
    println!(
        "    origin bytes / file size {:.3} (without pdist: 2.000){}",
        from_origin as f64 / o.offload as f64,
        if head.contains("peers=") {
            ""
        } else {
            "  (B did not use its peer!)"
        }
    );
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("gateway-vs-nginx: {e}");
        std::process::exit(1);
    }
}
