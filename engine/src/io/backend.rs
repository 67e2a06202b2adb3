//! The two ways a segment write reaches the kernel: io_uring submissions, or
//! `pwrite` calls where io_uring is unavailable (Docker's default seccomp
//! profile blocks it). The output keeps the bookkeeping; a backend only
//! starts writes (and, through io_uring, data syncs) and reports their
//! results by tag.

use std::fs::File;
use std::os::fd::AsRawFd;

use crate::config::IoMode;

/// Submission queue entries.
const QUEUE: u32 = 64;

/// Which path the writer actually uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPath {
    /// io_uring submissions.
    Uring,
    /// `pwrite` calls.
    Pwrite,
}

/// A started write: finished at once (with its result), or in flight.
#[derive(Debug)]
pub(super) enum Started {
    /// `pwrite` returned, or the write could not be submitted.
    Done(std::io::Result<usize>),
    /// Submitted to io_uring; [`Backend::complete`] reports it.
    InFlight,
}

pub(super) enum Backend {
    Uring(Box<io_uring::IoUring>),
    Pwrite,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Uring(_) => "io_uring",
            Backend::Pwrite => "pwrite",
        })
    }
}

impl Backend {
    /// io_uring or pwrite, per `mode`. `Auto` falls back to pwrite with one
    /// log line when io_uring cannot be set up.
    pub(super) fn new(mode: IoMode) -> std::io::Result<Backend> {
        Ok(match mode {
            IoMode::Pwrite => Backend::Pwrite,
            IoMode::Uring => Backend::Uring(Box::new(io_uring::IoUring::new(QUEUE)?)),
            IoMode::Auto => match io_uring::IoUring::new(QUEUE) {
                Ok(r) => Backend::Uring(Box::new(r)),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "io_uring_setup failed (blocked by seccomp, kernel.io_uring_disabled, or an old kernel); writing segments with pwrite"
                    );
                    Backend::Pwrite
                }
            },
        })
    }

    pub(super) fn path(&self) -> IoPath {
        match self {
            Backend::Uring(_) => IoPath::Uring,
            Backend::Pwrite => IoPath::Pwrite,
        }
    }

    /// Starts writing `len` bytes from `ptr` at `offset` of `file`, tagged with `slot`.
    ///
    /// # Safety
    /// `ptr .. ptr + len` must stay allocated and unwritten until the write
    /// has finished: at once for [`Started::Done`], otherwise until
    /// [`complete`](Self::complete) reports `slot`.
    pub(super) unsafe fn start(
        &mut self,
        file: &File,
        ptr: *const u8,
        len: usize,
        offset: u64,
        slot: usize,
    ) -> Started {
        match self {
            Backend::Pwrite => {
                // SAFETY: the caller keeps `ptr .. ptr + len` allocated and
                // unwritten for the duration of this call.
                let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
                Started::Done(rustix::io::pwrite(file, bytes, offset).map_err(Into::into))
            }
            Backend::Uring(ring) => {
                let entry = io_uring::opcode::Write::new(
                    io_uring::types::Fd(file.as_raw_fd()),
                    ptr,
                    len as u32,
                )
                .offset(offset)
                .build()
                .user_data(slot as u64);
                // SAFETY: the caller keeps the buffer allocated and unwritten
                // until the kernel reports this write complete.
                unsafe { push(ring, &entry) }
            }
        }
    }

    /// Starts an `fdatasync` of `file` through io_uring, reported by
    /// [`complete`](Self::complete) with `tag`. `None` on the pwrite path,
    /// where the caller syncs the file itself.
    pub(super) fn start_sync(&mut self, file: &File, tag: usize) -> Option<Started> {
        let Backend::Uring(ring) = self else {
            return None;
        };
        let entry = io_uring::opcode::Fsync::new(io_uring::types::Fd(file.as_raw_fd()))
            .flags(io_uring::types::FsyncFlags::DATASYNC)
            .build()
            .user_data(tag as u64);
        // SAFETY: an fsync entry refers to no memory, and the kernel takes its
        // own reference to the file at submission.
        Some(unsafe { push(ring, &entry) })
    }

    /// Reports finished operations as `(tag, result)` (a write's tag is its
    /// buffer slot), the result being the bytes written (0 for a sync) or a
    /// negated errno; with `wait`, blocks for at least one.
    /// Returns whether any was reported; an error means the ring itself is
    /// unusable (a bad fd or memory fault, which our own submissions never
    /// cause), and nothing in flight will ever be reported.
    pub(super) fn complete(
        &mut self,
        wait: bool,
        mut report: impl FnMut(usize, i32),
    ) -> std::io::Result<bool> {
        let Backend::Uring(ring) = self else {
            return Ok(false);
        };
        let retryable = [
            rustix::io::Errno::INTR,
            rustix::io::Errno::AGAIN,
            rustix::io::Errno::BUSY,
        ];
        if wait
            && let Err(e) = ring.submit_and_wait(1)
            && !retryable
                .iter()
                .any(|r| e.raw_os_error() == Some(r.raw_os_error()))
        {
            return Err(e);
        }
        let mut any = false;
        for cqe in ring.completion() {
            any = true;
            report(cqe.user_data() as usize, cqe.result());
        }
        Ok(any)
    }
}

/// Queues `entry` and submits it; a full queue is submitted once first.
///
/// # Safety
/// Whatever memory `entry` refers to must stay valid, as the entry says, until
/// its completion is reported.
unsafe fn push(ring: &mut io_uring::IoUring, entry: &io_uring::squeue::Entry) -> Started {
    // SAFETY: the caller keeps what the entry refers to valid until it completes.
    let mut pushed = unsafe { ring.submission().push(entry) }.is_ok();
    if !pushed {
        // The queue is full: let the kernel take it, then try once more.
        let _ = ring.submit();
        // SAFETY: as above.
        pushed = unsafe { ring.submission().push(entry) }.is_ok();
    }
    if !pushed {
        return Started::Done(Err(std::io::Error::other(
            "the io_uring submission queue stayed full",
        )));
    }
    // An operation that never reached the kernel has failed; there is
    // nothing to wait for.
    match ring.submit() {
        Ok(_) => Started::InFlight,
        Err(e) => Started::Done(Err(e)),
    }
}
