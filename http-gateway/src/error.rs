//! Why a request failed, and the one place where failures become HTTP answers: every error is a
//! clear status with a one-line reason in plain text, never a dropped connection.

use std::net::IpAddr;
use std::path::PathBuf;

use http::{HeaderValue, Response, StatusCode, Uri};

use crate::body::{Body, BoxError, full};
use crate::headers::{CACHE_NAME, add_cache_status};

/// Why the gateway could not answer a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The client's address is not in the allowed networks.
    #[error("{ip} is not among the client networks this gateway serves")]
    Forbidden {
        /// The client.
        ip: IpAddr,
    },
    /// The client sent too many requests.
    #[error("too many requests from {ip}")]
    RateLimited {
        /// The client.
        ip: IpAddr,
    },
    /// A URL the forward proxy does not take (only `http://`; HTTPS goes through `CONNECT`).
    #[error("only http:// URLs are proxied (HTTPS goes through CONNECT), not {uri}")]
    NotProxied {
        /// The URL asked for.
        uri: Uri,
    },
    /// A `CONNECT` whose target is not `host:port`.
    #[error("CONNECT {uri}: the target must be HOST:PORT")]
    BadConnect {
        /// The target asked for.
        uri: Uri,
    },
    /// A `CONNECT` to a target tunnels may not reach ([`crate::allow::ConnectPolicy`]).
    #[error("CONNECT {uri} refused: {reason}")]
    ConnectRefused {
        /// The target asked for.
        uri: Uri,
        /// Why.
        reason: crate::allow::Refusal,
    },
    /// Every connection slot is taken.
    #[error("too busy: every connection slot is taken; try again shortly")]
    Busy,
    /// A request that makes no URL.
    #[error("bad request: {0}")]
    BadUri(#[from] http::uri::InvalidUri),
    /// A request in origin form for none of the gateway's own routes.
    #[error(
        "not found: {} (this is a forward proxy: clients set http_proxy=http://{}/ and ask for http:// URLs)",
        .uri,
        .host.as_ref().map_or("this-host", |h| h.as_str())
    )]
    NotFound {
        /// The path asked for.
        uri: Uri,
        /// How the client reached the gateway (its `Host`).
        host: Option<http::uri::Authority>,
    },
    /// The origin could not be reached, or broke the connection.
    #[error("origin {} unreachable: {}", host(.uri), chain(.source.as_ref()))]
    Unreachable {
        /// What was asked of it.
        uri: Uri,
        /// The cause.
        source: BoxError,
    },
    /// The origin did not answer in time.
    #[error("origin {} did not answer in time", host(.uri))]
    Timeout {
        /// What was asked of it.
        uri: Uri,
    },
    /// Peers were to provide the content and failed (and the origin may not, or failed too).
    #[error("peers could not provide {url}: {source}")]
    PeersFailed {
        /// The URL.
        url: Uri,
        /// Why the fetch failed.
        source: engine::fetch::FetchError,
    },
    /// Content the gateway had just stored went missing (evicted under it).
    #[error("content {id} went missing from the store")]
    ContentGone {
        /// The content.
        id: engine::ContentId,
    },
    /// Content information could not be encoded as asked (origin mode).
    #[error("encoding content information: {0}")]
    Encode(#[source] BoxError),
    /// The store failed.
    #[error("the gateway's store failed: {0}")]
    Store(#[from] engine::store::StoreError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// A spool file could not be created.
    #[error("creating a spool file in {}: {source}", .dir.display())]
    Spool {
        /// The spool directory.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A background task of the request failed.
    #[error("a task of the gateway failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl GatewayError {
    /// A failed blocking task (for `map_err`).
    pub(crate) fn task(e: tokio::task::JoinError) -> GatewayError {
        GatewayError::Task(e)
    }
}

/// Who a URI names (its authority): messages name the origin, not the whole URL, whose query
/// may hold a signature or a token.
fn host(uri: &Uri) -> &str {
    uri.authority().map_or("?", |a| a.as_str())
}

/// An error and its causes, on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

impl GatewayError {
    /// The HTTP status this failure is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Forbidden { .. } | GatewayError::ConnectRefused { .. } => {
                StatusCode::FORBIDDEN
            }
            GatewayError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::NotProxied { .. }
            | GatewayError::BadConnect { .. }
            | GatewayError::BadUri(_) => StatusCode::BAD_REQUEST,
            GatewayError::NotFound { .. } => StatusCode::NOT_FOUND,
            GatewayError::Unreachable { .. } | GatewayError::PeersFailed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::ContentGone { .. }
            | GatewayError::Encode(_)
            | GatewayError::Store(_)
            | GatewayError::Index(_)
            | GatewayError::Spool { .. }
            | GatewayError::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The answer: the status, the reason as text, and `Cache-Status` naming us.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut r = Response::new(full(format!("pdist gateway: {self}\n")));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        if matches!(self, GatewayError::Busy | GatewayError::RateLimited { .. }) {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(
            self,
            GatewayError::Forbidden { .. } | GatewayError::RateLimited { .. } | GatewayError::Busy
        ) {
            h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        add_cache_status(
            h,
            &format!("{CACHE_NAME}; detail=error-{}", status.as_u16()),
        );
        r
    }
}
