//! Spool: the on-disk protocol between the writer, recovery and the uploader.
//!
//! ```text
//! {SpoolDir}/
//!   LOCK                   flock held by the one engine using this spool
//!   active/{name}          segments being written (at most one per engine)
//!   active/.next-{id}      the next segment's file, made ahead while the
//!                          open one fills (empty; removed at start)
//!   sealed/{name}          complete, durable segments waiting for delivery
//!   uploads/{name}.upload  multipart progress of a sealed segment (S3 only)
//! ```
//!
//! A segment's `{name}` is its object key with `/` replaced by `+`
//! ([`Key::spool_name`]), so the key is fixed when the segment is created and
//! survives crashes and restarts in the file name itself. A segment moves
//! one way: created in `active/`, renamed into `sealed/` once written,
//! truncated to its last line and `fdatasync`ed ([`Spool::seal`]), and
//! removed from `sealed/` only once the destination holds it
//! ([`Spool::remove`]). Every rename and removal is followed by a sync of the
//! directories involved. All of it goes through the engine's [`Fs`].

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::is_valid_name;
use crate::error::{Error, Result};
use crate::format::check::parse_line;
use crate::io::Fs;
use crate::timestamp::Timestamp;

/// A segment's object key below the destination prefix:
/// `{endpoint}/{variant}/yyyy/mm/dd/hh/MM-SS-mmm-{uuid}.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key(String);

/// Separates key components in a spool file name (never valid in a name or a UUID).
const SPOOL_SEP: char = '+';

/// Starts the name of a file made ahead for the next segment in `active/`
/// ([`Spool::ahead_path`]); never the start of a segment's name.
const AHEAD_PREFIX: &str = ".next-";

impl Key {
    /// The key for a segment whose first record has time `first`.
    pub(crate) fn new(endpoint: &str, variant: &str, first: &Timestamp, uuid: &[u8; 16]) -> Key {
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::from_bytes(*uuid)
            .hyphenated()
            .encode_lower(&mut id);
        Key(format!(
            "{endpoint}/{variant}/{}-{id}.jsonl",
            first.key_path()
        ))
    }

    /// The key as a `/`-separated relative path.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The flat file name the segment has in the spool.
    pub(crate) fn spool_name(&self) -> String {
        self.0.replace('/', &SPOOL_SEP.to_string())
    }

    /// Reads a key back from a spool file name; `None` if the name is not one of ours.
    pub(crate) fn from_spool_name(name: &str) -> Option<Key> {
        let parts: Vec<&str> = name.split(SPOOL_SEP).collect();
        let [endpoint, variant, yyyy, mm, dd, hh, file] = parts[..] else {
            return None;
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_digit());
        let file_ok = file.len() == "MM-SS-mmm-".len() + 36 + ".jsonl".len()
            && file.ends_with(".jsonl")
            && file.is_char_boundary(10)
            && digits(&file[0..2], 2)
            && digits(&file[3..5], 2)
            && digits(&file[6..9], 3)
            && uuid::Uuid::try_parse(&file[10..46]).is_ok();
        let ok = is_valid_name(endpoint)
            && is_valid_name(variant)
            && digits(yyyy, 4)
            && digits(mm, 2)
            && digits(dd, 2)
            && digits(hh, 2)
            && file_ok;
        ok.then(|| Key(parts.join("/")))
    }
}

/// A sealed, durable segment waiting in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub(crate) path: PathBuf,
    pub(crate) key: Key,
    /// When it was sealed (its file's mtime for one found at start).
    pub(crate) sealed_at: SystemTime,
    /// Found in the spool at start: an earlier run may already have delivered it.
    pub(crate) recovered: bool,
}

impl Sealed {
    /// The segment's size in bytes (0 if it cannot be read).
    pub(crate) fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }
}

/// The two states a segment file can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Being written (`active/`).
    Active,
    /// Complete and durable, waiting for delivery (`sealed/`).
    Sealed,
}

