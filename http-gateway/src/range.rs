//! Byte ranges of a cached body (RFC 9110 §14): which parts a request asks for, whether its
//! `If-Range` lets it have them, and the framing of a `multipart/byteranges` body. Pure: header
//! values in, a plan out; the parsing itself is `http-range-header`'s strict parser.

use std::num::NonZeroUsize;
use std::ops::Range;

use http::HeaderMap;
use http::header::{IF_RANGE, RANGE};
use http_range_header::RangeUnsatisfiableError;

/// Most ranges one request may ask for; more are ignored (the whole body is sent).
pub const MAX_RANGES: usize = 16;

/// What to send for a request, given the body's length and validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangePlan {
    /// The whole body (no range, an ignored one, or an `If-Range` that does not match).
    Full,
    /// These parts (half-open, in the order asked): one is a plain 206, more
    /// are `multipart/byteranges`.
    Parts(Vec<Range<u64>>),
    /// 416, with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// The validators of the stored response, for `If-Range`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validators<'a> {
    /// `ETag`, as sent.
    pub etag: Option<&'a str>,
    /// `Last-Modified`, as sent.
    pub last_modified: Option<&'a str>,
}

/// Plans the answer to a GET with `headers` for a body of `len` bytes.
pub fn plan(headers: &HeaderMap, len: u64, v: Validators<'_>) -> RangePlan {
    let Some(range) = headers.get(RANGE).and_then(|r| r.to_str().ok()) else {
        return RangePlan::Full;
    };
    if let Some(cond) = headers.get(IF_RANGE) {
        let Ok(cond) = cond.to_str() else {
            return RangePlan::Full;
        };
        if !if_range_matches(cond.trim(), v) {
            return RangePlan::Full;
        }
    }
    let max = NonZeroUsize::new(MAX_RANGES).expect("non-zero");
    let parsed = match http_range_header::parse_range_header_with_max_ranges(range, max) {
        Ok(p) => p,
        // A range we cannot parse, or too many, is ignored (RFC 9110 §14.2).
        Err(_) => return RangePlan::Full,
    };
    match parsed.validate(len) {
        Ok(v) if v.is_empty() => RangePlan::Full,
        Ok(v) => RangePlan::Parts(v.into_iter().map(|r| *r.start()..*r.end() + 1).collect()),
        Err(RangeUnsatisfiableError::Unsatisfiable) => RangePlan::Unsatisfiable,
        Err(_) => RangePlan::Full,
    }
}

/// `If-Range` (RFC 9110 §13.1.5): an entity tag matches only a strong, identical `ETag`; a date
/// matches only the identical `Last-Modified`.
fn if_range_matches(cond: &str, v: Validators<'_>) -> bool {
    if cond.starts_with('"') || cond.starts_with("W/") {
        return !cond.starts_with("W/")
            && v.etag
                .is_some_and(|e| !e.trim().starts_with("W/") && e.trim() == cond);
    }
    v.last_modified.is_some_and(|lm| lm.trim() == cond)
}

/// `Content-Range` of one part.
pub fn content_range(r: &Range<u64>, len: u64) -> String {
    format!("bytes {}-{}/{len}", r.start, r.end - 1)
}

/// The framing of a `multipart/byteranges` body: the header before each part and the closing
/// delimiter, so the body's length is known before any of it is sent.
#[derive(Debug, Clone)]
pub struct Multipart {
    /// The boundary.
    pub boundary: String,
    /// For each part: the bytes before it.
    pub heads: Vec<String>,
    /// The closing delimiter.
    pub tail: String,
}

