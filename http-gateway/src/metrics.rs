//! The gateway's figures: bytes sent to clients by source, requests by cache outcome, the hit
//! ratio, transfers in flight and peers. One set of counters feeds the Prometheus text on
//! `/metrics`, the `Pdist-Bytes` header's totals and `pdist status`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::headers::{CacheStatus, Provenance};

type Labels = Vec<(&'static str, &'static str)>;

/// The gateway's counters.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    bytes: Family<Labels, Counter>,
    requests: Family<Labels, Counter>,
    hit_ratio: Gauge<f64, AtomicU64>,
    in_flight: Gauge<i64, AtomicI64>,
    peers: Gauge<i64, AtomicI64>,
    refused: Counter,
    hits: AtomicU64,
    cacheable: AtomicU64,
}

/// The figures `pdist status` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GatewaySnapshot {
    /// Bytes sent to clients from the store.
    pub bytes_store: u64,
    /// Bytes sent to clients that came from peers.
    pub bytes_peers: u64,
    /// Bytes sent to clients that came from the origin.
    pub bytes_origin: u64,
    /// Hits among GET requests that could be cached.
    pub hits: u64,
    /// GET requests that could be cached.
    pub cacheable: u64,
    /// Transfers running.
    pub in_flight: i64,
}

/// The gateway's part of its node's status (`pdist status`): where it listens, in which
/// mode, and its figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GatewayStatus {
    /// Where the proxy listens.
    pub listen: std::net::SocketAddr,
    /// Origin mode's backend, if in origin mode.
    pub reverse: Option<String>,
    /// Downloads and peer fetches not yet in the store and recorded.
    pub keeping: usize,
    /// The figures.
    #[serde(flatten)]
    pub figures: GatewaySnapshot,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pdist_gateway");
        let bytes = Family::<Labels, Counter>::default();
        let requests = Family::<Labels, Counter>::default();
        let hit_ratio = Gauge::<f64, AtomicU64>::default();
        let in_flight = Gauge::<i64, AtomicI64>::default();
        let peers = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "bytes",
            "Body bytes sent to clients, by where they came from",
            bytes.clone(),
        );
        registry.register(
            "requests",
            "Requests, by what the cache did (Cache-Status)",
            requests.clone(),
        );
        registry.register(
            "hit_ratio",
            "Hits among cacheable GET requests",
            hit_ratio.clone(),
        );
        registry.register(
            "transfers_in_flight",
            "Responses being sent",
            in_flight.clone(),
        );
        registry.register("peers", "Live peers of the node's group", peers.clone());
        let refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections answered 503 because every connection slot was taken",
            refused.clone(),
        );
        Metrics {
            registry,
            bytes,
            requests,
            hit_ratio,
            in_flight,
            peers,
            refused,
            hits: AtomicU64::new(0),
            cacheable: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts a request by what the cache did.
    pub fn request(&self, status: CacheStatus) {
        self.requests
            .get_or_create(&vec![("cache", status.label())])
            .inc();
        if status != CacheStatus::Bypass {
            let c = self.cacheable.fetch_add(1, Ordering::Relaxed) + 1;
            let h = self.hits.load(Ordering::Relaxed) + u64::from(status.is_hit());
            if status.is_hit() {
                self.hits.fetch_add(1, Ordering::Relaxed);
            }
            self.hit_ratio.set(h as f64 / c as f64);
        }
    }

    /// Counts a connection refused for want of a slot.
    pub fn refused(&self) {
        self.refused.inc();
    }

    /// Counts body bytes sent to a client.
    pub fn sent(&self, p: Provenance) {
        for (source, n) in [("store", p.store), ("peers", p.peers), ("origin", p.origin)] {
            if n > 0 {
                self.bytes
                    .get_or_create(&vec![("source", source)])
                    .inc_by(n);
            }
        }
    }

    /// A transfer started; it ends when the guard drops.
    pub fn transfer(&self) -> InFlightGuard<'_> {
        self.in_flight.inc();
        InFlightGuard(self)
    }

    /// The Prometheus text, with the peer count as of now.
    pub fn render(&self, peers_alive: usize) -> String {
        self.peers.set(peers_alive as i64);
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }

    /// The figures for `pdist status`.
    pub fn snapshot(&self) -> GatewaySnapshot {
        let b = |s| self.bytes.get_or_create(&vec![("source", s)]).get();
        GatewaySnapshot {
            bytes_store: b("store"),
            bytes_peers: b("peers"),
            bytes_origin: b("origin"),
            hits: self.hits.load(Ordering::Relaxed),
            cacheable: self.cacheable.load(Ordering::Relaxed),
            in_flight: self.in_flight.get(),
        }
    }
}

/// Ends a transfer's count when dropped.
#[derive(Debug)]
pub struct InFlightGuard<'a>(&'a Metrics);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_reach_the_text_and_the_snapshot() {
        let m = Metrics::default();
        m.request(CacheStatus::MissStored);
        m.request(CacheStatus::Hit);
        m.request(CacheStatus::Bypass);
        m.sent(Provenance {
            store: 10,
            peers: 0,
            origin: 5,
        });
        let g = m.transfer();
        let text = m.render(3);
        assert!(
            text.contains("pdist_gateway_bytes_total{source=\"store\"} 10"),
            "{text}"
        );
        assert!(text.contains("pdist_gateway_bytes_total{source=\"origin\"} 5"));
        assert!(text.contains("pdist_gateway_requests_total{cache=\"hit\"} 1"));
        assert!(text.contains("pdist_gateway_hit_ratio 0.5"));
        assert!(text.contains("pdist_gateway_transfers_in_flight 1"));
        assert!(text.contains("pdist_gateway_peers 3"));
        drop(g);
        let s = m.snapshot();
        assert_eq!(
            (s.bytes_store, s.bytes_origin, s.hits, s.cacheable),
            (10, 5, 1, 2)
        );
        assert_eq!(s.in_flight, 0);
    }
}
