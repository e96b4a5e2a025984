//! `hash-vs-openssl [--size 1G] [--runs 5] [--file PATH] [--check]`: times `pdist hash FILE`
//! and `pdist publish FILE` (in place, into a scratch data directory) against
//! `openssl dgst -sha256 FILE` on the same file, side by side in one run, and prints the ratios
//! of their speeds. The bar (BRIEF.md): pdist hash at least 1.6x openssl.
//!
//! Both read the same file from the page cache (it is read once first) and write their few
//! lines of output to /dev/null; runs alternate between the two tools and the median of each
//! is compared. `pdist` is found beside this program (build both with `cargo build --release`)
//! or at `$PDIST_BIN`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use std::{env, fs, io};

use pdist_benches::args::Args;
use pdist_benches::lab::pdist_bin;

const BAR: f64 = 1.6;

struct Opts {
    size: u64,
    runs: usize,
    file: Option<PathBuf>,
    check: bool,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        size: 1 << 30,
        runs: 5,
        file: None,
        check: false,
    };
    let mut args = Args::from_env();
    while let Some(a) = args.flag() {
        match a.as_str() {
            "--size" => o.size = args.size(&a)?,
            "--runs" => o.runs = args.parse(&a)?,
            "--file" => o.file = Some(PathBuf::from(args.value(&a)?)),
            "--check" => o.check = true,
            "-h" | "--help" => {
                println!("usage: hash-vs-openssl [--size 1G] [--runs 5] [--file PATH] [--check]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn ensure_file(o: &Opts) -> io::Result<PathBuf> {
    if let Some(f) = &o.file {
        return Ok(f.clone());
    }
    let path = env::temp_dir().join(format!("pdist-bench-{}.bin", o.size));
    if fs::metadata(&path).map(|m| m.len()).ok() != Some(o.size) {
        eprintln!(
            "writing {} bytes of test content to {}",
            o.size,
            path.display()
        );
        let tmp = path.with_extension("tmp");
        let mut out = io::BufWriter::with_capacity(1 << 20, fs::File::create(&tmp)?);
        io::copy(&mut fixtures::ContentGen::new(42, o.size), &mut out)?;
        drop(out);
        fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

fn time(cmd: &mut Command) -> io::Result<Duration> {
    let t = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()?;
    let d = t.elapsed();
    if !status.success() {
        return Err(io::Error::other(format!("{cmd:?} failed: {status}")));
    }
    Ok(d)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run(o: &Opts) -> io::Result<bool> {
    let pdist = pdist_bin()?;
    let file = ensure_file(o)?;
    let size = fs::metadata(&file)?.len();
    // Warm the page cache so both tools read from memory.
    io::copy(&mut fs::File::open(&file)?, &mut io::sink())?;
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "hash-vs-openssl: {size} bytes, {} runs each, {cores} cores, {cpu}",
        o.runs
    );
    let data_dir = env::temp_dir().join(format!("pdist-bench-data-{}", std::process::id()));
    let (mut ours, mut theirs, mut publish) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..o.runs {
        theirs.push(time(
            Command::new("openssl").args(["dgst", "-sha256"]).arg(&file),
        )?);
        ours.push(time(Command::new(&pdist).arg("hash").arg(&file))?);
        let mut publish_cmd = Command::new(&pdist);
        publish_cmd
            .arg("publish")
            .arg(&file)
            .arg("--data-dir")
            .arg(&data_dir);
        publish.push(time(&mut publish_cmd)?);
    }
    let _ = fs::remove_dir_all(&data_dir);
    let (p, s, pb) = (median(ours), median(theirs), median(publish));
    let gbps = |d: Duration| size as f64 / 1e9 / d.as_secs_f64();
    println!("{:<28}{:>10}{:>10}", "tool", "median s", "GB/s");
    println!(
        "{:<28}{:>10.3}{:>10.2}",
        "openssl dgst -sha256",
        s.as_secs_f64(),
        gbps(s)
    );
    println!(
        "{:<28}{:>10.3}{:>10.2}",
        "pdist hash",
        p.as_secs_f64(),
        gbps(p)
    );
    println!(
        "{:<28}{:>10.3}{:>10.2}",
        "pdist publish (in place)",
        pb.as_secs_f64(),
        gbps(pb)
    );
    println!(
        "ratio (pdist publish speed / openssl speed): {:.2}x",
        s.as_secs_f64() / pb.as_secs_f64()
    );
    let ratio = s.as_secs_f64() / p.as_secs_f64();
    let pass = ratio >= BAR;
    println!(
        "ratio (pdist speed / openssl speed): {ratio:.2}x  (bar {BAR}x: {})",
        if pass { "met" } else { "NOT met" }
    );
    Ok(pass)
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hash-vs-openssl: {e}");
            std::process::exit(2);
        }
    };
    match run(&opts) {
        Ok(pass) => std::process::exit(if opts.check && !pass { 1 } else { 0 }),
        Err(e) => {
            eprintln!("hash-vs-openssl: {e}");
            std::process::exit(1);
        }
    }
}
