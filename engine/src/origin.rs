//! HTTP origins: the seam through which everything pdist asks of an origin goes
//! ([`HttpOrigin`]: one request, its answer's head once it arrives, the body streaming), its
//! implementation on hyper ([`HyperOrigin`], pooled, plain HTTP/1.1) and its in-memory twin
//! ([`mem::MemOrigin`]), which the same tests run against; and [`OriginClient`], what a fetch
//! asks of the origin of one URL: ranges of blocks no peer holds, and the streamed download of
//! content nobody on the LAN has yet, from the start or from an offset.
//!
//! Bytes from an origin are checked against content information before anything keeps them, so
//! transport security is not needed for integrity.

pub mod mem;
pub mod retry;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::{StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::content::{ContentId, HashError, VerifyError};

/// Errors of bodies and of the origin seam.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed future, as [`HttpOrigin`] returns (it is used as a trait object).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// An HTTP body as it goes to and comes from origins.
pub type HttpBody = BoxBody<Bytes, BoxError>;

/// An empty [`HttpBody`].
pub fn empty_body() -> HttpBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// How pdist reaches HTTP origins.
pub trait HttpOrigin: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `req` (absolute URI); resolves when the answer's head has arrived (its body then
    /// streams). Timeouts are the caller's.
    fn send(
        &self,
        req: http::Request<HttpBody>,
    ) -> BoxFuture<'_, Result<http::Response<HttpBody>, BoxError>>;
}

/// [`HttpOrigin`] on hyper: one pool of HTTP/1.1 connections, `TCP_NODELAY`, plain HTTP.
#[derive(Clone)]
pub struct HyperOrigin {
    client: Client<HttpConnector<Resolver>, HttpBody>,
    refuse: Option<Refuse>,
}

/// Says why an origin address may not be reached (`None`: it may).
pub type Refuse = Arc<dyn Fn(std::net::IpAddr) -> Option<String> + Send + Sync>;

/// How long an idle connection to an origin is kept for the next request.
pub const POOL_IDLE: Duration = Duration::from_secs(4);

impl HyperOrigin {
    /// A client whose connections must be made within `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> HyperOrigin {
        Self::guarded(connect_timeout, None)
    }

    /// [`HyperOrigin::new`], that never connects to an address `refuse` refuses: a name is
    /// resolved here and only the addresses allowed are tried (so a name cannot be made to
    /// point elsewhere between a check and the connection); an address in the URL is checked
    /// as it is.
    pub fn guarded(connect_timeout: Duration, refuse: Option<Refuse>) -> HyperOrigin {
        let mut conn = HttpConnector::new_with_resolver(Resolver(refuse.clone()));
        conn.set_connect_timeout(Some(connect_timeout));
        conn.set_nodelay(true);
        // A silent origin whose host vanished is noticed by the kernel, not only by our timers.
        conn.set_keepalive(Some(Duration::from_secs(30)));
        // Idle connections are closed before the shortest keep-alive timeout origins commonly
        // use (5 s: Apache's, Node's), so that few are closed under a request; a request that
        // meets one anyway is sent again (see `send`).
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(conn);
        HyperOrigin { client, refuse }
    }
}

impl std::fmt::Debug for HyperOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperOrigin")
            .field("guarded", &self.refuse.is_some())
            .finish_non_exhaustive()
    }
}

/// An origin the gateway may not reach.
#[derive(Debug, thiserror::Error)]
#[error("not reaching {host}: {why}")]
pub struct Refused {
    /// The host asked for.
    pub host: String,
    /// Why (which address, and what it is).
    pub why: String,
}

