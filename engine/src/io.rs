//! I/O: segment files written in large aligned batches with `O_DIRECT`,
//! through io_uring (or `pwrite` where io_uring is unavailable), plus the spool
//! directory layout and lock.
//!
//! Lines are serialized straight into [`AlignedBuf`]s. When the current buffer
//! holds a batch, its whole blocks are submitted as one write and the partial
//! last block is carried to the next buffer; up to [`BUFFERS`] writes are in
//! flight at once. To make data durable (`sync`), the partial block is written
//! zero-padded and rewritten in place by the next write; `fdatasync` follows.
//! At close the file is truncated to its true length and synced again.
//!
//! Accounting is by line: every line's end offset is remembered until the
//! bytes before it are known to be written (the *frontier*, which only moves
//! over writes completed in order). If a write fails, the file is cut back to
//! the last line end before the frontier, and the lines after it are reported
//! as lost.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;

use crate::config::IoMode;

/// Writes in flight at once (and aligned buffers per writer).
pub(crate) const BUFFERS: usize = 4;
/// A batch: the current buffer is submitted once it holds this much.
pub(crate) const BATCH: usize = 1 << 20;
/// The smallest alignment used for `O_DIRECT`, whatever the device reports.
const ALIGN_FLOOR: usize = 4096;

// ---------------------------------------------------------------------------
// Aligned buffers.

/// A growable byte buffer whose memory is aligned for `O_DIRECT`.
#[derive(Debug)]
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    /// Initialized bytes; in range `0 ..= cap`.
    len: usize,
    cap: usize,
    align: usize,
}

// SAFETY: the buffer owns its allocation exclusively, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer of `cap` bytes (rounded up to `align`).
    pub(crate) fn new(cap: usize, align: usize) -> AlignedBuf {
        let mut b = AlignedBuf {
            ptr: NonNull::dangling(),
            len: 0,
            cap: 0,
            align,
        };
        b.grow_to(cap.max(align));
        b
    }

    fn layout(cap: usize, align: usize) -> std::alloc::Layout {
        // `align` is a power of two (statx alignments go through
        // `next_power_of_two`) and `cap` a multiple of it, far below isize::MAX;
        // a silent fallback layout would free memory with the wrong layout.
        std::alloc::Layout::from_size_align(cap, align)
            .expect("aligned buffer layout: power-of-two alignment, size below isize::MAX")
    }

    fn grow_to(&mut self, want: usize) {
        let cap = want.next_multiple_of(self.align);
        let layout = Self::layout(cap, self.align);
        // SAFETY: `layout` has a non-zero size (at least `align`).
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        if self.cap > 0 {
            // SAFETY: both regions are valid for `len` bytes and do not overlap
            // (`ptr` is a fresh allocation); the old one is freed with its own layout.
            unsafe {
                std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), ptr.as_ptr(), self.len);
                std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap, self.align));
            }
        }
        self.ptr = ptr;
        self.cap = cap;
    }

    /// Makes room for `extra` more bytes.
    #[inline]
    pub(crate) fn reserve(&mut self, extra: usize) {
        if self.cap - self.len < extra {
            self.grow_to((self.len + extra).max(self.cap * 2));
        }
    }

    /// Appends bytes.
    #[inline]
    pub fn extend_from_slice(&mut self, s: &[u8]) {
        self.reserve(s.len());
        // SAFETY: `reserve` made room for `s.len()` bytes after `len`; `s` is
        // not inside this buffer (we hold `&mut self`).
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), self.ptr.as_ptr().add(self.len), s.len())
        };
        self.len += s.len();
    }

    /// The uninitialized room after the data, at least `n` bytes.
    pub(crate) fn spare(&mut self, n: usize) -> &mut [std::mem::MaybeUninit<u8>] {
        self.reserve(n);
        // SAFETY: `cap - len` bytes after `len` are allocated and owned by us.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr.as_ptr().add(self.len).cast(),
                self.cap - self.len,
            )
        }
    }

    /// Marks `n` more bytes, written through [`spare`](Self::spare), as data.
    ///
    /// # Safety
    /// The first `n` bytes of the spare room must have been initialized.
    pub(crate) unsafe fn advance(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.cap);
        self.len += n;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialized.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Removes the first `n` bytes, moving the rest to the front.
    fn drain_front(&mut self, n: usize) {
        let n = n.min(self.len);
        // SAFETY: both ranges lie within the first `len` initialized bytes;
        // `copy` allows overlap.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(n), self.ptr.as_ptr(), self.len - n) };
        self.len -= n;
    }

    /// Zero-fills up to the next multiple of the alignment; returns the padded length.
    fn pad(&mut self) -> usize {
        let padded = self.len.next_multiple_of(self.align);
        self.reserve(padded - self.len);
        // SAFETY: room for `padded` bytes was reserved just above.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, padded - self.len) };
        padded
    }

    fn ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.cap > 0 {
            // SAFETY: allocated in `grow_to` with exactly this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap, self.align)) };
        }
    }
}

