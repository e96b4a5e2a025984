//! Runs the `pdist` binary as a user would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fixtures::vectors as vec;

struct TestDir(tempfile::TempDir);

impl TestDir {
    fn new() -> Self {
        TestDir(tempfile::tempdir().expect("temp dir"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

fn pdist() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pdist"));
    c.env_remove("PDIST_SECRET")
        .env_remove("PDIST_JSON")
        .env_remove("PDIST_FORMAT");
    c
}

fn run(args: &[&str]) -> Output {
    pdist().args(args).output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn hash_prints_a_ticket_and_a_summary() {
    let dir = TestDir::new();
    let f = dir.write("a.bin", &fixtures::content(1, 3 * 65_536 + 5));
    let out = ok(run(&["hash", s(&f)]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("pd1") && lines[0].len() == 58, "{out}");
    assert!(
        lines[1].starts_with("196613 bytes, 1 segments, 4 blocks, "),
        "{out}"
    );
    assert!(lines[1].ends_with("MB/s"), "{out}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(run(&["hash", s(&f), "--json"]))).unwrap();
    assert_eq!(json["ticket"], lines[0]);
    assert_eq!(json["size"], 196_613);
    assert_eq!(json["blocks"], 4);
}

#[test]
fn secret_from_flag_or_environment_changes_the_ticket() {
    let dir = TestDir::new();
    let f = dir.write("a.bin", b"hello");
    let open = ok(run(&["hash", s(&f)]));
    let flag = ok(run(&["--secret", "00ff", "hash", s(&f)]));
    let env = ok(pdist()
        .args(["hash", s(&f)])
        .env("PDIST_SECRET", "00ff")
        .output()
        .unwrap());
    let first = |o: &str| o.lines().next().unwrap().to_string();
    assert_ne!(first(&open), first(&flag));
    assert_eq!(first(&flag), first(&env));
    let bad = run(&["hash", s(&f), "--secret", "xyz"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--secret must be hex"));
}

#[test]
fn group_secrets_are_made_by_pdist_and_weak_ones_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new();
    let f = dir.write("a.bin", b"hello");
    let data = dir.path("data");
    let key = dir.path("office.secret");

    let printed = ok(run(&["secret", "new"]));
    assert_eq!(printed.trim().len(), 64, "{printed}");
    assert!(printed.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(printed, ok(run(&["secret", "new"])));

    ok(run(&["secret", "new", "-o", s(&key)]));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written = std::fs::read_to_string(&key).unwrap();
    let again = run(&["secret", "new", "-o", s(&key)]);
    assert_eq!(
        again.status.code(),
        Some(74),
        "an existing file is never overwritten"
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), written);

    let publish = |secret: &[&str]| {
        let mut args = secret.to_vec();
        args.extend(["--data-dir", s(&data), "publish", s(&f)]);
        run(&args)
    };
    ok(publish(&["--secret-file", s(&key)]));
    for weak in ["00ff", &"0ff1ce".repeat(8)] {
        let out = publish(&["--secret", weak]);
        assert_eq!(out.status.code(), Some(2), "{weak}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("pdist secret new"), "{err}");
    }
    // Hashing as a BranchCache server does takes its server secret, whatever it is.
    ok(run(&["--secret", "00ff", "hash", s(&f)]));
}

#[test]
fn native_output_inspects_to_the_same_ticket() {
    let dir = TestDir::new();
    let f = dir.write("a.bin", &fixtures::content(2, 200_000));
    let ci = dir.path("a.pdci");
    let out = ok(run(&["hash", s(&f), "--format", "native", "-o", s(&ci)]));
    let ticket = out.lines().next().unwrap();
    let text = ok(run(&["inspect", s(&ci)]));
    assert!(text.contains(ticket), "{text}");
    assert!(
        text.contains("content length            200000 bytes"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(run(&["inspect", s(&ci), "--json", "--blocks"]))).unwrap();
    assert_eq!(json["ticket"], ticket);
    assert_eq!(
        json["segments"][0]["block_hashes"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn content_information_goes_to_stdout_and_the_summary_to_stderr() {
    let dir = TestDir::new();
    let f = dir.write("a.bin", &fixtures::content(3, 70_000));
    let out = pdist()
        .args(["hash", s(&f), "--format", "pccrc-v1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(&out.stdout[..2], &[0x00, 0x01]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("70000 bytes"));
    // And from standard input.
    let mut child = pdist()
        .args(["inspect", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let text = ok(child.wait_with_output().unwrap());
    assert!(text.contains("MS-PCCRC content information V1"), "{text}");
}

#[test]
fn pccrc_v1_of_the_iis_image_is_what_iis_sends() {
    let Some(png) = fixtures::iis85_png() else {
        return;
    };
    let dir = TestDir::new();
    let f = dir.write("iis-85.png", &png);
    let out = dir.path("v1.bin");
    ok(run(&[
        "hash",
        s(&f),
        "--format",
        "pccrc-v1",
        "--secret",
        vec::SERVER_SECRET,
        "-o",
        s(&out),
    ]));
    assert_eq!(
        hex::encode(std::fs::read(&out).unwrap()),
        vec::V1_CONTENT_INFO
    );
    let text = ok(run(&["inspect", s(&out), "--secret", vec::SERVER_SECRET]));
    assert!(text.contains(vec::V1_HOHODK), "{text}");
    assert!(text.contains("every Kp matches"), "{text}");
    let wrong = run(&["inspect", s(&out), "--secret", "00"]);
    assert_eq!(wrong.status.code(), Some(65));
}

#[test]
fn ranges_in_both_pccrc_versions() {
    let dir = TestDir::new();
    let f = dir.write("a.bin", &fixtures::content(4, 500_000));
    for format in ["pccrc-v1", "pccrc-v2"] {
        let out = dir.path(format);
        ok(run(&[
            "hash",
            s(&f),
            "--format",
            format,
            "--range",
            "1000-199999",
            "-o",
            s(&out),
        ]));
        let json: serde_json::Value =
            serde_json::from_str(&ok(run(&["inspect", s(&out), "--json"]))).unwrap();
        assert_eq!(
            json["range"],
            serde_json::json!([1000, 200_000]),
            "{format}"
        );
    }
    let bad = run(&["hash", s(&f), "--format", "pccrc-v1", "--range", "0-999999"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("range"));
}

#[test]
fn malformed_input_gets_one_clear_line_and_a_data_error() {
    let dir = TestDir::new();
    let f = dir.write("a.bin", &fixtures::content(5, 100_000));
    let ci = dir.path("a.pdci");
    ok(run(&["hash", s(&f), "--format", "native", "-o", s(&ci)]));
    let good = std::fs::read(&ci).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("garbage", b"hello world".to_vec()),
        ("truncated", good[..good.len() - 7].to_vec()),
        ("trailing", [good.clone(), vec![0]].concat()),
        ("flipped", {
            let mut b = good.clone();
            b[100] ^= 0x40;
            b
        }),
        (
            "v1 truncated",
            vec::bytes(vec::V1_CONTENT_INFO)[..100].to_vec(),
        ),
        ("v2 bad algo", {
            let mut b = vec::bytes(vec::V2_CONTENT_INFO);
            b[2] = 0x01;
            b
        }),
    ];
    for (name, bytes) in cases {
        let p = dir.write("bad", &bytes);
        let out = run(&["inspect", s(&p)]);
        assert_eq!(out.status.code(), Some(65), "{name}: {out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.starts_with("pdist: "), "{name}: {err}");
        assert!(err.contains("at byte "), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}");
    }
}

#[test]
fn missing_files_and_directories() {
    let dir = TestDir::new();
    let out = run(&["hash", s(&dir.path("nope"))]);
    assert_eq!(out.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    let out = run(&["inspect", s(dir.0.path())]);
    assert_eq!(out.status.code(), Some(66));
}

#[test]
fn help_on_every_command() {
    for args in [
        &["--help"][..],
        &["hash", "--help"],
        &["inspect", "--help"],
        &["help"],
    ] {
        let text = ok(run(args));
        assert!(text.contains("Usage: pdist"), "{args:?}: {text}");
    }
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_closed_pipe_is_not_a_panic() {
    let dir = TestDir::new();
    let f = dir.write("a.bin", &fixtures::content(6, 3_000_000));
    let mut child = pdist()
        .args(["hash", s(&f)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end before pdist writes its summary (or after: both must be clean).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}
