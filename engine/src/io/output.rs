//! The segment output: one segment file at a time, written in large aligned
//! batches with `O_DIRECT`, through io_uring (or `pwrite` where io_uring is
//! unavailable).
//!
//! Lines are serialized straight into [`AlignedBuf`]s. When the current buffer
//! holds a batch, its whole blocks are submitted as one write and the partial
//! last block is carried to the next buffer; up to [`BUFFERS`] writes are in
//! flight at once. To make data durable (`sync`), the partial block is written
//! zero-padded and rewritten in place by the next write, and an `fdatasync`
//! follows, which runs while the writer goes on, its result collected with
//! the next completions (`sync_wait` waits for it). At close the file is
//! written out and truncated to its true length, and through io_uring its
//! `fdatasync` is started the same way: the writer goes on with the next
//! file meanwhile, and [`Output::next_closed`] reports the sync's result.
//! Directory syncs (after a sealed segment's rename) run in the background
//! too. On the pwrite path both are calls (DECISIONS.md, "A seal's
//! fdatasync runs in the background through io_uring").
//!
//! Accounting is by line: every line's end offset is remembered until the
//! bytes before it are known to be written (the *frontier*, which only moves
//! over writes completed in order). If a write fails, the file is cut back to
//! the last line end before the frontier, and the lines after it are reported
//! as lost.
//!
//! A file that fills fast has its successor created and preallocated whole
//! ahead of time, on a thread of its own ([`Output::prepare`]), and the next
//! [`Output::open`] renames it into place: ext4's `fallocate` waits for every
//! write in flight on the file it grows, so growing the open file step by
//! step leaves the disk without work, and doing it for the next file while
//! this one is written does not (DECISIONS.md, "The next segment's file is
//! made ahead").

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::backend::{Backend, Durable, IoPath, Started};
use super::buf::AlignedBuf;
use super::fs::Fs;
use crate::config::IoMode;

/// Writes in flight at once (and aligned buffers per writer).
pub const BUFFERS: usize = 4;
/// Each aligned buffer's size: two huge pages, resident from the start.
pub const BUFFER_BYTES: usize = 4 << 20;
/// A batch: the current buffer is submitted once it holds this much. The
/// rest of the buffer takes the line that crosses the mark without the
/// buffer growing (a longer line grows it). Each write is a completion the
/// kernel handles on whichever CPU takes the disk's interrupt, wherever the
/// application's threads run, and on ext4 each one converts the extents it
/// wrote from unwritten on a kernel worker there (DECISIONS.md, "The writer
/// writes in batches of 3.5 to 4 MiB, from huge pages").
pub const BATCH: usize = BUFFER_BYTES - (512 << 10);
/// A file's first write is submitted once this much is buffered, and each
/// next one at twice the last, up to [`BATCH`]: after a seal nothing is in
/// flight until the new file's first write, and the disk should not wait
/// for a whole batch to be serialized.
const FIRST_BATCH: usize = 512 << 10;
/// Preallocation steps double from the first (the `prealloc` of
/// [`Output::open`]) up to this. ext4's `fallocate` waits for every write in
/// flight on the file, emptying the disk's queue, so a busy file should grow
/// in few steps; doubling keeps a file's reservation within twice its data.
const PREALLOC_STEP_MAX: u64 = 64 << 20;
/// The smallest alignment used for `O_DIRECT`, whatever the device reports.
const ALIGN_FLOOR: usize = 4096;
/// The tag of the open file's data sync (a write's tag is its buffer slot).
const SYNC_TAG: usize = usize::MAX;
/// The tag of every directory sync.
const DIR_TAG: usize = usize::MAX - 1;
/// The first tag of a closed file's data sync: each close takes the next.
const CLOSE_TAG: usize = 1 << 16;

/// Records whose writes finished since the last report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Lines now known to be written.
    pub written: u64,
    /// Lines lost to a write error (the file was cut back before them).
    pub lost: u64,
}

impl std::ops::AddAssign for Progress {
    fn add_assign(&mut self, o: Progress) {
        self.written += o.written;
        self.lost += o.lost;
    }
}

/// One submitted write.
#[derive(Debug)]
struct InFlight {
    slot: usize,
    /// Bytes written (whole blocks, zero padding included).
    len: usize,
    /// End of real data in this write (before padding).
    data_end: u64,
    done: bool,
    failed: bool,
}

/// The open segment file.
#[derive(Debug)]
struct OpenFile {
    /// Shared with the backend's operations in flight on it.
    file: Arc<File>,
    align: usize,
    /// File offset of the current buffer's first byte (a multiple of `align`).
    buf_start: u64,
    /// Every byte before this offset is known written.
    frontier: u64,
    /// The last line end at or before the frontier.
    good_len: u64,
    /// Line ends not yet known written, in file offsets.
    line_ends: VecDeque<u64>,
    failed: bool,
    /// The file is preallocated up to here, and grown by `prealloc_step`
    /// ahead of writes; each step doubles the last, up to `PREALLOC_STEP_MAX`.
    prealloc_end: u64,
    prealloc_step: u64,
    /// The buffered bytes at which the next write is submitted: from
    /// `FIRST_BATCH`, doubling up to `BATCH`.
    batch: usize,
}

/// An `fdatasync` started through the backend, from its submission until
/// its result is applied to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataSync {
    /// None started, or the last one's result applied.
    Idle,
    /// Submitted; its completion not yet collected.
    InFlight,
    /// Collected, with its result (0 or a negated errno), not yet applied.
    Done(i32),
}

