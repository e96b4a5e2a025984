//! Peer protocol messages from the network: decoding requests and replies never panics, under
//! our group's key and with the input's own MAC made valid (so the parser past the MAC check is
//! reached too).
#![no_main]

use engine::content::ServerSecret;
use engine::wire::{self, GroupKeys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = GroupKeys::new(&ServerSecret::open_group());
    let _ = wire::decode_request(&keys, data);
    let _ = wire::decode_reply(&keys, &[0; 16], data);
    // The same bytes as the body of a message authenticated by our group.
    let mut signed = data.to_vec();
    signed.extend_from_slice(&keys.test_mac(&[data]));
    if let Ok(env) = wire::decode_request(&keys, &signed) {
        let (again, _) = wire::encode_request(&keys, &env.from, &env.request);
        assert_eq!(wire::decode_request(&keys, &again).unwrap().request, env.request);
    }
    let mut reply = data.to_vec();
    reply.extend_from_slice(&keys.test_mac(&[&[0u8; 16], data]));
    if let Ok(r) = wire::decode_reply(&keys, &[0; 16], &reply) {
        assert_eq!(wire::encode_reply(&keys, &[0; 16], &r), reply);
    }
});
