//! I/O: the file a segment is written through.
//!
//! Foundation version: ordinary buffered file writes, whole batches at a time,
//! and `fdatasync` to make them durable. The io_uring / O_DIRECT writer replaces
//! this behind the same interface.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// An append-only segment file.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    file: File,
    /// Bytes successfully written so far.
    len: u64,
}

impl SegmentFile {
    /// Creates a new, empty file; fails if it exists.
    pub(crate) fn create(path: &Path) -> std::io::Result<SegmentFile> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(SegmentFile { file, len: 0 })
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends a batch. On error the file is cut back to its previous length,
    /// so it never ends in a torn line.
    pub(crate) fn append(&mut self, batch: &[u8]) -> std::io::Result<()> {
        match self.file.write_all(batch) {
            Ok(()) => {
                self.len += batch.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Best effort: if even this fails, recovery cuts to the last newline.
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Makes every appended byte durable.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// Makes a directory entry change (create, rename) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The spool directory: `active/` holds segments being written, `sealed/`
/// holds durable segments waiting for delivery, and `LOCK` keeps a second
/// engine out.
#[derive(Debug)]
pub(crate) struct Spool {
    pub(crate) active: std::path::PathBuf,
    pub(crate) sealed: std::path::PathBuf,
    /// Held open for the engine's lifetime; the flock goes with it.
    _lock: File,
}

impl Spool {
    /// Creates the layout if needed and takes the lock.
    pub(crate) fn open(root: &Path) -> crate::Result<Spool> {
        use crate::Error;
        let active = root.join("active");
        let sealed = root.join("sealed");
        for d in [&active, &sealed] {
            std::fs::create_dir_all(d).map_err(|e| Error::io("create spool directory", d, e))?;
        }
        let lock_path = root.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("open spool lock", &lock_path, e))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(Error::SpoolLocked(root.into())),
            Err(e) => return Err(Error::io("lock spool", &lock_path, e.into())),
        }
        Ok(Spool {
            active,
            sealed,
            _lock: lock,
        })
    }
}
