//! 1xx interim answers (RFC 9110 §15.2) passed from an origin to the client whose request it
//! answers, before the final answer (a `103 Early Hints` lets a browser fetch what the page
//! will need while the origin prepares it). They are never stored.
//!
//! hyper's HTTP/1 server cannot send one, so the gateway writes it itself, on a second handle to
//! the client's socket ([`ClientSocket`]), while hyper waits for the handler's final answer.
//! That is safe only while hyper has nothing of its own unwritten on the connection: the
//! connection's I/O ([`Tracked`]) records whether hyper's last act was a completed flush with
//! nothing written since, and an interim answer that comes at another moment (a client that
//! pipelines and reads slowly) is dropped, as RFC 8297 §2 lets an intermediary do. Never to
//! HTTP/1.0 clients (§15.2), never `100 Continue` or `101` (they belong to the gateway's own
//! connections), not when the client expects `100-continue` (hyper may write that itself), and
//! at most [`MAX_INTERIM`] per request.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::{HeaderMap, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most interim answers passed on for one request.
pub const MAX_INTERIM: usize = 16;

/// A client connection's I/O as hyper uses it, recording whether all hyper wrote has been
/// flushed.
#[derive(Debug)]
pub(crate) struct Tracked {
    inner: tokio::net::TcpStream,
    flushed: Arc<AtomicBool>,
}

/// A second handle to a client connection's socket, in its requests' extensions. It is weak:
/// the connection's task holds the only strong one ([`Dup`]), so that a request's head kept by
/// a background task never keeps the client's socket open.
#[derive(Clone, Debug)]
pub(crate) struct ClientSocket {
    dup: std::sync::Weak<tokio::net::TcpStream>,
    flushed: Arc<AtomicBool>,
}

/// The duplicate descriptor, held by the connection's task for as long as it serves.
pub(crate) type Dup = Arc<tokio::net::TcpStream>;

/// `stream` for hyper, the duplicate to hold while it serves, and the handle interim answers
/// are written on (`None` if the socket could not be duplicated: then none are).
pub(crate) fn track(stream: tokio::net::TcpStream) -> (Tracked, Option<(Dup, ClientSocket)>) {
    let flushed = Arc::new(AtomicBool::new(true));
    let dup = duplicate(&stream).ok().map(|dup| {
        let dup = Arc::new(dup);
        let handle = ClientSocket {
            dup: Arc::downgrade(&dup),
            flushed: Arc::clone(&flushed),
        };
        (dup, handle)
    });
    (
        Tracked {
            inner: stream,
            flushed,
        },
        dup,
    )
}

fn duplicate(stream: &tokio::net::TcpStream) -> std::io::Result<tokio::net::TcpStream> {
    use std::os::fd::AsFd;
    let std = std::net::TcpStream::from(stream.as_fd().try_clone_to_owned()?);
    std.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(std)
}

impl ClientSocket {
    /// Writes `bytes` (a whole interim answer) if hyper has nothing unwritten; whether it did.
    pub async fn write_interim(&self, bytes: &[u8]) -> bool {
        let Some(dup) = self.dup.upgrade() else {
            return false;
        };
        if !self.flushed.load(Ordering::SeqCst) {
            return false;
        }
        let mut at = 0;
        while at < bytes.len() {
            if dup.writable().await.is_err() {
                return false;
            }
            match dup.try_write(&bytes[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return false,
            }
        }
        true
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.flushed.store(false, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.flushed.store(false, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            self.flushed.store(true, Ordering::SeqCst);
        }
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether interim answers may be passed to the client that sent a request with this version
/// and these fields.
pub fn may_forward(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11 && !headers.contains_key(http::header::EXPECT)
}

/// Whether an interim answer with this status is passed on.
pub fn forwarded(status: StatusCode) -> bool {
    status.is_informational()
        && status != StatusCode::CONTINUE
        && status != StatusCode::SWITCHING_PROTOCOLS
}

/// An interim answer as the client receives it: its status line and its end-to-end fields.
pub fn head_bytes(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut h = headers.clone();
    crate::headers::strip_hop_by_hop(&mut h);
    let reason = status.canonical_reason().unwrap_or("Informational");
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", status.as_u16()).into_bytes();
    for (n, v) in &h {
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_passed_on_and_how() {
        assert!(forwarded(StatusCode::from_u16(103).unwrap()));
        assert!(!forwarded(StatusCode::CONTINUE) && !forwarded(StatusCode::OK));
        let mut h = HeaderMap::new();
        h.insert("link", "</a.css>; rel=preload".parse().unwrap());
        h.insert("connection", "close".parse().unwrap());
        let b = head_bytes(StatusCode::from_u16(103).unwrap(), &h);
        assert_eq!(
            b,
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
        );
        assert!(!may_forward(Version::HTTP_10, &HeaderMap::new()));
        let mut expect = HeaderMap::new();
        expect.insert("expect", "100-continue".parse().unwrap());
        assert!(!may_forward(Version::HTTP_11, &expect));
    }
}
