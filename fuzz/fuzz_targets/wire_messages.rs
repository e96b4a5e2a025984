//! Peer protocol messages from the network: decoding requests and replies never panics, both
//! for raw bytes and for arbitrary bodies sealed under our group's key (so the parser behind
//! the seal is reached too); whatever decodes re-encodes to the same message. Sealed seeds
//! are opened too.
#![no_main]

use engine::content::ServerSecret;
use engine::wire::{self, GroupKeys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A seed as a cache node receives it.
    let _ = wire::SeedKey::generate().open(&wire::NodeId::ANY, data);
    let keys = GroupKeys::new(&ServerSecret::open_group());
    let _ = wire::decode_request(&keys, data);
    let _ = wire::decode_reply(&keys, &[0; 16], data);
    // The same bytes as the sealed body of a request of our group.
    let req_hdr = [b'P', b'D', b'W', wire::PROTOCOL_VERSION];
    let mut req = req_hdr.to_vec();
    req.extend_from_slice(&keys.test_seal_msg(&req_hdr, data));
    if let Ok(env) = wire::decode_request(&keys, &req) {
        let (again, _) = wire::encode_request(&keys, &env.from, &env.to, &env.request);
        assert_eq!(wire::decode_request(&keys, &again).unwrap().request, env.request);
    }
    // And of a reply bound to a request with an all-zero tag.
    let reply_hdr = [b'P', b'D', b'R', wire::PROTOCOL_VERSION];
    let mut reply = reply_hdr.to_vec();
    reply.extend_from_slice(&keys.test_seal_msg(&[&reply_hdr[..], &[0u8; 16]].concat(), data));
    if let Ok(r) = wire::decode_reply(&keys, &[0; 16], &reply) {
        let again = wire::encode_reply(&keys, &[0; 16], &r);
        assert_eq!(wire::decode_reply(&keys, &[0; 16], &again).unwrap(), r);
    }
});
