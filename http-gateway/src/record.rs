//! What the gateway remembers about URLs, and what it tells peers about them. Pure: values in,
//! bytes out, and back, with size limits.
//!
//! * [`UrlRecord`]: the local index entry of one URL, its stored variants (one per `Vary`
//!   selection, at most [`MAX_VARIANTS`]), each with its RFC 9111 policy and the content in the
//!   store that holds its body.
//! * [`Claim`]: what a gateway files for its peers ("this URL, with this validator, is that
//!   content"), and [`Pending`], the record of a download of a URL in progress. Both are filed
//!   and sealed under keys derived from the group secret and the URL ([`UrlKeys`]): a node
//!   that does not know both can neither find nor read them, nor test a guessed URL.

use engine::content::{Hash, ServerSecret, hmac_sha256};
use engine::wire::TailKey;
use engine::{ContentId, Ticket};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use crate::policy::Policy;

/// Most stored variants of one URL; the oldest goes first.
pub const MAX_VARIANTS: usize = 4;

/// Most header bytes a claim may carry.
pub const MAX_CLAIM_HEADER_BYTES: usize = 16 * 1024;
/// Largest URL record read from the index (its variants' policies hold their headers).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// One stored response of a URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variant {
    /// Its caching policy (request and response headers, times).
    pub policy: Policy,
    /// The ticket of the content holding its body.
    pub ticket: String,
    /// The body's length.
    pub len: u64,
    /// The request headers that selected it ([`selection`]).
    #[serde(default)]
    pub selection: String,
}

/// The values of the request headers a response's `Vary` names, as one string: two stored
/// responses with the same selection answer the same requests, so the newer replaces the older.
pub fn selection(request: &HeaderMap, response: &HeaderMap) -> String {
    let mut names: Vec<String> = response
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    let mut out = String::new();
    for n in names {
        let vals: Vec<&str> = request
            .get_all(n.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        out.push_str(&format!("{n}={}\n", vals.join(",")));
    }
    out
}

impl Variant {
    /// The content holding the body.
    pub fn content(&self) -> Option<ContentId> {
        self.ticket.parse::<Ticket>().ok().map(|t| t.content_id())
    }
}

/// The local index entry of one URL.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UrlRecord {
    /// Newest last.
    pub variants: Vec<Variant>,
}

impl UrlRecord {
    /// Adds `v`, replacing a variant with the same selection, and dropping the oldest beyond
    /// [`MAX_VARIANTS`].
    pub fn add(&mut self, v: Variant) {
        self.variants.retain(|old| old.selection != v.selection);
        self.variants.push(v);
        let extra = self.variants.len().saturating_sub(MAX_VARIANTS);
        self.variants.drain(..extra);
    }

    /// Encodes for the index.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serialisable")
    }

    /// Decodes an index entry; a damaged or oversized one reads as empty (the URL is fetched
    /// again).
    pub fn from_bytes(b: &[u8]) -> UrlRecord {
        if b.len() > MAX_RECORD_BYTES {
            return UrlRecord::default();
        }
        serde_json::from_slice(b).unwrap_or_default()
    }
}

/// The index key of a URL's record.
pub fn index_key(url: &str) -> Vec<u8> {
    let mut k = b"url\0".to_vec();
    k.extend_from_slice(url.as_bytes());
    k
}

/// The keys of what a group's gateways say to each other about URLs, from the group secret and
/// the URL: a node that does not know both can neither find a claim or a download of a URL,
/// nor read one, nor test a guessed URL against what it overhears.
#[derive(Clone)]
pub struct UrlKeys {
    name: Hash,
    seal: Hash,
    pending: Hash,
    tail: Hash,
}

impl std::fmt::Debug for UrlKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlKeys(..)")
    }
}

impl UrlKeys {
    /// The keys of the group whose secret is `secret`.
    pub fn new(secret: &ServerSecret) -> UrlKeys {
        let k = |label: &[u8]| hmac_sha256(secret.as_bytes(), &[label]);
        UrlKeys {
            name: k(b"pdist url name v2"),
            seal: k(b"pdist url seal v2"),
            pending: k(b"pdist url pending v2"),
            tail: k(b"pdist url tail v2"),
        }
    }

    /// The key a URL's claim and download are filed under for peers.
    pub fn name_key(&self, url: &str) -> [u8; 32] {
        hmac_sha256(&self.name.0, &[url.as_bytes()]).0
    }

