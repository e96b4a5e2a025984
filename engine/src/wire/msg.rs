//! Requests and replies: the envelope, the seal, and the size limits.
//!
//! ```text
//! request: "PDW" version ‖ seal(kind node-id[16] sent-at u64 random[8] payload…)
//! reply:   "PDR" version ‖ seal(kind payload…)
//! seal:    nonce[12] ‖ AES-256-GCM(group message key) ‖ tag[16]
//! ```
//! Everything after the 4-byte header is sealed under the group's message key, with the header
//! as associated data (for a reply, also the tag of the request it answers, so a reply cannot
//! be replayed to another request). A node of another group sees only the header and sizes. The
//! request's send time lets the receiver refuse stale or replayed requests. Integers are
//! big-endian.

use crate::codec::{ByteReader, DecodeError, DecodeErrorKind, check_range, unsupported};

use super::keys::{
    GroupKeys, LookupKey, MAC_LEN, NodeId, SEALED_SEED_LEN, SEED_KEY_LEN, random_bytes,
};
use super::{PROTOCOL_VERSION, WireError};

/// Largest request: requests are small and fixed-size apart from a seed's sealed ticket.
pub const MAX_REQUEST_LEN: usize = 1024;
/// Largest reply: content information of about 128 GiB of content (32 bytes per 64 KiB block).
pub const MAX_REPLY_LEN: usize = 64 << 20;
/// Most segments one [`Request::Have`] may ask about.
pub const MAX_HAVE_SEGMENTS: u32 = 4096;
/// Most blocks one [`Request::Blocks`] may ask for.
pub const MAX_RANGE_BLOCKS: u32 = 64;
/// Longest node name in a hello.
const MAX_NAME_LEN: usize = 64;
/// Longest bitmap in a have entry: 65,536 blocks per segment (the standard layout has 512).
const MAX_BITMAP_LEN: usize = 8192;
/// Most blocks per segment the have reply can describe.
pub const MAX_BITMAP_BITS: u32 = MAX_BITMAP_LEN as u32 * 8;

const REQUEST_MAGIC: &[u8; 3] = b"PDW";
const REPLY_MAGIC: &[u8; 3] = b"PDR";

/// A request from one node to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Who are you, and are you alive? (liveness and `pdist peers`).
    Hello,
    /// The content information named by this lookup key, sealed.
    Info {
        /// The content.
        lookup: LookupKey,
    },
    /// Which blocks of segments `first..first+count` do you hold?
    Have {
        /// The content.
        lookup: LookupKey,
        /// First segment.
        first: u32,
        /// Number of segments (at most [`MAX_HAVE_SEGMENTS`]).
        count: u32,
    },
    /// Send blocks `first..first+count` of segment `seg` (reply: a stream of frames).
    Blocks {
        /// The content.
        lookup: LookupKey,
        /// Segment index.
        seg: u32,
        /// First block within the segment.
        first: u32,
        /// Number of blocks (at most [`MAX_RANGE_BLOCKS`]).
        count: u32,
    },
    /// Fetch and keep this content (to a cache node); the content ID is sealed under the
    /// group's key.
    Seed {
        /// `GroupKeys::seal` of the content ID.
        sealed_id: Vec<u8>,
    },
    /// The record another component filed under this key with [`crate::peer::NameIndex`] (the
    /// gateway's URL records), sealed by whoever filed it; the node only passes it on.
    Name {
        /// The record's lookup key.
        key: LookupKey,
    },
    /// Whether the peer is downloading this content (known by its ticket only) from an origin,
    /// or is about to: nodes that want the same content from an origin at once elect one of
    /// themselves to download it, and the others wait for its content information.
    Intent {
        /// The content's lookup key.
        lookup: LookupKey,
    },
    /// The bytes from `offset` of content the peer is downloading from an origin now (known by
    /// its ticket only, so nothing can be checked until the whole has arrived): nodes that want
    /// the same content take it from the one downloading it as it arrives, hash it themselves,
    /// and keep it only if it hashes to the ticket.
    Tail {
        /// The content's lookup key.
        lookup: LookupKey,
        /// The first byte wanted.
        offset: u64,
    },
}