/// An open spool: its directories, the engine's [`Fs`], and the lock that
/// keeps a second engine out (held until the last clone is dropped).
#[derive(Debug)]
pub(crate) struct Spool {
    active: PathBuf,
    sealed: PathBuf,
    uploads: PathBuf,
    fs: Arc<dyn Fs>,
    /// `sealed/` and `active/`, open for syncing their entries after a
    /// rename between them ([`Spool::dir_handles`]).
    handles: [Arc<std::fs::File>; 2],
    /// Held open for the spool's lifetime; the flock goes with it.
    _lock: std::fs::File,
}

impl Spool {
    /// Creates the layout under `root` if needed (private: directories
    /// 0700, whatever the umask) and takes the lock.
    pub(crate) fn open(root: &Path, fs: Arc<dyn Fs>) -> Result<Arc<Spool>> {
        let active = root.join("active");
        let sealed = root.join("sealed");
        let uploads = root.join("uploads");
        for d in [&active, &sealed, &uploads] {
            fs.create_dir_all(d)
                .and_then(|()| std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)))
                .map_err(|e| Error::io("create spool directory", d, e))?;
        }
        let lock_path = root.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .and_then(|f| {
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                Ok(f)
            })
            .map_err(|e| Error::io("open spool lock", &lock_path, e))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(Error::SpoolLocked(root.into())),
            Err(e) => return Err(Error::io("lock spool", &lock_path, e.into())),
        }
        let open_dir = |d: &Path| {
            std::fs::File::open(d)
                .map(Arc::new)
                .map_err(|e| Error::io("open spool directory", d, e))
        };
        let handles = [open_dir(&sealed)?, open_dir(&active)?];
        Ok(Arc::new(Spool {
            active,
            sealed,
            uploads,
            fs,
            handles,
            _lock: lock,
        }))
    }

    /// The file system the spool's I/O goes through.
    pub(crate) fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }

    fn dir(&self, state: State) -> &Path {
        match state {
            State::Active => &self.active,
            State::Sealed => &self.sealed,
        }
    }

    /// Where the segment `key` lives in `state`.
    pub(crate) fn path(&self, state: State, key: &Key) -> PathBuf {
        self.dir(state).join(key.spool_name())
    }

    /// Where a file made ahead for the next segment is created: in
    /// `active/`, so that taking it is a rename within one directory.
    pub(crate) fn ahead_path(&self, id: &[u8; 16]) -> PathBuf {
        let id = uuid::Uuid::from_bytes(*id).simple();
        self.active.join(format!("{AHEAD_PREFIX}{id}"))
    }

    /// Removes the files made ahead that an earlier run left in `active/`
    /// (they hold no record); returns how many.
    pub(crate) fn remove_ahead_files(&self) -> Result<usize> {
        let dir = &self.active;
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io("read spool", dir, e))?;
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read spool", dir, e))?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(AHEAD_PREFIX))
            {
                let path = entry.path();
                std::fs::remove_file(&path)
                    .map_err(|e| Error::io("remove a file made ahead", path, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Where the multipart upload progress of the sealed segment `key` is kept.
    pub(crate) fn progress_path(&self, key: &Key) -> PathBuf {
        self.uploads.join(format!("{}.upload", key.spool_name()))
    }

    /// The directory of multipart upload progress files.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub(crate) fn uploads_dir(&self) -> &Path {
        &self.uploads
    }

    /// Every segment in `state`, oldest key first. Files whose names are not
    /// segment names are left alone and logged.
    pub(crate) fn list(&self, state: State) -> Result<Vec<(PathBuf, Key)>> {
        let dir = self.dir(state);
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

    /// Moves the active segment `key`, already cut to its last line and
    /// durable, into `sealed/`, and makes the move durable. An error means
    /// the segment is still in `active/`.
    pub(crate) fn seal(&self, key: &Key) -> std::io::Result<Sealed> {
        let sealed = self.rename_sealed(key)?;
        if let Err(e) = self.sync_dir_entries() {
            tracing::warn!(key = key.as_str(), error = %e, "syncing the spool directories after sealing failed");
        }
        Ok(sealed)
    }

    /// Makes the entries of `sealed/` and `active/` durable (after a rename
    /// between them).
    pub(crate) fn sync_dir_entries(&self) -> std::io::Result<()> {
        self.fs
            .sync_dir(&self.sealed)
            .and_then(|()| self.fs.sync_dir(&self.active))
    }

    /// The rename of [`seal`](Self::seal) alone, for a caller that syncs
    /// both directories ([`Spool::dir_handles`]) itself. From the rename on the
    /// segment is sealed even if the move is not yet durable: a crash would
    /// leave it in `active/`, where recovery seals it again, and a delivery
    /// under its key is idempotent.
    pub(crate) fn rename_sealed(&self, key: &Key) -> std::io::Result<Sealed> {
        let path = self.path(State::Sealed, key);
        self.fs.rename(&self.path(State::Active, key), &path)?;
        Ok(Sealed {
            path,
            key: key.clone(),
            sealed_at: SystemTime::now(),
            recovered: false,
        })
    }

    /// `sealed/` and `active/`, open since the start: what to sync after a
    /// rename between them.
    pub(crate) fn dir_handles(&self) -> &[Arc<std::fs::File>; 2] {
        &self.handles
    }

    /// Cuts the active segment `key` back to its last complete, valid line
    /// ([`complete_prefix`]), makes it durable and seals it: the way out of
    /// `active/` for a segment whose tail is not known good (found at
    /// start, or left by a seal that failed). `None` when no valid line
    /// remained and the file was removed.
    pub(crate) fn cut_and_seal(&self, key: &Key) -> std::io::Result<Option<Sealed>> {
        let path = self.path(State::Active, key);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        // Mapped, not read: a segment may be as large as `SegmentMaxBytes`
        // (256 MiB by default), and its pages stay the page cache's to drop.
        let (keep, len) = {
            // SAFETY: the spool is locked to this engine, and a segment in
            // `active/` that reaches here is no longer written: at start no
            // writer runs yet, and after a failed seal the writer has moved
            // to a new segment. The file is cut only below, once the map is
            // dropped, so no page of the map goes away while it is read. (An
            // empty file maps to an empty slice.)
            let map = unsafe { memmap2::Mmap::map(&file)? };
            (complete_prefix(&map), map.len())
        };
        if keep == 0 {
            drop(file);
            std::fs::remove_file(&path)?;
            return Ok(None);
        }
        if keep < len {
            tracing::warn!(path = %path.display(), cut = len - keep, "cut a torn tail");
            self.fs.ftruncate(&file, keep as u64)?;
        }
        self.fs.fdatasync(&file)?;
        drop(file);
        self.seal(key).map(Some)
    }

    /// Removes a delivered segment from `sealed/` (if the destination did
    /// not take the file itself), durably, then its upload progress file.
    pub(crate) fn remove(&self, seg: &Sealed) -> std::io::Result<()> {
        match std::fs::remove_file(&seg.path) {
            Ok(()) => self.fs.sync_dir(&self.sealed)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // The progress file goes last: a crash in between leaves an orphan
        // that the next start removes.
        if std::fs::remove_file(self.progress_path(&seg.key)).is_ok() {
            let _ = self.fs.sync_dir(&self.uploads);
        }
        Ok(())
    }

    /// Makes `dir`'s entries durable.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub(crate) fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.fs.sync_dir(dir)
    }
}

/// Length of the valid prefix: up to and including the last `\n` before the
/// first NUL, stepping back further while the last line is not a valid record.
pub(crate) fn complete_prefix(bytes: &[u8]) -> usize {
    // memchr's vector search: a segment may be hundreds of MB.
    let mut end = memchr::memchr(0, bytes).unwrap_or(bytes.len());
    loop {
        let Some(nl) = memchr::memrchr(b'\n', &bytes[..end]) else {
            return 0;
        };
        let start = memchr::memrchr(b'\n', &bytes[..nl]).map_or(0, |i| i + 1);
        if parse_line(&bytes[start..nl], None).is_ok() {
            return nl + 1;
        }
        end = start;
    }
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
