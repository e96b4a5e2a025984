//! [`MemOrigin`]: an HTTP origin in memory, the twin of [`super::HyperOrigin`] that tests run
//! against. It answers as an HTTP/1.1 server would: `Date` and `Content-Length` on every
//! answer, `304` to a matching `If-None-Match` (weak comparison) or `If-Modified-Since`, `206`
//! to one byte range (`bytes=a-b`, `a-`, `-n`; `416` when it cannot be satisfied; a whole `200`
//! when `If-Range` no longer holds or several ranges are asked for), no body to a `HEAD`, `404`
//! to a path it does not know. On demand it misbehaves ([`Fault`]): refuses the connection,
//! never answers, stalls or breaks mid-body, or says a length its body does not have. It counts
//! what it was asked ([`MemOrigin::asked`], [`MemOrigin::served`]).
//!
//! Resources are found by path and query; the host is not looked at (one twin per origin).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    CONTENT_LENGTH, CONTENT_RANGE, DATE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

use super::{BoxError, BoxFuture, HttpBody, HttpOrigin};

/// Largest request body the twin reads (what a `POST` in a test sends).
const MAX_REQUEST_BODY: usize = 16 << 20;
/// Body chunks are at most this long.
const CHUNK: usize = 64 << 10;

/// How a resource misbehaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fault {
    /// It does not.
    #[default]
    None,
    /// The connection is refused.
    Refuse,
    /// The answer's head never comes.
    NoHead,
    /// The head comes after this long.
    Delay(Duration),
    /// The body stops after this many bytes and never goes on (nor ends).
    StallAfter(usize),
    /// The connection breaks after this many body bytes.
    BreakAfter(usize),
    /// `Content-Length` says this, whatever the body holds.
    ClaimLength(u64),
}

/// What a path answers with.
#[derive(Debug, Clone)]
pub struct Resource {
    /// The status of a plain answer (200 for content).
    pub status: StatusCode,
    /// Its headers (`ETag`, `Last-Modified`, `Cache-Control`, `Vary`, ...).
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
    /// How it misbehaves.
    pub fault: Fault,
    /// The body comes a chunk (64 KiB) at a time with this pause between chunks, as over a
    /// slow link. Default: all at once.
    pub pace: Option<Duration>,
}

impl Resource {
    /// A 200 with `body` and `headers`.
    pub fn new(body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Resource {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("a header name"),
                HeaderValue::from_str(v).expect("a header value"),
            );
        }
        Resource {
            status: StatusCode::OK,
            headers: h,
            body: body.into(),
            fault: Fault::None,
            pace: None,
        }
    }

    /// The same, its body paced: 64 KiB, then `every`, then the next 64 KiB.
    pub fn paced(mut self, every: Duration) -> Resource {
        self.pace = Some(every);
        self
    }

    /// The same, misbehaving as `fault` says.
    pub fn with_fault(mut self, fault: Fault) -> Resource {
        self.fault = fault;
        self
    }

    /// The same with status `status`.
    pub fn with_status(mut self, status: u16) -> Resource {
        self.status = StatusCode::from_u16(status).expect("a status");
        self
    }
}

/// One request the twin answered.
#[derive(Debug, Clone)]
pub struct Asked {
    /// Its method.
    pub method: Method,
    /// Its path and query.
    pub path: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// The answer's status (0: refused, or never answered).
    pub status: u16,
    /// Body bytes of the answer read so far.
    pub body_bytes: u64,
}

/// What a path served, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests.
    pub requests: u64,
    /// Answers with a body (200, 206 to a GET).
    pub bodies: u64,
    /// Body bytes.
    pub bytes: u64,
    /// 304 answers.
    pub not_modified: u64,
    /// 206 answers.
    pub ranges: u64,
}

type Handler = Arc<dyn Fn(&http::request::Parts, &Bytes) -> Resource + Send + Sync>;

#[derive(Default)]
struct State {
    routes: HashMap<String, Handler>,
    /// Every request, with the count of its answer's body bytes read so far.
    log: Vec<(Asked, Arc<AtomicU64>)>,
}

/// An HTTP origin in memory.
#[derive(Clone, Default)]
pub struct MemOrigin {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MemOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemOrigin").finish_non_exhaustive()
    }
}

