//! Why a request failed, and the one place where failures become HTTP answers: every error is a
//! clear status with a one-line reason in plain text, never a dropped connection.

use std::net::IpAddr;

use http::{HeaderValue, Response, StatusCode};

use crate::body::{Body, full};
use crate::headers::{CACHE_NAME, add_cache_status};

/// Why the gateway could not answer a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The client's address is not in the allowed networks.
    #[error("{ip} may not use this gateway (see --allow)")]
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
    /// The request makes no sense to a proxy.
    #[error("bad request: {reason}")]
    BadRequest {
        /// Why.
        reason: String,
    },
    /// Nothing here by that path.
    #[error("not found: {path}")]
    NotFound {
        /// The path.
        path: String,
    },
    /// The origin could not be reached, or broke the connection.
    #[error("origin {host} unreachable: {reason}")]
    Unreachable {
        /// The origin.
        host: String,
        /// Why.
        reason: String,
    },
    /// The origin did not answer in time.
    #[error("origin {host} did not answer in time")]
    Timeout {
        /// The origin.
        host: String,
    },
    /// Peers were to provide the content, the origin may not, and peers failed.
    #[error("peers could not provide {url} and the origin is off for peered content: {reason}")]
    PeersFailed {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The store or the index failed.
    #[error("the gateway's store failed: {0}")]
    Store(String),
}

impl From<engine::store::StoreError> for GatewayError {
    fn from(e: engine::store::StoreError) -> Self {
        GatewayError::Store(e.to_string())
    }
}

impl From<crate::index::IndexError> for GatewayError {
    fn from(e: crate::index::IndexError) -> Self {
        GatewayError::Store(e.to_string())
    }
}

impl GatewayError {
    /// The HTTP status this failure is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Forbidden { .. } => StatusCode::FORBIDDEN,
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            GatewayError::NotFound { .. } => StatusCode::NOT_FOUND,
            GatewayError::Unreachable { .. } | GatewayError::PeersFailed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
        if matches!(
            self,
            GatewayError::Forbidden { .. } | GatewayError::RateLimited { .. }
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
