//! `pdist inspect`: the fields of content information in any of the three formats.

use std::io::{self, Write};

use engine::content::info::verify_segment_secrets;
use engine::content::native::NativeMessage;
use engine::content::{ContentInfo, SegmentProof};
use engine::formats::{self, AnyContentInfo, MAX_CONTENT_INFO_LEN};
use engine::pccrc::v1::ContentInfoV1;
use engine::pccrc::v2::ContentInfoV2;
use serde_json::{Value, json};

use crate::args::{GlobalArgs, InspectArgs};
use crate::input;

/// Text output: "key  value" lines, then one block per segment.
struct Text<'a> {
    out: &'a mut dyn Write,
}

impl Text<'_> {
    fn field(&mut self, key: &str, value: impl std::fmt::Display) -> io::Result<()> {
        writeln!(self.out, "{key:<26}{value}")
    }
}

pub fn run(global: &GlobalArgs, args: InspectArgs) -> anyhow::Result<()> {
    let bytes = input::read_capped(&args.file, MAX_CONTENT_INFO_LEN)?;
    let name = args.file.display().to_string();
    let decoded = formats::decode_any(&bytes).map_err(|e| anyhow::Error::new(e).context(name))?;
    // With an explicit secret, check every Kp against it (`None`: nothing was checked).
    let secret_checked = match &global.secret {
        None => None,
        Some(_) => {
            let secret = crate::options::secret(global)?;
            match &decoded {
                AnyContentInfo::V1(v1) => v1.verify_secret(&secret)?,
                AnyContentInfo::V2(v2) => v2.verify_secret(&secret)?,
                AnyContentInfo::Native(NativeMessage::ContentInfo(info)) => {
                    verify_segment_secrets(info.descriptors(), 0, &secret)?
                }
                AnyContentInfo::Native(NativeMessage::SegmentProof(p)) => {
                    verify_segment_secrets(&p.descriptors, p.first, &secret)?
                }
                _ => anyhow::bail!("this content information cannot be checked against a secret"),
            }
            Some(true)
        }
    };
    let mut stdout = io::stdout().lock();
    if args.json {
        let mut v = match &decoded {
            AnyContentInfo::Native(NativeMessage::ContentInfo(i)) => native_json(i, args.blocks),
            AnyContentInfo::Native(NativeMessage::SegmentProof(p)) => proof_json(p),
            AnyContentInfo::V1(v1) => v1_json(v1, args.blocks),
            AnyContentInfo::V2(v2) => v2_json(v2),
            _ => json!({}),
        };
        if let Some(ok) = secret_checked {
            v["secret_matches"] = json!(ok);
        }
        serde_json::to_writer_pretty(&mut stdout, &v)?;
        writeln!(stdout)?;
    } else {
        let mut t = Text { out: &mut stdout };
        match &decoded {
            AnyContentInfo::Native(NativeMessage::ContentInfo(i)) => {
                native_text(&mut t, i, args.blocks)?
            }
            AnyContentInfo::Native(NativeMessage::SegmentProof(p)) => proof_text(&mut t, p)?,
            AnyContentInfo::V1(v1) => v1_text(&mut t, v1, args.blocks)?,
            AnyContentInfo::V2(v2) => v2_text(&mut t, v2)?,
            _ => {}
        }
        if secret_checked.is_some() {
            t.field("secret", "every Kp matches the given secret")?;
        }
    }
    stdout.flush()?;
    Ok(())
}

fn range_text(r: &std::ops::Range<u64>) -> String {
    format!("bytes {}..{} ({} bytes)", r.start, r.end, r.end - r.start)
}