impl MemOrigin {
    /// An origin that knows no path yet.
    pub fn new() -> MemOrigin {
        MemOrigin::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves `resource` at `path` (and query), replacing what was there.
    pub fn put(&self, path: &str, resource: Resource) {
        self.route(path, move |_, _| resource.clone());
    }

    /// Serves at `path` what `handler` makes of each request's head and body (a resource that
    /// varies, echoes, or changes from one request to the next); conditional requests, ranges
    /// and faults then apply to what it returns.
    pub fn route(
        &self,
        path: &str,
        handler: impl Fn(&http::request::Parts, &Bytes) -> Resource + Send + Sync + 'static,
    ) {
        self.lock()
            .routes
            .insert(path.to_string(), Arc::new(handler));
    }

    /// Forgets `path` (it answers 404 from now on).
    pub fn remove(&self, path: &str) {
        self.lock().routes.remove(path);
    }

    /// Every request answered so far, in order.
    pub fn asked(&self) -> Vec<Asked> {
        self.lock()
            .log
            .iter()
            .map(|(a, n)| Asked {
                body_bytes: n.load(Ordering::Relaxed),
                ..a.clone()
            })
            .collect()
    }

    /// What `path` served so far.
    pub fn served(&self, path: &str) -> Served {
        let mut s = Served::default();
        for a in self.asked().iter().filter(|a| a.path == path) {
            s.requests += 1;
            s.bytes += a.body_bytes;
            match a.status {
                200 | 206 if a.method == Method::GET => s.bodies += 1,
                304 => s.not_modified += 1,
                _ => {}
            }
            if a.status == 206 {
                s.ranges += 1;
            }
        }
        s
    }

    /// Body bytes served in all.
    pub fn bytes_served(&self) -> u64 {
        self.asked().iter().map(|a| a.body_bytes).sum()
    }

    /// Logs a request; the counter is its answer's body bytes read.
    fn record(&self, head: &http::request::Parts, path: &str, status: u16) -> Arc<AtomicU64> {
        let read = Arc::new(AtomicU64::new(0));
        let asked = Asked {
            method: head.method.clone(),
            path: path.to_string(),
            headers: head.headers.clone(),
            status,
            body_bytes: 0,
        };
        self.lock().log.push((asked, Arc::clone(&read)));
        read
    }

    async fn answer(
        &self,
        req: http::Request<HttpBody>,
    ) -> Result<http::Response<HttpBody>, BoxError> {
        let (head, mut incoming) = req.into_parts();
        if head.uri.scheme().is_none() || head.uri.authority().is_none() {
            // As hyper's client: a request goes to an absolute URI.
            return Err(Box::new(std::io::Error::other("not an absolute URI")));
        }
        let mut body = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => return Err(e),
            };
            if let Ok(data) = frame.into_data() {
                if body.len() + data.len() > MAX_REQUEST_BODY {
                    return Err(Box::new(std::io::Error::other("request body too large")));
                }
                body.extend_from_slice(&data);
            }
        }
        let body = Bytes::from(body);
        let path = head
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let handler = self.lock().routes.get(&path).cloned();
        let resource = match handler {
            Some(handler) => handler(&head, &body),
            None => Resource::new(Bytes::new(), &[]).with_status(404),
        };
        match resource.fault {
            Fault::Refuse => {
                self.record(&head, &path, 0);
                let refused = std::io::ErrorKind::ConnectionRefused;
                return Err(Box::new(std::io::Error::new(refused, "the twin's fault")));
            }
            Fault::NoHead => {
                self.record(&head, &path, 0);
                std::future::pending::<()>().await;
            }
            Fault::Delay(d) => tokio::time::sleep(d).await,
            _ => {}
        }
        let (status, mut headers, data) = respond(&head, &resource);
        let claimed = match resource.fault {
            Fault::ClaimLength(n) => n,
            _ => data.len() as u64,
        };
        if status != StatusCode::NOT_MODIFIED {
            headers.insert(CONTENT_LENGTH, claimed.into());
        }
        let mut send = if head.method == Method::HEAD {
            Bytes::new()
        } else {
            data
        };
        // As hyper's client reads a body: no more than its Content-Length, and an error when
        // the connection ends before it.
        let short = (send.len() as u64) < claimed && head.method != Method::HEAD;
        send.truncate(send.len().min(claimed as usize));
        let (limit, end) = match resource.fault {
            Fault::StallAfter(n) => (send.len().min(n), End::Stall),
            Fault::BreakAfter(n) => (send.len().min(n), End::Break),
            _ if short => (send.len(), End::Break),
            _ => (send.len(), End::Finish),
        };
        let read = self.record(&head, &path, status.as_u16());
        let body = TwinBody {
            data: send,
            pos: 0,
            limit,
            end,
            pace: resource.pace,
            pause: None,
            read,
        };
        let mut r = http::Response::new(body.boxed());
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        Ok(r)
    }
}

impl HttpOrigin for MemOrigin {
    fn send(
        &self,
        req: http::Request<HttpBody>,
    ) -> BoxFuture<'_, Result<http::Response<HttpBody>, BoxError>> {
        Box::pin(self.answer(req))
    }
}

