//! What the store reads back from disk besides content information (which `native_decode`
//! covers): present bitmaps and content records. Never a panic; a bitmap that decodes
//! re-encodes to the same bytes.
#![no_main]

use engine::store::{BlockSet, ContentRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 2 {
        let len = u32::from(u16::from_le_bytes([data[0], data[1]])) % 2048;
        if let Some(set) = BlockSet::from_bytes(&data[2..], len) {
            assert_eq!(set.to_bytes(), &data[2..]);
            assert!(set.count() <= len);
        }
    }
    let _ = serde_json::from_slice::<ContentRecord>(data);
});
