//! `pdist hash`: content information for a file, as a ticket or in one of three formats.

use std::io::{self, IsTerminal, Write};
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use engine::content::{HashOptions, hash_file, hash_reader};
use engine::fetch::PartFile;
use engine::formats::Format;
use engine::pccrc::{v1::ContentInfoV1, v2};

use crate::UsageError;
use crate::args::{GlobalArgs, HashArgs, OutputFormat};
use crate::input;

struct Summary {
    ticket: Option<String>,
    size: u64,
    segments: u64,
    blocks: Option<u64>,
    seconds: f64,
}

impl Summary {
    fn mb_per_s(&self) -> f64 {
        self.size as f64 / 1e6 / self.seconds.max(1e-9)
    }

    fn line(&self) -> String {
        let blocks = self
            .blocks
            .map_or(String::new(), |b| format!(", {b} blocks"));
        format!(
            "{} bytes, {} segments{blocks}, {:.3} s, {:.0} MB/s",
            self.size,
            self.segments,
            self.seconds,
            self.mb_per_s()
        )
    }

    fn json(&self, format: Option<OutputFormat>, output: Option<&Path>) -> serde_json::Value {
        serde_json::json!({
            "ticket": self.ticket,
            "size": self.size,
            "segments": self.segments,
            "blocks": self.blocks,
            "seconds": self.seconds,
            "mb_per_s": self.mb_per_s(),
            "format": format.map(format_name),
            "output": output.map(|p| p.display().to_string()),
        })
    }
}

fn format_name(f: OutputFormat) -> &'static str {
    let engine_format = match f {
        OutputFormat::Native => Format::Native,
        OutputFormat::PccrcV1 => Format::PccrcV1,
        OutputFormat::PccrcV2 => Format::PccrcV2,
    };
    engine_format.name()
}

/// Parses HTTP's `FIRST-LAST` (inclusive) into a half-open range.
fn parse_range(s: &str) -> Result<Range<u64>, UsageError> {
    let bad = || {
        UsageError(format!(
            "--range must be FIRST-LAST in bytes, both inclusive: {s:?}"
        ))
    };
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.trim().parse().map_err(|_| bad())?;
    let last: u64 = b.trim().parse().map_err(|_| bad())?;
    if last < first || last == u64::MAX {
        return Err(bad());
    }
    Ok(first..last + 1)
}

pub fn run(global: &GlobalArgs, args: HashArgs) -> anyhow::Result<()> {
    let secret = crate::options::secret(global)?;
    let range = args.range.as_deref().map(parse_range).transpose()?;
    if range.is_some() && args.format == Some(OutputFormat::Native) {
        return Err(UsageError("--range applies to pccrc-v1 and pccrc-v2 only".into()).into());
    }
    let to_stdout =
        args.format.is_some() && args.output.as_deref().is_none_or(|p| p == Path::new("-"));
    if to_stdout && io::stdout().is_terminal() {
        return Err(UsageError(
            "refusing to write binary content information to a terminal: use -o FILE or redirect"
                .into(),
        )
        .into());
    }
    let what = || format!("hashing {}", args.file.display());
    let started = Instant::now();
    let (bytes, summary) = match args.format {
        Some(OutputFormat::PccrcV2) => {
            let v2 = v2::hash_reader_v2(input::open(&args.file)?, &secret).with_context(what)?;
            let size = v2.listed_len();
            let v2 = match range {
                Some(r) => v2
                    .slice(r.start, r.end - r.start)
                    .map_err(|e| UsageError(format!("--range: {e}")))?,
                None => v2,
            };
            let summary = Summary {
                ticket: None,
                size,
                segments: v2.segments().count() as u64,
                blocks: None,
                seconds: started.elapsed().as_secs_f64(),
            };
            (Some(v2.encode()), summary)
        }
        format => {
            let opts = HashOptions {
                threads: global.threads,
                ..HashOptions::default()
            };
            let info = match input::open_file(&args.file)? {
                Some(file) => hash_file(&file, &secret, &opts, &mut |_| {}),
                None => hash_reader(input::open(&args.file)?, &secret, &opts, &mut |_| {}),
            }
            .with_context(what)?;
            let layout = info.layout();
            let summary = Summary {
                ticket: Some(info.id().ticket().to_string()),
                size: layout.content_len(),
                segments: u64::from(layout.segment_count()),
                blocks: Some(layout.block_count()),
                seconds: started.elapsed().as_secs_f64(),
            };
            let bytes = match format {
                None => None,
                Some(OutputFormat::Native) => {
                    Some(engine::content::native::encode_content_info(&info))
                }
                Some(_) => Some(
                    ContentInfoV1::from_content_info(&info, range)
                        .map_err(|e| UsageError(format!("--range: {e}")))?
                        .encode(),
                ),
            };
            (bytes, summary)
        }
    };
    if let Some(bytes) = &bytes {
        match args.output.as_deref().filter(|p| *p != Path::new("-")) {
            Some(path) => write_atomically(path, bytes)?,
            None => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()?;
            }
        }
    }
    let report = if args.json {
        summary
            .json(args.format, args.output.as_deref())
            .to_string()
    } else {
        match &summary.ticket {
            Some(t) => format!("{t}\n{}", summary.line()),
            None => summary.line(),
        }
    };
    // The summary goes to stderr when stdout carries the content information. Written with
    // `writeln!`, not `println!`, so that a closed pipe is an error to report, not a panic.
    if to_stdout {
        writeln!(io::stderr().lock(), "{report}")?;
    } else {
        writeln!(io::stdout().lock(), "{report}")?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (engine's [`PartFile`]): a reader sees the old file or
/// the whole new one, also after a crash. Only the user may read it: content information holds
/// its segments' secrets.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let part = PartFile::create_with_mode(path, 0o600)?;
    (&*part.sink())
        .write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    part.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_http_writes_them() {
        assert_eq!(parse_range("0-0").unwrap(), 0..1);
        assert_eq!(parse_range("100-199").unwrap(), 100..200);
        assert!(parse_range("5-4").is_err());
        assert!(parse_range("5").is_err());
        assert!(parse_range("-5").is_err());
    }
}
