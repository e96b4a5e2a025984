//! MS-PCCRC against real IIS 8.5 output (../shared/vectors, PEERDIST.md §7). Tests that need
//! the image itself skip with a message when ../shared is absent; the hex facts are always here.

use fixtures::vectors as vec;
use pdist_engine::content::{Hash, HashOptions, ServerSecret, hash_reader, segment_id};
use pdist_engine::pccrc::v1::{ContentInfoV1, HashAlgo};
use pdist_engine::pccrc::v2::{ContentInfoV2, V2Builder};

fn h(s: &str) -> Hash {
    Hash::from_hex(s).unwrap()
}

fn secret() -> ServerSecret {
    ServerSecret::from_hex(vec::SERVER_SECRET).unwrap()
}

#[test]
fn server_secret_hashes() {
    assert_eq!(secret().ks_v1(), h(vec::KS_V1));
    assert_eq!(secret().ks_v2(), h(vec::KS_V2));
}

#[test]
fn v1_vector_decodes_and_re_encodes() {
    let bytes = vec::bytes(vec::V1_CONTENT_INFO);
    let v1 = ContentInfoV1::decode(&bytes).unwrap();
    assert_eq!(v1.hash_algo, HashAlgo::Sha256);
    assert_eq!(
        (v1.offset_in_first_segment, v1.read_bytes_in_last_segment),
        (0, 0)
    );
    assert_eq!(v1.segments.len(), 1);
    let s = &v1.segments[0];
    assert_eq!((s.offset, s.len, s.block_size), (0, 99_710, 65_536));
    assert_eq!(s.hod, vec::bytes(vec::V1_HOD));
    assert_eq!(s.kp, vec::bytes(vec::V1_KP));
    let listed: Vec<String> = s.block_hashes.chunks(32).map(hex::encode).collect();
    assert_eq!(listed, vec::V1_BLOCK_HASHES);
    assert_eq!(v1.range(), 0..vec::IIS85_LEN);
    assert!(v1.is_complete());
    assert_eq!(v1.encode(), bytes);
    v1.verify_secret(&secret()).unwrap();
    assert!(v1.verify_secret(&ServerSecret::open_group()).is_err());
}

#[test]
fn v1_segment_id_uses_the_utf16le_constant_with_nul() {
    let id = segment_id(&h(vec::V1_KP), &h(vec::V1_HOD));
    assert_eq!(id, h(vec::V1_HOHODK));
    for (mistake, wrong) in vec::WRONG_V1_HOHODK {
        assert_ne!(id, h(wrong), "{mistake}");
    }
    let v1 = ContentInfoV1::decode(&vec::bytes(vec::V1_CONTENT_INFO)).unwrap();
    assert_eq!(v1.segment_ids().unwrap(), vec![h(vec::V1_HOHODK)]);
}

#[test]
fn v1_from_the_image_is_the_iis_bytes() {
    let Some(png) = fixtures::iis85_png() else {
        return;
    };
    let info = hash_reader(&png[..], &secret(), &HashOptions::default(), &mut |_| {}).unwrap();
    let v1 = ContentInfoV1::from_content_info(&info, None).unwrap();
    assert_eq!(hex::encode(v1.encode()), vec::V1_CONTENT_INFO);
    // The V1 bytes carry everything pdist's own model needs: the same content ID comes back.
    let back = ContentInfoV1::decode(&v1.encode())
        .unwrap()
        .to_content_info()
        .unwrap();
    assert_eq!(back.id(), info.id());
    assert_eq!(
        hex::encode(pdist_engine::content::sha256(&png).0),
        vec::IIS85_SHA256
    );
}

#[test]
fn v2_vector_decodes_and_re_encodes() {
    let bytes = vec::bytes(vec::V2_CONTENT_INFO);
    let v2 = ContentInfoV2::decode(&bytes).unwrap();
    assert_eq!(v2.chunks.len(), 1);
    let segs: Vec<_> = v2.segments().copied().collect();
    assert_eq!(segs.len(), 2);
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.len, vec::V2_SEGMENT_LENS[i]);
        assert_eq!(s.hod, h(vec::V2_HOD[i]));
        assert_eq!(s.kp, h(vec::V2_KP[i]));
        assert_eq!(s.segment_id(), h(vec::V2_HOHODK[i]));
    }
    assert_eq!(v2.range(), 0..vec::IIS85_LEN);
    assert_eq!(v2.encode(), bytes);
    v2.verify_secret(&secret()).unwrap();
}

