//! When a request to an origin may be sent again: it is idempotent (RFC 9110 §9.2.2), has no
//! body to replay, and failed before any byte of an answer came, the way a pooled keep-alive
//! connection that the origin closed while it was idle fails (RFC 9112 §9.3.1: a client may
//! retry such a request once). Pure.

use http::Method;

/// Whether `method` may be repeated without changing more than once (RFC 9110 §9.2.2).
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether `e` (a client error) is a connection that ended before its answer began: the
/// connection was closed, reset or canceled under the request. A connection that could not
/// be made is not (trying again would fail the same way).
pub fn ended_before_answer(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_canceled())
        {
            return true;
        }
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(io.kind(), ConnectionReset | BrokenPipe | ConnectionAborted)
        {
            return true;
        }
        next = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_requests_are_repeated() {
        assert!(idempotent(&Method::GET) && idempotent(&Method::PUT));
        assert!(!idempotent(&Method::POST) && !idempotent(&Method::PATCH));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(ended_before_answer(&reset));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!ended_before_answer(&refused));
    }
}
