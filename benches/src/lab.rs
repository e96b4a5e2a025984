//! What the side-by-side benchmark programs share: hosts in network namespaces with the
//! processes started on them, all removed on drop (also on failure), finding the `pdist` binary,
//! waiting for a condition, and medians.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use std::{env, fs, io};

/// The hosts, the processes started on them and the scratch files of one run; all removed on
/// drop (processes first, then the namespaces, then the files).
#[derive(Debug)]
pub struct Lab {
    /// Processes started, with their hosts.
    children: Mutex<Vec<(usize, Child)>>,
    /// The hosts on their bridge.
    pub net: fixtures::netns::Bridge,
    /// Scratch files, on a disk (`/var/tmp`), not in memory.
    pub dir: tempfile::TempDir,
}

impl Lab {
    /// `hosts` hosts at `{subnet}.{i}`; `kind` keeps the names apart from other users'.
    pub fn new(kind: char, hosts: usize, subnet: &str) -> io::Result<Lab> {
        Ok(Lab {
            children: Mutex::default(),
            net: fixtures::netns::Bridge::new(kind, hosts, subnet)?,
            dir: tempfile::Builder::new()
                .prefix("pdist-bench-")
                .tempdir_in("/var/tmp")?,
        })
    }

    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        self.net.ns(i)
    }

    /// `cmd` to run on host `i`.
    pub fn on(&self, i: usize, cmd: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(i)]).args(cmd);
        c
    }

    /// Starts `cmd` on `host` with `env`, its stderr logged to a file in the scratch folder;
    /// it is stopped when the lab is dropped.
    pub fn spawn(&self, host: usize, cmd: &[&str], env: &[(&str, &Path)]) -> io::Result<()> {
        let mut c = self.on(host, cmd);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut children = self.children.lock().expect("children lock");
        let log = fs::File::create(
            self.dir
                .path()
                .join(format!("h{host}-{}.log", children.len())),
        )?;
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        children.push((host, c.spawn()?));
        Ok(())
    }

    /// Stops every process started (SIGTERM, then waits).
    pub fn stop_all(&self) {
        let mut children = self.children.lock().expect("children lock");
        for (_, c) in children.iter() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
        }
        for (_, c) in children.iter_mut() {
            let _ = c.wait();
        }
        children.clear();
    }

    /// Kills (SIGKILL, no goodbye) the first process started on `host`.
    pub fn kill_first_on(&self, host: usize) {
        let mut children = self.children.lock().expect("children lock");
        if let Some((_, c)) = children.iter_mut().find(|(h, _)| *h == host) {
            let _ = c.kill();
        }
    }
}

impl Lab {
    /// The logs of the processes started so far (for an error message).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<_> = fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        names.sort();
        for p in names {
            let text = fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<_> = text.lines().rev().take(20).collect();
            out.push_str(&format!("--- {}\n", p.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Labs to remove if the program is interrupted: their namespaces and scratch folders.
static LIVE: Mutex<Vec<(Vec<String>, PathBuf)>> = Mutex::new(Vec::new());

/// On Ctrl-C (or SIGTERM): kills every process in the namespaces of every lab registered here,
/// deletes the namespaces and the scratch folders, and exits with status 130. A lab dropped
/// normally cleans up by itself; this covers the interrupted run.
pub fn clean_up_on_interrupt(lab: &Lab) -> io::Result<()> {
    static HANDLER: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    HANDLER.call_once(|| {
        result = ctrlc::set_handler(|| {
            eprintln!("interrupted: removing the lab");
            let live = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
            for (names, dir) in live {
                for ns in &names {
                    if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                        for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                            let _ = Command::new("kill").args(["-KILL", pid]).status();
                        }
                    }
                }
                for ns in &names {
                    let _ = Command::new("ip").args(["netns", "del", ns]).status();
                }
                let _ = fs::remove_dir_all(&dir);
            }
            // Threads of the program may still write a file or two into a scratch folder while
            // their processes die: remove the folders once more after a moment.
            std::thread::sleep(Duration::from_millis(200));
            for (_, dir) in LIVE.lock().map(|l| l.clone()).unwrap_or_default() {
                let _ = fs::remove_dir_all(&dir);
            }
            std::process::exit(130);
        })
        .map_err(io::Error::other);
    });
    LIVE.lock()
        .expect("live labs lock")
        .push((lab.net.namespaces(), lab.dir.path().to_path_buf()));
    result
}

/// The `pdist` binary: beside this program, or at `$PDIST_BIN`.
pub fn pdist_bin() -> io::Result<PathBuf> {
    if let Some(p) = env::var_os("PDIST_BIN") {
        return Ok(PathBuf::from(p));
    }
    let p = env::current_exe()?.with_file_name("pdist");
    if p.exists() {
        Ok(p)
    } else {
        Err(io::Error::other(format!(
            "{} not found: build it with `cargo build --release -p pdist-cli` or set PDIST_BIN",
            p.display()
        )))
    }
}

/// Polls `f` every 50 ms for up to 20 s.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) -> io::Result<()> {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        if Instant::now() > end {
            return Err(io::Error::other(format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The median of `v` (not empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
