//! What the gateway's integration tests share: nodes and gateways on loopback, and a client
//! that sends requests through a gateway as a client with `http_proxy` would.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use engine::ServerSecret;
use engine::node::{Listen, Node, NodeConfig};
use engine::peer::Transport;
use engine::peer::http::HttpTransport;
use engine::store::MemStore;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use pdist_http_gateway::index::MemIndex;
use pdist_http_gateway::{Gateway, GatewayConfig};

/// A node of the group of `secret` on loopback, with `peers` given by address.
pub async fn node(secret: &[u8], dir: &Path, peers: Vec<SocketAddr>) -> Node {
    node_at(secret, dir, "127.0.0.1:0".parse().unwrap(), peers).await
}

/// [`node`], listening on `listen`.
pub async fn node_at(
    secret: &[u8],
    dir: &Path,
    listen: SocketAddr,
    peers: Vec<SocketAddr>,
) -> Node {
    let cfg = NodeConfig {
        name: "gw".into(),
        secret: ServerSecret::new(secret.to_vec()),
        listen: Listen::Tcp(listen),
        cache: false,
        static_peers: peers,
        probe_interval: Duration::from_millis(200),
        hello_timeout: Duration::from_secs(1),
        scratch: dir.to_path_buf(),
        corrupt_blocks: false,
        leases: engine::store::Leases::new(),
    };
    let transport: Arc<dyn Transport> = Arc::new(HttpTransport::new(Duration::from_secs(5)));
    Node::start(cfg, Arc::new(MemStore::new()), transport, None)
        .await
        .unwrap()
}

/// `n` nodes of the group of `secret`, each listing every other (addresses known up front), and
/// each seeing every other.
pub async fn mesh(secret: &[u8], dir: &Path, n: usize) -> Vec<Node> {
    let addrs: Vec<SocketAddr> = (0..n)
        .map(|_| fixtures::free_loopback_addr().unwrap())
        .collect();
    let mut nodes = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        let others = addrs.iter().filter(|p| *p != a).copied().collect();
        let d = dir.join(format!("n{i}"));
        nodes.push(node_at(secret, &d, *a, others).await);
    }
    for node in &nodes {
        let seen = node
            .wait_for_peers(n - 1, Duration::from_secs(10), Duration::from_secs(10))
            .await;
        assert_eq!(seen, n - 1, "a full mesh");
    }
    nodes
}

pub async fn gateway(n: &Node, dir: &Path, edit: impl FnOnce(&mut GatewayConfig)) -> Gateway {
    let mut cfg = GatewayConfig::new(dir.join("spool"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    edit(&mut cfg);
    Gateway::start(cfg, n.clone(), Arc::new(MemIndex::default()))
        .await
        .unwrap()
}

pub struct Got {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Got {
    pub fn h(&self, k: &str) -> &str {
        self.headers.get(k).map_or("", |v| v.to_str().unwrap())
    }
}

/// Sends `req` (absolute-form URI) to the proxy on a fresh connection.
pub async fn via(proxy: SocketAddr, req: Request<Full<Bytes>>) -> Got {
    let s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(url).header("host", url.split('/').nth(2).unwrap());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}
