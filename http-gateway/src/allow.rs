//! Who may use the gateway, and where its tunnels may go: the client networks it serves
//! (loopback by default, so it is never an open proxy by accident), a request rate limit per
//! client address (a token bucket), and the targets `CONNECT` may reach ([`ConnectPolicy`]).
//! Pure: addresses and instants in, decisions out.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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

    /// Whether it serves loopback clients only (the clients of this machine).
    pub fn only_loopback(&self) -> bool {
        self.nets.iter().all(|n| n.network().is_loopback())
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

pub use engine::limit::RateLimit;

/// Where `CONNECT` may go, and how long a tunnel may sit idle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectPolicy {
    /// Ports a tunnel may reach.
    pub ports: Vec<u16>,
    /// Also loopback, link-local and this machine's own addresses.
    pub local: bool,
    /// A tunnel with no byte either way for this long is closed.
    pub idle: Duration,
}

impl Default for ConnectPolicy {
    /// Port 443, no local targets, 5 minutes idle.
    fn default() -> Self {
        ConnectPolicy {
            ports: vec![443],
            local: false,
            idle: Duration::from_secs(300),
        }
    }
}

/// Why a `CONNECT` target is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Its port is not among the allowed ones.
    #[error("port {0} is not among the ports tunnels may reach (--connect-port)")]
    Port(u16),
    /// A loopback address.
    #[error("{0} is a loopback address")]
    Loopback(IpAddr),
    /// A link-local address.
    #[error("{0} is a link-local address")]
    LinkLocal(IpAddr),
    /// An unspecified, broadcast or multicast address.
    #[error("{0} is not a unicast address")]
    NotUnicast(IpAddr),
    /// An address of this machine.
    #[error("{0} is an address of this machine")]
    OwnAddress(IpAddr),
}

/// Whether a tunnel may go to `addr`. `is_own` says whether an address is this machine's.
pub fn check_target(
    policy: &ConnectPolicy,
    addr: SocketAddr,
    is_own: impl Fn(IpAddr) -> bool,
) -> Result<(), Refusal> {
    if !policy.ports.contains(&addr.port()) {
        return Err(Refusal::Port(addr.port()));
    }
    if policy.local {
        return Ok(());
    }
    check_address(addr.ip(), is_own)
}

/// Whether `ip` is another machine's unicast address: not loopback, link-local (where cloud
/// metadata services answer), unspecified, broadcast, multicast, or this machine's own.
pub fn check_address(ip: IpAddr, is_own: impl Fn(IpAddr) -> bool) -> Result<(), Refusal> {
    let ip = ip.to_canonical();
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    let not_unicast = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    if ip.is_loopback() {
        Err(Refusal::Loopback(ip))
    } else if link_local {
        Err(Refusal::LinkLocal(ip))
    } else if not_unicast {
        Err(Refusal::NotUnicast(ip))
    } else if is_own(ip) {
        Err(Refusal::OwnAddress(ip))
    } else {
        Ok(())
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
    fn targets_by_port_and_address() {
        let policy = ConnectPolicy::default();
        let none = |_: IpAddr| false;
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let rows: [(&str, Result<(), Refusal>); 10] = [
            ("93.184.216.34:443", Ok(())),
            ("10.1.2.3:443", Ok(())),
            ("93.184.216.34:22", Err(Refusal::Port(22))),
            ("127.0.0.1:443", Err(Refusal::Loopback(ip("127.0.0.1")))),
            ("127.9.9.9:443", Err(Refusal::Loopback(ip("127.9.9.9")))),
            ("[::1]:443", Err(Refusal::Loopback(ip("::1")))),
            (
                "[::ffff:127.0.0.1]:443",
                Err(Refusal::Loopback(ip("127.0.0.1"))),
            ),
            (
                "169.254.169.254:443",
                Err(Refusal::LinkLocal(ip("169.254.169.254"))),
            ),
            ("[fe80::1]:443", Err(Refusal::LinkLocal(ip("fe80::1")))),
            ("0.0.0.0:443", Err(Refusal::NotUnicast(ip("0.0.0.0")))),
        ];
        for (addr, want) in rows {
            assert_eq!(check_target(&policy, at(addr), none), want, "{addr}");
        }
        let own = |a: IpAddr| a == ip("10.0.0.5");
        assert_eq!(
            check_target(&policy, at("10.0.0.5:443"), own),
            Err(Refusal::OwnAddress(ip("10.0.0.5")))
        );
        let open = ConnectPolicy {
            ports: vec![443, 8443],
            local: true,
            ..ConnectPolicy::default()
        };
        assert_eq!(check_target(&open, at("127.0.0.1:8443"), own), Ok(()));
        assert_eq!(
            check_target(&open, at("127.0.0.1:22"), own),
            Err(Refusal::Port(22))
        );
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
}