fn native_json(info: &ContentInfo, blocks: bool) -> Value {
    let l = info.layout();
    let segments: Vec<Value> = l
        .segments()
        .map(|s| {
            let d = info.descriptor(s);
            let mut v = json!({
                "index": s.get(),
                "offset": l.segment_offset(s),
                "length": l.segment_len(s),
                "blocks": l.blocks_in_segment(s),
                "hod": d.hod,
                "kp": d.kp,
                "segment_id": d.segment_id(),
            });
            if blocks {
                v["block_hashes"] = json!(info.block_hashes(s));
            }
            v
        })
        .collect();
    json!({
        "format": "native",
        "kind": "content-information",
        "content_id": info.id(),
        "ticket": info.id().ticket().to_string(),
        "content_length": l.content_len(),
        "block_size": l.block_size(),
        "blocks_per_segment": l.blocks_per_segment(),
        "segment_count": l.segment_count(),
        "block_count": l.block_count(),
        "merkle_root": info.root(),
        "segments": segments,
    })
}

fn native_text(t: &mut Text<'_>, info: &ContentInfo, blocks: bool) -> io::Result<()> {
    let l = info.layout();
    t.field("format", "pdist native v1, content information")?;
    t.field("content ID", info.id())?;
    t.field("ticket", info.id().ticket())?;
    t.field("content length", format!("{} bytes", l.content_len()))?;
    t.field(
        "layout",
        format!(
            "{} B blocks, {} blocks per segment",
            l.block_size(),
            l.blocks_per_segment()
        ),
    )?;
    t.field("segments", l.segment_count())?;
    t.field("blocks", l.block_count())?;
    t.field("merkle root", info.root())?;
    for s in l.segments() {
        let d = info.descriptor(s);
        writeln!(
            t.out,
            "segment {}: offset {}, length {}, {} blocks",
            s.get(),
            l.segment_offset(s),
            l.segment_len(s),
            l.blocks_in_segment(s)
        )?;
        t.field("  HoD", d.hod)?;
        t.field("  Kp", d.kp)?;
        t.field("  segment ID (HoHoDk)", d.segment_id())?;
        if blocks {
            for (i, h) in info.block_hashes(s).iter().enumerate() {
                t.field(&format!("  block {i}"), h)?;
            }
        }
    }
    Ok(())
}

fn proof_json(p: &SegmentProof) -> Value {
    json!({
        "format": "native",
        "kind": "segment-proof",
        "content_length": p.layout.content_len(),
        "block_size": p.layout.block_size(),
        "blocks_per_segment": p.layout.blocks_per_segment(),
        "first_segment": p.first,
        "descriptors": p.descriptors,
        "proof": p.proof,
    })
}

fn proof_text(t: &mut Text<'_>, p: &SegmentProof) -> io::Result<()> {
    t.field("format", "pdist native v1, segment proof")?;
    t.field(
        "content length",
        format!("{} bytes", p.layout.content_len()),
    )?;
    t.field(
        "segments",
        format!("{}..{}", p.first, p.first as usize + p.descriptors.len()),
    )?;
    t.field("proof hashes", p.proof.len())?;
    for (i, d) in p.descriptors.iter().enumerate() {
        writeln!(t.out, "segment {}:", p.first as usize + i)?;
        t.field("  HoD", d.hod)?;
        t.field("  Kp", d.kp)?;
    }
    Ok(())
}

fn v1_json(v1: &ContentInfoV1, blocks: bool) -> Value {
    let ids = v1.segment_ids();
    let d = v1.hash_algo.digest_len();
    let segments: Vec<Value> = v1
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = json!({
                "offset": s.offset,
                "length": s.len,
                "block_size": s.block_size,
                "blocks_listed": s.listed_blocks(v1.hash_algo),
                "blocks_total": s.total_blocks(),
                "hod": hex::encode(&s.hod),
                "kp": hex::encode(&s.kp),
                "segment_id": ids.as_ref().map(|ids| ids[i]),
            });
            if blocks {
                v["block_hashes"] = json!(
                    s.block_hashes
                        .chunks(d)
                        .map(hex::encode)
                        .collect::<Vec<_>>()
                );
            }
            v
        })
        .collect();
    let range = v1.range();
    json!({
        "format": "pccrc-v1",
        "hash_algo": format!("{:#06x}", v1.hash_algo.id()),
        "offset_in_first_segment": v1.offset_in_first_segment,
        "read_bytes_in_last_segment": v1.read_bytes_in_last_segment,
        "range": [range.start, range.end],
        "complete": v1.is_complete(),
        "ticket": v1.to_content_info().map(|i| i.id().ticket().to_string()),
        "segments": segments,
    })
}

