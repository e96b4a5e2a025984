//! Micro-benchmarks of the content model: block hashing, content information for 1 GiB, Merkle
//! proof checks, and encoding/decoding the three formats.
//!
//! Run: `cargo bench -p pdist-benches --bench content` (after `source .ci/env.sh && pdist_setup`).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use engine::content::{HashOptions, SegmentIdx, ServerSecret, hash_reader, native, sha256};
use engine::pccrc::{v1::ContentInfoV1, v2};

const GIB: u64 = 1 << 30;

fn block_hashing(c: &mut Criterion) {
    let block = fixtures::content(1, 64 * 1024);
    let mut g = c.benchmark_group("block_hash");
    g.throughput(Throughput::Bytes(block.len() as u64));
    g.bench_function("sha256_64KiB", |b| b.iter(|| sha256(black_box(&block))));
    g.finish();
}

fn content_info(c: &mut Criterion) {
    let data = fixtures::content(2, GIB);
    let secret = ServerSecret::open_group();
    let mut g = c.benchmark_group("content_info");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(GIB));
    for threads in [1, 0] {
        let opts = HashOptions {
            threads,
            ..HashOptions::default()
        };
        let name = if threads == 0 {
            "all_cores"
        } else {
            "one_core"
        };
        g.bench_with_input(BenchmarkId::new("1GiB", name), &opts, |b, opts| {
            b.iter(|| hash_reader(&data[..], &secret, opts, &mut |_| {}).unwrap())
        });
    }
    g.finish();
}

fn proofs(c: &mut Criterion) {
    // The widest tree pdist builds: 1 TiB, 32,768 segments, from synthetic block hashes.
    let secret = ServerSecret::open_group();
    let layout = engine::Layout::new(1 << 40).unwrap();
    let hashes = (0..layout.block_count())
        .map(|i| sha256(&i.to_le_bytes()))
        .collect();
    let info = engine::ContentInfo::build(layout, hashes, &secret).unwrap();
    let id = info.id();
    let mut g = c.benchmark_group("proof_verify_1TiB");
    for count in [1u32, 64] {
        let first = layout.segment(12_345).unwrap();
        let proof = info.prove_segments(first, count).unwrap();
        g.bench_with_input(BenchmarkId::new("segments", count), &proof, |b, p| {
            b.iter(|| p.verify(black_box(&id)).unwrap())
        });
    }
    let seg: SegmentIdx = layout.segment(7).unwrap();
    let blocks = info.block_hashes(seg).to_vec();
    let verified = info.prove_segments(seg, 1).unwrap().verify(&id).unwrap();
    g.bench_function("block_hash_list", |b| {
        b.iter(|| {
            verified
                .verify_block_hashes(seg, black_box(&blocks))
                .unwrap()
        })
    });
    g.finish();
}

fn formats(c: &mut Criterion) {
    let data = fixtures::content(3, GIB);
    let secret = ServerSecret::open_group();
    let info = hash_reader(&data[..], &secret, &HashOptions::default(), &mut |_| {}).unwrap();
    let native_bytes = native::encode_content_info(&info);
    let v1 = ContentInfoV1::from_content_info(&info, None).unwrap();
    let v1_bytes = v1.encode();
    let v2_info = v2::hash_reader_v2(&data[..64 << 20], &secret).unwrap();
    let v2_bytes = v2_info.encode();
    let mut g = c.benchmark_group("formats_1GiB");
    g.bench_function("native_encode", |b| {
        b.iter(|| native::encode_content_info(black_box(&info)))
    });
    g.bench_function("native_decode_verify", |b| {
        b.iter(|| native::decode_content_info(black_box(&native_bytes)).unwrap())
    });
    g.bench_function("v1_encode", |b| b.iter(|| black_box(&v1).encode()));
    g.bench_function("v1_decode", |b| {
        b.iter(|| ContentInfoV1::decode(black_box(&v1_bytes)).unwrap())
    });
    g.bench_function("v2_encode_64MiB", |b| {
        b.iter(|| black_box(&v2_info).encode())
    });
    g.bench_function("v2_decode_64MiB", |b| {
        b.iter(|| v2::ContentInfoV2::decode(black_box(&v2_bytes)).unwrap())
    });
    g.finish();
}

/// Sealing and opening one 64 KiB block frame (AES-256-GCM), as peers do for every block.
fn block_frames(c: &mut Criterion) {
    use engine::wire::{FrameReader, LookupKey, SealedParts, SegmentKey, encode_frame};
    let key = SegmentKey::new(&engine::Hash([3; 32]));
    let lookup = LookupKey([4; 32]);
    let block = vec![9u8; 65_536];
    let mut g = c.benchmark_group("block frame");
    g.throughput(Throughput::Bytes(block.len() as u64));
    g.bench_function("seal 64 KiB", |b| {
        let mut out = Vec::with_capacity(70_000);
        b.iter(|| {
            out.clear();
            encode_frame(&key, &lookup, 1, 2, &block, &mut out);
        })
    });
    let mut frame = Vec::new();
    encode_frame(&key, &lookup, 1, 2, &block, &mut frame);
    g.bench_function("open 64 KiB", |b| {
        let mut data = Vec::with_capacity(70_000);
        b.iter(|| {
            let mut r = FrameReader::new();
            r.push(&frame);
            let f = r.next_ref().unwrap().unwrap();
            data.clear();
            let (p, n) = SealedParts::take(f.sealed.unwrap(), &mut data).unwrap();
            p.open_in_place(&key, &lookup, 1, 2, &mut data[..n])
                .unwrap();
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    block_hashing,
    content_info,
    proofs,
    formats,
    block_frames
);
criterion_main!(benches);