/// The status, headers and body of `resource`'s answer to `req`: conditional requests and
/// single ranges of a 200 to a GET or HEAD are answered as RFC 9110 says.
fn respond(req: &http::request::Parts, resource: &Resource) -> (StatusCode, HeaderMap, Bytes) {
    let mut h = resource.headers.clone();
    if !h.contains_key(DATE) {
        h.insert(DATE, http_date(SystemTime::now()));
    }
    let cacheable = resource.status == StatusCode::OK
        && (req.method == Method::GET || req.method == Method::HEAD);
    if !cacheable {
        return (resource.status, h, resource.body.clone());
    }
    if not_modified(&req.headers, &h) {
        h.remove(CONTENT_LENGTH);
        return (StatusCode::NOT_MODIFIED, h, Bytes::new());
    }
    let len = resource.body.len() as u64;
    let Some(range) = req.headers.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return (StatusCode::OK, h, resource.body.clone());
    };
    if !if_range_holds(&req.headers, &h) {
        return (StatusCode::OK, h, resource.body.clone());
    }
    match one_range(range, len) {
        Some(Ok((a, b))) => {
            h.insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")).expect("ASCII"),
            );
            let part = resource.body.slice(a as usize..=b as usize);
            (StatusCode::PARTIAL_CONTENT, h, part)
        }
        Some(Err(())) => {
            h.insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).expect("ASCII"),
            );
            (StatusCode::RANGE_NOT_SATISFIABLE, h, Bytes::new())
        }
        None => (StatusCode::OK, h, resource.body.clone()),
    }
}

/// Whether a conditional GET is answered 304: `If-None-Match` (weak comparison, `*`), else
/// `If-Modified-Since` against `Last-Modified`.
fn not_modified(req: &HeaderMap, resp: &HeaderMap) -> bool {
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
    if let Some(inm) = req.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = resp.get(ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        return inm
            .split(',')
            .any(|t| t.trim() == "*" || weak(t) == weak(etag));
    }
    let date = |h: &HeaderMap, n| {
        h.get(n)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
    };
    match (date(req, IF_MODIFIED_SINCE), date(resp, LAST_MODIFIED)) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// Whether `If-Range` (a strong entity tag or a date) still holds, or is absent.
fn if_range_holds(req: &HeaderMap, resp: &HeaderMap) -> bool {
    let Some(v) = req.get(IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if v.starts_with("W/") {
        // A weak entity tag never matches for If-Range.
        return false;
    }
    if v.starts_with('"') {
        return resp.get(ETAG).and_then(|e| e.to_str().ok()) == Some(v);
    }
    resp.get(LAST_MODIFIED).and_then(|e| e.to_str().ok()) == Some(v)
}

/// One range of `bytes=`: `Some(Ok((first, last)))`, `Some(Err(()))` if it cannot be satisfied,
/// `None` if it is not one range the twin answers (several, or malformed: the whole body).
fn one_range(spec: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = spec.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let (first, last) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return Some(Err(()));
        }
        (len.saturating_sub(n), len.checked_sub(1)?)
    } else {
        let first: u64 = a.parse().ok()?;
        let last = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(len.saturating_sub(1))
        };
        (first, last)
    };
    if first >= len || last < first {
        return Some(Err(()));
    }
    Some(Ok((first, last)))
}

fn http_date(t: SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(t)).expect("ASCII")
}

/// How a body ends once its bytes are sent.
enum End {
    Finish,
    Stall,
    Break,
}

/// A body that sends `data[..limit]` in chunks (paced, if asked), then ends, stalls or
/// breaks (a body shorter than its `Content-Length` breaks, as hyper reports it), counting
/// what is read.
struct TwinBody {
    data: Bytes,
    pos: usize,
    limit: usize,
    end: End,
    pace: Option<Duration>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    read: Arc<AtomicU64>,
}

