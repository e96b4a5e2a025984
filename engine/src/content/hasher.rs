//! Builds [`ContentInfo`] from a `Read`: streaming, in constant memory, on every core.
//!
//! Work is cut into chunks of a whole number of blocks (1 MiB). For a regular file,
//! [`hash_file`] lets every worker read its own chunks with positional reads and hash them; for
//! a stream, [`hash_reader`] reads on the calling thread into a small pool of buffers that
//! workers hash. Either way results are put back in order as they come in, and memory is a few
//! chunks plus the block hashes themselves (32 bytes per 64 KiB block, 1/2048 of the content),
//! whatever the content's size. Plain std threads, scoped to the call: no runtime, nothing left
//! behind.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek};
use std::sync::{Mutex, mpsc};

use super::layout::{BLOCK_SIZE, BLOCKS_PER_SEGMENT, MAX_CONTENT_LEN};
use super::{ContentInfo, Hash, Layout, LayoutError, ServerSecret, VerifyError, sha256};

/// Bytes read and hashed as one unit of work: small enough to stay in a core's L2 cache between
/// the copy out of the page cache and the hash (measured: 1 MiB beats 4 MiB by a few percent).
const CHUNK_BYTES: usize = 1 << 20;

/// Callback with the number of bytes hashed so far (in content order).
pub type Progress<'a> = &'a mut dyn FnMut(u64);

/// How to hash.
#[derive(Debug, Clone)]
pub struct HashOptions {
    /// Hashing threads; 0 (the default) uses every core the process may run on. At most four
    /// per core are used whatever the value.
    pub threads: usize,
    /// Block size in bytes. Default 64 KiB (MS-PCCRC V1); other values are for tests.
    pub block_size: u32,
    /// Blocks per segment. Default 512 (32 MiB segments).
    pub blocks_per_segment: u32,
}

impl Default for HashOptions {
    fn default() -> Self {
        HashOptions {
            threads: 0,
            block_size: BLOCK_SIZE,
            blocks_per_segment: BLOCKS_PER_SEGMENT,
        }
    }
}

impl HashOptions {
    fn thread_count(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        match self.threads {
            0 => cores,
            n => n.min(4 * cores),
        }
    }
}

/// Why hashing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// Reading the content failed.
    #[error("reading the content: {0}")]
    Io(#[from] io::Error),
    /// The content is too large, or the layout parameters are invalid.
    #[error("{0}")]
    Layout(#[from] LayoutError),
    /// MS-PCCRC V2 content information would exceed its size limit.
    #[error(
        "the content needs more than {max} V2 segments, the most one V2 content information holds"
    )]
    TooManySegments {
        /// Most segments allowed.
        max: usize,
    },
    /// Internal inconsistency while assembling (a bug, reported rather than panicking).
    #[error("{0}")]
    Verify(#[from] VerifyError),
}

/// Hashes everything `reader` yields into content information under `secret`.
pub fn hash_reader<R: Read>(
    mut reader: R,
    secret: &ServerSecret,
    opts: &HashOptions,
    progress: Progress<'_>,
) -> Result<ContentInfo, HashError> {
    // Validate the parameters before reading anything.
    Layout::with_params(0, opts.block_size, opts.blocks_per_segment)?;
    let block_size = opts.block_size as usize;
    let chunk_len = chunk_len(block_size);
    let threads = opts.thread_count();
    let mut hashes = Vec::new();
    let total = if threads <= 1 {
        hash_serial(&mut reader, chunk_len, block_size, &mut hashes, progress)?
    } else {
        hash_parallel(
            &mut reader,
            chunk_len,
            block_size,
            threads,
            &mut hashes,
            progress,
        )?
    };
    let layout = Layout::with_params(total, opts.block_size, opts.blocks_per_segment)?;
    Ok(ContentInfo::build(layout, hashes, secret)?)
}

/// Hashes a file. On Unix every worker reads its own chunks with positional reads, so the copy
/// out of the page cache is spread over all cores as well as the hashing (about 40% faster than
/// one reading thread feeding the workers, on 2 cores). The file must not change meanwhile: a
/// change of length is reported as an error. Pipes and devices are read as a stream.
pub fn hash_file(
    file: &std::fs::File,
    secret: &ServerSecret,
    opts: &HashOptions,
    progress: Progress<'_>,
) -> Result<ContentInfo, HashError> {
    // Pipes, devices, and files whose size the kernel reports as 0 (procfs) are streams.
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return hash_reader(file, secret, opts, progress);
    }
    #[cfg(unix)]
    {
        let len = file.metadata()?.len();
        let layout = Layout::with_params(len, opts.block_size, opts.blocks_per_segment)?;
        let block_size = opts.block_size as usize;
        let chunk_len = chunk_len(block_size);
        let threads = opts.thread_count();
        if threads > 1 && len > chunk_len as u64 {
            let hashes =
                positional::hash_chunks(file, len, chunk_len, block_size, threads, progress)?;
            if file.metadata()?.len() != len {
                return Err(changed().into());
            }
            return Ok(ContentInfo::build(layout, hashes, secret)?);
        }
    }
    // The whole file, wherever its cursor was.
    let mut reader = file;
    reader.seek(io::SeekFrom::Start(0))?;
    let info = hash_reader(reader, secret, opts, progress)?;
    if file.metadata()?.len() != info.layout().content_len() {
        return Err(changed().into());
    }
    Ok(info)
}