    /// The key a URL's claim and the record of its download are sealed under.
    pub fn seal_key(&self, url: &str) -> [u8; 32] {
        hmac_sha256(&self.seal.0, &[url.as_bytes()]).0
    }

    /// What the record of a download in progress of a URL is sealed with besides its seal key
    /// (so that it opens as nothing else).
    fn pending_ad(&self, url: &str) -> [u8; 32] {
        hmac_sha256(&self.pending.0, &[url.as_bytes()]).0
    }

    /// The key that seals the bytes of a download of a URL offered to peers.
    pub fn tail_key(&self, url: &str) -> TailKey {
        TailKey::from_secret(hmac_sha256(&self.tail.0, &[url.as_bytes()]).0)
    }
}

/// "This URL, with these response headers, is that content": what a peer tells another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The content's ticket.
    pub ticket: String,
    /// The body's length.
    pub len: u64,
    /// The stored response's status (200).
    pub status: u16,
    /// Its end-to-end headers, in order.
    pub headers: Vec<(String, String)>,
}

/// Why a claim was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimError {
    /// It does not open under the URL's key (another URL, or forged).
    #[error("the record does not open under this URL's key")]
    Sealed,
    /// It opens but does not decode, or breaks a limit.
    #[error("malformed record: {0}")]
    Malformed(#[from] Malformed),
}

/// What is wrong with a record that opens.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// Larger than its limit.
    #[error("{len} bytes, more than {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not the JSON of a record.
    #[error("not a record (line {line}, column {column})")]
    Json {
        /// Where decoding failed.
        line: usize,
        /// Where decoding failed.
        column: usize,
    },
    /// Its ticket is not a ticket.
    #[error("not a ticket")]
    Ticket,
    /// Its status is not 200.
    #[error("status {0} is not 200")]
    Status(u16),
    /// A header name is not one.
    #[error("a header name is invalid")]
    HeaderName,
    /// A header value is not one.
    #[error("a header value is invalid")]
    HeaderValue,
}

fn too_large(len: usize, max: usize) -> Result<(), Malformed> {
    if len > max {
        return Err(Malformed::TooLarge { len, max });
    }
    Ok(())
}

fn json<T: serde::de::DeserializeOwned>(plain: &[u8]) -> Result<T, Malformed> {
    serde_json::from_slice(plain).map_err(|e| Malformed::Json {
        line: e.line(),
        column: e.column(),
    })
}

/// Headers as the pairs a record carries, up to [`MAX_CLAIM_HEADER_BYTES`].
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for (k, v) in headers {
        let Ok(v) = v.to_str() else { continue };
        bytes += k.as_str().len() + v.len();
        if bytes > MAX_CLAIM_HEADER_BYTES {
            break;
        }
        out.push((k.as_str().to_string(), v.to_string()));
    }
    out
}

/// A record's header pairs as a map, checked.
fn header_map(pairs: &[(String, String)]) -> Result<HeaderMap, Malformed> {
    let size: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    too_large(size, MAX_CLAIM_HEADER_BYTES)?;
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        let k = HeaderName::from_bytes(k.as_bytes()).map_err(|_| Malformed::HeaderName)?;
        let v = HeaderValue::from_str(v).map_err(|_| Malformed::HeaderValue)?;
        h.append(k, v);
    }
    Ok(h)
}

impl Claim {
    /// A claim for a stored response.
    pub fn new(id: &ContentId, len: u64, status: StatusCode, headers: &HeaderMap) -> Claim {
        Claim {
            ticket: id.ticket().to_string(),
            len,
            status: status.as_u16(),
            headers: header_pairs(headers),
        }
    }

    /// Seals for filing under `url`'s name key.
    pub fn seal(&self, keys: &UrlKeys, url: &str) -> Vec<u8> {
        let plain = serde_json::to_vec(self).expect("serialisable");
        engine::wire::seal(&keys.seal_key(url), &keys.name_key(url), &plain)
    }

    /// Opens and checks a claim a peer filed for `url`.
    pub fn open(keys: &UrlKeys, url: &str, sealed: &[u8]) -> Result<Claim, ClaimError> {
        too_large(sealed.len(), engine::wire::MAX_NAME_RECORD)?;
        let (seal, name) = (keys.seal_key(url), keys.name_key(url));
        let plain = engine::wire::open(&seal, &name, sealed, "URL record")
            .map_err(|_| ClaimError::Sealed)?;
        Claim::decode(&plain)
    }