impl http_body::Body for TwinBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if let Some(p) = self.pause.as_mut() {
            if p.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
        }
        if self.pos < self.limit {
            let end = self.limit.min(self.pos + CHUNK);
            let chunk = self.data.slice(self.pos..end);
            self.pos = end;
            self.read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if let Some(every) = self.pace {
                self.pause = Some(Box::pin(tokio::time::sleep(every)));
            }
            return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
        }
        match self.end {
            End::Finish => Poll::Ready(None),
            // Never woken: the body goes on stalling until whoever reads it gives up.
            End::Stall => Poll::Pending,
            End::Break => Poll::Ready(Some(Err(
                "connection reset mid-body (the twin's fault)".into()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, headers: &[(&str, &str)]) -> http::Request<HttpBody> {
        let mut b = http::Request::get(format!("http://origin.test{path}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(super::super::empty_body()).unwrap()
    }

    async fn body(r: http::Response<HttpBody>) -> Result<Bytes, BoxError> {
        Ok(r.into_body().collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn answers_like_a_server() {
        let o = MemOrigin::new();
        o.put(
            "/f",
            Resource::new(&b"0123456789"[..], &[("etag", "\"v1\"")]),
        );
        let r = o.send(get("/f", &[])).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[CONTENT_LENGTH], "10");
        assert!(r.headers().contains_key(DATE));
        assert_eq!(body(r).await.unwrap(), "0123456789");
        let r = o
            .send(get("/f", &[("if-none-match", "W/\"v1\"")]))
            .await
            .unwrap();
        assert_eq!(r.status(), 304);
        let r = o.send(get("/f", &[("range", "bytes=2-4")])).await.unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()[CONTENT_RANGE], "bytes 2-4/10");
        assert_eq!(body(r).await.unwrap(), "234");
        let r = o.send(get("/f", &[("range", "bytes=-3")])).await.unwrap();
        assert_eq!(body(r).await.unwrap(), "789");
        let r = o.send(get("/f", &[("range", "bytes=20-")])).await.unwrap();
        assert_eq!(r.status(), 416);
        let stale = [("range", "bytes=2-4"), ("if-range", "\"v0\"")];
        let r = o.send(get("/f", &stale)).await.unwrap();
        assert_eq!(
            r.status(),
            200,
            "If-Range that no longer holds: the whole body"
        );
        assert_eq!(o.send(get("/nope", &[])).await.unwrap().status(), 404);
        let s = o.served("/f");
        assert_eq!(
            (s.requests, s.bodies, s.not_modified, s.ranges),
            (6, 4, 1, 2)
        );
        assert_eq!(s.bytes, 10 + 3 + 3, "bytes read (the last body was not)");
    }

    #[tokio::test]
    async fn misbehaves_on_demand() {
        let o = MemOrigin::new();
        let data = vec![7u8; 200_000];
        o.put(
            "/refuse",
            Resource::new(data.clone(), &[]).with_fault(Fault::Refuse),
        );
        o.put(
            "/break",
            Resource::new(data.clone(), &[]).with_fault(Fault::BreakAfter(100_000)),
        );
        o.put(
            "/stall",
            Resource::new(data.clone(), &[]).with_fault(Fault::StallAfter(70_000)),
        );
        o.put(
            "/lie",
            Resource::new(data.clone(), &[]).with_fault(Fault::ClaimLength(300_000)),
        );
        o.put(
            "/fib",
            Resource::new(data.clone(), &[]).with_fault(Fault::ClaimLength(100_000)),
        );
        assert!(o.send(get("/refuse", &[])).await.is_err());
        let r = o.send(get("/break", &[])).await.unwrap();
        assert!(body(r).await.is_err());
        let r = o.send(get("/lie", &[])).await.unwrap();
        assert_eq!(r.headers()[CONTENT_LENGTH], "300000");
        assert!(
            body(r).await.is_err(),
            "a body shorter than its length breaks off"
        );
        let r = o.send(get("/fib", &[])).await.unwrap();
        assert_eq!(
            body(r).await.unwrap().len(),
            100_000,
            "read up to its length"
        );
        let relative = http::Request::get("/f")
            .body(super::super::empty_body())
            .unwrap();
        assert!(
            o.send(relative).await.is_err(),
            "only absolute URIs, as hyper"
        );
        let mut r = o.send(get("/stall", &[])).await.unwrap().into_body();
        let mut got = 0;
        loop {
            match tokio::time::timeout(Duration::from_millis(50), r.frame()).await {
                Ok(Some(Ok(f))) => got += f.into_data().unwrap().len(),
                Ok(other) => panic!("a stalled body neither ends nor fails: {other:?}"),
                Err(_) => break,
            }
        }
        assert_eq!(got, 70_000);
        assert_eq!(o.served("/stall").bytes, 70_000);
        assert_eq!(o.served("/refuse").bodies, 0);
    }

    #[tokio::test]
    async fn routes_vary_with_the_request() {
        let o = MemOrigin::new();
        o.route("/vary", |req, _| {
            let lang = req
                .headers
                .get("accept-language")
                .map_or("none", |v| v.to_str().unwrap())
                .to_string();
            Resource::new(lang.clone(), &[("vary", "Accept-Language")])
        });
        let r = o
            .send(get("/vary", &[("accept-language", "fr")]))
            .await
            .unwrap();
        assert_eq!(body(r).await.unwrap(), "fr");
        assert_eq!(o.asked()[0].headers["accept-language"], "fr");
    }
}