fn changed() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the file changed while it was being hashed",
    )
}

#[cfg(unix)]
mod positional {
    use std::collections::BTreeMap;
    use std::io;
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;

    use super::{Hash, HashError, Progress, changed, hash_blocks};

    /// Block hashes of `file`'s first `len` bytes: workers claim chunks in order, read them with
    /// `pread` into a buffer of their own and hash them; this thread puts results in order.
    pub(super) fn hash_chunks(
        file: &std::fs::File,
        len: u64,
        chunk_len: usize,
        block_size: usize,
        threads: usize,
        progress: Progress<'_>,
    ) -> Result<Vec<Hash>, HashError> {
        let chunks = len.div_ceil(chunk_len as u64);
        let next = AtomicU64::new(0);
        let (tx, rx) = mpsc::channel::<(u64, io::Result<Vec<Hash>>)>();
        std::thread::scope(|scope| {
            for _ in 0..threads.min(chunks as usize) {
                let (tx, next) = (tx.clone(), &next);
                scope.spawn(move || {
                    let mut buf = vec![0u8; chunk_len];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= chunks {
                            return;
                        }
                        let offset = i * chunk_len as u64;
                        let n = (len - offset).min(chunk_len as u64) as usize;
                        let result = match file.read_exact_at(&mut buf[..n], offset) {
                            Ok(()) => {
                                let mut out = Vec::with_capacity(n.div_ceil(block_size));
                                hash_blocks(&buf[..n], block_size, &mut out);
                                Ok(out)
                            }
                            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(changed()),
                            Err(e) => Err(e),
                        };
                        // The collector is gone after an error: stop.
                        if tx.send((i, result)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            // Workers claim chunks in order, so at most `threads` results wait here.
            let mut pending = BTreeMap::new();
            let mut hashes = Vec::with_capacity(len.div_ceil(block_size as u64) as usize);
            let mut next_out = 0u64;
            for (i, result) in rx {
                pending.insert(i, result?);
                while let Some(out) = pending.remove(&next_out) {
                    hashes.extend_from_slice(&out);
                    next_out += 1;
                }
                progress((next_out * chunk_len as u64).min(len));
            }
            Ok(hashes)
        })
    }
}

/// Bytes per unit of work: a whole number of blocks, about [`CHUNK_BYTES`].
fn chunk_len(block_size: usize) -> usize {
    block_size * (CHUNK_BYTES / block_size).max(1)
}

fn hash_blocks(data: &[u8], block_size: usize, out: &mut Vec<Hash>) {
    out.extend(data.chunks(block_size).map(sha256));
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn add_len(total: &mut u64, n: usize) -> Result<(), HashError> {
    *total += n as u64;
    if *total > MAX_CONTENT_LEN {
        return Err(LayoutError::ContentTooLarge {
            len: *total,
            max: MAX_CONTENT_LEN,
        }
        .into());
    }
    Ok(())
}

fn hash_serial(
    reader: &mut impl Read,
    chunk_len: usize,
    block_size: usize,
    hashes: &mut Vec<Hash>,
    progress: Progress<'_>,
) -> Result<u64, HashError> {
    let mut buf = vec![0u8; chunk_len];
    let mut total = 0;
    loop {
        let n = read_full(reader, &mut buf)?;
        add_len(&mut total, n)?;
        hash_blocks(&buf[..n], block_size, hashes);
        if n > 0 {
            progress(total);
        }
        if n < chunk_len {
            return Ok(total);
        }
    }
}

/// A chunk to hash: its sequence number, buffer and filled length.
type Job = (u64, Vec<u8>, usize);
/// A hashed chunk: its sequence number, block hashes, and the buffer to reuse.
type Done = (u64, Vec<Hash>, Vec<u8>);

fn hash_parallel(
    reader: &mut impl Read,
    chunk_len: usize,
    block_size: usize,
    threads: usize,
    hashes: &mut Vec<Hash>,
    progress: Progress<'_>,
) -> Result<u64, HashError> {
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (job_rx, done_tx) = (&job_rx, done_tx.clone());
            scope.spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job.
                    let job = job_rx
                        .lock()
                        .map_err(drop)
                        .and_then(|rx| rx.recv().map_err(drop));
                    let Ok((seq, buf, n)) = job else { return };
                    let mut out = Vec::with_capacity(n.div_ceil(block_size));
                    hash_blocks(&buf[..n], block_size, &mut out);
                    if done_tx.send((seq, out, buf)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let result = feed_and_collect(
            reader, chunk_len, threads, &job_tx, &done_rx, hashes, progress,
        );
        // Closing the job queue stops the workers; the scope then joins them.
        drop(job_tx);
        result
    })
}

fn feed_and_collect(
    reader: &mut impl Read,
    chunk_len: usize,
    threads: usize,
    job_tx: &mpsc::SyncSender<Job>,
    done_rx: &mpsc::Receiver<Done>,
    hashes: &mut Vec<Hash>,
    progress: Progress<'_>,
) -> Result<u64, HashError> {
    let worker_gone = || io::Error::other("a hashing thread stopped unexpectedly");
    // At most 2 * threads buffers exist: one per chunk in flight.
    let mut free: Vec<Vec<u8>> = Vec::new();
    let (mut total, mut hashed) = (0u64, 0u64);
    let (mut next_seq, mut next_out, mut in_flight) = (0u64, 0u64, 0usize);
    let mut pending: BTreeMap<u64, Vec<Hash>> = BTreeMap::new();
    let mut eof = false;
    loop {
        while !eof && in_flight < 2 * threads {
            let mut buf = free.pop().unwrap_or_else(|| vec![0u8; chunk_len]);
            let n = read_full(reader, &mut buf)?;
            add_len(&mut total, n)?;
            eof = n < chunk_len;
            if n == 0 {
                free.push(buf);
                break;
            }
            job_tx.send((next_seq, buf, n)).map_err(|_| worker_gone())?;
            next_seq += 1;
            in_flight += 1;
        }
        if in_flight == 0 {
            return Ok(total);
        }
        let (seq, out, buf) = done_rx.recv().map_err(|_| worker_gone())?;
        in_flight -= 1;
        pending.insert(seq, out);
        free.push(buf);
        while let Some(out) = pending.remove(&next_out) {
            hashes.extend_from_slice(&out);
            next_out += 1;
            hashed = (next_out * chunk_len as u64).min(total);
        }
        progress(hashed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(data: &[u8], threads: usize, bs: u32, bps: u32) -> ContentInfo {
        let opts = HashOptions {
            threads,
            block_size: bs,
            blocks_per_segment: bps,
        };
        hash_reader(data, &ServerSecret::open_group(), &opts, &mut |_| {}).unwrap()
    }

    #[test]
    fn serial_and_parallel_agree() {
        for len in [0usize, 1, 999, 4096, 4097, 100_000] {
            let data = fixtures::content(len as u64, len as u64);
            let a = info(&data, 1, 1024, 7);
            let b = info(&data, 3, 1024, 7);
            assert_eq!(a.id(), b.id(), "len {len}");
            assert_eq!(a.all_block_hashes(), b.all_block_hashes());
            assert_eq!(a.layout().content_len(), len as u64);
        }
    }

    #[test]
    fn progress_reaches_the_end() {
        let data = fixtures::content(1, 9 * 1024 * 1024 + 3);
        let mut last = 0;
        let opts = HashOptions::default();
        hash_reader(&data[..], &ServerSecret::open_group(), &opts, &mut |n| {
            assert!(n >= last);
            last = n;
        })
        .unwrap();
        assert_eq!(last, data.len() as u64);
    }

    #[test]
    fn file_and_reader_agree() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0u64, 1, 4 << 20, (4 << 20) + 1, 9 << 20] {
            let data = fixtures::content(len, len);
            let path = dir.path().join("f");
            std::fs::write(&path, &data).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            for threads in [1, 2, 3] {
                let opts = HashOptions {
                    threads,
                    ..HashOptions::default()
                };
                let mut last = 0;
                let a = hash_file(&file, &ServerSecret::open_group(), &opts, &mut |n| last = n)
                    .unwrap();
                let b = info(&data, 1, BLOCK_SIZE, BLOCKS_PER_SEGMENT);
                assert_eq!(a.id(), b.id(), "len {len} threads {threads}");
                assert_eq!(last, len, "progress ends at the length");
            }
        }
    }

    #[test]
    fn read_errors_surface() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                buf[..n].fill(1);
                Ok(n)
            }
        }
        for threads in [1, 2] {
            let opts = HashOptions {
                threads,
                ..HashOptions::default()
            };
            let r = hash_reader(
                Failing(10 << 20),
                &ServerSecret::open_group(),
                &opts,
                &mut |_| {},
            );
            assert!(matches!(r, Err(HashError::Io(_))), "threads {threads}");
        }
    }
}