/// A closed file, cut to its length, whose `fdatasync` runs in the
/// background.
#[derive(Debug)]
struct Closing {
    /// The sync's tag, which is also the close's ticket.
    tag: usize,
    /// Open until the sync has finished: io_uring looks the descriptor up
    /// when the sync runs, not when it is submitted.
    _file: Arc<File>,
    len: u64,
    /// The sync's result (0 or a negated errno), once collected.
    result: Option<i32>,
}

/// How a close ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// No line was written: there is nothing to keep.
    Empty,
    /// Cut to `len` bytes; its `fdatasync` runs in the background, and
    /// [`Output::next_closed`] reports it with `ticket`.
    Syncing {
        /// Names this close in [`Output::next_closed`].
        ticket: usize,
        /// The file's length: its last line's end.
        len: u64,
    },
}

/// How long [`Output::reap`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Not at all: collects what has finished.
    No,
    /// Until at least one more operation has finished.
    One,
    /// Until no write, nor the open file's data sync, is in flight.
    Writes,
    /// Until nothing is in flight: closed files' and directories' syncs too.
    All,
}

/// A file being created and preallocated on a thread of its own for the next
/// [`Output::open`] to take ([`Output::prepare`]).
#[derive(Debug)]
struct Ahead {
    path: PathBuf,
    /// Bytes asked for.
    len: u64,
    /// When it was asked for.
    since: Instant,
    /// The file, whether the filesystem refused `O_DIRECT` for it, and how
    /// far it is preallocated.
    job: JoinHandle<std::io::Result<(File, bool, u64)>>,
}

/// The writer's output: a backend, aligned buffers, and the open file.
#[derive(Debug)]
pub struct Output {
    backend: Backend,
    fs: Arc<dyn Fs>,
    bufs: Vec<AlignedBuf>,
    /// Index of the buffer lines go into.
    current: usize,
    in_flight: VecDeque<InFlight>,
    /// The open file's `fdatasync` through the backend.
    data_sync: DataSync,
    file: Option<OpenFile>,
    /// Closed files whose sync is in flight or not yet reported, in the
    /// order closed.
    closing: VecDeque<Closing>,
    /// The next close's tag.
    next_close: usize,
    /// The directories whose sync is in flight (open until it has finished).
    dir_syncs: Vec<Arc<File>>,
    /// Logged once: the filesystem refused O_DIRECT.
    warned_buffered: bool,
    /// The next file, made ahead.
    ahead: Option<Ahead>,
}

impl Output {
    /// Sets up io_uring (or pwrite, per `mode`) over `fs`. `Auto` falls back
    /// to pwrite with one log line when io_uring cannot be set up.
    pub fn new(mode: IoMode, fs: Arc<dyn Fs>) -> std::io::Result<Output> {
        let backend = Backend::new(mode)?;
        Ok(Output {
            backend,
            fs,
            bufs: (0..BUFFERS)
                .map(|_| AlignedBuf::resident(BUFFER_BYTES, ALIGN_FLOOR))
                .collect(),
            current: 0,
            in_flight: VecDeque::new(),
            data_sync: DataSync::Idle,
            file: None,
            closing: VecDeque::new(),
            next_close: CLOSE_TAG,
            dir_syncs: Vec::new(),
            warned_buffered: false,
            ahead: None,
        })
    }

    /// The path in use.
    pub fn io_path(&self) -> IoPath {
        self.backend.path()
    }

    /// Creates a new segment file (it must not exist), opened with `O_DIRECT`
    /// where the filesystem allows, and preallocated to `prealloc` bytes; or,
    /// when a file made ahead ([`prepare`](Self::prepare)) is ready, renames
    /// that one to `path` instead.
    pub fn open(&mut self, path: &Path, prealloc: u64) -> std::io::Result<()> {
        debug_assert!(self.file.is_none());
        let (file, buffered, reserved) = match self.take_ahead(path) {
            Some(made) => made,
            None => {
                let (file, buffered) = create(&*self.fs, path)?;
                (file, buffered, 0)
            }
        };
        if buffered && !self.warned_buffered {
            tracing::warn!(path = %path.display(), "the filesystem refuses O_DIRECT; writing segments through the page cache");
            self.warned_buffered = true;
        }
        let align = dio_align(&file).max(ALIGN_FLOOR);
        let prealloc_step = prealloc.next_multiple_of(align as u64);
        let prealloc_end = if reserved > 0 {
            reserved
        } else {
            preallocate(&file, 0, prealloc_step)
        };
        for b in &mut self.bufs {
            if b.align() < align {
                *b = AlignedBuf::resident(BUFFER_BYTES, align);
            }
            b.clear();
        }
        self.file = Some(OpenFile {
            file: Arc::new(file),
            align,
            buf_start: 0,
            frontier: 0,
            good_len: 0,
            line_ends: VecDeque::new(),
            failed: false,
            prealloc_end,
            prealloc_step,
            batch: FIRST_BATCH,
        });
        Ok(())
    }