/// Resolves origin names, keeping only the addresses allowed.
#[derive(Clone)]
struct Resolver(Option<Refuse>);

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for Resolver {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, std::io::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::io::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let refuse = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let all: Vec<_> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let Some(refuse) = refuse else {
                return Ok(all.into_iter());
            };
            let mut why = None;
            let ok: Vec<_> = all
                .into_iter()
                .filter(|a| match refuse(a.ip()) {
                    None => true,
                    Some(w) => {
                        why.get_or_insert(w);
                        false
                    }
                })
                .collect();
            match why {
                Some(why) if ok.is_empty() => Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    Refused { host, why },
                )),
                _ => Ok(ok.into_iter()),
            }
        })
    }
}

impl HttpOrigin for HyperOrigin {
    fn send(
        &self,
        req: http::Request<HttpBody>,
    ) -> BoxFuture<'_, Result<http::Response<HttpBody>, BoxError>> {
        Box::pin(async move {
            // Addresses in URLs skip the resolver.
            let literal = req
                .uri()
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                .and_then(|h| h.parse::<std::net::IpAddr>().ok());
            if let (Some(refuse), Some(ip)) = (&self.refuse, literal)
                && let Some(why) = refuse(ip)
            {
                let host = ip.to_string();
                return Err(Box::new(Refused { host, why }) as BoxError);
            }
            // An idempotent request without a body is sent once more, on a fresh connection, if
            // the pooled one it went out on was closed before an answer began.
            let again = (retry::idempotent(req.method())
                && http_body::Body::is_end_stream(req.body()))
            .then(|| {
                let mut r = http::Request::new(empty_body());
                *r.method_mut() = req.method().clone();
                *r.uri_mut() = req.uri().clone();
                *r.version_mut() = req.version();
                *r.headers_mut() = req.headers().clone();
                *r.extensions_mut() = req.extensions().clone();
                r
            });
            let resp = match (self.client.request(req).await, again) {
                (Ok(r), _) => r,
                (Err(e), Some(again)) if retry::ended_before_answer(&e) => {
                    tracing::debug!("origin {}: {e}; sending it again", again.uri());
                    self.client.request(again).await?
                }
                (Err(e), _) => return Err(e.into()),
            };
            Ok(resp.map(|b| b.map_err(BoxError::from).boxed()))
        })
    }
}

