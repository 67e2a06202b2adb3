//! The `file://` destination: a local directory laid out as the bucket would be.
//!
//! A segment is renamed into place when spool and destination share a
//! filesystem; otherwise it is copied to `{dest}/.capline-tmp/`, synced, and
//! renamed into place, so a file appears under its key only when complete.
//! Directories it creates are 0700 and files keep the spool's 0600.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use super::{DeliverError, Destination};
use crate::io::Fs;
use crate::spool::Sealed;
use crate::stats::{Counters, add};

/// A validated `file://` destination.
#[derive(Debug)]
pub(crate) struct LocalDir {
    dir: PathBuf,
    fs: Arc<dyn Fs>,
    counters: Arc<Counters>,
}

impl LocalDir {
    pub(crate) fn new(dir: PathBuf, fs: Arc<dyn Fs>, counters: Arc<Counters>) -> Self {
        LocalDir { dir, fs, counters }
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join(".capline-tmp")
    }

    /// Puts the segment's bytes at `target` by copying (another filesystem).
    fn copy_into_place(&self, seg: &Sealed, target: &std::path::Path) -> std::io::Result<()> {
        let tmp_dir = self.tmp_dir();
        self.fs.create_dir_all(&tmp_dir)?;
        let tmp = tmp_dir.join(seg.key.spool_name());
        std::fs::copy(&seg.path, &tmp)?;
        self.fs.fdatasync(&std::fs::File::open(&tmp)?)?;
        self.fs.rename(&tmp, target)?;
        Ok(())
    }
}

impl Destination for LocalDir {
    /// Idempotent: delivering the same segment again replaces the file with
    /// identical bytes.
    fn deliver(&self, seg: &Sealed, _next: Option<&Sealed>) -> Result<(), DeliverError> {
        let target = self.dir.join(seg.key.as_str());
        let parent = target.parent().unwrap_or(&self.dir);
        if !seg.path.exists() && target.exists() {
            // An earlier attempt renamed it into place, then failed to sync:
            // finish that attempt.
            self.fs.sync_dir(parent)?;
            if let Some(spool) = seg.path.parent() {
                self.fs.sync_dir(spool)?;
            }
            add(
                &self.counters.bytes_uploaded,
                std::fs::metadata(&target).map_or(0, |m| m.len()),
            );
            return Ok(());
        }
        let size = seg.size();
        self.fs.create_dir_all(parent)?;
        match self.fs.rename(&seg.path, &target) {
            Ok(()) => {
                // The spool file is gone with the rename: sync both sides.
                self.fs.sync_dir(parent)?;
                if let Some(spool) = seg.path.parent() {
                    self.fs.sync_dir(spool)?;
                }
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                // The uploader removes the spool copy once this returns.
                self.copy_into_place(seg, &target)?;
                self.fs.sync_dir(parent)?;
            }
            Err(e) => return Err(e.into()),
        }
        add(&self.counters.bytes_uploaded, size);
        Ok(())
    }

    /// Removes leftovers of copies interrupted by a crash (never visible under a key).
    fn reconcile(&self, _pending: &VecDeque<Sealed>) -> Result<(), DeliverError> {
        if let Ok(entries) = std::fs::read_dir(self.tmp_dir()) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}
