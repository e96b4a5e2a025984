//! Who may use the gateway: the client networks it serves (loopback by default, so it is never
//! an open proxy by accident) and a request rate limit per client address (a
//! token bucket). Pure: addresses and instants in, decisions out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use ipnet::{AddrParseError, IpNet};

/// The client networks served.
#[derive(Debug, Clone)]
pub struct AllowList {
    nets: Vec<IpNet>,
}

impl AllowList {
    /// Only loopback clients (the default).
    pub fn loopback() -> AllowList {
        AllowList {
            nets: vec![
                "127.0.0.0/8".parse().expect("valid"),
                "::1/128".parse().expect("valid"),
            ],
        }
    }

    /// Clients in `nets` (loopback is always allowed).
    pub fn new(nets: Vec<IpNet>) -> AllowList {
        let mut list = AllowList::loopback();
        list.nets.extend(nets);
        list
    }

    /// Exactly the clients in `nets` (not even loopback otherwise).
    pub fn only(nets: Vec<IpNet>) -> AllowList {
        AllowList { nets }
    }

    /// Clients in the networks `values` name (see [`parse_net`]; loopback is always allowed).
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<AllowList, AddrParseError> {
        let nets = values
            .iter()
            .map(|v| parse_net(v.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(AllowList::new(nets))
    }

    /// Whether `ip` may use the gateway (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The networks, for logs.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

/// A client network: a CIDR network (`10.0.0.0/8`, `::1/128`) or one address (`192.168.1.7`).
pub fn parse_net(v: &str) -> Result<IpNet, AddrParseError> {
    v.parse::<IpNet>()
        .or_else(|e| v.parse::<IpAddr>().map(IpNet::from).map_err(|_| e))
}

/// Requests per second each client address may make, with bursts of up to one second's worth.
#[derive(Debug)]
pub struct RateLimit {
    per_sec: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// Most client addresses tracked; idle ones are forgotten first when it is reached.
const MAX_CLIENTS: usize = 4096;

impl RateLimit {
    /// `per_sec` requests per second per client; 0 turns the limit off.
    pub fn new(per_sec: u32) -> RateLimit {
        RateLimit {
            per_sec: per_sec.into(),
            buckets: Mutex::default(),
        }
    }

    /// Takes one request's token for `ip` at `now`; `false` when it has none left.
    pub fn take(&self, ip: IpAddr, now: Instant) -> bool {
        if self.per_sec == 0.0 {
            return true;
        }
        let mut b = self.buckets.lock().expect("rate lock");
        if b.len() >= MAX_CLIENTS && !b.contains_key(&ip) {
            let full = Duration::from_secs(1);
            b.retain(|_, (_, at)| now.saturating_duration_since(*at) < full);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_always_and_listed_networks() {
        let a = AllowList::parse(&["10.1.0.0/16", "192.168.7.9"]).unwrap();
        assert!(a.allows("127.0.0.1".parse().unwrap()));
        assert!(a.allows("::1".parse().unwrap()));
        assert!(a.allows("10.1.200.3".parse().unwrap()));
        assert!(a.allows("::ffff:10.1.0.1".parse().unwrap()));
        assert!(a.allows("192.168.7.9".parse().unwrap()));
        assert!(!a.allows("192.168.7.10".parse().unwrap()));
        assert!(!a.allows("10.2.0.1".parse().unwrap()));
        assert!(!AllowList::loopback().allows("10.1.0.1".parse().unwrap()));
        assert!(AllowList::parse(&["10.0.0.0/33"]).is_err());
        assert!(AllowList::parse(&["example.com"]).is_err());
    }

    #[test]
    fn rate_limit_allows_a_burst_then_refills() {
        let r = RateLimit::new(10);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..10).all(|_| r.take(ip, t0)));
        assert!(!r.take(ip, t0));
        // Another client has its own bucket.
        assert!(r.take("10.0.0.2".parse().unwrap(), t0));
        assert!(r.take(ip, t0 + Duration::from_millis(150)));
        assert!(!r.take(ip, t0 + Duration::from_millis(150)));
        assert!(RateLimit::new(0).take(ip, t0));
    }
}
