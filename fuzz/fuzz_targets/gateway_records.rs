//! What the HTTP gateway reads that others wrote: URL records from its index on disk, claims
//! and records of downloads in progress from peers (plain and sealed). Never a panic; a claim or
//! a download's record that decodes survives sealing and opening unchanged.
#![no_main]

use engine::content::ServerSecret;
use http_gateway::record::{Claim, Pending, UrlKeys, UrlRecord};
use libfuzzer_sys::fuzz_target;

const URL: &str = "http://origin.example/file.iso";

fuzz_target!(|data: &[u8]| {
    let keys = UrlKeys::new(&ServerSecret::open_group());
    let r = UrlRecord::from_bytes(data);
    assert_eq!(UrlRecord::from_bytes(&r.to_bytes()).variants.len(), r.variants.len());
    if let Ok(c) = Claim::decode(data) {
        let back = Claim::open(&keys, URL, &c.seal(&keys, URL)).expect("a claim we sealed opens");
        assert_eq!((back.ticket, back.len, back.headers), (c.ticket, c.len, c.headers));
    }
    let _ = Claim::open(&keys, URL, data);
    if let Ok(p) = Pending::decode(data) {
        let back = Pending::open(&keys, URL, &p.seal(&keys, URL)).expect("a record we sealed opens");
        assert_eq!(back, p);
    }
    let _ = Pending::open(&keys, URL, data);
});
