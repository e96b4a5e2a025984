//! The content model end to end over INTERESTING_SIZES: hashing, proofs from the content ID
//! alone, block checks, and every format's round trip.

use pdist_engine::content::native;
use pdist_engine::content::{
    ContentInfo, HashOptions, ServerSecret, VerifyError, hash_reader, info::verify_block_hashes,
};
use pdist_engine::pccrc::v1::ContentInfoV1;

fn hashed(len: u64, secret: &ServerSecret) -> (Vec<u8>, ContentInfo) {
    let data = fixtures::content(len, len);
    let info = hash_reader(&data[..], secret, &HashOptions::default(), &mut |_| {}).unwrap();
    (data, info)
}

#[test]
fn interesting_sizes_end_to_end() {
    let secret = ServerSecret::open_group();
    for &(len, why) in fixtures::INTERESTING_SIZES {
        let (data, info) = hashed(len, &secret);
        let l = *info.layout();
        assert_eq!(l.content_len(), len, "{why}");
        let id = info.id();

        // Every block checks against its hash; a flipped bit does not.
        for seg in l.segments() {
            for b in l.blocks(seg) {
                let r = l.block_range(b);
                let bytes = &data[r.start as usize..r.end as usize];
                info.verify_block(b, bytes).unwrap();
            }
        }
        if len > 0 {
            let b = l.block_at(l.block_count() - 1).unwrap();
            let r = l.block_range(b);
            let mut bytes = data[r.start as usize..r.end as usize].to_vec();
            bytes[0] ^= 1;
            assert!(matches!(
                info.verify_block(b, &bytes),
                Err(VerifyError::BlockHash { .. })
            ));
            assert!(matches!(
                info.verify_block(b, &bytes[1..]),
                Err(VerifyError::BlockLength { .. })
            ));
        }

        // Each segment alone, and every run starting at 0, proves against the ID alone.
        for seg in l.segments() {
            let v = info.prove_segments(seg, 1).unwrap().verify(&id).unwrap();
            v.verify_block_hashes(seg, info.block_hashes(seg)).unwrap();
            let run = info
                .prove_segments(l.segment(0).unwrap(), seg.get() + 1)
                .unwrap();
            run.verify(&id).unwrap();
        }
        if let Some(last) = l.segments().last() {
            assert!(info.prove_segments(last, 0).is_none(), "empty run");
            assert!(info.prove_segments(last, 2).is_none(), "run past the end");
        }

        // Native, V1 and back.
        let bytes = native::encode_content_info(&info);
        let back = native::decode_content_info_for(&bytes, &id).unwrap();
        assert_eq!(back.id(), id);
        assert_eq!(native::encode_content_info(&back), bytes);
        let v1 = ContentInfoV1::from_content_info(&info, None).unwrap();
        let v1_back = ContentInfoV1::decode(&v1.encode()).unwrap();
        assert_eq!(v1_back.to_content_info().unwrap().id(), id, "{why}");
    }
}

#[test]
fn proofs_from_another_content_fail() {
    let secret = ServerSecret::open_group();
    let (_, a) = hashed(3 * fixtures::SEGMENT + 1, &secret);
    let (_, b) = hashed(3 * fixtures::SEGMENT + 2, &secret);
    let seg = a.layout().segment(1).unwrap();
    let proof = a.prove_segments(seg, 2).unwrap();
    assert!(matches!(
        proof.verify(&b.id()),
        Err(VerifyError::ContentId { .. })
    ));
    // A lying layout (one segment fewer) is caught through the ID too.
    let mut lying = proof.clone();
    lying.layout = pdist_engine::Layout::new(3 * fixtures::SEGMENT).unwrap();
    assert!(lying.verify(&a.id()).is_err());
    // Block hashes of another segment do not match this one's HoD.
    let v = proof.verify(&a.id()).unwrap();
    let other = a.layout().segment(2).unwrap();
    assert!(v.verify_block_hashes(seg, a.block_hashes(other)).is_err());
    assert!(
        verify_block_hashes(
            a.layout(),
            seg,
            a.descriptor(seg),
            &a.block_hashes(seg)[1..]
        )
        .is_err()
    );
}

#[test]
fn a_group_secret_changes_the_content_id_and_nothing_else() {
    let (_, open) = hashed(100_000, &ServerSecret::open_group());
    let (_, group) = hashed(100_000, &ServerSecret::new(b"our office".to_vec()));
    assert_ne!(open.id(), group.id());
    assert_eq!(open.all_block_hashes(), group.all_block_hashes());
    assert_eq!(open.descriptors()[0].hod, group.descriptors()[0].hod);
    assert_ne!(open.descriptors()[0].kp, group.descriptors()[0].kp);
    // Same bytes, same secret: the same ID, whatever the thread count.
    let data = fixtures::content(100_000, 100_000);
    let one = HashOptions {
        threads: 1,
        ..HashOptions::default()
    };
    let again = hash_reader(&data[..], &ServerSecret::open_group(), &one, &mut |_| {}).unwrap();
    assert_eq!(again.id(), open.id());
}

#[test]
fn a_v1_range_ending_on_a_segment_boundary_is_not_the_whole_content() {
    // Regression (review of the foundation issue): V1 cannot carry the content length, so only
    // dwReadBytesInLastSegment = 0 may be read as "this is the whole content".
    let secret = ServerSecret::open_group();
    let (_, info) = hashed(2 * fixtures::SEGMENT + 10, &secret);
    let prefix = ContentInfoV1::from_content_info(&info, Some(0..fixtures::SEGMENT)).unwrap();
    let decoded = ContentInfoV1::decode(&prefix.encode()).unwrap();
    assert!(!decoded.is_complete());
    assert!(decoded.to_content_info().is_none());
    let whole = ContentInfoV1::from_content_info(&info, None).unwrap();
    assert!(whole.is_complete());
}

#[test]
fn segment_secrets_check_against_the_secret() {
    use pdist_engine::content::info::verify_segment_secrets;
    let group = ServerSecret::new(b"group".to_vec());
    let (_, info) = hashed(3 * fixtures::SEGMENT, &group);
    verify_segment_secrets(info.descriptors(), 0, &group).unwrap();
    let err = verify_segment_secrets(&info.descriptors()[1..], 1, &ServerSecret::open_group());
    assert!(matches!(
        err,
        Err(VerifyError::SegmentSecret { segment: 1, .. })
    ));
}
