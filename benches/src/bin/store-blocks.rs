//! `store-blocks [--size 1G] [--dir DIR]`: block put and get throughput of the stores, 64 KiB
//! blocks, side by side in one run:
//!
//! * `RocksStore`: metadata in RocksDB, block bytes in one plain file per segment (pdist's
//!   choice), with and without syncing;
//! * RocksDB blob files: the same blocks as values of a column family with `enable_blob_files`
//!   (what pdist would do if it kept bytes in RocksDB), with and without syncing;
//! * `MemStore`, as the ceiling.
//!
//! "Put" includes checking each block against its SHA-256 (pdist's store always does), and so
//! does the blob-file variant's "get"; pdist's store checks each block's XXH3 checksum on the way
//! out. "Get" reads every block back (from the page cache), one at a time; "get runs" reads
//! runs of 16 (`get_blocks`, as the gateway and the peer service do).
//! `--dir` chooses the filesystem (default: the system's temporary directory).

use std::path::PathBuf;
use std::time::Instant;

use engine::content::{ContentInfo, HashOptions, ServerSecret, hash_reader};
use engine::store::{MemStore, Origin, RocksStore, RocksStoreOptions, SegmentStore};

struct Row {
    name: &'static str,
    put_s: f64,
    get_s: f64,
    /// Reading runs of 16 blocks with `get_blocks` (pdist's stores only).
    runs_s: Option<f64>,
}

fn blocks(info: &ContentInfo) -> impl Iterator<Item = engine::content::BlockIdx> + '_ {
    (0..info.layout().block_count()).map(|g| info.layout().block_at(g).unwrap())
}

fn run_store(name: &'static str, store: &dyn SegmentStore, info: &ContentInfo, data: &[u8]) -> Row {
    let id = info.id();
    store.put_content(info, name, Origin::Fetched).unwrap();
    let t = Instant::now();
    for b in blocks(info) {
        let r = info.layout().block_range(b);
        store
            .put_block(&id, b, &data[r.start as usize..r.end as usize])
            .unwrap();
    }
    let put_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut n = 0usize;
    for b in blocks(info) {
        n += store.get_block(&id, b).unwrap().unwrap().len();
    }
    let get_s = t.elapsed().as_secs_f64();
    assert_eq!(n, data.len());
    let t = Instant::now();
    let mut n = 0usize;
    let l = info.layout();
    let mut g = 0;
    while g < l.block_count() {
        let b = l.block_at(g).unwrap();
        let run = (l.blocks_in_segment(b.segment()) - b.index_in_segment()).min(16);
        n += store.get_blocks(&id, b, run).unwrap().unwrap().len();
        g += u64::from(run);
    }
    let runs_s = Some(t.elapsed().as_secs_f64());
    assert_eq!(n, data.len());
    Row {
        name,
        put_s,
        get_s,
        runs_s,
    }
}

fn run_blobdb(
    name: &'static str,
    dir: &std::path::Path,
    sync: bool,
    info: &ContentInfo,
    data: &[u8],
) -> Row {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_enable_blob_files(true);
    opts.set_min_blob_size(0);
    opts.set_blob_file_size(256 << 20);
    let db = rocksdb::DB::open(&opts, dir).unwrap();
    let mut w = rocksdb::WriteOptions::default();
    w.set_sync(sync);
    let key = |g: u64| {
        let mut k = info.id().0.0.to_vec();
        k.extend_from_slice(&g.to_be_bytes());
        k
    };
    let t = Instant::now();
    for b in blocks(info) {
        let r = info.layout().block_range(b);
        let bytes = &data[r.start as usize..r.end as usize];
        info.verify_block(b, bytes).unwrap();
        db.put_opt(key(b.global()), bytes, &w).unwrap();
    }
    db.flush().unwrap();
    let put_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut n = 0usize;
    for b in blocks(info) {
        let bytes = db.get(key(b.global())).unwrap().unwrap();
        info.verify_block(b, &bytes).unwrap();
        n += bytes.len();
    }
    let get_s = t.elapsed().as_secs_f64();
    assert_eq!(n, data.len());
    Row {
        name,
        put_s,
        get_s,
        runs_s: None,
    }
}

fn main() {
    let mut size: u64 = 1 << 30;
    let mut base: Option<PathBuf> = None;
    let usage = |e: &str| -> ! {
        eprintln!("store-blocks: {e}\nusage: store-blocks [--size 1G] [--dir DIR]");
        std::process::exit(2);
    };
    let mut args = pdist_benches::args::Args::from_env();
    while let Some(a) = args.flag() {
        match a.as_str() {
            "--size" => size = args.size(&a).unwrap_or_else(|e| usage(&e)),
            "--dir" => base = Some(PathBuf::from(args.value(&a).unwrap_or_else(|e| usage(&e)))),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let data = fixtures::content(7, size);
    let info = hash_reader(
        &data[..],
        &ServerSecret::open_group(),
        &HashOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let tmp = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    println!(
        "store-blocks: {size} bytes in 64 KiB blocks, in {}",
        tmp.path().display()
    );
    let mut rows = Vec::new();
    for (name, sync) in [
        ("files (pdist), synced", true),
        ("files (pdist), unsynced", false),
    ] {
        let dir = tmp.path().join(name.replace([' ', ',', '(', ')'], ""));
        let store = RocksStore::open(&dir, RocksStoreOptions { sync }).unwrap();
        rows.push(run_store(name, &store, &info, &data));
    }
    for (name, sync) in [
        ("RocksDB blob files, synced", true),
        ("RocksDB blob files, unsynced", false),
    ] {
        let dir = tmp.path().join(name.replace([' ', ',', '(', ')'], ""));
        rows.push(run_blobdb(name, &dir, sync, &info, &data));
    }
    rows.push(run_store("MemStore", &MemStore::new(), &info, &data));
    println!(
        "{:<32}{:>12}{:>12}{:>16}",
        "store", "put MB/s", "get MB/s", "get runs MB/s"
    );
    let mb = |s: f64| size as f64 / 1e6 / s;
    for r in rows {
        println!(
            "{:<32}{:>12.0}{:>12.0}{:>16}",
            r.name,
            mb(r.put_s),
            mb(r.get_s),
            r.runs_s
                .map_or("-".to_string(), |s| format!("{:.0}", mb(s)))
        );
    }
}
