//! `CONNECT` tunnels (HTTPS through the proxy): each target checked against the
//! [`crate::allow::ConnectPolicy`] ([`check_target`]), then the tunnel, whose bytes are copied untouched until
//! either side closes or it has been idle too long.
//!
//! By default a tunnel goes only to port 443 (as Squid's `SSL_ports`), never to a loopback,
//! link-local, unspecified or multicast address, nor to an address of this machine: otherwise
//! any client of the proxy could reach services that listen only locally (the node's peer and
//! control ports, databases, metadata endpoints). The target's name is resolved once, every
//! address it resolves to is checked, and the tunnel connects to a checked address (a second
//! resolution could answer differently).
//!
//! The same addresses are kept from plain-HTTP requests of clients on other machines
//! ([`guard_origins`]).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::allow::check_target;
use crate::body::{Body, empty};
use crate::error::GatewayError;
use crate::headers::CacheStatus;
use crate::state::Shared;

/// A client connection's slot among the gateway's connections, which a tunnel opened on it
/// takes over.
pub(crate) type ConnSlot = Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>;

/// Whether `ip` is an address of this machine: a socket can be bound to it.
pub(crate) fn is_own_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Keeps clients on other machines from reaching, through a forward proxy's plain-HTTP
/// requests, what only this machine may: services listening on loopback, the link's
/// link-local addresses (cloud metadata), this machine's own addresses. When `cfg` serves
/// clients beyond loopback in proxy mode, without `connect.local`, origins are reached
/// through a client that refuses those addresses ([`engine::origin::HyperOrigin::guarded`]:
/// names are checked as resolved, so they cannot be re-pointed between check and connect);
/// otherwise `cfg` is left as it is (a loopback client can reach them anyway, and origin mode's
/// backend is the admin's choice). Call it once `allow`, `reverse` and `connect` are set.
pub fn guard_origins(cfg: &mut crate::GatewayConfig) {
    if cfg.reverse.is_some() || cfg.connect.local || cfg.allow.only_loopback() {
        return;
    }
    let refuse: engine::origin::Refuse = Arc::new(|ip| {
        crate::allow::check_address(ip, is_own_address)
            .err()
            .map(|r| format!("{r} (--connect-local allows it)"))
    });
    cfg.origin = Arc::new(engine::origin::HyperOrigin::guarded(
        cfg.origin_timeout,
        Some(refuse),
    ));
}

/// Opens a `CONNECT` tunnel: checks and connects to the target first (so a refusal is a clear
/// 403 and a failure a clear 502), then answers 200 and copies bytes both ways. The tunnel
/// holds its client connection's slot for as long as it is open.
pub(crate) async fn connect(
    sh: &Shared,
    conn: &ConnSlot,
    req: Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let uri = req.uri().clone();
    let (Some(target), Some(_)) = (uri.authority().map(|a| a.to_string()), uri.port_u16()) else {
        return Err(GatewayError::BadConnect { uri });
    };
    let policy = &sh.cfg.connect;
    let connecting = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&target).await?.collect();
        let mut last = None;
        for addr in &addrs {
            if let Err(why) = check_target(policy, *addr, is_own_address) {
                return Ok(Err(why));
            }
        }
        for addr in addrs {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => return Ok(Ok(s)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("the name has no address")))
    };
    let mut upstream = match tokio::time::timeout(sh.cfg.origin_timeout, connecting).await {
        Err(_) => return Err(GatewayError::Timeout { uri }),
        Ok(Err(e)) => {
            return Err(GatewayError::Unreachable {
                uri,
                source: Box::new(e),
            });
        }
        Ok(Ok(Err(reason))) => return Err(GatewayError::ConnectRefused { uri, reason }),
        Ok(Ok(Ok(s))) => s,
    };
    // The connection ends with the upgrade; its slot is the tunnel's from now on.
    let taken = conn.lock().expect("slot lock").take();
    let slot = match taken {
        Some(p) => p,
        None => Arc::clone(&sh.conns)
            .try_acquire_owned()
            .map_err(|_| GatewayError::Busy)?,
    };
    sh.metrics.request(CacheStatus::Bypass);
    let stop = sh.stop.clone();
    let idle = policy.idle;
    sh.tasks.spawn(async move {
        let _slot = slot;
        match hyper::upgrade::on(req).await {
            Ok(up) => {
                let clock = Idle::new();
                let mut client = Watched::new(TokioIo::new(up), &clock);
                let mut server = Watched::new(&mut upstream, &clock);
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = clock.expired(idle) => tracing::debug!("CONNECT {target}: idle, closed"),
                    _ = stop.cancelled() => {}
                }
            }
            Err(e) => tracing::debug!("CONNECT {target}: upgrade failed: {e}"),
        }
    });
    let mut r = Response::new(empty());
    r.headers_mut()
        .insert(http::header::VIA, HeaderValue::from_static("1.1 pdist"));
    Ok(r)
}

/// When a tunnel last moved a byte.
#[derive(Debug, Clone)]
struct Idle {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Idle {
    fn new() -> Idle {
        Idle {
            start: Instant::now(),
            last_ms: Arc::default(),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Resolves once no byte has moved for `limit`.
    async fn expired(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = last + limit;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// A stream that marks the tunnel's clock whenever bytes come in.
struct Watched<S> {
    inner: S,
    clock: Idle,
}

impl<S> Watched<S> {
    fn new(inner: S, clock: &Idle) -> Watched<S> {
        Watched {
            inner,
            clock: clock.clone(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_addresses_are_those_a_socket_binds_to() {
        assert!(is_own_address("127.0.0.1".parse().unwrap()));
        assert!(!is_own_address("192.0.2.77".parse().unwrap()));
    }
}
