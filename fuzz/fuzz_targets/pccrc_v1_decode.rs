//! MS-PCCRC V1: decoding never panics; what decodes re-encodes byte for byte, and its derived
//! views (range, completeness, conversion to pdist's model) never panic either.
#![no_main]

use engine::pccrc::v1::ContentInfoV1;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v1) = ContentInfoV1::decode(data) {
        assert_eq!(v1.encode(), data);
        let _ = v1.range();
        let _ = v1.segment_ids();
        let _ = v1.to_content_info();
    }
});