fn v1_text(t: &mut Text<'_>, v1: &ContentInfoV1, blocks: bool) -> io::Result<()> {
    let range = v1.range();
    t.field("format", "MS-PCCRC content information V1 (0x0100)")?;
    t.field(
        "hash algorithm",
        format!("{} ({:#06x})", v1.hash_algo.name(), v1.hash_algo.id()),
    )?;
    t.field("dwOffsetInFirstSegment", v1.offset_in_first_segment)?;
    t.field("dwReadBytesInLastSegment", v1.read_bytes_in_last_segment)?;
    t.field("range", range_text(&range))?;
    t.field("segments", v1.segments.len())?;
    if let Some(info) = v1.to_content_info() {
        t.field("pdist ticket", info.id().ticket())?;
    }
    let ids = v1.segment_ids();
    let d = v1.hash_algo.digest_len();
    for (i, s) in v1.segments.iter().enumerate() {
        writeln!(
            t.out,
            "segment {i}: offset {}, length {}, block size {}, {} of {} block hashes",
            s.offset,
            s.len,
            s.block_size,
            s.listed_blocks(v1.hash_algo),
            s.total_blocks()
        )?;
        t.field("  HoD", hex::encode(&s.hod))?;
        t.field("  Kp", hex::encode(&s.kp))?;
        if let Some(ids) = &ids {
            t.field("  segment ID (HoHoDk)", ids[i])?;
        }
        if blocks {
            for (b, h) in s.block_hashes.chunks(d).enumerate() {
                t.field(&format!("  block {b}"), hex::encode(h))?;
            }
        }
    }
    Ok(())
}

fn v2_json(v2: &ContentInfoV2) -> Value {
    let mut offset = v2.start_in_content;
    let segments: Vec<Value> = v2
        .segments()
        .map(|s| {
            let v = json!({
                "offset": offset,
                "length": s.len,
                "hod": s.hod,
                "kp": s.kp,
                "segment_id": s.segment_id(),
            });
            offset += u64::from(s.len);
            v
        })
        .collect();
    let range = v2.range();
    json!({
        "format": "pccrc-v2",
        "hash_algo": "0x04",
        "start_in_content": v2.start_in_content,
        "index_of_first_segment": v2.index_of_first_segment,
        "offset_in_first_segment": v2.offset_in_first_segment,
        "length_of_range": v2.length_of_range,
        "range": [range.start, range.end],
        "chunks": v2.chunks.len(),
        "segments": segments,
    })
}

fn v2_text(t: &mut Text<'_>, v2: &ContentInfoV2) -> io::Result<()> {
    let range = v2.range();
    t.field("format", "MS-PCCRC content information V2 (2.0)")?;
    t.field("hash algorithm", "SHA-512 cut to 32 bytes (0x04)")?;
    t.field("ullStartInContent", v2.start_in_content)?;
    t.field("ullIndexOfFirstSegment", v2.index_of_first_segment)?;
    t.field("dwOffsetInFirstSegment", v2.offset_in_first_segment)?;
    t.field("ullLengthOfRange", v2.length_of_range)?;
    t.field("range", range_text(&range))?;
    t.field("chunks", v2.chunks.len())?;
    t.field("segments", v2.segments().count())?;
    let mut offset = v2.start_in_content;
    for (i, s) in v2.segments().enumerate() {
        let index = v2.index_of_first_segment + i as u64;
        writeln!(t.out, "segment {index}: offset {offset}, length {}", s.len)?;
        t.field("  HoD", s.hod)?;
        t.field("  Kp", s.kp)?;
        t.field("  segment ID (HoHoDk)", s.segment_id())?;
        offset += u64::from(s.len);
    }
    Ok(())
}
