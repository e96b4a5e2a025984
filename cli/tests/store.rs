//! The store commands run as a user would: publish, ls, rm, verify, against a data directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn pdist(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pdist"))
            .env_remove("PDIST_SECRET")
            .env_remove("PDIST_JSON")
            .env("PDIST_DATA_DIR", self.data())
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.pdist(args);
        assert!(
            out.status.success(),
            "{args:?}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn publish_ls_rm() {
    let env = Env::new();
    let a = env.file("a.bin", &fixtures::content(1, 300_000));
    let b = env.file("b.bin", b"small");
    let out = env.ok(&["publish", s(&a), s(&b)]);
    let hash_a = env.ok(&["hash", s(&a)]);
    let ticket_a = hash_a.lines().next().unwrap();
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with(&format!("{ticket_a}  a.bin  ")),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2);
    // Publishing twice stores once.
    let again = env.ok(&["publish", s(&a)]);
    assert!(again.contains("already in the store"), "{again}");
    let ls = env.json(&["ls", "--json"]);
    assert_eq!(ls.as_array().unwrap().len(), 2);
    let row = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ticket"] == ticket_a)
        .unwrap();
    assert_eq!(row["blocks_present"], 5);
    assert_eq!(row["blocks_total"], 5);
    assert_eq!(row["kind"], "published");
    let text = env.ok(&["ls"]);
    assert!(text.starts_with("TICKET"), "{text}");
    assert!(text.contains("5/5") && text.contains("a.bin"), "{text}");

    assert!(env.ok(&["rm", ticket_a]).contains("removed"));
    assert_eq!(env.json(&["ls", "--json"]).as_array().unwrap().len(), 1);
    let gone = env.pdist(&["rm", ticket_a]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("not in the store"));
    let bad = env.pdist(&["rm", "pd1nope"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(a.exists(), "rm leaves a file published in place alone");
}

#[test]
fn verify_catches_a_changed_file_and_copies_survive_its_loss() {
    let env = Env::new();
    let data = fixtures::content(2, 200_000);
    let a = env.file("a.bin", &data);
    let ticket = env.json(&["publish", s(&a), "--json"])[0]["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(env.ok(&["verify"]).contains("4/4 blocks good"));

    // Change one byte, keep size and time: verify finds the block that no longer matches.
    let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
    let mut changed = data.clone();
    changed[70_000] ^= 1;
    std::fs::write(&a, &changed).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&a)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let out = env.pdist(&["verify", &ticket]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3/4 blocks good, 1 no longer match"),
        "{text}"
    );
    // Restored: verify marks it present again.
    std::fs::write(&a, &data).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&a)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let v = env.json(&["verify", &ticket, "--json"]);
    assert_eq!(
        (
            v[0]["blocks_good"].as_u64(),
            v[0]["blocks_restored"].as_u64()
        ),
        (Some(4), Some(1))
    );

    // Copied content does not need the file any more.
    let c = env.file("c.bin", &fixtures::content(3, 150_000));
    let copied = env.json(&["publish", "--copy", s(&c), "--json"]);
    assert_eq!(copied[0]["copied"], true);
    std::fs::remove_file(&c).unwrap();
    let v = env.json(&["verify", copied[0]["ticket"].as_str().unwrap(), "--json"]);
    assert_eq!(v[0]["blocks_good"], 3);
    let ls = env.ok(&["ls"]);
    assert!(ls.contains("copied, pinned"), "{ls}");
}

#[test]
fn a_second_process_gets_a_clear_error() {
    let env = Env::new();
    let store = engine::store::RocksStore::open(&env.data(), Default::default()).unwrap();
    let out = env.pdist(&["ls"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another pdist process"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    drop(store);
    env.ok(&["ls"]);
}

#[test]
fn cache_size_evicts_least_recently_used_fetched_content() {
    use engine::store::{Origin, RocksStore, SegmentStore};
    let env = Env::new();
    // Two fetched contents of 1 MiB, complete, as a node would have stored them.
    let mut fetched = Vec::new();
    {
        let store = RocksStore::open(&env.data(), Default::default()).unwrap();
        for seed in [10, 11] {
            let data = fixtures::content(seed, 1 << 20);
            let info = engine::content::hash_reader(
                &data[..],
                &engine::ServerSecret::open_group(),
                &Default::default(),
                &mut |_| {},
            )
            .unwrap();
            store
                .put_content(&info, "fetched", Origin::Fetched)
                .unwrap();
            for g in 0..16 {
                let b = info.layout().block_at(g).unwrap();
                let r = info.layout().block_range(b);
                store
                    .put_block(&info.id(), b, &data[r.start as usize..r.end as usize])
                    .unwrap();
            }
            fetched.push(info.id().ticket().to_string());
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
    }
    // Copying 5 MiB under a 6 MiB cap makes room by evicting the older fetched content only.
    let c = env.file("c.bin", &fixtures::content(12, 5 << 20));
    env.ok(&["--cache-size", "6M", "publish", "--copy", s(&c)]);
    let ls = env.json(&["ls", "--json"]);
    let tickets: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ticket"].as_str().unwrap())
        .collect();
    assert_eq!(tickets.len(), 2, "{ls}");
    assert!(
        !tickets.contains(&fetched[0].as_str()),
        "the least recently used went"
    );
    assert!(tickets.contains(&fetched[1].as_str()));
    let bad = env.pdist(&["--cache-size", "12X", "ls"]);
    assert_eq!(bad.status.code(), Some(2));
}
