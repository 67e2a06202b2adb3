//! The file-system interface the spool's I/O goes through.
//!
//! Every operation on spool files that can fail because of the disk goes
//! through an [`Fs`]: creating a segment, each segment write (pwrite or
//! io_uring), `fdatasync`, `ftruncate`, renames and directory syncs. The
//! engine uses [`RealFs`]. Tests implement [`Fs`] over `RealFs` to make one
//! chosen operation fail (EIO or ENOSPC at the Nth write, a short write, a
//! failing sync, truncate or rename), the way raft-engine's `FileSystem`
//! trait lets its tests inject faults, without a full disk or root.
//!
//! Every method has the real behaviour as its default, so an implementation
//! overrides only the operations it wants to change.
//!
//! Captured payloads are often personal data, so what the engine creates is
//! private whatever the process's umask: directories 0700, files 0600.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of every file the engine creates.
pub const FILE_MODE: u32 = 0o600;
/// The mode of every directory the engine creates.
pub const DIR_MODE: u32 = 0o700;

/// File-system operations on the spool. Implementations must be usable from
/// the writer, uploader and starting threads at once.
pub trait Fs: Send + Sync + std::fmt::Debug {
    /// Creates `path` for writing, mode 0600; it must not exist. With
    /// `direct`, the file is opened with `O_DIRECT` (a filesystem that
    /// refuses it answers `EINVAL`).
    fn create(&self, path: &Path, direct: bool) -> std::io::Result<File> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(FILE_MODE);
        if direct {
            options.custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
        }
        let file = options.open(path)?;
        // The umask may have taken bits from the mode; set it exactly.
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
        Ok(file)
    }

    /// Creates `dir` and whichever of its parents are missing, each 0700
    /// (directories that exist already are left as they are).
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
            missing.push(d);
            at = d.parent();
        }
        for d in missing.into_iter().rev() {
            match DirBuilder::new().mode(DIR_MODE).create(d) {
                // The umask may have taken bits from the mode; set it exactly.
                Ok(()) => std::fs::set_permissions(d, Permissions::from_mode(DIR_MODE))?,
                // Another engine (a second variant) made it meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Asked before every segment write of `len` bytes, whichever I/O path
    /// makes it: `Ok(len)` lets it through whole; `Ok(n)` with `n < len`
    /// writes only the first `n` bytes (a short write); an error fails the
    /// write with that error, without it reaching the kernel.
    fn admit_write(&self, len: usize) -> std::io::Result<usize> {
        Ok(len)
    }

    /// Asked before every `fdatasync` of a segment the writer starts without
    /// waiting for it, and so without a call to
    /// [`fdatasync`](Self::fdatasync): the periodic ones (through io_uring,
    /// or on the pwrite path's I/O thread) and, through io_uring, a seal's
    /// after the cut (the pwrite path calls `fdatasync`). An error fails
    /// that sync with the error, without it reaching the kernel.
    fn admit_sync(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// Makes a file's data durable.
    fn fdatasync(&self, file: &File) -> std::io::Result<()> {
        Ok(rustix::fs::fdatasync(file)?)
    }

    /// Sets a file's length.
    fn ftruncate(&self, file: &File, len: u64) -> std::io::Result<()> {
        Ok(rustix::fs::ftruncate(file, len)?)
    }

    /// Renames `from` to `to` (atomically, within one filesystem).
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    /// Makes a directory's entries (creates, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.sync_open_dir(&File::open(dir)?)
    }

    /// [`sync_dir`](Self::sync_dir) on a directory already open: after a
    /// seal's rename the writer syncs both spool directories on handles the
    /// spool opened at start (by this call on the pwrite path; through
    /// io_uring as an `Fsync` it does not wait for).
    fn sync_open_dir(&self, dir: &File) -> std::io::Result<()> {
        dir.sync_all()
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl Fs for RealFs {}