#[test]
fn v2_from_the_image_with_windows_boundaries_is_the_iis_bytes() {
    let Some(png) = fixtures::iis85_png() else {
        return;
    };
    let mut b = V2Builder::new(&secret());
    let cut = vec::V2_SEGMENT_LENS[0] as usize;
    b.push_segment(&png[..cut]).unwrap();
    b.push_segment(&png[cut..]).unwrap();
    let v2 = b.finish();
    assert_eq!(hex::encode(v2.encode()), vec::V2_CONTENT_INFO);
    let hod0 = v2.segments().next().unwrap().hod;
    assert_ne!(
        hod0,
        h(vec::WRONG_V2_HOD_SHA512_256),
        "SHA-512/256 is not V2's hash"
    );
}

#[test]
fn v2_range_of_the_spec_example() {
    // MS-PCCRC 3.7: segments of 60K/85K/44K, range 100 KB..110 KB.
    let mut b = V2Builder::new(&secret());
    for (i, len) in [60 * 1024, 85 * 1024, 44 * 1024].into_iter().enumerate() {
        b.push_segment(&vec![i as u8; len]).unwrap();
    }
    let whole = b.finish();
    let r = whole.slice(100 * 1024, 10 * 1024).unwrap();
    assert_eq!(r.start_in_content, 0xF000);
    assert_eq!(r.index_of_first_segment, 1);
    assert_eq!(r.offset_in_first_segment, 0xA000);
    assert_eq!(r.length_of_range, 0x2800);
    assert_eq!(r.range(), 100 * 1024..110 * 1024);
    assert_eq!(ContentInfoV2::decode(&r.encode()).unwrap(), r);
}

/// V1 with SHA-384 or SHA-512 (Windows peers accept only SHA-256, but the format allows them and
/// pdist decodes them): a two-segment content, complete, built by hand.
fn v1_with(algo: HashAlgo) -> Vec<u8> {
    use sha2::Digest;
    let digest = |data: &[u8]| -> Vec<u8> {
        match algo {
            HashAlgo::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlgo::Sha512 => sha2::Sha512::digest(data).to_vec(),
            _ => sha2::Sha256::digest(data).to_vec(),
        }
    };
    let seg_lens = [32u32 << 20, 70_000];
    let mut segments = Vec::new();
    let mut offset = 0u64;
    for (i, &len) in seg_lens.iter().enumerate() {
        let blocks = len.div_ceil(65_536);
        let hashes: Vec<u8> = (0..blocks)
            .flat_map(|b| digest(&[i as u8, b as u8]))
            .collect();
        let hod = digest(&hashes);
        segments.push(pdist_engine::pccrc::v1::SegmentV1 {
            offset,
            len,
            block_size: 65_536,
            kp: digest(&hod),
            hod,
            block_hashes: hashes,
        });
        offset += u64::from(len);
    }
    ContentInfoV1 {
        hash_algo: algo,
        offset_in_first_segment: 0,
        read_bytes_in_last_segment: 0,
        segments,
    }
    .encode()
}

#[test]
fn v1_sha384_and_sha512_decode() {
    for (algo, id) in [(HashAlgo::Sha384, 0x800D), (HashAlgo::Sha512, 0x800E)] {
        let bytes = v1_with(algo);
        assert_eq!(u32::from_le_bytes(bytes[2..6].try_into().unwrap()), id);
        let v1 = ContentInfoV1::decode(&bytes).unwrap();
        assert_eq!(v1.hash_algo, algo);
        assert_eq!(v1.segments[0].hod.len(), algo.digest_len());
        assert_eq!(v1.range(), 0..(32 << 20) + 70_000);
        assert!(v1.is_complete());
        assert_eq!(v1.encode(), bytes);
        // pdist's own model is SHA-256: no conversion, no HoHoDk, and a clear refusal to check Kp.
        assert!(v1.to_content_info().is_none());
        assert!(v1.segment_ids().is_none());
        assert!(v1.verify_secret(&secret()).is_err());
        // A corrupted block hash no longer hashes to the segment's HoD.
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let err = ContentInfoV1::decode(&bad).unwrap_err();
        assert!(err.to_string().contains("HoD"), "{err}");
    }
}