/// A request with its sender, when it was sent, and the tag that authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEnvelope {
    /// The request.
    pub request: Request,
    /// The sender's node ID.
    pub from: NodeId,
    /// The node it is for ([`NodeId::ANY`] only in a hello to a node not yet known), so that a
    /// captured request cannot be replayed to other nodes.
    pub to: NodeId,
    /// When it was sent (Unix seconds, the sender's clock).
    pub sent_at: u64,
    /// The request's authentication tag (a reply is bound to it; unique per request).
    pub mac: [u8; MAC_LEN],
}

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloReply {
    /// Its node ID.
    pub node: NodeId,
    /// A human name (host name).
    pub name: String,
    /// Whether it is a cache node (keeps what it fetches for others, accepts seeds).
    pub cache: bool,
    /// Contents it holds.
    pub contents: u32,
    /// Bytes it has served to peers.
    pub served: u64,
    /// Bytes it has received from peers.
    pub received: u64,
    /// Transfers it is serving right now (fetchers prefer idle peers).
    pub busy: u32,
    /// A cache node's public seed key ([`crate::wire::SeedKey`]): seeds are sealed to it.
    pub seed_key: Option<[u8; SEED_KEY_LEN]>,
}

/// One segment's holdings in a have reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaveEntry {
    /// No block.
    None,
    /// Every block.
    All,
    /// Some blocks: a bitmap, bit `i % 8` of byte `i / 8` for block `i`.
    Some(Vec<u8>),
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer to [`Request::Hello`].
    Hello(HelloReply),
    /// Answer to [`Request::Info`]: content information in native encoding, sealed under the
    /// content's info key.
    Info {
        /// The sealed bytes.
        sealed: Vec<u8>,
    },
    /// Answer to [`Request::Have`].
    Have {
        /// The first segment described.
        first: u32,
        /// One entry per segment.
        entries: Vec<HaveEntry>,
    },
    /// The content is unknown here.
    NotFound,
    /// Answer to [`Request::Seed`]: accepted (or already held).
    SeedAccepted,
    /// This node does not do that (for example a seed to a node that is not a cache).
    Refused,
    /// Answer to [`Request::Name`]: the record, sealed by whoever filed it (at most
    /// [`MAX_NAME_RECORD`] bytes).
    Name {
        /// The sealed record.
        sealed: Vec<u8>,
    },
    /// Answer to [`Request::Intent`].
    Intent(Intent),
    /// Answer to [`Request::Tail`].
    Tail {
        /// Bytes the peer has of the download so far (all of it when `complete`).
        have: u64,
        /// Whether the download is complete: `have` is the content's length.
        complete: bool,
        /// What the offering component attached (at most [`MAX_TAIL_META`] bytes; a gateway's
        /// sealed response head), passed on unread.
        meta: Vec<u8>,
        /// Bytes from the requested offset, at most [`MAX_TAIL_CHUNK`], sealed under the
        /// download's [`super::TailKey`] for that offset (empty when the offset is at or past
        /// `have`).
        data: Vec<u8>,
    },
}

/// Most bytes one [`Reply::Tail`] carries.
pub const MAX_TAIL_CHUNK: usize = 4 << 20;
/// Most bytes of metadata a [`Reply::Tail`] carries.
pub const MAX_TAIL_META: usize = 64 * 1024;

/// What a node says of content it may download from an origin ([`Request::Intent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Nothing.
    None,
    /// It wants the content and nobody has it: it is taking part in the election.
    Wants,
    /// It is downloading the content from the origin (it was elected).
    Downloading,
}

