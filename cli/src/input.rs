//! Opening the files commands read: a path or '-' for standard input, with a size cap for
//! inputs that are read whole.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Why an input could not be read.
#[derive(Debug)]
pub enum InputError {
    Open { path: PathBuf, source: io::Error },
    TooLarge { path: PathBuf, max: usize },
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputError::Open { path, source } => write!(f, "{}: {source}", path.display()),
            InputError::TooLarge { path, max } => write!(
                f,
                "{}: larger than {max} bytes, the most any content information can be",
                path.display()
            ),
        }
    }
}

impl std::error::Error for InputError {}

/// Opens `path` for reading ('-' is standard input).
pub fn open(path: &Path) -> Result<Box<dyn Read>, InputError> {
    match open_file(path)? {
        Some(file) => Ok(Box::new(file)),
        None => Ok(Box::new(io::stdin().lock())),
    }
}

/// Opens `path` as a file; `None` for '-' (standard input).
pub fn open_file(path: &Path) -> Result<Option<File>, InputError> {
    if path == Path::new("-") {
        return Ok(None);
    }
    let file = File::open(path).map_err(|source| InputError::Open {
        path: path.to_owned(),
        source,
    })?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(InputError::Open {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::IsADirectory, "is a directory"),
        });
    }
    Ok(Some(file))
}

/// Reads all of `path`, refusing more than `max` bytes (without reading them).
pub fn read_capped(path: &Path, max: usize) -> anyhow::Result<Vec<u8>> {
    let too_large = || InputError::TooLarge {
        path: path.to_owned(),
        max,
    };
    if path != Path::new("-") && std::fs::metadata(path).is_ok_and(|m| m.len() > max as u64) {
        return Err(too_large().into());
    }
    let reader = open(path)?;
    let mut data = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| anyhow::Error::new(e).context(format!("reading {}", path.display())))?;
    if data.len() > max {
        return Err(too_large().into());
    }
    Ok(data)
}
