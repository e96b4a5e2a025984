//! How nodes find each other: the [`Discovery`] seam, its mDNS implementation ([`mdns`]) and
//! its in-memory twin ([`MemDiscovery`]).
//!
//! A node advertises only what others need to reach it: its random node ID and its port.
//! Nothing in it derives from the group secret, so a listener cannot test guesses of the secret
//! against it; whether a node is of the group, and whether it is a cache node, is learnt from
//! its hello, over the peer protocol, where everything is authenticated (and, in a group with a
//! secret, sealed).

pub mod mdns;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::wire::NodeId;

/// The mDNS service type of pdist nodes.
pub const SERVICE_TYPE: &str = "_pdist._tcp.local.";

/// What a node advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Its node ID.
    pub node: NodeId,
    /// Port of its peer protocol endpoint.
    pub port: u16,
}

/// A change in who is around.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A node appeared or changed.
    Up {
        /// What it advertises.
        advert: Advert,
        /// Its addresses.
        addrs: Vec<IpAddr>,
        /// Its mDNS host name (for display).
        host: String,
    },
    /// A node said goodbye (or its record expired).
    Down {
        /// The node.
        node: NodeId,
    },
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
#[error("discovery: {0}")]
pub struct DiscoveryError(pub String);

/// Advertising this node and learning of others.
pub trait Discovery: Send + Sync + std::fmt::Debug + 'static {
    /// Starts advertising `me` (or updates the advert) and returns the stream of events about
    /// other nodes. Called once.
    fn start(&self, me: Advert) -> Result<mpsc::Receiver<DiscoveryEvent>, DiscoveryError>;

    /// Says goodbye and stops.
    fn stop(&self) -> crate::peer::BoxFuture<'_, ()>;
}

/// The members of a bus: their adverts, addresses and event channels.
type Members = HashMap<NodeId, (Advert, Vec<IpAddr>, mpsc::Sender<DiscoveryEvent>)>;

/// In-memory discovery: every member of one bus sees every other, instantly.
#[derive(Debug, Default, Clone)]
pub struct MemBus {
    inner: Arc<Mutex<Members>>,
}

impl MemBus {
    /// An empty bus.
    pub fn new() -> MemBus {
        MemBus::default()
    }

    /// A member at `addr`.
    pub fn member(&self, addr: IpAddr) -> MemDiscovery {
        MemDiscovery {
            bus: self.clone(),
            addr,
            me: Mutex::new(None),
        }
    }
}

/// One node's view of a [`MemBus`].
#[derive(Debug)]
pub struct MemDiscovery {
    bus: MemBus,
    addr: IpAddr,
    me: Mutex<Option<NodeId>>,
}

impl Discovery for MemDiscovery {
    fn start(&self, me: Advert) -> Result<mpsc::Receiver<DiscoveryEvent>, DiscoveryError> {
        let (tx, rx) = mpsc::channel(256);
        let mut bus = self.bus.inner.lock().expect("bus lock");
        for (advert, addrs, _) in bus.values() {
            let _ = tx.try_send(DiscoveryEvent::Up {
                advert: advert.clone(),
                addrs: addrs.clone(),
                host: format!("{}.local.", advert.node),
            });
        }
        for (_, _, other) in bus.values() {
            let _ = other.try_send(DiscoveryEvent::Up {
                advert: me.clone(),
                addrs: vec![self.addr],
                host: format!("{}.local.", me.node),
            });
        }
        *self.me.lock().expect("me lock") = Some(me.node);
        bus.insert(me.node, (me, vec![self.addr], tx));
        Ok(rx)
    }

    fn stop(&self) -> crate::peer::BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(me) = self.me.lock().expect("me lock").take() else {
                return;
            };
            let mut bus = self.bus.inner.lock().expect("bus lock");
            bus.remove(&me);
            for (_, _, other) in bus.values() {
                let _ = other.try_send(DiscoveryEvent::Down { node: me });
            }
        })
    }
}