// ---------------------------------------------------------------------------
// Backends.

enum Backend {
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

/// Which path the writer actually uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPath {
    /// io_uring submissions.
    Uring,
    /// `pwrite` calls.
    Pwrite,
}

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
    file: File,
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
    /// The file is preallocated up to here, and grown by `prealloc_step` ahead of writes.
    prealloc_end: u64,
    prealloc_step: u64,
}

/// The writer's output: a backend, aligned buffers, and the open file.
#[derive(Debug)]
pub struct Output {
    backend: Backend,
    path: IoPath,
    bufs: Vec<AlignedBuf>,
    /// Index of the buffer lines go into.
    current: usize,
    in_flight: VecDeque<InFlight>,
    file: Option<OpenFile>,
    /// Logged once: the filesystem refused O_DIRECT.
    warned_buffered: bool,
}

impl Output {
    /// Sets up io_uring (or pwrite, per `mode`). `Auto` falls back to pwrite
    /// with one log line when io_uring cannot be set up.
    pub fn new(mode: IoMode) -> std::io::Result<Output> {
        let backend = match mode {
            IoMode::Pwrite => Backend::Pwrite,
            IoMode::Uring => Backend::Uring(Box::new(io_uring::IoUring::new(64)?)),
            IoMode::Auto => match io_uring::IoUring::new(64) {
                Ok(r) => Backend::Uring(Box::new(r)),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "io_uring_setup failed (blocked by seccomp, kernel.io_uring_disabled, or an old kernel); writing segments with pwrite"
                    );
                    Backend::Pwrite
                }
            },
        };
        let path = match backend {
            Backend::Uring(_) => IoPath::Uring,
            Backend::Pwrite => IoPath::Pwrite,
        };
        Ok(Output {
            backend,
            path,
            bufs: (0..BUFFERS)
                .map(|_| AlignedBuf::new(BATCH + ALIGN_FLOOR, ALIGN_FLOOR))
                .collect(),
            current: 0,
            in_flight: VecDeque::new(),
            file: None,
            warned_buffered: false,
        })
    }

    /// The path in use.
    pub fn io_path(&self) -> IoPath {
        self.path
    }

    /// Creates a new segment file (it must not exist), opened with `O_DIRECT`
    /// where the filesystem allows, and preallocated to `prealloc` bytes.
    pub fn open(&mut self, path: &Path, prealloc: u64) -> std::io::Result<()> {
        debug_assert!(self.file.is_none());
        let direct = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(path);
        let file = match direct {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                if !self.warned_buffered {
                    tracing::warn!(path = %path.display(), "the filesystem refuses O_DIRECT; writing segments through the page cache");
                    self.warned_buffered = true;
                }
                let _ = std::fs::remove_file(path);
                OpenOptions::new().write(true).create_new(true).open(path)?
            }
            Err(e) => return Err(e),
        };
        let align = dio_align(&file).max(ALIGN_FLOOR);
        let prealloc_step = prealloc.next_multiple_of(align as u64);
        let prealloc_end = preallocate(&file, 0, prealloc_step);
        for b in &mut self.bufs {
            if b.align < align {
                *b = AlignedBuf::new(BATCH + align, align);
            }
            b.clear();
        }
        self.file = Some(OpenFile {
            file,
            align,
            buf_start: 0,
            frontier: 0,
            good_len: 0,
            line_ends: VecDeque::new(),
            failed: false,
            prealloc_end,
            prealloc_step,
        });
        Ok(())
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
        let mut p = self.reap(false);
        if self.bufs[self.current].len() >= BATCH && !self.failed() {
            p += self.submit_blocks();
        }
        p
    }

    /// Writes everything buffered (the last block zero-padded, to be
    /// rewritten in place later), waits for every write, and `fdatasync`s.
    pub fn sync(&mut self) -> Progress {
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
        p += self.reap(true);
        if let Some(f) = self.file.as_mut() {
            if !f.failed
                && let Err(e) = rustix::fs::fdatasync(&f.file)
            {
                tracing::error!(error = %e, "fdatasync failed");
                p += fail(f);
            }
            // The whole blocks just written are durable: keep only the partial
            // last block, which the next write rewrites in place.
            let whole = len / f.align * f.align;
            self.bufs[slot].drain_front(whole);
            f.buf_start += whole as u64;
        }
        p
    }

    /// Writes out, truncates to the true length, syncs and closes the file.
    /// Returns the progress and the final length.
    pub fn close(&mut self) -> (Progress, u64) {
        let mut p = self.sync();
        let Some(f) = self.file.take() else {
            return (p, 0);
        };
        // Lines still pending here were never written (the file failed).
        p.lost += f.line_ends.len() as u64;
        let len = f.good_len;
        let result =
            rustix::fs::ftruncate(&f.file, len).and_then(|()| rustix::fs::fdatasync(&f.file));
        if let Err(e) = result {
            tracing::error!(error = %e, "truncating the sealed segment failed; recovery will cut it at the next start");
        }
        for b in &mut self.bufs {
            b.clear();
        }
        self.current = 0;
        (p, len)
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
        // The next buffer must be free: wait for its write if it is in flight.
        while self.in_flight.iter().any(|w| w.slot == next && !w.done) {
            p += self.reap(true);
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
            let to = end.next_multiple_of(f.prealloc_step);
            f.prealloc_end = preallocate(&f.file, f.prealloc_end, to - f.prealloc_end);
        }
        let buf = &self.bufs[slot];
        match &mut self.backend {
            Backend::Pwrite => {
                // SAFETY: `len <= buf.cap` (whole blocks of the data, or the padded length).
                let bytes = unsafe { std::slice::from_raw_parts(buf.ptr(), len) };
                let ok = match rustix::io::pwrite(&f.file, bytes, start) {
                    Ok(n) if n == len => true,
                    Ok(n) => {
                        tracing::error!(wrote = n, wanted = len, "short segment write");
                        false
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "segment write failed");
                        false
                    }
                };
                self.in_flight.push_back(InFlight {
                    slot,
                    len,
                    data_end,
                    done: true,
                    failed: !ok,
                });
                self.advance()
            }
            Backend::Uring(ring) => {
                let entry = io_uring::opcode::Write::new(
                    io_uring::types::Fd(f.file.as_raw_fd()),
                    buf.ptr(),
                    len as u32,
                )
                .offset(start)
                .build()
                .user_data(slot as u64);
                // SAFETY: the buffer is heap memory that is neither freed nor
                // written until this write completes: `submit_blocks` waits for
                // a buffer's write before reusing it, and `Drop` waits for all.
                let mut pushed = unsafe { ring.submission().push(&entry) }.is_ok();
                if !pushed {
                    // The queue is full: let the kernel take it, then try once more.
                    let _ = ring.submit();
                    // SAFETY: as above.
                    pushed = unsafe { ring.submission().push(&entry) }.is_ok();
                }
                let submitted = pushed
                    && match ring.submit() {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::error!(error = %e, "io_uring_enter failed");
                            false
                        }
                    };
                // A write that never reached the kernel is a failed write, not
                // one to wait for.
                self.in_flight.push_back(InFlight {
                    slot,
                    len,
                    data_end,
                    done: !submitted,
                    failed: !submitted,
                });
                self.advance()
            }
        }
    }

    /// Collects finished writes; with `wait`, until none is in flight.
    fn reap(&mut self, wait: bool) -> Progress {
        if let Backend::Uring(ring) = &mut self.backend {
            loop {
                let pending = self.in_flight.iter().filter(|w| !w.done).count();
                if pending == 0 {
                    break;
                }
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
                    // The ring itself is unusable (a bad fd or memory fault,
                    // which our own submissions never cause): report what is
                    // in flight as failed rather than wait forever.
                    tracing::error!(error = %e, "io_uring wait failed");
                    for w in self.in_flight.iter_mut().filter(|w| !w.done) {
                        w.done = true;
                        w.failed = true;
                    }
                    break;
                }
                let mut any = false;
                for cqe in ring.completion() {
                    any = true;
                    let slot = cqe.user_data() as usize;
                    if let Some(w) = self
                        .in_flight
                        .iter_mut()
                        .find(|w| w.slot == slot && !w.done)
                    {
                        w.done = true;
                        let res = cqe.result();
                        if res < 0 || res as usize != w.len {
                            tracing::error!(
                                result = res,
                                wanted = w.len,
                                error = %std::io::Error::from_raw_os_error(-res.min(0)),
                                "segment write failed"
                            );
                            w.failed = true;
                        }
                    }
                }
                if !wait && !any {
                    break;
                }
            }
        }
        self.advance()
    }

    /// Moves the frontier over finished writes, in order, and counts the lines behind it.
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
        p
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
        let _ = self.reap(true);
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

/// Makes a directory entry change (create, rename) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The spool directory: `active/` holds segments being written, `sealed/`
/// holds durable segments waiting for delivery, `uploads/` their multipart
/// upload progress, and `LOCK` keeps a second
/// engine out.
#[derive(Debug)]
pub(crate) struct Spool {
    pub(crate) active: std::path::PathBuf,
    pub(crate) sealed: std::path::PathBuf,
    /// Multipart upload progress, one file per sealed segment being uploaded.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub(crate) uploads: std::path::PathBuf,
    /// Held open for the engine's lifetime; the flock goes with it.
    _lock: File,
}

impl Spool {
    /// Creates the layout if needed and takes the lock.
    pub(crate) fn open(root: &Path) -> crate::Result<Spool> {
        use crate::Error;
        let active = root.join("active");
        let sealed = root.join("sealed");
        let uploads = root.join("uploads");
        for d in [&active, &sealed, &uploads] {
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
            uploads,
            _lock: lock,
        })
    }
}
