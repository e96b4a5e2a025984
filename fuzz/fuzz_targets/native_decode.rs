//! pdist's native format: decoding never panics, and whatever decodes re-encodes to the same
//! bytes (so no two encodings mean one thing).
#![no_main]

use engine::content::native::{self, NativeMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match native::decode(data) {
        Ok(NativeMessage::ContentInfo(info)) => {
            assert_eq!(native::encode_content_info(&info), data);
        }
        Ok(NativeMessage::SegmentProof(proof)) => {
            assert_eq!(native::encode_segment_proof(&proof), data);
            let _ = proof.verify(&engine::ContentId(engine::Hash::ZERO));
        }
        Ok(_) | Err(_) => {}
    }
});