/// Largest record a [`Request::Name`] answer carries.
pub const MAX_NAME_RECORD: usize = 64 * 1024;

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seals the body of an encoded message (after its 4-byte header) under the group's message
/// key, with the header and `bind` as associated data; returns the bytes and the tag.
fn seal_body(keys: &GroupKeys, plain: &[u8], bind: &[u8]) -> (Vec<u8>, [u8; MAC_LEN]) {
    let (hdr, body) = plain.split_at(4);
    let sealed = keys.seal_msg(&[hdr, bind].concat(), body);
    let mut out = Vec::with_capacity(4 + sealed.len());
    out.extend_from_slice(hdr);
    out.extend_from_slice(&sealed);
    let tag = out[out.len() - MAC_LEN..]
        .try_into()
        .expect("sealed bytes end with a tag");
    (out, tag)
}

/// Checks the header of a message (magic, version), opens its body, and returns the plain
/// message (header ‖ body) and its tag.
fn open_body(
    keys: &GroupKeys,
    bytes: &[u8],
    max: usize,
    magic: &[u8; 3],
    bind: &[u8],
) -> Result<(Vec<u8>, [u8; MAC_LEN]), WireError> {
    let mut r = ByteReader::new(bytes, max)?;
    let at = r.pos();
    if r.bytes(3, "magic")? != magic {
        return Err(DecodeError::at(at, DecodeErrorKind::UnknownFormat).into());
    }
    let at = r.pos();
    let version = r.u8("protocol version")?;
    if version != PROTOCOL_VERSION {
        return Err(unsupported(at, "protocol version", version.into()).into());
    }
    let (hdr, sealed) = bytes.split_at(4);
    let body = keys.open_msg(&[hdr, bind].concat(), sealed)?;
    let mut plain = Vec::with_capacity(4 + body.len());
    plain.extend_from_slice(hdr);
    plain.extend_from_slice(&body);
    let tag = bytes[bytes.len() - MAC_LEN..]
        .try_into()
        .expect("opened bytes end with a tag");
    Ok((plain, tag))
}

/// Encodes and seals a request from node `from` to node `to`; returns the bytes and the tag a
/// reply is bound to.
pub fn encode_request(
    keys: &GroupKeys,
    from: &NodeId,
    to: &NodeId,
    req: &Request,
) -> (Vec<u8>, [u8; MAC_LEN]) {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(REQUEST_MAGIC);
    out.push(PROTOCOL_VERSION);
    let kind = match req {
        Request::Hello => 1,
        Request::Info { .. } => 2,
        Request::Have { .. } => 3,
        Request::Blocks { .. } => 4,
        Request::Seed { .. } => 5,
        Request::Name { .. } => 6,
        Request::Intent { .. } => 7,
        Request::Tail { .. } => 8,
    };
    out.push(kind);
    out.extend_from_slice(&from.0);
    out.extend_from_slice(&to.0);
    put_u64(&mut out, unix_now());
    out.extend_from_slice(&random_bytes::<8>());
    match req {
        Request::Hello => {}
        Request::Info { lookup } => out.extend_from_slice(&lookup.0),
        Request::Have {
            lookup,
            first,
            count,
        } => {
            out.extend_from_slice(&lookup.0);
            put_u32(&mut out, *first);
            put_u32(&mut out, *count);
        }
        Request::Blocks {
            lookup,
            seg,
            first,
            count,
        } => {
            out.extend_from_slice(&lookup.0);
            put_u32(&mut out, *seg);
            put_u32(&mut out, *first);
            put_u32(&mut out, *count);
        }
        Request::Seed { sealed_id } => {
            put_u32(&mut out, sealed_id.len() as u32);
            out.extend_from_slice(sealed_id);
        }
        Request::Name { key } => out.extend_from_slice(&key.0),
        Request::Intent { lookup } => out.extend_from_slice(&lookup.0),
        Request::Tail { lookup, offset } => {
            out.extend_from_slice(&lookup.0);
            put_u64(&mut out, *offset);
        }
    }
    seal_body(keys, &out, &[])
}

fn read_header(r: &mut ByteReader<'_>, magic: &[u8; 3]) -> Result<u8, DecodeError> {
    let at = r.pos();
    if r.bytes(3, "magic")? != magic {
        return Err(DecodeError::at(at, DecodeErrorKind::UnknownFormat));
    }
    let at = r.pos();
    let version = r.u8("protocol version")?;
    if version != PROTOCOL_VERSION {
        return Err(unsupported(at, "protocol version", version.into()));
    }
    r.u8("message kind")
}