    /// Starts making the next file ahead: `path` is created (as `open`
    /// would) and preallocated to `len` bytes on a thread of its own, and the
    /// next [`open`](Self::open) after it has finished renames it into place.
    /// Does nothing while one is already made or being made, nor when the
    /// filesystem has less than twice `len` free: the open file may still
    /// need up to `len` to grow, and a reservation for the next one must not
    /// take the space it would grow into.
    pub fn prepare(&mut self, path: PathBuf, len: u64) {
        if self.ahead.is_some() {
            return;
        }
        let free = path
            .parent()
            .and_then(|dir| rustix::fs::statvfs(dir).ok())
            .map_or(0, |st| st.f_bavail.saturating_mul(st.f_frsize));
        if free < len.saturating_mul(2) {
            tracing::debug!(
                free,
                len,
                "the next file is not made ahead: too little free space"
            );
            return;
        }
        let fs = Arc::clone(&self.fs);
        let at = path.clone();
        let job = std::thread::Builder::new()
            .name("capline-ahead".into())
            .spawn(move || {
                let (file, buffered) = create(&*fs, &at)?;
                let reserved = preallocate(&file, 0, len);
                Ok((file, buffered, reserved))
            });
        match job {
            Ok(job) => {
                self.ahead = Some(Ahead {
                    path,
                    len,
                    since: Instant::now(),
                    job,
                })
            }
            Err(e) => tracing::debug!(error = %e, "no thread to make the next file ahead"),
        }
    }

    /// Bytes reserved for the next file, made ahead or being made.
    pub fn ahead_bytes(&self) -> u64 {
        self.ahead.as_ref().map_or(0, |a| a.len)
    }

    /// When the file made ahead (or being made) was asked for.
    pub fn ahead_since(&self) -> Option<Instant> {
        self.ahead.as_ref().map(|a| a.since)
    }

    /// Removes the file made ahead, if any, waiting for its making to end.
    pub fn discard_ahead(&mut self) {
        if let Some(a) = self.ahead.take() {
            let _ = a.job.join();
            let _ = std::fs::remove_file(&a.path);
        }
    }

    /// The file made ahead, renamed to `path`, if it is ready: never waits
    /// for it. One that failed to be made, or to be renamed, is removed.
    fn take_ahead(&mut self, path: &Path) -> Option<(File, bool, u64)> {
        if !self.ahead.as_ref()?.job.is_finished() {
            return None;
        }
        let a = self.ahead.take()?;
        let made = a
            .job
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the thread making it panicked")));
        match made.and_then(|made| self.fs.rename(&a.path, path).map(|()| made)) {
            Ok(made) => Some(made),
            Err(e) => {
                tracing::warn!(path = %a.path.display(), error = %e, "the file made ahead for the next segment is not used");
                let _ = std::fs::remove_file(&a.path);
                None
            }
        }
    }

    /// The buffer to append the next line to.
    #[inline]
    pub fn buf(&mut self) -> &mut AlignedBuf {
        &mut self.bufs[self.current]
    }

    /// Notes that a complete line now ends at the buffer's current length.
    pub fn line_end(&mut self) {
        let len = self.bufs[self.current].len() as u64;
        if let Some(f) = self.file.as_mut() {
            f.line_ends.push_back(f.buf_start + len);
        }
    }

    /// Bytes of data in the file so far, buffered ones included.
    pub(crate) fn data_len(&self) -> u64 {
        self.file
            .as_ref()
            .map_or(0, |f| f.buf_start + self.bufs[self.current].len() as u64)
    }

    /// Whether a write has failed (the segment should be closed).
    pub(crate) fn failed(&self) -> bool {
        self.file.as_ref().is_some_and(|f| f.failed)
    }

    /// Submits the current buffer's whole blocks once it holds a batch, and
    /// collects finished writes.
    pub fn pump(&mut self) -> Progress {
        let mut p = self.reap(Wait::No);
        if let Some(f) = self.file.as_mut()
            && self.bufs[self.current].len() >= f.batch
            && !f.failed
        {
            f.batch = (f.batch * 2).min(BATCH);
            p += self.submit_blocks();
        }
        p
    }

    /// Writes everything buffered (the last block zero-padded, to be
    /// rewritten in place later), waits for every write, and starts an
    /// `fdatasync`, which runs while the writer goes on: its result is
    /// collected with later completions, and a failure fails the file as a
    /// failed write does. A sync still in flight from the last call is
    /// finished first.
    pub fn sync(&mut self) -> Progress {
        let mut p = self.write_out();
        let Some(f) = self.file.as_mut() else {
            return p;
        };
        if f.failed {
            return p;
        }
        let started = match self.fs.admit_sync() {
            Ok(()) => self.backend.start_sync(&f.file, Durable::Data, SYNC_TAG),
            Err(e) => Started::Failed(e),
        };
        match started {
            Started::InFlight => self.data_sync = DataSync::InFlight,
            Started::Failed(e) => {
                tracing::error!(error = %e, "fdatasync failed");
                p += fail(f);
            }
        }
        p
    }

    /// [`sync`](Self::sync), then waits for it and for every sync in the
    /// background: on return what was buffered is durable (or the file has
    /// failed), and so are closed files (or [`next_closed`](Self::next_closed)
    /// reports why not).
    pub fn sync_wait(&mut self) -> Progress {
        let mut p = self.sync();
        p += self.reap(Wait::All);
        p
    }

    /// Collects what has finished, without waiting.
    pub fn collect(&mut self) -> Progress {
        self.reap(Wait::No)
    }

    /// Waits until nothing is in flight.
    pub fn settle(&mut self) -> Progress {
        self.reap(Wait::All)
    }

    /// Writes everything buffered (the last block zero-padded, to be
    /// rewritten in place later) and waits for every write, and for a data
    /// sync in flight.
    fn write_out(&mut self) -> Progress {
        let mut p = Progress::default();
        let Some(f) = self.file.as_ref() else {
            return p;
        };
        let slot = self.current;
        let len = self.bufs[slot].len();
        if !f.failed && len > 0 {
            let start = f.buf_start;
            let padded = self.bufs[slot].pad();
            p += self.submit(slot, start, padded, start + len as u64);
        }
        p += self.reap(Wait::Writes);
        if let Some(f) = self.file.as_mut() {
            // Nothing is in flight now: the next write starts small again.
            f.batch = FIRST_BATCH;
            // The whole blocks are written: keep only the partial last block,
            // which the next write rewrites in place.
            let whole = len / f.align * f.align;
            self.bufs[slot].drain_front(whole);
            f.buf_start += whole as u64;
        }
        p
    }