impl Multipart {
    /// Framing for `parts` of a body of `len` bytes whose type is `content_type`.
    pub fn new(parts: &[Range<u64>], len: u64, content_type: Option<&str>, boundary: &str) -> Self {
        let heads = parts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let lead = if i == 0 { "" } else { "\r\n" };
                let ct = content_type.map_or(String::new(), |t| format!("Content-Type: {t}\r\n"));
                format!(
                    "{lead}--{boundary}\r\n{ct}Content-Range: {}\r\n\r\n",
                    content_range(r, len)
                )
            })
            .collect();
        Multipart {
            boundary: boundary.to_string(),
            heads,
            tail: format!("\r\n--{boundary}--\r\n"),
        }
    }

    /// The whole body's length.
    pub fn body_len(&self, parts: &[Range<u64>]) -> u64 {
        let framing: usize = self.heads.iter().map(String::len).sum::<usize>() + self.tail.len();
        framing as u64 + parts.iter().map(|r| r.end - r.start).sum::<u64>()
    }

    /// `Content-Type` of the whole response.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    fn one(r: Range<u64>) -> RangePlan {
        RangePlan::Parts(std::iter::once(r).collect())
    }

    const V: Validators<'static> = Validators {
        etag: Some("\"abc\""),
        last_modified: Some("Tue, 24 Nov 2026 03:00:00 GMT"),
    };

    #[test]
    fn single_suffix_open_and_multiple_ranges() {
        assert_eq!(plan(&h(&[]), 100, V), RangePlan::Full);
        assert_eq!(plan(&h(&[("range", "bytes=0-9")]), 100, V), one(0..10));
        assert_eq!(plan(&h(&[("range", "bytes=-10")]), 100, V), one(90..100));
        assert_eq!(plan(&h(&[("range", "bytes=95-")]), 100, V), one(95..100));
        assert_eq!(
            plan(&h(&[("range", "bytes=0-0,50-199")]), 100, V),
            RangePlan::Parts(vec![0..1, 50..100])
        );
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(
            plan(&h(&[("range", "bytes=100-")]), 100, V),
            RangePlan::Unsatisfiable
        );
        assert_eq!(plan(&h(&[("range", "bytes=x-y")]), 100, V), RangePlan::Full);
        assert_eq!(plan(&h(&[("range", "items=0-1")]), 100, V), RangePlan::Full);
        // A few overlapping ranges are legal (RFC 9110 §14.2) and served as asked.
        assert_eq!(
            plan(&h(&[("range", "bytes=0-10,5-20")]), 100, V),
            RangePlan::Parts(vec![0..11, 5..21])
        );
        let many = (0..=MAX_RANGES)
            .map(|i| format!("{}-{}", i * 2, i * 2))
            .collect::<Vec<_>>();
        let many = format!("bytes={}", many.join(","));
        assert_eq!(plan(&h(&[("range", &many)]), 1000, V), RangePlan::Full);
    }

    #[test]
    fn if_range_needs_a_strong_identical_validator() {
        let r = ("range", "bytes=0-9");
        let part = one(0..10);
        assert_eq!(plan(&h(&[r, ("if-range", "\"abc\"")]), 100, V), part);
        assert_eq!(
            plan(&h(&[r, ("if-range", "\"other\"")]), 100, V),
            RangePlan::Full
        );
        assert_eq!(
            plan(&h(&[r, ("if-range", "W/\"abc\"")]), 100, V),
            RangePlan::Full
        );
        let weak = Validators {
            etag: Some("W/\"abc\""),
            last_modified: None,
        };
        assert_eq!(
            plan(&h(&[r, ("if-range", "W/\"abc\"")]), 100, weak),
            RangePlan::Full
        );
        assert_eq!(
            plan(
                &h(&[r, ("if-range", "Tue, 24 Nov 2026 03:00:00 GMT")]),
                100,
                V
            ),
            part
        );
        assert_eq!(
            plan(
                &h(&[r, ("if-range", "Mon, 23 Nov 2026 03:00:00 GMT")]),
                100,
                V
            ),
            RangePlan::Full
        );
    }

    #[test]
    fn multipart_length_is_exact() {
        let parts = vec![0..1, 50..100];
        let m = Multipart::new(&parts, 100, Some("text/plain"), "B0UND");
        let mut body = String::new();
        for (head, r) in m.heads.iter().zip(&parts) {
            body.push_str(head);
            body.push_str(&"x".repeat((r.end - r.start) as usize));
        }
        body.push_str(&m.tail);
        assert_eq!(body.len() as u64, m.body_len(&parts));
        assert!(body.contains("Content-Range: bytes 50-99/100\r\n"));
        assert_eq!(m.content_type(), "multipart/byteranges; boundary=B0UND");
    }
}
