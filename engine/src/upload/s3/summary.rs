//! What a segment's object says about its content: the sealed segment is
//! memory-mapped and summarized (record count, first and last
//! `inferenceTime`, SHA-256) for the object's user metadata.

use std::path::Path;

use bytes::Bytes;
use sha2::Digest;

/// A segment's content, being prepared on a blocking thread.
pub(super) type Prepared = tokio::task::JoinHandle<std::io::Result<(Bytes, Summary)>>;

/// Maps a sealed segment and summarizes it.
pub(super) fn prepare(path: &Path) -> std::io::Result<(Bytes, Summary)> {
    let file = std::fs::File::open(path)?;
    // SAFETY: sealed segments are never modified while in the spool: the
    // writer renamed them into `sealed/` after its last write, and only the
    // uploader removes them, after the upload.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let content = Bytes::from_owner(map);
    let summary = summarize(&content);
    Ok((content, summary))
}

/// What the object's user metadata says about its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Summary {
    pub(super) records: u64,
    pub(super) first_time: String,
    pub(super) last_time: String,
    pub(super) sha256: String,
}

/// `inferenceTime` of one line, found without parsing the whole line.
fn inference_time(line: &[u8]) -> String {
    const TAG: &[u8] = b"\"inferenceTime\":\"";
    line.windows(TAG.len())
        .rposition(|w| w == TAG)
        .and_then(|at| {
            let rest = &line[at + TAG.len()..];
            let end = rest.iter().position(|&b| b == b'"')?;
            std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
        })
        .unwrap_or_default()
}

/// Record count, first and last `inferenceTime`, and SHA-256 of a segment.
pub(super) fn summarize(content: &[u8]) -> Summary {
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let first = body.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let last = body.rsplit(|&b| b == b'\n').next().unwrap_or(&[]);
    Summary {
        records: content.iter().filter(|&&b| b == b'\n').count() as u64,
        first_time: inference_time(first),
        last_time: inference_time(last),
        sha256: sha2::Sha256::digest(content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }
}