    /// Writes out, truncates to the true length and closes the file, and
    /// starts its `fdatasync` in the background (through io_uring; on the
    /// pwrite path it is a call, finished on return). Returns the progress and
    /// how the close went, or why the file could not be cut to its length
    /// (it then may end in padding, and must go through recovery before
    /// delivery). A sync that fails, even at its start, is reported by
    /// [`next_closed`](Self::next_closed).
    pub fn close_start(&mut self) -> (Progress, std::io::Result<Closed>) {
        // The sync after the cut covers the data too.
        let mut p = self.write_out();
        let Some(f) = self.file.take() else {
            return (p, Ok(Closed::Empty));
        };
        for b in &mut self.bufs {
            b.clear();
        }
        self.current = 0;
        // Lines still pending here were never written (the file failed).
        p.lost += f.line_ends.len() as u64;
        let len = f.good_len;
        if len == 0 {
            return (p, Ok(Closed::Empty));
        }
        if let Err(e) = self.fs.ftruncate(&f.file, len) {
            return (p, Err(e));
        }
        // Tags below `DIR_TAG`: 2^64 closes would not reach it.
        let tag = self.next_close;
        self.next_close += 1;
        let errno = |e: std::io::Error| {
            -e.raw_os_error()
                .unwrap_or(rustix::io::Errno::IO.raw_os_error())
        };
        let result = if self.backend.path() == IoPath::Pwrite {
            // On the pwrite path the writer syncs a closed file itself: on
            // the I/O thread the sync ran while the writer went on, and the
            // extra wake-ups took the capturing thread's CPU (DECISIONS.md,
            // "A seal's fdatasync runs in the background through io_uring").
            Some(self.fs.fdatasync(&f.file).map_or_else(errno, |()| 0))
        } else {
            let started = match self.fs.admit_sync() {
                Ok(()) => self.backend.start_sync(&f.file, Durable::Data, tag),
                Err(e) => Started::Failed(e),
            };
            // A sync that could not start is reported as one that failed.
            match started {
                Started::InFlight => None,
                Started::Failed(e) => Some(errno(e)),
            }
        };
        self.closing.push_back(Closing {
            tag,
            _file: f.file,
            len,
            result,
        });
        (p, Ok(Closed::Syncing { ticket: tag, len }))
    }

    /// A closed file whose sync has finished since, with its ticket: its
    /// length once durable, or why its sync failed. Closes report in any
    /// order; call [`collect`](Self::collect) or [`settle`](Self::settle)
    /// first to take in what has finished.
    pub fn next_closed(&mut self) -> Option<(usize, std::io::Result<u64>)> {
        self.take_closed(|_| true)
    }

    /// Takes the first closed file `which` accepts whose sync has finished.
    fn take_closed(
        &mut self,
        which: impl Fn(usize) -> bool,
    ) -> Option<(usize, std::io::Result<u64>)> {
        let i = self
            .closing
            .iter()
            .position(|c| c.result.is_some() && which(c.tag))?;
        let c = self.closing.remove(i)?;
        let result = match c.result {
            Some(res) if res < 0 => Err(std::io::Error::from_raw_os_error(-res)),
            _ => Ok(c.len),
        };
        Some((c.tag, result))
    }

    /// [`close_start`](Self::close_start), then waits for the file's sync:
    /// the final length once durable (0 if no line was written), or why not.
    pub fn close(&mut self) -> (Progress, std::io::Result<u64>) {
        let (mut p, closed) = self.close_start();
        let ticket = match closed {
            Ok(Closed::Empty) => return (p, Ok(0)),
            Ok(Closed::Syncing { ticket, .. }) => ticket,
            Err(e) => return (p, Err(e)),
        };
        loop {
            if let Some((_, result)) = self.take_closed(|tag| tag == ticket) {
                return (p, result);
            }
            p += self.reap(Wait::One);
        }
    }

    /// Makes the entries of directory `dir` durable: an `fsync` started in
    /// the background through io_uring (a failure is logged when
    /// collected), a call on the pwrite path, as a closed file's sync is.
    pub fn sync_dir(&mut self, dir: &Arc<File>) {
        if self.backend.path() == IoPath::Pwrite {
            if let Err(e) = self.fs.sync_open_dir(dir) {
                tracing::warn!(error = %e, "syncing a spool directory failed");
            }
            return;
        }
        match self.backend.start_sync(dir, Durable::All, DIR_TAG) {
            Started::InFlight => self.dir_syncs.push(Arc::clone(dir)),
            Started::Failed(e) => {
                tracing::warn!(error = %e, "syncing a spool directory failed");
            }
        }
    }