/// Why the origin failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// Not a URL.
    #[error("origin URL: {0}")]
    BadUrl(#[from] http::uri::InvalidUri),
    /// Not an `http://HOST[:PORT]/PATH` URL.
    #[error("origin URL {uri}: only http://HOST[:PORT]/PATH origins are supported")]
    NotHttp {
        /// The URL.
        uri: Uri,
    },
    /// The connection failed, or broke.
    #[error("origin {uri}: {source}")]
    Io {
        /// The URL.
        uri: Uri,
        /// The cause.
        source: BoxError,
    },
    /// No answer, or no more of the body, within the timeout.
    #[error("origin {uri}: no answer within {:?}", .timeout)]
    Timeout {
        /// The URL.
        uri: Uri,
        /// The timeout.
        timeout: Duration,
    },
    /// An unexpected status.
    #[error("origin {uri} answered HTTP {status}")]
    Status {
        /// The URL.
        uri: Uri,
        /// The status.
        status: u16,
    },
    /// The origin ignores range requests (or the validator no longer holds).
    #[error("origin {uri} does not answer range requests (no 206)")]
    NoRanges {
        /// The URL.
        uri: Uri,
    },
    /// The origin answered another range than asked.
    #[error("origin {uri} answered range {answered:?} for bytes {}-{}", .asked.start, .asked.end)]
    WrongRange {
        /// The URL.
        uri: Uri,
        /// The bytes asked for (`end` inclusive; `u64::MAX`: to the end).
        asked: Range<u64>,
        /// Its `Content-Range`.
        answered: Option<Box<http::HeaderValue>>,
    },
    /// The origin sent another number of bytes than its answer said.
    #[error("origin {uri} sent {got} of {want} bytes")]
    Length {
        /// The URL.
        uri: Uri,
        /// Bytes received (at least).
        got: u64,
        /// Bytes announced.
        want: u64,
    },
    /// The origin's bytes are not the content of the ticket.
    #[error("the origin's bytes are not the content of the ticket (changed at the origin?): {0}")]
    Changed(#[from] Mismatch),
}

/// How an origin's bytes differ from the content a ticket names.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Mismatch {
    /// Longer than the largest content.
    #[error("it is longer than the largest content ({max} bytes)")]
    TooLong {
        /// The largest content.
        max: u64,
    },
    /// Shorter or longer than it said.
    #[error("it sent {got} of {want} bytes")]
    Length {
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        want: u64,
    },
    /// Its bytes make other content.
    #[error(
        "it hashes to {}, not to the ticket ({from_origin} of {total} bytes from the origin, the rest from peers)",
        .got.ticket()
    )]
    OtherContent {
        /// What the bytes hash to.
        got: ContentId,
        /// Bytes that came from the origin.
        from_origin: u64,
        /// Bytes in all.
        total: u64,
    },
    /// Its bytes cannot be described (too long, for one).
    #[error("{0}")]
    Hash(#[from] HashError),
    /// A block does not match its hash.
    #[error("{0}")]
    Block(#[from] VerifyError),
}

/// The origin of one URL, as a fetch uses it.
#[derive(Debug, Clone)]
pub struct OriginClient {
    uri: Uri,
    origin: Arc<dyn HttpOrigin>,
    timeout: Duration,
}

impl OriginClient {
    /// A client for `url` (`http://` only) on a pool of its own; every answer (and every chunk
    /// of a body) must come within `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<OriginClient, OriginError> {
        OriginClient::with(Arc::new(HyperOrigin::new(timeout)), url, timeout)
    }

    /// A client for `url` through `origin`.
    pub fn with(
        origin: Arc<dyn HttpOrigin>,
        url: &str,
        timeout: Duration,
    ) -> Result<OriginClient, OriginError> {
        let uri: Uri = url.parse()?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(OriginError::NotHttp { uri });
        }
        Ok(OriginClient {
            uri,
            origin,
            timeout,
        })
    }

    /// The URL.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    fn io(&self, source: impl Into<BoxError>) -> OriginError {
        OriginError::Io {
            uri: self.uri.clone(),
            source: source.into(),
        }
    }

    fn timed_out(&self) -> OriginError {
        OriginError::Timeout {
            uri: self.uri.clone(),
            timeout: self.timeout,
        }
    }

    async fn get(
        &self,
        headers: &[(&str, String)],
    ) -> Result<http::Response<HttpBody>, OriginError> {
        let mut req = http::Request::get(self.uri.clone()).header("user-agent", "pdist");
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let req = req
            .body(empty_body())
            .expect("a parsed URI makes a valid request");
        tokio::time::timeout(self.timeout, self.origin.send(req))
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|e| self.io(e))
    }

    /// The bytes `range` of the resource.
    pub async fn get_range(&self, range: Range<u64>) -> Result<Vec<u8>, OriginError> {
        let spec = format!("bytes={}-{}", range.start, range.end - 1);
        let resp = self.get(&[("range", spec)]).await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {}
            StatusCode::OK => {
                return Err(OriginError::NoRanges {
                    uri: self.uri.clone(),
                });
            }
            s => {
                return Err(OriginError::Status {
                    uri: self.uri.clone(),
                    status: s.as_u16(),
                });
            }
        }
        let want = (range.end - range.start) as usize;
        let content_range = resp.headers().get("content-range").cloned();
        let expect = format!("bytes {}-{}/", range.start, range.end - 1);
        if !content_range
            .as_ref()
            .is_some_and(|v| v.as_bytes().starts_with(expect.as_bytes()))
        {
            return Err(OriginError::WrongRange {
                uri: self.uri.clone(),
                asked: range.start..range.end - 1,
                answered: content_range.map(Box::new),
            });
        }
        let mut body = resp.into_body();
        let mut out = Vec::with_capacity(want);
        while let Some(frame) = tokio::time::timeout(self.timeout, body.frame())
            .await
            .map_err(|_| self.timed_out())?
        {
            if let Ok(data) = frame.map_err(|e| self.io(e))?.into_data() {
                if out.len() + data.len() > want {
                    return Err(self.length(out.len() + data.len(), want));
                }
                out.extend_from_slice(&data);
            }
        }
        if out.len() != want {
            return Err(self.length(out.len(), want));
        }
        Ok(out)
    }

    fn length(&self, got: usize, want: usize) -> OriginError {
        OriginError::Length {
            uri: self.uri.clone(),
            got: got as u64,
            want: want as u64,
        }
    }

    /// The resource from byte `from` to its end, as a stream of chunks (from 0: a plain GET;
    /// else a range request, which must be answered with that range).
    pub async fn stream(&self, from: u64) -> Result<OriginStream, OriginError> {
        self.stream_if(from, None).await
    }

    /// [`OriginClient::stream`]; from an offset, only if the resource still has the validator
    /// `if_range` (a strong entity tag or a date: `If-Range`), else [`OriginError::NoRanges`].
    /// From 0 the whole resource is asked for, and `if_range` is not sent.
    pub async fn stream_if(
        &self,
        from: u64,
        if_range: Option<&str>,
    ) -> Result<OriginStream, OriginError> {
        let mut headers = Vec::new();
        if from > 0 {
            headers.push(("range", format!("bytes={from}-")));
            if let Some(v) = if_range {
                headers.push(("if-range", v.to_string()));
            }
        }
        let resp = self.get(&headers).await?;
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok());
        let len = match resp.status() {
            StatusCode::OK if from == 0 => header("content-length").and_then(|v| v.parse().ok()),
            StatusCode::OK => {
                return Err(OriginError::NoRanges {
                    uri: self.uri.clone(),
                });
            }
            StatusCode::PARTIAL_CONTENT if from > 0 => {
                let total = header("content-range")
                    .and_then(|r| r.strip_prefix(&format!("bytes {from}-")))
                    .and_then(|r| r.split_once('/'))
                    .and_then(|(end, total)| Some((end.parse::<u64>().ok()?, total.parse().ok()?)))
                    .filter(|(end, total)| end.checked_add(1) == Some(*total));
                match total {
                    Some((_, total)) => Some(total),
                    None => {
                        return Err(OriginError::WrongRange {
                            uri: self.uri.clone(),
                            asked: from..u64::MAX,
                            answered: resp.headers().get("content-range").cloned().map(Box::new),
                        });
                    }
                }
            }
            s => {
                return Err(OriginError::Status {
                    uri: self.uri.clone(),
                    status: s.as_u16(),
                });
            }
        };
        Ok(OriginStream {
            origin: self.clone(),
            body: resp.into_body(),
            len,
        })
    }
}

/// The body of [`OriginClient::stream`], chunk by chunk.
#[derive(Debug)]
pub struct OriginStream {
    origin: OriginClient,
    body: HttpBody,
    len: Option<u64>,
}

impl OriginStream {
    /// The whole resource's length, when the origin said it.
    pub fn total_len(&self) -> Option<u64> {
        self.len
    }

    /// The next chunk; `None` at the end. A chunk that takes longer than the client's
    /// timeout is an error.
    pub async fn next(&mut self) -> Option<Result<Bytes, OriginError>> {
        loop {
            let frame = match tokio::time::timeout(self.origin.timeout, self.body.frame()).await {
                Err(_) => return Some(Err(self.origin.timed_out())),
                Ok(None) => return None,
                Ok(Some(Err(e))) => return Some(Err(self.origin.io(e))),
                Ok(Some(Ok(f))) => f,
            };
            if let Ok(data) = frame.into_data() {
                return Some(Ok(data));
            }
        }
    }
}
