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
//! - A file made ahead for a next segment (`active/.next-*`) holds no record
//!   and is removed.
//! - Files whose names are not capline segment names are left alone and logged.

use crate::error::{Error, Result};
use crate::spool::{Sealed, Spool, State};

/// Seals what `active/` holds and returns every sealed segment, oldest key first.
pub(crate) fn recover(spool: &Spool) -> Result<Vec<Sealed>> {
    let ahead = spool.remove_ahead_files()?;
    if ahead > 0 {
        tracing::info!(
            files = ahead,
            "removed files made ahead for segments never opened"
        );
    }
    for (path, key) in spool.list(State::Active)? {
        let sealed = spool
            .cut_and_seal(&key)
            .map_err(|e| Error::io("recover segment", &path, e))?;
        tracing::info!(
            key = key.as_str(),
            sealed = sealed.is_some(),
            "recovered an unsealed segment"
        );
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
