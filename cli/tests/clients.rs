//! Real clients through `pdist gateway`: curl and wget (full, ranged, conditional) and pip
//! installing a package from a simple index, all against nginx as the origin on loopback.
//! nginx's access log says what the origin sent; the gateway's `Cache-Status` and `Pdist-Bytes`
//! say where each answer came from.
//!
//! The tools are installed by `./test.sh` (see `.ci/env.sh`); where one is missing the test
//! says so and skips, except under CI, where it fails.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{NodeProc, poll};
use fixtures::nginx::{Nginx, free_port};

/// Skips (or fails under CI) unless every tool runs.
fn have(tools: &[(&str, &[&str])]) -> bool {
    for (t, args) in tools {
        let ok = Command::new(t)
            .args(*args)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "{t} is missing: .ci/env.sh installs it"
            );
            eprintln!("SKIPPED: {t} is not installed (./test.sh installs it)");
            return false;
        }
    }
    true
}

/// A client command with no proxy settings from the environment.
fn client(prog: &str) -> Command {
    let mut c = Command::new(prog);
    for v in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "no_proxy",
        "NO_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        c.env_remove(v);
    }
    c
}

fn checked(mut c: Command) -> Output {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?}: {:?}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `curl` through the proxy; returns (status line code, response headers, body).
fn curl(proxy: &str, url: &str, extra: &[&str], dir: &Path) -> (u16, String, Vec<u8>) {
    let head = dir.join("curl.head");
    let body = dir.join("curl.body");
    let _ = std::fs::remove_file(&body);
    let mut c = client("curl");
    c.args(["-sS", "-x", proxy, "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(extra)
        .arg(url);
    let o = checked(c);
    let code = String::from_utf8(o.stdout).unwrap().trim().parse().unwrap();
    (
        code,
        std::fs::read_to_string(&head).unwrap().to_ascii_lowercase(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

/// Waits until the gateway has stored and recorded what it fetched.
fn settled(gw: &NodeProc) {
    poll(
        Duration::from_secs(20),
        "the gateway to keep its downloads",
        || (gw.status()["gateway"]["keeping"] == 0).then_some(()),
    );
}

fn start(dir: &Path, www: &Path) -> (Nginx, String, NodeProc, String) {
    let port = free_port().unwrap();
    let origin = Nginx::start(
        &[],
        &dir.join("nginx"),
        1,
        &format!("127.0.0.1:{port}"),
        "",
        &format!("root {}; expires 1h;", www.display()),
    )
    .unwrap();
    let gw = NodeProc::start_cmd(
        &[],
        &dir.join("gw"),
        "gateway",
        &[
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
            "--no-mdns",
        ],
    );
    let proxy = format!("http://{}", gw.gateway());
    (origin, format!("http://127.0.0.1:{port}"), gw, proxy)
}

#[test]
fn curl_and_wget() {
    if !have(&[
        ("nginx", &["-v"]),
        ("curl", &["--version"]),
        ("wget", &["--version"]),
    ]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("files")).unwrap();
    let data = fixtures::content(51, (3 << 20) + 12_345);
    std::fs::write(www.join("files/big.bin"), &data).unwrap();
    let (origin, base, gw, proxy) = start(dir.path(), &www);
    let url = format!("{base}/files/big.bin");
    let etag = dir.path().join("etag");
    // The cache has a size by default, which the start-up log states.
    poll(Duration::from_secs(5), "the cache size in the log", || {
        gw.log().contains("cache: at most").then_some(())
    });
    assert!(gw.log().contains("half the filesystem"), "{}", gw.log());

    // curl: a miss, then a hit; the origin sent the body once.
    let (code, head, body) = curl(
        &proxy,
        &url,
        &["--etag-save", etag.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!((code, body.len()), (200, data.len()));
    assert!(body == data && head.contains("fwd=uri-miss"), "{head}");
    let from_origin = format!("pdist-bytes: store=0, peers=0, origin={}", data.len());
    assert!(head.contains(&from_origin), "{head}");
    settled(&gw);
    let (code, head, body) = curl(&proxy, &url, &[], dir.path());
    assert_eq!(code, 200);
    assert!(body == data, "hit has the same bytes");
    assert!(head.contains("cache-status: pdist; hit"), "{head}");
    assert!(head.contains(&format!("store={}", data.len())), "{head}");
    // Ranges from the stored blocks: one, then several.
    let (code, head, body) = curl(&proxy, &url, &["-r", "100000-1199999"], dir.path());
    assert_eq!(code, 206, "{head}");
    assert!(body == data[100_000..1_200_000], "range bytes");
    assert!(
        head.contains("content-range: bytes 100000-1199999/"),
        "{head}"
    );
    let (code, head, body) = curl(&proxy, &url, &["-r", "0-9,3000000-3000009"], dir.path());
    assert_eq!(code, 206);
    assert!(
        head.contains("content-type: multipart/byteranges"),
        "{head}"
    );
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("content-range: bytes 0-9/") || text.contains("Content-Range: bytes 0-9/")
    );
    assert!(
        body.windows(10).any(|w| w == &data[3_000_000..3_000_010]),
        "second part's bytes"
    );
    // Conditional: the ETag curl saved, and a date after Last-Modified.
    let (code, _, body) = curl(
        &proxy,
        &url,
        &["--etag-compare", etag.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!((code, body.len()), (304, 0));
    // `-z FILE`: If-Modified-Since the file's time, which is after the origin's Last-Modified.
    let (code, _, _) = curl(&proxy, &url, &["-z", etag.to_str().unwrap()], dir.path());
    assert_eq!(code, 304);
    let (code, head, _) = curl(&proxy, &url, &["-I"], dir.path());
    assert_eq!(code, 200);
    assert!(head.contains("cache-status: pdist; hit"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", data.len())),
        "{head}"
    );

    // wget: whole, continued (a Range request), and timestamping (If-Modified-Since).
    let w = dir.path().join("w");
    std::fs::create_dir_all(&w).unwrap();
    let wget = |args: &[&str]| {
        let mut c = client("wget");
        c.current_dir(&w)
            .args(["-e", "use_proxy=on", "-e", &format!("http_proxy={proxy}")])
            .args(args)
            .arg(&url);
        String::from_utf8(checked(c).stderr).unwrap()
    };
    wget(&["-O", "whole.bin"]);
    assert!(std::fs::read(w.join("whole.bin")).unwrap() == data);
    std::fs::write(w.join("big.bin"), &data[..1_000_000]).unwrap();
    let log = wget(&["-c"]);
    assert!(log.contains("206 Partial Content"), "{log}");
    assert!(std::fs::read(w.join("big.bin")).unwrap() == data);
    let log = wget(&["-N"]);
    assert!(log.contains("304"), "{log}");

    // Everything after the first request came from the gateway.
    let sent: Vec<_> = origin
        .log()
        .into_iter()
        .filter(|l| l.uri == "/files/big.bin")
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].status, sent[0].bytes), (200, data.len() as u64));
    let g = &gw.status()["gateway"];
    assert_eq!(g["bytes_origin"], data.len() as u64, "{g}");
    // From the store: the hit, the two ranged answers, wget's whole file and its remainder.
    let len = data.len() as u64;
    let ranged = 1_100_000 + 20 + (len - 1_000_000);
    assert_eq!(g["bytes_store"], 2 * len + ranged, "{g}");
}

/// A wheel holding `payload` as package data, built with Python's zipfile, and its SHA-256.
fn build_wheel(dir: &Path, payload: &Path) -> String {
    let script = r#"
import base64, hashlib, sys, zipfile
out, payload = sys.argv[1], open(sys.argv[2], 'rb').read()
files = {
    'pdistdemo/__init__.py': b'import pathlib\nDATA = pathlib.Path(__file__).with_name("data.bin")\n',
    'pdistdemo/data.bin': payload,
    'pdistdemo-1.0.dist-info/METADATA': b'Metadata-Version: 2.1\nName: pdistdemo\nVersion: 1.0\n',
    'pdistdemo-1.0.dist-info/WHEEL': b'Wheel-Version: 1.0\nGenerator: pdist-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n',
}
def rec(name, data):
    h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
    return f'{name},sha256={h},{len(data)}\n'
record = ''.join(rec(n, d) for n, d in files.items()) + 'pdistdemo-1.0.dist-info/RECORD,,\n'
with zipfile.ZipFile(out, 'w', zipfile.ZIP_STORED) as z:
    for n, d in files.items():
        z.writestr(n, d)
    z.writestr('pdistdemo-1.0.dist-info/RECORD', record)
print(hashlib.sha256(open(out, 'rb').read()).hexdigest())
"#;
    let wheel = dir.join("pdistdemo-1.0-py3-none-any.whl");
    let o = checked({
        let mut c = Command::new("python3");
        c.arg("-c").arg(script).arg(&wheel).arg(payload);
        c
    });
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn pip_installs_through_the_gateway() {
    if !have(&[("nginx", &["-v"]), ("python3", &["-m", "pip", "--version"])]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    for d in ["packages", "simple/pdistdemo"] {
        std::fs::create_dir_all(www.join(d)).unwrap();
    }
    let data = fixtures::content(52, 2 << 20);
    let payload = dir.path().join("payload.bin");
    std::fs::write(&payload, &data).unwrap();
    let sha = build_wheel(&www.join("packages"), &payload);
    let whl = "pdistdemo-1.0-py3-none-any.whl";
    std::fs::write(
        www.join("simple/index.html"),
        "<!DOCTYPE html><html><body><a href=\"pdistdemo/\">pdistdemo</a></body></html>\n",
    )
    .unwrap();
    std::fs::write(
        www.join("simple/pdistdemo/index.html"),
        format!(
            "<!DOCTYPE html><html><body><a href=\"/packages/{whl}#sha256={sha}\">{whl}</a></body></html>\n"
        ),
    )
    .unwrap();
    let (origin, base, gw, proxy) = start(dir.path(), &www);
    let install = |target: &Path| {
        let mut c = client("python3");
        c.args(["-m", "pip", "install", "--no-cache-dir"])
            .args(["--disable-pip-version-check", "--no-input", "--quiet"])
            .args(["--index-url", &format!("{base}/simple/"), "--proxy", &proxy])
            .arg("--target")
            .arg(target)
            .arg("pdistdemo")
            .env("PIP_CONFIG_FILE", "/dev/null")
            // Debian's pip refuses system installs (PEP 668); this one goes to --target.
            .env("PIP_BREAK_SYSTEM_PACKAGES", "1");
        checked(c);
        assert!(
            std::fs::read(target.join("pdistdemo/data.bin")).unwrap() == data,
            "installed package data"
        );
    };
    install(&dir.path().join("t1"));
    settled(&gw);
    install(&dir.path().join("t2"));
    let size = std::fs::metadata(www.join("packages").join(whl))
        .unwrap()
        .len();
    let wheels: Vec<_> = origin
        .log()
        .into_iter()
        .filter(|l| l.uri.ends_with(".whl"))
        .collect();
    assert_eq!(wheels.len(), 1, "the wheel crossed once: {wheels:?}");
    assert_eq!((wheels[0].status, wheels[0].bytes), (200, size));
    let g = &gw.status()["gateway"];
    assert!(g["bytes_store"].as_u64().unwrap() >= size, "{g}");
    assert!(g["hits"].as_u64().unwrap() >= 1, "{g}");
}
