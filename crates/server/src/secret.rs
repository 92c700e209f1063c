//! The server secret that keys sign-in code hashes: read from its file, or created on first start.
//!
//! The key lives outside the database on purpose: a copy of the database alone (a backup, a
//! stolen disk image of the DB file) must not let anyone check guesses of a pending sign-in code.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use concord_core::code::CodeKey;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
#[error("secret file {} (CONCORD_SECRET_FILE): {reason}", path.display())]
pub struct SecretError {
    path: PathBuf,
    reason: String,
}

/// The sign-in code key. A file named by `CONCORD_SECRET_FILE` must exist: creating a fresh key
/// where the operator pointed at one would silently invalidate every pending code and hide a
/// mistyped path. The default `<data>/secret.key` is created (mode 0600) when missing.
pub fn load_code_key(config: &Config) -> Result<CodeKey, SecretError> {
    let path = config.secret_path();
    let error = |reason: String| SecretError { path: path.clone(), reason };
    match std::fs::read_to_string(&path) {
        Ok(text) => CodeKey::parse_hex(&text).map_err(|e| error(e.to_string())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && config.secret_file.is_none() => {
            let key = CodeKey::generate();
            create(&path, &key).map_err(|e| error(format!("cannot create it: {e}")))?;
            tracing::info!(path = %path.display(), "created the server secret");
            Ok(key)
        }
        Err(err) => Err(error(err.to_string())),
    }
}

/// Writes the key durably, readable by this user only; `create_new` so two starts never race to
/// different keys.
fn create(path: &Path, key: &CodeKey) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(format!("{}\n", key.to_hex()).as_bytes())?;
    file.sync_all()?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
