//! Discovery over multicast DNS (mdns-sd): a node registers `<node-id>._pdist._tcp.local.` with
//! a small TXT record and browses for the others. The daemon runs its own thread; a task drains
//! its events into ours (a receiver far behind would be disconnected).

use std::collections::HashMap;
use std::sync::Mutex;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;

use super::{Advert, Discovery, DiscoveryError, DiscoveryEvent, SERVICE_TYPE};
use crate::wire::NodeId;

/// The advert's format: 2 has no group tag (1 had a MAC of the node ID under the group's key,
/// which let every listener on the LAN test guesses of the secret offline).
const ADVERT_VERSION: &str = "2";

/// mDNS discovery.
pub struct MdnsDiscovery {
    daemon: ServiceDaemon,
    host: String,
    registered: Mutex<Option<String>>,
}

impl std::fmt::Debug for MdnsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdnsDiscovery")
            .field("host", &self.host)
            .finish()
    }
}

fn err(e: impl std::fmt::Display) -> DiscoveryError {
    DiscoveryError(e.to_string())
}

impl MdnsDiscovery {
    /// Discovery on every interface, or only on `interfaces` when some are named; `host` is the
    /// name others see (this machine's host name).
    pub fn new(interfaces: &[String], host: &str) -> Result<MdnsDiscovery, DiscoveryError> {
        let daemon = ServiceDaemon::new().map_err(err)?;
        if !interfaces.is_empty() {
            daemon.disable_interface(IfKind::All).map_err(err)?;
            for name in interfaces {
                daemon
                    .enable_interface(IfKind::Name(name.clone()))
                    .map_err(err)?;
            }
        }
        Ok(MdnsDiscovery {
            daemon,
            host: host.to_string(),
            registered: Mutex::new(None),
        })
    }
}

fn parse(info: &mdns_sd::ResolvedService) -> Option<DiscoveryEvent> {
    if info.get_property_val_str("v")? != ADVERT_VERSION {
        return None;
    }
    let node = NodeId::from_hex(info.get_property_val_str("id")?)?;
    let mut addrs: Vec<std::net::IpAddr> = info.addresses.iter().map(|a| a.to_ip_addr()).collect();
    addrs.sort();
    Some(DiscoveryEvent::Up {
        advert: Advert {
            node,
            port: info.get_port(),
        },
        addrs,
        host: info.host.clone(),
    })
}

impl Discovery for MdnsDiscovery {
    fn start(&self, me: Advert) -> Result<mpsc::Receiver<DiscoveryEvent>, DiscoveryError> {
        let instance = me.node.to_hex();
        let host = format!("{}-{}.local.", self.host, &instance[..8]);
        let props = [("v", ADVERT_VERSION.to_string()), ("id", instance.clone())];
        let info = ServiceInfo::new(SERVICE_TYPE, &instance, &host, "", me.port, &props[..])
            .map_err(err)?
            .enable_addr_auto();
        let fullname = info.get_fullname().to_string();
        self.daemon.register(info).map_err(err)?;
        *self.registered.lock().expect("lock") = Some(fullname.clone());
        let browse = self.daemon.browse(SERVICE_TYPE).map_err(err)?;
        let (tx, rx) = mpsc::channel(256);
        // Ends when the daemon shuts down (the browse channel closes) or we stop listening.
        tokio::spawn(async move {
            let mut names: HashMap<String, NodeId> = HashMap::new();
            while let Ok(ev) = browse.recv_async().await {
                let out = match ev {
                    ServiceEvent::ServiceResolved(info) if info.fullname != fullname => {
                        match parse(&info) {
                            Some(up @ DiscoveryEvent::Up { .. }) => {
                                if let DiscoveryEvent::Up { advert, .. } = &up {
                                    names.insert(info.fullname.clone(), advert.node);
                                }
                                up
                            }
                            _ => continue,
                        }
                    }
                    ServiceEvent::ServiceRemoved(_, name) => match names.remove(&name) {
                        Some(node) => DiscoveryEvent::Down { node },
                        None => continue,
                    },
                    _ => continue,
                };
                if tx.send(out).await.is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }

    fn stop(&self) -> crate::peer::BoxFuture<'_, ()> {
        Box::pin(async move {
            let name = self.registered.lock().expect("lock").take();
            if let Some(name) = name
                && let Ok(rx) = self.daemon.unregister(&name)
            {
                // The goodbye goes out before the daemon stops.
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv_async()).await;
            }
            if let Ok(rx) = self.daemon.shutdown() {
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv_async()).await;
            }
        })
    }
}