fn lookup(r: &mut ByteReader<'_>) -> Result<LookupKey, DecodeError> {
    Ok(LookupKey(r.hash("lookup key")?.0))
}

fn bounded_u32(
    r: &mut ByteReader<'_>,
    field: &'static str,
    min: u32,
    max: u32,
) -> Result<u32, DecodeError> {
    let at = r.pos();
    let v = r.u32_be(field)?;
    check_range(at, field, v.into(), min.into(), max.into())?;
    Ok(v)
}

/// Checks a request's size and header, opens it under the group's key (a request of another
/// group fails with [`WireError::NotInGroup`]), and decodes it.
pub fn decode_request(keys: &GroupKeys, bytes: &[u8]) -> Result<RequestEnvelope, WireError> {
    let (plain, mac) = open_body(keys, bytes, MAX_REQUEST_LEN, REQUEST_MAGIC, &[])?;
    let mut r = ByteReader::new(&plain, MAX_REQUEST_LEN)?;
    let kind_at = r.pos() + 4;
    let kind = read_header(&mut r, REQUEST_MAGIC)?;
    let from = NodeId(r.bytes(16, "node id")?.try_into().expect("16 bytes"));
    let to = NodeId(r.bytes(16, "recipient")?.try_into().expect("16 bytes"));
    let sent_at = r.u64_be("send time")?;
    r.bytes(8, "random")?;
    let request = match kind {
        1 => Request::Hello,
        2 => Request::Info {
            lookup: lookup(&mut r)?,
        },
        3 => Request::Have {
            lookup: lookup(&mut r)?,
            first: r.u32_be("first segment")?,
            count: bounded_u32(&mut r, "segment count", 1, MAX_HAVE_SEGMENTS)?,
        },
        4 => Request::Blocks {
            lookup: lookup(&mut r)?,
            seg: r.u32_be("segment")?,
            first: r.u32_be("first block")?,
            count: bounded_u32(&mut r, "block count", 1, MAX_RANGE_BLOCKS)?,
        },
        5 => {
            let len = bounded_u32(&mut r, "sealed id length", 0, SEALED_SEED_LEN as u32)?;
            Request::Seed {
                sealed_id: r.bytes(len as usize, "sealed id")?.to_vec(),
            }
        }
        6 => Request::Name {
            key: lookup(&mut r)?,
        },
        7 => Request::Intent {
            lookup: lookup(&mut r)?,
        },
        8 => Request::Tail {
            lookup: lookup(&mut r)?,
            offset: r.u64_be("offset")?,
        },
        k => return Err(unsupported(kind_at, "request kind", k.into()).into()),
    };
    r.finish()?;
    Ok(RequestEnvelope {
        request,
        from,
        to,
        sent_at,
        mac,
    })
}

/// What anyone holding `keys` reads of a sealed request (`reply_to` none) or of a reply to the
/// request whose bytes are `reply_to`: the message's plain bytes, header included. For audits
/// of what an observer with a group's keys learns (in the open group, everybody).
pub fn open_plain(
    keys: &GroupKeys,
    bytes: &[u8],
    reply_to: Option<&[u8]>,
) -> Result<Vec<u8>, WireError> {
    let (max, magic, bind) = match reply_to {
        None => (MAX_REQUEST_LEN, REQUEST_MAGIC, &[][..]),
        Some(req) => (
            MAX_REPLY_LEN,
            REPLY_MAGIC,
            &req[req.len().saturating_sub(MAC_LEN)..],
        ),
    };
    open_body(keys, bytes, max, magic, bind).map(|(plain, _)| plain)
}