    /// Submits the whole blocks of the current buffer and carries the partial
    /// block to the next free buffer.
    fn submit_blocks(&mut self) -> Progress {
        let mut p = Progress::default();
        let Some(f) = self.file.as_ref() else {
            return p;
        };
        let align = f.align;
        let start = f.buf_start;
        let len = self.bufs[self.current].len();
        let whole = len / align * align;
        if whole == 0 {
            return p;
        }
        let slot = self.current;
        let next = (slot + 1) % self.bufs.len();
        // The next buffer must be free: wait for its write if it is in
        // flight, and only for that. Waiting for every write would empty the
        // disk's queue while this buffer is not yet submitted.
        while self.in_flight.iter().any(|w| w.slot == next && !w.done) {
            p += self.reap(Wait::One);
        }
        let (head, tail) = self.bufs.split_at_mut(slot.max(next));
        let (src, dst) = if slot < next {
            (&head[slot], &mut tail[0])
        } else {
            (&tail[0], &mut head[next])
        };
        dst.clear();
        dst.extend_from_slice(&src.as_slice()[whole..]);
        p += self.submit(slot, start, whole, start + whole as u64);
        if let Some(f) = self.file.as_mut() {
            f.buf_start = start + whole as u64;
        }
        self.current = next;
        p
    }

    /// Writes `len` bytes of buffer `slot` at `start`.
    fn submit(&mut self, slot: usize, start: u64, len: usize, data_end: u64) -> Progress {
        let Some(f) = self.file.as_mut() else {
            return Progress::default();
        };
        let end = start + len as u64;
        if end > f.prealloc_end && f.prealloc_step > 0 {
            f.prealloc_step = (f.prealloc_step * 2).min(PREALLOC_STEP_MAX.max(f.prealloc_step));
            let to = end.next_multiple_of(f.prealloc_step);
            f.prealloc_end = preallocate(&f.file, f.prealloc_end, to - f.prealloc_end);
        }
        let buf = &self.bufs[slot];
        // What the file system lets through: all of it, a part (a short
        // write), or nothing (a failed write that never reaches the kernel).
        let started = match self.fs.admit_write(len) {
            Ok(n) => {
                // SAFETY: `n.min(len) <= len <= buf.cap` (whole blocks of the
                // data, or the padded length), in heap memory that is neither
                // freed nor written until this write completes:
                // `submit_blocks` waits for a buffer's write before reusing
                // it, and `Drop` waits for all.
                unsafe {
                    self.backend
                        .start(&f.file, buf.ptr(), n.min(len), start, slot)
                }
            }
            Err(e) => Started::Failed(e),
        };
        let failed = match started {
            Started::InFlight => None,
            Started::Failed(e) => Some(!written_whole(Err(e), len)),
        };
        self.in_flight.push_back(InFlight {
            slot,
            len,
            data_end,
            done: failed.is_some(),
            failed: failed.unwrap_or(false),
        });
        self.advance()
    }

    /// Collects finished operations, waiting as `wait` says.
    fn reap(&mut self, wait: Wait) -> Progress {
        loop {
            let writes =
                self.in_flight.iter().any(|w| !w.done) || self.data_sync == DataSync::InFlight;
            let background =
                !self.dir_syncs.is_empty() || self.closing.iter().any(|c| c.result.is_none());
            if !(writes || (wait != Wait::Writes && background)) {
                break;
            }
            let in_flight = &mut self.in_flight;
            let data_sync = &mut self.data_sync;
            let closing = &mut self.closing;
            let dir_syncs = &mut self.dir_syncs;
            let reported = self.backend.complete(wait != Wait::No, |tag, res| {
                if tag == SYNC_TAG {
                    *data_sync = DataSync::Done(res);
                } else if tag == DIR_TAG {
                    // They share a tag: which one finished does not matter.
                    dir_syncs.pop();
                    if res < 0 {
                        let e = std::io::Error::from_raw_os_error(-res);
                        tracing::warn!(error = %e, "syncing a spool directory failed");
                    }
                } else if tag >= CLOSE_TAG {
                    if let Some(c) = closing.iter_mut().find(|c| c.tag == tag) {
                        c.result = Some(res);
                    }
                } else if let Some(w) = in_flight.iter_mut().find(|w| w.slot == tag && !w.done) {
                    w.done = true;
                    let result = if res < 0 {
                        Err(std::io::Error::from_raw_os_error(-res))
                    } else {
                        Ok(res as usize)
                    };
                    w.failed = !written_whole(result, w.len);
                }
            });
            match reported {
                Ok(any) if wait == Wait::No && !any => break,
                Ok(_) if wait == Wait::One => break,
                Ok(_) => {}
                Err(e) => {
                    // Report what is in flight as failed rather than wait forever.
                    tracing::error!(error = %e, "io_uring wait failed");
                    let eio = -rustix::io::Errno::IO.raw_os_error();
                    for w in self.in_flight.iter_mut().filter(|w| !w.done) {
                        w.done = true;
                        w.failed = true;
                    }
                    if self.data_sync == DataSync::InFlight {
                        self.data_sync = DataSync::Done(eio);
                    }
                    for c in self.closing.iter_mut().filter(|c| c.result.is_none()) {
                        c.result = Some(eio);
                    }
                    self.dir_syncs.clear();
                }
            }
        }
        self.advance()
    }

    /// Moves the frontier over finished writes, in order, and counts the
    /// lines behind it; then applies a finished data sync's result.
    fn advance(&mut self) -> Progress {
        let mut p = Progress::default();
        while self.in_flight.front().is_some_and(|w| w.done) {
            let Some(w) = self.in_flight.pop_front() else {
                break;
            };
            let Some(f) = self.file.as_mut() else {
                continue;
            };
            if f.failed {
                continue;
            }
            if w.failed {
                p += fail(f);
                continue;
            }
            f.frontier = f.frontier.max(w.data_end);
            while f.line_ends.front().is_some_and(|&e| e <= f.frontier) {
                f.good_len = f.line_ends.pop_front().unwrap_or(f.good_len);
                p.written += 1;
            }
        }
        if let DataSync::Done(res) = self.data_sync {
            self.data_sync = DataSync::Idle;
            if res < 0
                && let Some(f) = self.file.as_mut()
                && !f.failed
            {
                let e = std::io::Error::from_raw_os_error(-res);
                tracing::error!(error = %e, "fdatasync failed");
                p += fail(f);
            }
        }
        p
    }
}

