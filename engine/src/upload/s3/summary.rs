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
/// One pass: each chunk is hashed and its newlines counted while it is in
/// cache.
pub(super) fn summarize(content: &[u8]) -> Summary {
    const CHUNK: usize = 256 << 10;
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let first = body.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let last = body.rsplit(|&b| b == b'\n').next().unwrap_or(&[]);
    let mut sha = sha2::Sha256::new();
    let mut records = 0u64;
    for chunk in content.chunks(CHUNK) {
        sha.update(chunk);
        records += memchr::memchr_iter(b'\n', chunk).count() as u64;
    }
    Summary {
        records,
        first_time: inference_time(first),
        last_time: inference_time(last),
        sha256: hex(&sha.finalize()),
    }
}

/// Lower-case hex, two digits per byte.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize, time: &str) -> String {
        format!(
            r#"{{"captureData":{{"endpointInput":{{"data":"{}","encoding":"CSV"}}}},"eventMetadata":{{"inferenceTime":"{time}"}},"eventVersion":"0"}}"#,
            "x".repeat(i % 700)
        ) + "\n"
    }

    #[test]
    fn summary_spans_chunks() {
        // Over a megabyte, so the one pass crosses several chunk boundaries,
        // some of them inside a line.
        let mut content = String::new();
        let mut n = 0;
        while content.len() < (1 << 20) + 12_345 {
            let t = format!("2026-12-02T08:{:02}:{:02}Z", n / 60 % 60, n % 60);
            content.push_str(&line(n, &t));
            n += 1;
        }
        let s = summarize(content.as_bytes());
        assert_eq!(s.records, n as u64);
        assert_eq!(s.first_time, "2026-12-02T08:00:00Z");
        let last = n - 1;
        assert_eq!(
            s.last_time,
            format!("2026-12-02T08:{:02}:{:02}Z", last / 60 % 60, last % 60)
        );
        assert_eq!(s.sha256, hex(&sha2::Sha256::digest(content.as_bytes())));
    }

    #[test]
    fn empty_segment() {
        let s = summarize(b"");
        assert_eq!(s.records, 0);
        assert_eq!(s.first_time, "");
        assert_eq!(
            s.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
