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

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// File-system operations on the spool. Implementations must be usable from
/// the writer, uploader and starting threads at once.
pub trait Fs: Send + Sync + std::fmt::Debug {
    /// Creates `path` for writing; it must not exist. With `direct`, the file
    /// is opened with `O_DIRECT` (a filesystem that refuses it answers `EINVAL`).
    fn create(&self, path: &Path, direct: bool) -> std::io::Result<File> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        if direct {
            options.custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
        }
        options.open(path)
    }

    /// Asked before every segment write of `len` bytes, whichever I/O path
    /// makes it: `Ok(len)` lets it through whole; `Ok(n)` with `n < len`
    /// writes only the first `n` bytes (a short write); an error fails the
    /// write with that error, without it reaching the kernel.
    fn admit_write(&self, len: usize) -> std::io::Result<usize> {
        Ok(len)
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
        File::open(dir)?.sync_all()
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl Fs for RealFs {}
