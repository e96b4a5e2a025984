//! `pdist secret`: making group secrets.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context;
use engine::content::ServerSecret;

use crate::args::SecretNewArgs;

/// Makes a new group secret and prints it, or writes it to a new file only its owner reads.
pub fn new(args: &SecretNewArgs) -> anyhow::Result<()> {
    let secret = ServerSecret::generate();
    let line = format!("{}\n", secret.to_hex());
    match &args.output {
        None => std::io::stdout()
            .write_all(line.as_bytes())
            .context("writing the secret"),
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {} for the secret", path.display()))?;
            f.write_all(line.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing the secret to {}", path.display()))?;
            eprintln!(
                "pdist: wrote a new group secret to {}; give every member a copy (mode 0600) \
                 and --secret-file {}",
                path.display(),
                path.display()
            );
            Ok(())
        }
    }
}