/// Encodes and seals a reply to the request whose tag is `request_mac`.
pub fn encode_reply(keys: &GroupKeys, request_mac: &[u8; MAC_LEN], reply: &Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(REPLY_MAGIC);
    out.push(PROTOCOL_VERSION);
    match reply {
        Reply::Hello(h) => {
            out.push(1);
            out.extend_from_slice(&h.node.0);
            let name = truncate_utf8(&h.name, MAX_NAME_LEN);
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.push(u8::from(h.cache));
            put_u32(&mut out, h.contents);
            put_u64(&mut out, h.served);
            put_u64(&mut out, h.received);
            put_u32(&mut out, h.busy);
            match &h.seed_key {
                None => out.push(0),
                Some(k) => {
                    out.push(1);
                    out.extend_from_slice(k);
                }
            }
        }
        Reply::Info { sealed } => {
            out.push(2);
            put_u32(&mut out, sealed.len() as u32);
            out.extend_from_slice(sealed);
        }
        Reply::Have { first, entries } => {
            out.push(3);
            put_u32(&mut out, *first);
            put_u32(&mut out, entries.len() as u32);
            for e in entries {
                match e {
                    HaveEntry::None => out.push(0),
                    HaveEntry::All => out.push(1),
                    HaveEntry::Some(bits) => {
                        out.push(2);
                        out.extend_from_slice(&(bits.len() as u16).to_be_bytes());
                        out.extend_from_slice(bits);
                    }
                }
            }
        }
        Reply::NotFound => out.push(4),
        Reply::SeedAccepted => out.push(5),
        Reply::Refused => out.push(6),
        Reply::Name { sealed } => {
            out.push(7);
            put_u32(&mut out, sealed.len() as u32);
            out.extend_from_slice(sealed);
        }
        Reply::Intent(i) => {
            out.push(8);
            out.push(match i {
                Intent::None => 0,
                Intent::Wants => 1,
                Intent::Downloading => 2,
            });
        }
        Reply::Tail {
            have,
            complete,
            meta,
            data,
        } => {
            out.push(9);
            put_u64(&mut out, *have);
            out.push(u8::from(*complete));
            put_u32(&mut out, meta.len() as u32);
            out.extend_from_slice(meta);
            put_u32(&mut out, data.len() as u32);
            out.extend_from_slice(data);
        }
    }
    seal_body(keys, &out, request_mac).0
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Checks a reply's size and header, opens it (bound to the request it answers), and decodes
/// it.
pub fn decode_reply(
    keys: &GroupKeys,
    request_mac: &[u8; MAC_LEN],
    bytes: &[u8],
) -> Result<Reply, WireError> {
    let (plain, _) = open_body(keys, bytes, MAX_REPLY_LEN, REPLY_MAGIC, request_mac)?;
    let mut r = ByteReader::new(&plain, MAX_REPLY_LEN)?;
    let kind_at = r.pos() + 4;
    let reply = match read_header(&mut r, REPLY_MAGIC)? {
        1 => {
            let node = NodeId(r.bytes(16, "node id")?.try_into().expect("16 bytes"));
            let at = r.pos();
            let name_len = r.u8("name length")? as usize;
            check_range(at, "name length", name_len as u64, 0, MAX_NAME_LEN as u64)?;
            let at = r.pos();
            let name = std::str::from_utf8(r.bytes(name_len, "name")?)
                .map_err(|_| DecodeError::at(at, DecodeErrorKind::NotUtf8 { field: "name" }))?
                .to_string();
            let at = r.pos();
            let cache = match r.u8("cache flag")? {
                0 => false,
                1 => true,
                v => return Err(unsupported(at, "cache flag", v.into()).into()),
            };
            Reply::Hello(HelloReply {
                node,
                name,
                cache,
                contents: r.u32_be("contents")?,
                served: r.u64_be("bytes served")?,
                received: r.u64_be("bytes received")?,
                busy: r.u32_be("transfers")?,
                seed_key: match r.u8("seed key flag")? {
                    0 => None,
                    1 => Some(
                        r.bytes(SEED_KEY_LEN, "seed key")?
                            .try_into()
                            .expect("32 bytes"),
                    ),
                    f => return Err(unsupported(r.pos() - 1, "seed key flag", f.into()).into()),
                },
            })
        }
        2 => {
            let len = bounded_u32(&mut r, "sealed length", 0, MAX_REPLY_LEN as u32)?;
            Reply::Info {
                sealed: r
                    .bytes(len as usize, "sealed content information")?
                    .to_vec(),
            }
        }
        3 => {
            let first = r.u32_be("first segment")?;
            let count = bounded_u32(&mut r, "segment count", 0, MAX_HAVE_SEGMENTS)?;
            r.ensure("have entries", count.into(), 1)?;
            let mut entries = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let at = r.pos();
                entries.push(match r.u8("have entry")? {
                    0 => HaveEntry::None,
                    1 => HaveEntry::All,
                    2 => {
                        let at = r.pos();
                        let len = r.u16_be("bitmap length")? as usize;
                        check_range(at, "bitmap length", len as u64, 1, MAX_BITMAP_LEN as u64)?;
                        HaveEntry::Some(r.bytes(len, "bitmap")?.to_vec())
                    }
                    v => return Err(unsupported(at, "have entry", v.into()).into()),
                });
            }
            Reply::Have { first, entries }
        }
        4 => Reply::NotFound,
        5 => Reply::SeedAccepted,
        6 => Reply::Refused,
        7 => {
            let len = bounded_u32(&mut r, "record length", 0, MAX_NAME_RECORD as u32)?;
            Reply::Name {
                sealed: r.bytes(len as usize, "sealed record")?.to_vec(),
            }
        }
        8 => {
            let at = r.pos();
            Reply::Intent(match r.u8("intent")? {
                0 => Intent::None,
                1 => Intent::Wants,
                2 => Intent::Downloading,
                v => return Err(unsupported(at, "intent", v.into()).into()),
            })
        }
        9 => {
            let have = r.u64_be("bytes held")?;
            let at = r.pos();
            let complete = match r.u8("complete flag")? {
                0 => false,
                1 => true,
                v => return Err(unsupported(at, "complete flag", v.into()).into()),
            };
            let len = bounded_u32(&mut r, "tail metadata length", 0, MAX_TAIL_META as u32)?;
            let meta = r.bytes(len as usize, "tail metadata")?.to_vec();
            let max = (MAX_TAIL_CHUNK + super::AEAD_OVERHEAD) as u32;
            let len = bounded_u32(&mut r, "tail length", 0, max)?;
            Reply::Tail {
                have,
                complete,
                meta,
                data: r.bytes(len as usize, "tail bytes")?.to_vec(),
            }
        }
        k => return Err(unsupported(kind_at, "reply kind", k.into()).into()),
    };
    r.finish()?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ServerSecret;
    use proptest::prelude::*;

    fn keys() -> GroupKeys {
        GroupKeys::new(&ServerSecret::open_group())
    }

    fn any_request() -> impl Strategy<Value = Request> {
        let lk = any::<[u8; 32]>().prop_map(LookupKey);
        prop_oneof![
            Just(Request::Hello),
            lk.clone().prop_map(|lookup| Request::Info { lookup }),
            (lk.clone(), any::<u32>(), 1..=MAX_HAVE_SEGMENTS).prop_map(|(lookup, first, count)| {
                Request::Have {
                    lookup,
                    first,
                    count,
                }
            }),
            (lk, any::<u32>(), any::<u32>(), 1..=MAX_RANGE_BLOCKS).prop_map(
                |(lookup, seg, first, count)| Request::Blocks {
                    lookup,
                    seg,
                    first,
                    count
                }
            ),
            proptest::collection::vec(any::<u8>(), 0..=SEALED_SEED_LEN)
                .prop_map(|sealed_id| Request::Seed { sealed_id }),
            any::<[u8; 32]>().prop_map(|k| Request::Name { key: LookupKey(k) }),
            any::<[u8; 32]>().prop_map(|k| Request::Intent {
                lookup: LookupKey(k)
            }),
            (any::<[u8; 32]>(), any::<u64>()).prop_map(|(k, offset)| Request::Tail {
                lookup: LookupKey(k),
                offset
            }),
        ]
    }

    fn any_reply() -> impl Strategy<Value = Reply> {
        let entry = prop_oneof![
            Just(HaveEntry::None),
            Just(HaveEntry::All),
            proptest::collection::vec(any::<u8>(), 1..80).prop_map(HaveEntry::Some),
        ];
        prop_oneof![
            (
                "[a-z]{0,64}",
                any::<bool>(),
                any::<u32>(),
                any::<u64>(),
                any::<u64>(),
                any::<u32>(),
                any::<Option<[u8; 32]>>(),
            )
                .prop_map(
                    |(name, cache, contents, served, received, busy, seed_key)| {
                        Reply::Hello(HelloReply {
                            node: NodeId([3; 16]),
                            name,
                            cache,
                            contents,
                            served,
                            received,
                            busy,
                            seed_key,
                        })
                    }
                ),
            proptest::collection::vec(any::<u8>(), 0..200)
                .prop_map(|sealed| Reply::Info { sealed }),
            (any::<u32>(), proptest::collection::vec(entry, 0..40))
                .prop_map(|(first, entries)| Reply::Have { first, entries }),
            Just(Reply::NotFound),
            Just(Reply::SeedAccepted),
            Just(Reply::Refused),
            proptest::collection::vec(any::<u8>(), 0..200)
                .prop_map(|sealed| Reply::Name { sealed }),
            prop_oneof![
                Just(Intent::None),
                Just(Intent::Wants),
                Just(Intent::Downloading)
            ]
            .prop_map(Reply::Intent),
            (
                any::<u64>(),
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..40),
                proptest::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(have, complete, meta, data)| Reply::Tail {
                    have,
                    complete,
                    meta,
                    data
                }),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip_and_any_flip_is_refused(req in any_request(), flip in any::<prop::sample::Index>()) {
            let k = keys();
            let (bytes, mac) = encode_request(&k, &NodeId([1; 16]), &NodeId([2; 16]), &req);
            let env = decode_request(&k, &bytes).unwrap();
            prop_assert_eq!(&env.request, &req);
            prop_assert_eq!((env.from, env.to), (NodeId([1; 16]), NodeId([2; 16])));
            prop_assert_eq!(env.mac, mac);
            let mut bad = bytes.clone();
            bad[flip.index(bytes.len())] ^= 0x40;
            prop_assert!(decode_request(&k, &bad).is_err());
            let other = GroupKeys::new(&ServerSecret::new(b"other".to_vec()));
            prop_assert_eq!(decode_request(&other, &bytes), Err(WireError::NotInGroup));
        }

        #[test]
        fn replies_round_trip_bound_to_their_request(reply in any_reply()) {
            let k = keys();
            let bytes = encode_reply(&k, &[7; 16], &reply);
            prop_assert_eq!(decode_reply(&k, &[7; 16], &bytes).unwrap(), reply);
            prop_assert_eq!(decode_reply(&k, &[8; 16], &bytes), Err(WireError::NotInGroup));
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_request(&keys(), &bytes);
            let _ = decode_reply(&keys(), &[0; 16], &bytes);
        }
    }

    #[test]
    fn limits_are_enforced() {
        let k = keys();
        let (mut bytes, _) = encode_request(&k, &NodeId([1; 16]), &NodeId::ANY, &Request::Hello);
        bytes.resize(MAX_REQUEST_LEN + 1, 0);
        assert!(matches!(
            decode_request(&k, &bytes),
            Err(WireError::Decode(_))
        ));
        let over = Request::Blocks {
            lookup: LookupKey([0; 32]),
            seg: 0,
            first: 0,
            count: MAX_RANGE_BLOCKS + 1,
        };
        let (bytes, _) = encode_request(&k, &NodeId([1; 16]), &NodeId::ANY, &over);
        let err = decode_request(&k, &bytes).unwrap_err().to_string();
        assert!(err.contains("block count"), "{err}");
    }
}