/// Whether a write of `len` bytes wrote them all; logs why not.
fn written_whole(result: std::io::Result<usize>, len: usize) -> bool {
    match result {
        Ok(n) if n == len => true,
        Ok(n) => {
            tracing::error!(wrote = n, wanted = len, "short segment write");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "segment write failed");
            false
        }
    }
}

/// Marks the file failed: lines after the last good one are lost.
fn fail(f: &mut OpenFile) -> Progress {
    f.failed = true;
    let lost = f.line_ends.len() as u64;
    f.line_ends.clear();
    Progress { written: 0, lost }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Buffers must outlive every write that uses them.
        let _ = self.reap(Wait::All);
        self.discard_ahead();
    }
}

/// Creates `path` (it must not exist) with `O_DIRECT`, or through the page
/// cache where the filesystem refuses `O_DIRECT` (then with `true`).
fn create(fs: &dyn Fs, path: &Path) -> std::io::Result<(File, bool)> {
    match fs.create(path, true) {
        Ok(f) => Ok((f, false)),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            let _ = std::fs::remove_file(path);
            Ok((fs.create(path, false)?, true))
        }
        Err(e) => Err(e),
    }
}

/// Reserves `offset .. offset + len` with `fallocate` so writes do not extend
/// the file; returns the new preallocated end (unchanged where unsupported or
/// out of space: the write itself then reports any real problem).
fn preallocate(file: &File, offset: u64, len: u64) -> u64 {
    if len == 0 {
        return offset;
    }
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), offset, len) {
        Ok(()) => offset + len,
        Err(_) => offset,
    }
}

