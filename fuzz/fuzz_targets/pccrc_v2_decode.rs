//! MS-PCCRC V2: decoding never panics; what decodes re-encodes byte for byte.
#![no_main]

use engine::pccrc::v2::ContentInfoV2;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v2) = ContentInfoV2::decode(data) {
        assert_eq!(v2.encode(), data);
        let _ = v2.range();
    }
});
