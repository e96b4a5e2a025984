//! The HTTP origin a fetch may fall back to: range requests for blocks no peer holds, and the
//! streamed download (from the start or from an offset) of content nobody on the LAN has yet.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why the origin failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// Not an `http://` URL.
    #[error("origin URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Connection or read failure.
    #[error("origin {url}: {detail}")]
    Io {
        /// The URL.
        url: String,
        /// What happened.
        detail: String,
    },
    /// An unexpected status.
    #[error("origin {url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The origin ignores range requests.
    #[error("origin {url} does not answer range requests (no 206)")]
    NoRanges {
        /// The URL.
        url: String,
    },
    /// The origin's bytes are not the content of the ticket.
    #[error(
        "the origin's bytes are not the content of the ticket (changed at the origin?): {detail}"
    )]
    Changed {
        /// What did not match.
        detail: String,
    },
}

/// An HTTP origin (plain HTTP; the bytes are verified against the content information, so
/// transport security is not needed for integrity).
#[derive(Debug, Clone)]
pub struct OriginClient {
    uri: Uri,
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl OriginClient {
    /// A client for `url`, which must be `http://`.
    pub fn new(url: &str, timeout: Duration) -> Result<OriginClient, OriginError> {
        let bad = |reason: &str| OriginError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(bad("only http://HOST[:PORT]/PATH origins are supported"));
        }
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(timeout));
        conn.set_nodelay(true);
        Ok(OriginClient {
            uri,
            client: Client::builder(TokioExecutor::new()).build(conn),
            timeout,
        })
    }

    fn url(&self) -> String {
        self.uri.to_string()
    }

    fn io(&self, detail: impl ToString) -> OriginError {
        OriginError::Io {
            url: self.url(),
            detail: detail.to_string(),
        }
    }

    async fn get(
        &self,
        headers: &[(&str, String)],
    ) -> Result<hyper::Response<hyper::body::Incoming>, OriginError> {
        let mut req = hyper::Request::get(self.uri.clone()).header("user-agent", "pdist");
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let req = req
            .body(Empty::new())
            .expect("a parsed URI makes a valid request");
        tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| self.io("no answer in time"))?
            .map_err(|e| self.io(e))
    }

    /// The bytes `range` of the resource.
    pub async fn get_range(&self, range: Range<u64>) -> Result<Vec<u8>, OriginError> {
        let spec = format!("bytes={}-{}", range.start, range.end - 1);
        let resp = self.get(&[("range", spec)]).await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {}
            StatusCode::OK => return Err(OriginError::NoRanges { url: self.url() }),
            s => {
                return Err(OriginError::Status {
                    url: self.url(),
                    status: s.as_u16(),
                });
            }
        }
        let want = (range.end - range.start) as usize;
        let content_range = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if !content_range.starts_with(&format!("bytes {}-{}/", range.start, range.end - 1)) {
            return Err(self.io(format!(
                "answered range {content_range:?} for bytes {}-{}",
                range.start,
                range.end - 1
            )));
        }
        let mut body = resp.into_body();
        let mut out = Vec::with_capacity(want);
        while let Some(frame) = tokio::time::timeout(self.timeout, body.frame())
            .await
            .map_err(|_| self.io("stalled"))?
        {
            if let Ok(data) = frame.map_err(|e| self.io(e))?.into_data() {
                if out.len() + data.len() > want {
                    return Err(self.io("sent more than the range"));
                }
                out.extend_from_slice(&data);
            }
        }
        if out.len() != want {
            return Err(self.io(format!("sent {} of {want} bytes", out.len())));
        }
        Ok(out)
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
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let len = match resp.status() {
            StatusCode::OK if from == 0 => header("content-length").and_then(|v| v.parse().ok()),
            StatusCode::OK => return Err(OriginError::NoRanges { url: self.url() }),
            StatusCode::PARTIAL_CONTENT if from > 0 => {
                let range = header("content-range").unwrap_or_default();
                let total = range
                    .strip_prefix(&format!("bytes {from}-"))
                    .and_then(|r| r.split_once('/'))
                    .and_then(|(end, total)| Some((end.parse::<u64>().ok()?, total.parse().ok()?)))
                    .filter(|(end, total)| end.checked_add(1) == Some(*total));
                match total {
                    Some((_, total)) => Some(total),
                    None => {
                        return Err(self.io(format!(
                            "answered range {range:?} for bytes {from}- (want to the end)"
                        )));
                    }
                }
            }
            s => {
                return Err(OriginError::Status {
                    url: self.url(),
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
    body: hyper::body::Incoming,
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
                Err(_) => return Some(Err(self.origin.io("stalled"))),
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