/// `O_DIRECT` alignment of a file: statx DIOALIGN where the kernel reports it.
fn dio_align(file: &File) -> usize {
    match rustix::fs::statx(
        file,
        "",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::DIOALIGN,
    ) {
        Ok(st) if st.stx_mask & rustix::fs::StatxFlags::DIOALIGN.bits() != 0 => {
            (st.stx_dio_offset_align.max(st.stx_dio_mem_align) as usize).next_power_of_two()
        }
        _ => ALIGN_FLOOR,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Appends `line` to the open file and to `expected`, the content the
    /// file should end with; returns the lines now known written.
    fn append(out: &mut Output, line: &str, expected: &mut Vec<u8>) -> u64 {
        out.buf().extend_from_slice(line.as_bytes());
        out.line_end();
        expected.extend_from_slice(line.as_bytes());
        out.pump().written
    }

    /// The real file system (the trait's defaults), recording the length of
    /// every segment write.
    #[derive(Debug, Default)]
    struct Lengths(Mutex<Vec<usize>>);

    impl Fs for Lengths {
        fn admit_write(&self, len: usize) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .push(len);
            Ok(len)
        }
    }

    #[test]
    fn a_file_starts_with_small_writes_then_writes_of_at_least_3_mib() {
        for mode in [IoMode::Auto, IoMode::Pwrite] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("segment");
            let fs = Arc::new(Lengths::default());
            let mut out = Output::new(mode, fs.clone()).expect("output");
            out.open(&path, 8 << 20).expect("open");
            let mut expected = Vec::new();
            let mut written = 0;
            for i in 0..20_000u32 {
                let line = format!("{i:07} {}\n", "x".repeat(1000 + (i % 97) as usize));
                written += append(&mut out, &line, &mut expected);
            }
            let (p, len) = out.close();
            written += p.written;
            assert_eq!((written, p.lost), (20_000, 0), "{mode:?}");
            assert_eq!(len.expect("close"), expected.len() as u64);
            assert!(
                std::fs::read(&path).expect("read") == expected,
                "{mode:?}: file content"
            );
            let lens = fs.0.lock().expect("lengths").clone();
            // The first three: 512 KiB, 1 MiB, 2 MiB (whole blocks of what
            // was buffered when a line crossed the mark).
            for (i, &len) in lens.iter().take(3).enumerate() {
                let mark = FIRST_BATCH << i;
                assert!(
                    (mark - 4096..=mark + 8192).contains(&len),
                    "{mode:?}: {lens:?}"
                );
            }
            // The rest but the last (the partial buffer written at close).
            let (_, batches) = lens[3..].split_last().expect("writes");
            assert!(batches.len() >= 3, "{mode:?}: {lens:?}");
            assert!(
                batches
                    .iter()
                    .all(|&l| (3 << 20..=BUFFER_BYTES).contains(&l)),
                "{mode:?}: {lens:?}"
            );
        }
    }

    /// The real file system, counting the segment syncs started without
    /// waiting (`admit_sync`) and the `fdatasync` calls.
    #[derive(Debug, Default)]
    struct Syncs {
        admitted: std::sync::atomic::AtomicUsize,
        called: std::sync::atomic::AtomicUsize,
    }

    impl Fs for Syncs {
        fn admit_sync(&self) -> std::io::Result<()> {
            self.admitted
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
        fn fdatasync(&self, file: &File) -> std::io::Result<()> {
            self.called
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            crate::io::RealFs.fdatasync(file)
        }
    }

    #[test]
    fn a_sync_leaves_the_fdatasync_to_the_backend_and_loses_no_line() {
        use std::sync::atomic::Ordering::SeqCst;
        for mode in [IoMode::Uring, IoMode::Pwrite] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("segment");
            let fs = Arc::new(Syncs::default());
            let mut out = Output::new(mode, fs.clone()).expect("output");
            out.open(&path, 1 << 20).expect("open");
            let mut expected = Vec::new();
            let mut written = 0;
            // Syncs between lines, a batch write now and then, and lines
            // written while the last sync may still be in flight; the last
            // sync is waited for.
            for i in 0..3000u32 {
                let line = format!("{i:05} {}\n", "y".repeat(200 + (i % 1300) as usize));
                written += append(&mut out, &line, &mut expected);
                if i % 100 == 99 {
                    written += out.sync().written;
                }
            }
            written += out.sync_wait().written;
            // The writer thread made no fdatasync call: 31 went to the
            // ring, or to the pwrite path's I/O thread.
            let (admitted, called) = (fs.admitted.load(SeqCst), fs.called.load(SeqCst));
            assert_eq!((admitted, called), (31, 0), "{mode:?}");
            let (p, len) = out.close();
            written += p.written;
            assert_eq!((written, p.lost), (3000, 0), "{mode:?}");
            assert_eq!(len.expect("close"), expected.len() as u64);
            // One more at close, after the cut: through io_uring, or a call
            // on the pwrite path.
            let (admitted, called) = (fs.admitted.load(SeqCst), fs.called.load(SeqCst));
            let at_close = if mode == IoMode::Uring {
                (32, 0)
            } else {
                (31, 1)
            };
            assert_eq!((admitted, called), at_close, "{mode:?}");
            assert!(
                std::fs::read(&path).expect("read") == expected,
                "{mode:?}: file content"
            );
        }
    }

    /// Segment files that are `/dev/null`: every write succeeds, and every
    /// `fdatasync` fails (EINVAL) once it has started.
    #[derive(Debug)]
    struct NullDevice;

    impl Fs for NullDevice {
        fn create(&self, _: &Path, _: bool) -> std::io::Result<File> {
            std::fs::OpenOptions::new().write(true).open("/dev/null")
        }
    }

    #[test]
    fn a_sync_that_fails_after_it_started_fails_the_file_and_keeps_the_lines_before_it() {
        for mode in [IoMode::Uring, IoMode::Pwrite] {
            let mut out = Output::new(mode, Arc::new(NullDevice)).expect("output");
            out.open(Path::new("unused"), 1 << 20).expect("open");
            for i in 0..10 {
                out.buf()
                    .extend_from_slice(format!("line {i}\n").as_bytes());
                out.line_end();
            }
            // The lines are written before the sync starts; the sync's
            // failure comes with a later completion.
            let mut p = out.sync();
            assert_eq!(p.written, 10, "{mode:?}");
            p += out.sync_wait();
            assert!(out.failed(), "{mode:?}: the failed sync fails the file");
            assert_eq!((p.written, p.lost), (10, 0), "{mode:?}");
            // Lines after the failure go nowhere: a failed file takes no write.
            out.buf().extend_from_slice(b"late\n");
            out.line_end();
            let (p, len) = out.close();
            assert_eq!((p.written, p.lost), (0, 1), "{mode:?}");
            // /dev/null cannot be cut to its last line: the seal is retried.
            assert!(len.is_err(), "{mode:?}");
        }
    }

    #[test]
    fn each_closed_file_is_reported_once_by_its_ticket_while_the_next_is_written() {
        use std::sync::atomic::Ordering::SeqCst;
        for mode in [IoMode::Uring, IoMode::Pwrite] {
            let dir = tempfile::tempdir().expect("tempdir");
            let fs = Arc::new(Syncs::default());
            let mut out = Output::new(mode, fs.clone()).expect("output");
            let mut tickets = Vec::new();
            let mut expected = Vec::new();
            let mut written = 0;
            // Three files, each closed without waiting for its sync through
            // io_uring; the next one is opened and written while the last
            // close's sync may still run.
            for n in 0..3u32 {
                let path = dir.path().join(format!("segment-{n}"));
                out.open(&path, 1 << 20).expect("open");
                let mut content = Vec::new();
                for i in 0..500u32 {
                    let line = format!("{n} {i:04} {}\n", "z".repeat(100 + (i % 900) as usize));
                    written += append(&mut out, &line, &mut content);
                }
                let (p, closed) = out.close_start();
                written += p.written;
                match closed.expect("close") {
                    Closed::Syncing { ticket, len } => {
                        assert_eq!(len, content.len() as u64, "{mode:?}");
                        tickets.push(ticket);
                    }
                    Closed::Empty => panic!("{mode:?}: lines were written"),
                }
                expected.push((path, content));
            }
            // An empty file needs no sync.
            out.open(&dir.path().join("empty"), 1 << 20).expect("open");
            assert!(matches!(out.close_start().1, Ok(Closed::Empty)));
            written += out.settle().written;
            assert_eq!(written, 1500, "{mode:?}");
            // Each close is reported once, durable, by its own ticket.
            let mut reported = Vec::new();
            while let Some((ticket, len)) = out.next_closed() {
                let len = len.expect("synced");
                let i = tickets
                    .iter()
                    .position(|&t| t == ticket)
                    .expect("a ticket of ours");
                assert_eq!(len, expected[i].1.len() as u64, "{mode:?}");
                reported.push(ticket);
            }
            reported.sort_unstable();
            assert_eq!(reported, tickets, "{mode:?}");
            // Through io_uring the writer thread called no fdatasync: the
            // three went to the ring; on the pwrite path they were calls.
            let syncs = (fs.admitted.load(SeqCst), fs.called.load(SeqCst));
            let expected_syncs = if mode == IoMode::Uring {
                (3, 0)
            } else {
                (0, 3)
            };
            assert_eq!(syncs, expected_syncs, "{mode:?}");
            for (path, content) in &expected {
                assert!(
                    std::fs::read(path).expect("read") == *content,
                    "{mode:?}: file content"
                );
            }
        }
    }

    /// `/dev/null` as in [`NullDevice`], whose cut succeeds (it is not made):
    /// a close gets as far as its sync, which fails once it has started.
    #[derive(Debug)]
    struct NullDeviceUncut;

    impl Fs for NullDeviceUncut {
        fn create(&self, path: &Path, direct: bool) -> std::io::Result<File> {
            NullDevice.create(path, direct)
        }
        fn ftruncate(&self, _: &File, _: u64) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_files_sync_that_fails_after_it_started_is_reported_by_its_ticket() {
        for mode in [IoMode::Uring, IoMode::Pwrite] {
            let mut out = Output::new(mode, Arc::new(NullDeviceUncut)).expect("output");
            out.open(Path::new("unused"), 1 << 20).expect("open");
            out.buf().extend_from_slice(b"a line\n");
            out.line_end();
            let (p, closed) = out.close_start();
            assert_eq!((p.written, p.lost), (1, 0), "{mode:?}");
            let Ok(Closed::Syncing { ticket, .. }) = closed else {
                panic!("{mode:?}: {closed:?}");
            };
            out.settle();
            let (reported, result) = out.next_closed().expect("reported");
            assert_eq!(reported, ticket, "{mode:?}");
            let einval = rustix::io::Errno::INVAL.raw_os_error();
            assert_eq!(
                result.err().and_then(|e| e.raw_os_error()),
                Some(einval),
                "{mode:?}"
            );
            assert!(out.next_closed().is_none(), "{mode:?}: reported once");
        }
    }

    /// Space the file system has given a file, in bytes.
    fn allocated(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).expect("metadata").blocks() * 512
    }

    #[test]
    fn a_growing_file_is_preallocated_in_doubling_steps_within_twice_its_data() {
        const MIB: u64 = 1 << 20;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("segment");
        let mut out = Output::new(IoMode::Auto, Arc::new(crate::io::RealFs)).expect("output");
        out.open(&path, 8 * MIB).expect("open");
        // Whole MiB: the extent tree's own blocks count in a file's blocks too.
        let mut reserved = vec![allocated(&path) / MIB];
        let line = [b'x'; 4095];
        // 136 MiB: the steps end at 16, 32, 64, 128 and 192 MiB.
        for _ in 0..(136 * MIB / 4096) {
            out.buf().extend_from_slice(&line);
            out.buf().extend_from_slice(b"\n");
            out.line_end();
            out.pump();
            let now = allocated(&path);
            let data = out.data_len();
            assert!(
                now <= (2 * data).max(8 * MIB) + BUFFER_BYTES as u64,
                "{now} bytes reserved for {data} of data"
            );
            if reserved.last() != Some(&(now / MIB)) {
                reserved.push(now / MIB);
            }
        }
        let (p, len) = out.close();
        assert_eq!((p.lost, len.expect("close")), (0, 136 * MIB));
        // 8 MiB steps would have grown the file 16 times.
        assert_eq!(
            reserved,
            [8, 16, 32, 64, 128, 192],
            "MiB reserved as the file grew"
        );
    }

    /// A file made ahead is taken by the next open once it is ready: renamed
    /// into place with its whole reservation (where a new file has only the
    /// first step), the name it was made under gone, private like any
    /// segment, written and cut like any other. One no open takes is removed
    /// when discarded.
    #[test]
    fn a_file_made_ahead_is_renamed_into_place_whole_or_removed() {
        use std::os::unix::fs::PermissionsExt;
        const MIB: u64 = 1 << 20;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut out = Output::new(IoMode::Auto, Arc::new(crate::io::RealFs)).expect("output");
        let ahead = dir.path().join(".next-1");
        out.prepare(ahead.clone(), 64 * MIB);
        assert_eq!(out.ahead_bytes(), 64 * MIB);
        // Asking again while one is being made changes nothing.
        out.prepare(dir.path().join(".next-2"), 8 * MIB);
        while !out.ahead.as_ref().expect("being made").job.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let path = dir.path().join("segment");
        out.open(&path, 8 * MIB).expect("open");
        assert_eq!(out.ahead_bytes(), 0);
        assert!(!ahead.exists() && !dir.path().join(".next-2").exists());
        assert!(allocated(&path) >= 64 * MIB, "{}", allocated(&path));
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        out.buf().extend_from_slice(b"{}\n");
        out.line_end();
        let (p, len) = out.close();
        assert_eq!((p.written, len.expect("close")), (1, 3));
        assert_eq!(std::fs::read(&path).expect("read"), b"{}\n");

        // Made ahead and not taken: removed, after its making has ended.
        let unused = dir.path().join(".next-3");
        out.prepare(unused.clone(), 64 * MIB);
        out.discard_ahead();
        assert_eq!(out.ahead_bytes(), 0);
        assert!(!unused.exists());
        // And on drop.
        let dropped = dir.path().join(".next-4");
        out.prepare(dropped.clone(), 8 * MIB);
        drop(out);
        assert!(!dropped.exists());
    }
}
