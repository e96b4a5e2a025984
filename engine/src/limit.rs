//! Fair shares for what arrives from the network, per sending address: a request rate (a token
//! bucket, [`RateLimit`]) and a share of a pool of slots ([`Shares`]), so that one client of the
//! gateway or one member of a group cannot take all of a node's time or its streams. Pure:
//! addresses and instants in, decisions out; the tables are bounded.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests per second each sender (an address, by default) may make, with bursts of up to
/// one second's worth.
#[derive(Debug)]
pub struct RateLimit<K = IpAddr> {
    per_sec: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

/// Most addresses tracked; idle ones are forgotten when it is reached, and while every one is
/// active a new sender is refused.
const MAX_ADDRS: usize = 4096;

impl<K: Hash + Eq + Copy> RateLimit<K> {
    /// `per_sec` requests per second per sender; 0 turns the limit off.
    pub fn new(per_sec: u32) -> RateLimit<K> {
        RateLimit {
            per_sec: per_sec.into(),
            buckets: Mutex::default(),
        }
    }

    /// Takes one request's token for `ip` at `now`; `false` when it has none left.
    pub fn take(&self, ip: K, now: Instant) -> bool {
        if self.per_sec == 0.0 {
            return true;
        }
        let mut b = self.buckets.lock().expect("rate lock");
        if b.len() >= MAX_ADDRS && !b.contains_key(&ip) {
            let full = Duration::from_secs(1);
            b.retain(|_, (_, at)| now.saturating_duration_since(*at) < full);
            if b.len() >= MAX_ADDRS {
                // Every tracked sender is active (a flood from many addresses): a new one
                // waits until some go idle, so the table stays bounded.
                return false;
            }
        }
        let (tokens, at) = b.entry(ip).or_insert((self.per_sec, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64() * self.per_sec;
        *tokens = (*tokens + refill).min(self.per_sec);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// At most so many slots of a pool held by one sender at once (the pool itself is the
/// caller's): a [`Share`] is one slot, given back when dropped.
#[derive(Debug)]
pub struct Shares<K = IpAddr> {
    each: usize,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

/// One slot held by a sender.
#[derive(Debug)]
pub struct Share<K: Hash + Eq = IpAddr> {
    ip: K,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq + Copy> Shares<K> {
    /// At most `each` slots per sender.
    pub fn new(each: usize) -> Shares<K> {
        Shares {
            each,
            held: Arc::default(),
        }
    }

    /// A slot for `ip`, unless it holds its share already.
    pub fn take(&self, ip: K) -> Option<Share<K>> {
        let mut held = self.held.lock().expect("shares lock");
        let n = held.entry(ip).or_insert(0);
        if *n >= self.each {
            return None;
        }
        *n += 1;
        Some(Share {
            ip,
            held: Arc::clone(&self.held),
        })
    }
}

impl<K: Hash + Eq> Drop for Share<K> {
    fn drop(&mut self) {
        let mut held = self.held.lock().expect("shares lock");
        if let Some(n) = held.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_a_burst_then_refills() {
        let r = RateLimit::<IpAddr>::new(10);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..10).all(|_| r.take(ip, t0)));
        assert!(!r.take(ip, t0));
        // Another address has its own bucket.
        assert!(r.take("10.0.0.2".parse().unwrap(), t0));
        assert!(r.take(ip, t0 + Duration::from_millis(150)));
        assert!(!r.take(ip, t0 + Duration::from_millis(150)));
        assert!(RateLimit::<IpAddr>::new(0).take(ip, t0));
    }

    #[test]
    fn an_address_holds_at_most_its_share_and_gets_slots_back() {
        let s = Shares::<IpAddr>::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let (x, y) = (s.take(a).unwrap(), s.take(a).unwrap());
        assert!(s.take(a).is_none(), "its share is full");
        assert!(s.take(b).is_some(), "another address has its own");
        drop(x);
        let z = s.take(a).expect("a slot given back");
        drop((y, z));
        assert!(
            s.held.lock().unwrap().is_empty(),
            "forgotten when it holds none"
        );
    }
}