    /// Decodes the plain bytes of a claim and checks every field.
    pub fn decode(plain: &[u8]) -> Result<Claim, ClaimError> {
        too_large(plain.len(), engine::wire::MAX_NAME_RECORD)?;
        let c: Claim = json(plain)?;
        c.content_id().ok_or(Malformed::Ticket)?;
        if c.status != 200 {
            return Err(Malformed::Status(c.status).into());
        }
        c.header_map()?;
        Ok(c)
    }

    /// The content it names.
    pub fn content_id(&self) -> Option<ContentId> {
        self.ticket.parse::<Ticket>().ok().map(|t| t.content_id())
    }

    /// Its headers as a map.
    pub fn header_map(&self) -> Result<HeaderMap, Malformed> {
        header_map(&self.headers)
    }
}

/// "This URL is downloading here, and the origin answered with these headers": what a gateway
/// that leads the download of a URL tells the peers that follow it (the metadata of the
/// download it offers, [`engine::peer::TailSource`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The answer's status (200).
    pub status: u16,
    /// Its end-to-end headers, in order.
    pub headers: Vec<(String, String)>,
    /// The request headers that selected it (see [`selection`]).
    pub selection: String,
}

impl Pending {
    /// The record of a download whose answer has `headers`, selected by `selection`.
    pub fn new(headers: &HeaderMap, selection: &str) -> Pending {
        Pending {
            status: 200,
            headers: header_pairs(headers),
            selection: selection.to_string(),
        }
    }

    /// Seals for the peers that know `url`.
    pub fn seal(&self, keys: &UrlKeys, url: &str) -> Vec<u8> {
        let plain = serde_json::to_vec(self).expect("serialisable");
        engine::wire::seal(&keys.seal_key(url), &keys.pending_ad(url), &plain)
    }

    /// Opens and checks the record of a peer's download of `url`.
    pub fn open(keys: &UrlKeys, url: &str, sealed: &[u8]) -> Result<Pending, ClaimError> {
        too_large(sealed.len(), engine::wire::MAX_TAIL_META)?;
        let (seal, ad) = (keys.seal_key(url), keys.pending_ad(url));
        let plain = engine::wire::open(&seal, &ad, sealed, "URL download")
            .map_err(|_| ClaimError::Sealed)?;
        Pending::decode(&plain)
    }

    /// Decodes the plain bytes of a download's record and checks every field.
    pub fn decode(plain: &[u8]) -> Result<Pending, ClaimError> {
        // What fits an offer's metadata once sealed.
        let max = engine::wire::MAX_TAIL_META - engine::wire::AEAD_OVERHEAD;
        too_large(plain.len(), max)?;
        let p: Pending = json(plain)?;
        if p.status != 200 {
            return Err(Malformed::Status(p.status).into());
        }
        too_large(p.selection.len(), MAX_CLAIM_HEADER_BYTES)?;
        p.header_map()?;
        Ok(p)
    }

