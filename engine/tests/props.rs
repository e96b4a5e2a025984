//! Property tests across the formats: round trips, strictness, and the rejection of every
//! single-byte corruption of a native manifest.

use proptest::prelude::*;

use pdist_engine::content::native::{self, NativeMessage};
use pdist_engine::content::{ContentInfo, Layout, ServerSecret, sha256};
use pdist_engine::formats;
use pdist_engine::pccrc::v1::ContentInfoV1;
use pdist_engine::pccrc::v2::{ContentInfoV2, V2Builder};

/// Content information with synthetic block hashes: cheap for any length, same structure.
fn synthetic(layout: Layout, salt: u64) -> ContentInfo {
    let hashes = (0..layout.block_count())
        .map(|i| sha256(&(i ^ salt).to_le_bytes()))
        .collect();
    ContentInfo::build(layout, hashes, &ServerSecret::open_group()).unwrap()
}

fn small_layout() -> impl Strategy<Value = Layout> {
    (0u64..600, 1u32..50, 1u32..6)
        .prop_map(|(len, bs, bps)| Layout::with_params(len, bs, bps).unwrap())
}

/// Small enough manifests (at most 50 blocks) that decoding every corruption of each stays fast.
fn tiny_layout() -> impl Strategy<Value = Layout> {
    (0u64..400, 8u32..50, 1u32..6)
        .prop_map(|(len, bs, bps)| Layout::with_params(len, bs, bps).unwrap())
}

fn standard_layout() -> impl Strategy<Value = Layout> {
    // Up to 5 segments, biased towards the edges.
    let seg = 32u64 << 20;
    prop_oneof![
        (0u64..5 * seg),
        (1u64..5).prop_map(move |k| k * seg),
        (1u64..5).prop_map(move |k| k * seg + 1),
        (1u64..5).prop_map(move |k| k * seg - 1),
    ]
    .prop_map(|len| Layout::new(len).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn native_round_trip(layout in small_layout(), salt in any::<u64>()) {
        let info = synthetic(layout, salt);
        let bytes = native::encode_content_info(&info);
        let back = native::decode_content_info_for(&bytes, &info.id()).unwrap();
        prop_assert_eq!(back.all_block_hashes(), info.all_block_hashes());
        prop_assert_eq!(native::encode_content_info(&back), bytes);
    }

    #[test]
    fn every_single_byte_corruption_is_rejected(layout in tiny_layout(), salt in any::<u64>(), x in 1u8..=255) {
        let info = synthetic(layout, salt);
        let bytes = native::encode_content_info(&info);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= x;
            prop_assert!(native::decode(&bad).is_err(), "byte {} ^ {:#x} accepted", i, x);
        }
        for cut in 0..bytes.len() {
            prop_assert!(native::decode(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(native::decode(&longer).is_err());
    }

    #[test]
    fn segment_proofs_round_trip_and_verify(layout in tiny_layout(), a in any::<u32>(), b in any::<u32>()) {
        prop_assume!(layout.segment_count() > 0);
        let info = synthetic(layout, 7);
        let n = layout.segment_count();
        let first = a % n;
        let count = 1 + b % (n - first);
        let proof = info.prove_segments(layout.segment(u64::from(first)).unwrap(), count).unwrap();
        let bytes = native::encode_segment_proof(&proof);
        let back = native::decode_segment_proof(&bytes).unwrap();
        prop_assert_eq!(&back, &proof);
        let verified = back.verify(&info.id()).unwrap();
        for seg in verified.segments() {
            verified.verify_block_hashes(seg, info.block_hashes(seg)).unwrap();
        }
        // Any corruption of the message either fails to decode or fails to verify.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x5a;
            let ok = native::decode_segment_proof(&bad).ok().and_then(|p| p.verify(&info.id()).ok());
            prop_assert!(ok.is_none(), "corrupt byte {} verified", i);
        }
    }

    #[test]
    fn v1_round_trip_whole_and_ranges(layout in standard_layout(), a in any::<u64>(), b in any::<u64>()) {
        let info = synthetic(layout, 3);
        let whole = ContentInfoV1::from_content_info(&info, None).unwrap();
        let bytes = whole.encode();
        let back = ContentInfoV1::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &whole);
        prop_assert_eq!(back.range(), 0..layout.content_len());
        prop_assert_eq!(back.to_content_info().map(|i| i.id()), Some(info.id()));
        for cut in [0, 1, 17, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            if cut < bytes.len() {
                prop_assert!(ContentInfoV1::decode(&bytes[..cut]).is_err());
            }
        }
        let len = layout.content_len();
        if len > 0 {
            let (x, y) = (a % len, b % len);
            let range = x.min(y)..x.max(y) + 1;
            let part = ContentInfoV1::from_content_info(&info, Some(range.clone())).unwrap();
            let back = ContentInfoV1::decode(&part.encode()).unwrap();
            prop_assert_eq!(back.range(), range);
            prop_assert_eq!(&back, &part);
        }
    }

    #[test]
    fn v2_round_trip_whole_and_ranges(lens in prop::collection::vec(1u32..=131_072, 0..12), a in any::<u64>(), b in any::<u64>()) {
        let mut builder = V2Builder::new(&ServerSecret::open_group());
        for (i, &l) in lens.iter().enumerate() {
            builder.push_segment(&vec![i as u8; l as usize]).unwrap();
        }
        let whole = builder.finish();
        let bytes = whole.encode();
        prop_assert_eq!(&ContentInfoV2::decode(&bytes).unwrap(), &whole);
        let total = whole.listed_len();
        prop_assert_eq!(whole.range(), 0..total);
        for cut in 1..bytes.len().min(40) {
            prop_assert!(ContentInfoV2::decode(&bytes[..bytes.len() - cut]).is_err());
        }
        if total > 0 {
            let (x, y) = (a % total, b % total);
            let part = whole.slice(x.min(y), x.max(y) - x.min(y) + 1).unwrap();
            prop_assert_eq!(part.range(), x.min(y)..x.max(y) + 1);
            prop_assert_eq!(&ContentInfoV2::decode(&part.encode()).unwrap(), &part);
        }
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), prefix in 0usize..4) {
        let mut input = match prefix {
            0 => b"PDCI\x01\x01".to_vec(),
            1 => vec![0, 1],
            2 => vec![0, 2],
            _ => vec![],
        };
        input.extend_from_slice(&bytes);
        let _ = formats::decode_any(&input);
    }
}

#[test]
fn format_detection() {
    let info = synthetic(Layout::new(10).unwrap(), 0);
    let native_bytes = native::encode_content_info(&info);
    assert!(matches!(
        formats::decode_any(&native_bytes).unwrap(),
        formats::AnyContentInfo::Native(NativeMessage::ContentInfo(_))
    ));
    let v1 = ContentInfoV1::from_content_info(&info, None)
        .unwrap()
        .encode();
    assert_eq!(formats::detect(&v1).unwrap(), formats::Format::PccrcV1);
    let err = formats::decode_any(b"GIF89a").unwrap_err();
    assert_eq!(err.offset, 0);
    assert!(err.to_string().contains("not content information"));
}
