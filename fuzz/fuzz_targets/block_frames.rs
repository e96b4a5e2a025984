//! Block frames from the network, in any chunking: the reader never panics, never holds more
//! than one frame, and opening a frame under the wrong key fails cleanly.
#![no_main]

use engine::content::Hash;
use engine::wire::{FrameReader, LookupKey, SegmentKey, open_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let cut = usize::from(cut).max(1);
    let key = SegmentKey::new(&Hash([1; 32]));
    let mut r = FrameReader::new();
    for chunk in rest.chunks(cut) {
        r.push(chunk);
        loop {
            match r.next_frame() {
                Ok(Some(f)) => {
                    if let Some(s) = f.sealed {
                        assert!(open_frame(&key, &LookupKey([0; 32]), 0, f.block, &s).is_err());
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = r.finish();
});