    /// Its headers as a map.
    pub fn header_map(&self) -> Result<HeaderMap, Malformed> {
        header_map(&self.headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::content::{HashOptions, ServerSecret, hash_reader};

    fn id() -> ContentId {
        let info = hash_reader(
            &b"hello"[..],
            &ServerSecret::open_group(),
            &HashOptions::default(),
            &mut |_| {},
        )
        .unwrap();
        info.id()
    }

    fn keys() -> UrlKeys {
        UrlKeys::new(&ServerSecret::new(b"office".to_vec()))
    }

    #[test]
    fn claims_open_only_under_their_url_and_group() {
        let mut h = HeaderMap::new();
        h.insert("etag", HeaderValue::from_static("\"v1\""));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        let c = Claim::new(&id(), 5, StatusCode::OK, &h);
        let k = keys();
        let sealed = c.seal(&k, "http://a.example/x");
        assert_eq!(Claim::open(&k, "http://a.example/x", &sealed).unwrap(), c);
        assert_eq!(
            Claim::open(&k, "http://a.example/y", &sealed),
            Err(ClaimError::Sealed)
        );
        let other = UrlKeys::new(&ServerSecret::open_group());
        assert_eq!(
            Claim::open(&other, "http://a.example/x", &sealed),
            Err(ClaimError::Sealed),
            "another group cannot open it, even knowing the URL"
        );
        assert_ne!(
            k.name_key("http://a.example/x"),
            other.name_key("http://a.example/x"),
            "nor find it"
        );
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert_eq!(
            Claim::open(&k, "http://a.example/x", &flipped),
            Err(ClaimError::Sealed)
        );
        assert_eq!(c.header_map().unwrap()["etag"], "\"v1\"");
        assert_ne!(
            k.name_key("http://a.example/x"),
            k.seal_key("http://a.example/x")
        );
    }

    #[test]
    fn downloads_open_only_under_their_url_and_never_as_claims() {
        let mut h = HeaderMap::new();
        h.insert("etag", HeaderValue::from_static("\"v1\""));
        let p = Pending::new(&h, "accept=\n");
        let k = keys();
        let sealed = p.seal(&k, "http://a.example/x");
        assert_eq!(Pending::open(&k, "http://a.example/x", &sealed).unwrap(), p);
        assert_eq!(
            Pending::open(&k, "http://a.example/y", &sealed),
            Err(ClaimError::Sealed)
        );
        assert_eq!(
            Claim::open(&k, "http://a.example/x", &sealed),
            Err(ClaimError::Sealed)
        );
        let claim = Claim::new(&id(), 5, StatusCode::OK, &h).seal(&k, "http://a.example/x");
        assert_eq!(
            Pending::open(&k, "http://a.example/x", &claim),
            Err(ClaimError::Sealed)
        );
        assert_eq!(p.header_map().unwrap()["etag"], "\"v1\"");
        for bad in [
            &br#"{"status":206,"headers":[],"selection":""}"#[..],
            br#"{"status":200,"headers":[["bad name","x"]],"selection":""}"#,
            b"[]",
        ] {
            assert!(matches!(
                Pending::decode(bad),
                Err(ClaimError::Malformed(_))
            ));
        }
    }

    #[test]
    fn malformed_claims_are_refused() {
        for bad in [
            &b"{}"[..],
            b"not json",
            br#"{"ticket":"nope","len":1,"status":200,"headers":[]}"#,
        ] {
            assert!(matches!(Claim::decode(bad), Err(ClaimError::Malformed(_))));
        }
        let mut c = Claim::new(&id(), 5, StatusCode::OK, &HeaderMap::new());
        c.status = 206;
        assert!(Claim::decode(&serde_json::to_vec(&c).unwrap()).is_err());
        c.status = 200;
        c.headers.push(("bad name".into(), "x".into()));
        assert!(Claim::decode(&serde_json::to_vec(&c).unwrap()).is_err());
    }

    #[test]
    fn records_keep_the_newest_variants() {
        let req = http::Request::get("http://a/").body(()).unwrap();
        let res = http::Response::builder().status(200).body(()).unwrap();
        let v = |t: &str| Variant {
            policy: Policy::new(
                &req.clone().into_parts().0,
                &res.clone().into_parts().0,
                std::time::SystemTime::now(),
                std::time::SystemTime::now(),
                false,
            ),
            ticket: t.into(),
            len: 0,
            selection: t.into(),
        };
        let mut r = UrlRecord::default();
        for i in 0..6 {
            r.add(v(&i.to_string()));
        }
        let tickets: Vec<_> = r.variants.iter().map(|v| v.ticket.as_str()).collect();
        assert_eq!(tickets, ["2", "3", "4", "5"]);
        r.add(v("3"));
        assert_eq!(r.variants.len(), 4);
        let back = UrlRecord::from_bytes(&r.to_bytes());
        assert_eq!(back.variants.len(), 4);
        assert!(UrlRecord::from_bytes(b"garbage").variants.is_empty());
        // The fuzz target's seeds stay valid records and claims.
        let seed = include_bytes!("../../fuzz/seeds/gateway_records/record.json");
        assert_eq!(UrlRecord::from_bytes(seed).variants.len(), 1);
        let seed = include_bytes!("../../fuzz/seeds/gateway_records/claim.json");
        assert!(Claim::decode(seed).is_ok());
        let seed = include_bytes!("../../fuzz/seeds/gateway_records/pending.json");
        assert!(Pending::decode(seed).is_ok());
    }

    #[test]
    fn selection_names_the_varying_request_headers() {
        let mut req = HeaderMap::new();
        req.insert("accept-encoding", HeaderValue::from_static("gzip"));
        req.insert("user-agent", HeaderValue::from_static("curl"));
        let mut res = HeaderMap::new();
        assert_eq!(selection(&req, &res), "");
        res.insert("vary", HeaderValue::from_static("Accept-Encoding, Accept"));
        assert_eq!(selection(&req, &res), "accept=\naccept-encoding=gzip\n");
    }
}
