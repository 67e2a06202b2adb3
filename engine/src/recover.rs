//! Recover: at start, turn what an earlier run left in the spool into sealed
//! segments for the uploader.
//!
//! - A segment in `sealed/` is complete and durable: it is delivered as is,
//!   under the key in its name.
//! - A segment in `active/` was being written when the engine stopped. It is
//!   cut back to its last complete line (the end of the last `\n` before any
//!   zero byte or torn tail), synced, and moved to `sealed/`. If no complete
//!   line remains it is removed.
//! - Files whose names are not capline segment names are left alone and logged.

use std::fs::OpenOptions;
use std::io::Read;
use std::path::Path;

use crate::Error;
use crate::io::{Spool, sync_dir};
use crate::upload::{Key, Sealed};

/// Length of the valid prefix: up to and including the last `\n` before the first NUL.
pub(crate) fn complete_prefix(bytes: &[u8]) -> usize {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

fn recover_active(path: &Path, sealed_dir: &Path, key: &Key) -> std::io::Result<bool> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let keep = complete_prefix(&bytes);
    if keep == 0 {
        drop(file);
        std::fs::remove_file(path)?;
        return Ok(false);
    }
    if keep < bytes.len() {
        tracing::warn!(path = %path.display(), cut = bytes.len() - keep, "recovery cut a torn tail");
        file.set_len(keep as u64)?;
    }
    file.sync_all()?;
    drop(file);
    std::fs::rename(path, sealed_dir.join(key.spool_name()))?;
    Ok(true)
}

fn keyed_files(dir: &Path) -> crate::Result<Vec<(std::path::PathBuf, Key)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("read spool", dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read spool", dir, e))?;
        let name = entry.file_name();
        match name.to_str().and_then(Key::from_spool_name) {
            Some(key) => out.push((entry.path(), key)),
            None => {
                tracing::warn!(path = %entry.path().display(), "not a capline segment; ignored")
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Seals what `active/` holds and returns every sealed segment, oldest key first.
pub(crate) fn recover(spool: &Spool) -> crate::Result<Vec<Sealed>> {
    for (path, key) in keyed_files(&spool.active)? {
        let sealed = recover_active(&path, &spool.sealed, &key)
            .map_err(|e| Error::io("recover segment", &path, e))?;
        tracing::info!(key = key.as_str(), sealed, "recovered an unsealed segment");
    }
    sync_dir(&spool.active).map_err(|e| Error::io("sync spool", &spool.active, e))?;
    sync_dir(&spool.sealed).map_err(|e| Error::io("sync spool", &spool.sealed, e))?;
    Ok(keyed_files(&spool.sealed)?
        .into_iter()
        .map(|(path, key)| Sealed { path, key })
        .collect())
}
