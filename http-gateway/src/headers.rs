//! Header rules a proxy must follow, in one place: hop-by-hop fields are removed in both
//! directions (RFC 9110 §7.6.1), `Via` is appended (§7.6.3), and every response says what the
//! cache did (`Cache-Status`, RFC 9211) and where its bytes came from (`Pdist-Bytes`). Pure.

use http::header::{CONNECTION, HeaderName, VIA};
use http::{HeaderMap, HeaderValue, Version};

/// The name this cache goes by in `Cache-Status` and `Via`.
pub const CACHE_NAME: &str = "pdist";

/// The response header with the byte counts by source.
pub const BYTES_HEADER: &str = "pdist-bytes";

/// pdist's content-coding for content information (origin mode answers it; a gateway asks
/// origins for it on a miss).
pub const PDIST_INFO_CODING: &str = "x-pdist-info";

/// Fields that belong to one connection and are never forwarded.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "proxy-authentication-info",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop fields, including those `Connection` names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// Appends this hop to `Via`.
pub fn add_via(h: &mut HeaderMap, version: Version) {
    let v = match version {
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        _ => "1.1",
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{v} {CACHE_NAME}")) {
        h.append(VIA, v);
    }
}

/// What the cache did with a request, as `Cache-Status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the store without asking anyone.
    Hit,
    /// Served from the store after the origin said it had not changed.
    Revalidated,
    /// Not in this cache: fetched (from the origin, or from peers) and stored.
    MissStored,
    /// Not in this cache: passed on and not stored (not storable).
    Miss,
    /// The stored copy was stale and had changed: fetched again.
    StaleChanged,
    /// The request was not cacheable (method, `no-store`, a range of something not stored).
    Bypass,
    /// Joined another client's transfer of the same URL.
    Coalesced,
    /// Served from the store stale: the origin could not be reached or failed.
    StaleOnError,
    /// Served from the store stale while it is revalidated (`stale-while-revalidate`).
    StaleRevalidating,
}

impl CacheStatus {
    /// The `Cache-Status` entry (RFC 9211) of this cache.
    pub fn entry(self, fwd_status: Option<u16>, detail: Option<&str>) -> String {
        let mut s = String::from(CACHE_NAME);
        s.push_str(match self {
            CacheStatus::Hit => "; hit",
            CacheStatus::Revalidated => "; hit; fwd=stale",
            CacheStatus::MissStored => "; fwd=uri-miss; stored",
            CacheStatus::Miss => "; fwd=uri-miss",
            CacheStatus::StaleChanged => "; fwd=stale; stored",
            CacheStatus::Bypass => "; fwd=bypass",
            CacheStatus::Coalesced => "; fwd=uri-miss; collapsed",
            CacheStatus::StaleOnError => "; hit; fwd=stale",
            CacheStatus::StaleRevalidating => "; hit; detail=stale-while-revalidate",
        });
        if let Some(code) = fwd_status {
            s.push_str(&format!("; fwd-status={code}"));
        }
        if let Some(d) = detail {
            s.push_str(&format!("; detail={d}"));
        }
        s
    }

    /// Whether this counts as a hit in the metrics.
    pub fn is_hit(self) -> bool {
        matches!(
            self,
            CacheStatus::Hit
                | CacheStatus::Revalidated
                | CacheStatus::StaleOnError
                | CacheStatus::StaleRevalidating
        )
    }

    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Revalidated => "revalidated",
            CacheStatus::MissStored => "miss-stored",
            CacheStatus::Miss => "miss",
            CacheStatus::StaleChanged => "stale-changed",
            CacheStatus::Bypass => "bypass",
            CacheStatus::Coalesced => "coalesced",
            CacheStatus::StaleOnError => "stale-on-error",
            CacheStatus::StaleRevalidating => "stale-while-revalidate",
        }
    }
}

/// Appends our `Cache-Status` entry after those of caches nearer the origin.
pub fn add_cache_status(h: &mut HeaderMap, entry: &str) {
    if let Ok(v) = HeaderValue::from_str(entry) {
        h.append("cache-status", v);
    }
}

/// Bytes of one response by where they came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Provenance {
    /// From this gateway's store.
    pub store: u64,
    /// From LAN peers.
    pub peers: u64,
    /// From the origin.
    pub origin: u64,
}

impl Provenance {
    /// The `Pdist-Bytes` value: `store=N, peers=N, origin=N`.
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "store={}, peers={}, origin={}",
            self.store, self.peers, self.origin
        ))
        .expect("ASCII")
    }

    /// Parses a `Pdist-Bytes` value (tests and the benchmarks read it back).
    pub fn parse(v: &str) -> Option<Provenance> {
        let mut p = Provenance::default();
        for part in v.split(',') {
            let (k, n) = part.trim().split_once('=')?;
            let n: u64 = n.trim().parse().ok()?;
            match k.trim() {
                "store" => p.store = n,
                "peers" => p.peers = n,
                "origin" => p.origin = n,
                _ => return None,
            }
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn via_and_cache_status_are_appended() {
        let mut h = HeaderMap::new();
        h.insert(VIA, HeaderValue::from_static("1.1 upstream"));
        add_via(&mut h, Version::HTTP_11);
        let vias: Vec<_> = h.get_all(VIA).iter().collect();
        assert_eq!(vias, ["1.1 upstream", "1.1 pdist"]);
        add_cache_status(&mut h, &CacheStatus::Revalidated.entry(Some(304), None));
        assert_eq!(h["cache-status"], "pdist; hit; fwd=stale; fwd-status=304");
        assert_eq!(
            CacheStatus::MissStored.entry(None, Some("peers")),
            "pdist; fwd=uri-miss; stored; detail=peers"
        );
    }

    #[test]
    fn provenance_round_trips() {
        let p = Provenance {
            store: 1,
            peers: 2,
            origin: 3,
        };
        let v = p.header_value();
        assert_eq!(v, "store=1, peers=2, origin=3");
        assert_eq!(Provenance::parse(v.to_str().unwrap()), Some(p));
        assert_eq!(Provenance::parse("store=x"), None);
    }
}
