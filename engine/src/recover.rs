//! Recover: at start, turn what an earlier run left in the spool into sealed
//! segments for the uploader.
//!
//! - A segment in `sealed/` is complete and durable: it is delivered as is,
//!   under the key in its name.
//! - A segment in `active/` was being written when the engine stopped. It is
//!   cut back to its last complete, valid line: the end of the last `\n`
//!   before the first zero byte (padding, preallocation) or torn tail, and
//!   further back while that last line does not parse as a capture record.
//!   It is then synced and moved to `sealed/`. If no valid line remains it is removed.
//! - Files whose names are not capline segment names are left alone and logged.

use std::fs::OpenOptions;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::check::parse_line;
use crate::spool::{Key, Sealed, Spool, State};

/// Length of the valid prefix: up to and including the last `\n` before the
/// first NUL, stepping back further while the last line is not a valid record.
pub(crate) fn complete_prefix(bytes: &[u8]) -> usize {
    let mut end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    loop {
        let Some(nl) = bytes[..end].iter().rposition(|&b| b == b'\n') else {
            return 0;
        };
        let start = bytes[..nl]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if parse_line(&bytes[start..nl], None).is_ok() {
            return nl + 1;
        }
        end = start;
    }
}

/// Cuts an active segment to its complete prefix and seals it; `false` when
/// nothing valid remained and the file was removed.
fn recover_active(spool: &Spool, path: &Path, key: &Key) -> std::io::Result<bool> {
    let fs = spool.fs();
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
        fs.ftruncate(&file, keep as u64)?;
    }
    fs.fdatasync(&file)?;
    drop(file);
    spool.seal(key)?;
    Ok(true)
}

/// Seals what `active/` holds and returns every sealed segment, oldest key first.
pub(crate) fn recover(spool: &Spool) -> Result<Vec<Sealed>> {
    for (path, key) in spool.list(State::Active)? {
        let sealed = recover_active(spool, &path, &key)
            .map_err(|e| Error::io("recover segment", &path, e))?;
        tracing::info!(key = key.as_str(), sealed, "recovered an unsealed segment");
    }
    Ok(spool
        .list(State::Sealed)?
        .into_iter()
        .map(|(path, key)| Sealed {
            sealed_at: std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .unwrap_or_else(|_| std::time::SystemTime::now()),
            path,
            key,
            recovered: true,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::complete_prefix;

    const LINE: &str = r#"{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT","data":"1,2\n","encoding":"CSV"}},"eventMetadata":{"eventId":"7ddb2d7c-4d6a-4e67-a68e-23870399829d","inferenceTime":"2024-01-19T19:27:57Z"},"eventVersion":"0"}"#;

    #[test]
    fn cuts_padding_torn_tails_and_invalid_last_lines() {
        let good = format!("{LINE}\n{LINE}\n");
        let mut b = good.clone().into_bytes();
        b.extend_from_slice(&LINE.as_bytes()[..40]);
        b.extend_from_slice(&[0; 100]);
        assert_eq!(complete_prefix(&b), good.len(), "torn tail and padding");

        let mut b = good.clone().into_bytes();
        b.extend_from_slice(b"{\"captureData\":{}}\n");
        assert_eq!(
            complete_prefix(&b),
            good.len(),
            "a complete but invalid last line"
        );

        // A block rewritten only in part: zeros inside, valid data after them.
        let mut b = good.clone().into_bytes();
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(format!("{LINE}\n").as_bytes());
        assert_eq!(
            complete_prefix(&b),
            good.len(),
            "nothing after the first NUL counts"
        );

        assert_eq!(complete_prefix(b"no newline at all"), 0);
        assert_eq!(complete_prefix(&[0; 64]), 0);
    }
}
