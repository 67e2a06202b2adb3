//! The two ways a segment write reaches the kernel: io_uring submissions, or
//! `pwrite` calls on an I/O thread of the backend's own where io_uring is
//! unavailable (Docker's default seccomp profile blocks it). Either way the
//! writer does not wait for a write it starts. The output keeps the
//! bookkeeping; a backend only starts writes and data syncs and reports
//! their results by tag.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

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

/// What a sync makes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durable {
    /// A file's data (and the metadata needed to read it): `fdatasync`.
    Data,
    /// Everything about the file: `fsync`, for a directory's entries.
    All,
}

/// A started operation: in flight, or failed at once.
#[derive(Debug)]
pub(super) enum Started {
    /// Submitted; [`Backend::complete`] reports it.
    InFlight,
    /// The operation could not be submitted.
    Failed(std::io::Error),
}

pub(super) enum Backend {
    Uring(Box<io_uring::IoUring>),
    Pwrite(Worker),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Uring(_) => "io_uring",
            Backend::Pwrite(_) => "pwrite",
        })
    }
}

impl Backend {
    /// io_uring or pwrite, per `mode`. `Auto` falls back to pwrite with one
    /// log line when io_uring cannot be set up.
    pub(super) fn new(mode: IoMode) -> std::io::Result<Backend> {
        Ok(match mode {
            IoMode::Pwrite => Backend::Pwrite(Worker::start()?),
            IoMode::Uring => Backend::Uring(Box::new(io_uring::IoUring::new(QUEUE)?)),
            IoMode::Auto => match io_uring::IoUring::new(QUEUE) {
                Ok(r) => Backend::Uring(Box::new(r)),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "io_uring_setup failed (blocked by seccomp, kernel.io_uring_disabled, or an old kernel); writing segments with pwrite"
                    );
                    Backend::Pwrite(Worker::start()?)
                }
            },
        })
    }

    pub(super) fn path(&self) -> IoPath {
        match self {
            Backend::Uring(_) => IoPath::Uring,
            Backend::Pwrite(_) => IoPath::Pwrite,
        }
    }

    /// Starts writing `len` bytes from `ptr` at `offset` of `file`, tagged with `slot`.
    ///
    /// # Safety
    /// `ptr .. ptr + len` must stay allocated and unwritten until the write
    /// has finished: at once for [`Started::Failed`], otherwise until
    /// [`complete`](Self::complete) reports `slot`.
    pub(super) unsafe fn start(
        &mut self,
        file: &Arc<File>,
        ptr: *const u8,
        len: usize,
        offset: u64,
        slot: usize,
    ) -> Started {
        match self {
            Backend::Pwrite(worker) => worker.send(Op {
                file: Arc::clone(file),
                what: What::Write { ptr, len, offset },
                tag: slot,
            }),
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

    /// Starts an `fdatasync` (or, for [`Durable::All`], an `fsync`) of
    /// `file`, reported by [`complete`](Self::complete) with `tag`: an
    /// io_uring `Fsync`, or a call on the pwrite path's I/O thread after the
    /// operations sent before it. The caller keeps `file` open until the
    /// sync is reported: io_uring looks its descriptor up when it runs.
    pub(super) fn start_sync(&mut self, file: &Arc<File>, durable: Durable, tag: usize) -> Started {
        match self {
            Backend::Pwrite(worker) => worker.send(Op {
                file: Arc::clone(file),
                what: What::Sync(durable),
                tag,
            }),
            Backend::Uring(ring) => {
                let flags = match durable {
                    Durable::Data => io_uring::types::FsyncFlags::DATASYNC,
                    Durable::All => io_uring::types::FsyncFlags::empty(),
                };
                let entry = io_uring::opcode::Fsync::new(io_uring::types::Fd(file.as_raw_fd()))
                    .flags(flags)
                    .build()
                    .user_data(tag as u64);
                // SAFETY: an fsync entry refers to no memory. (Its file
                // descriptor is looked up when the sync runs, which may be
                // after submission: the caller keeps `file` open until the
                // completion, or the sync fails with EBADF.)
                unsafe { push(ring, &entry) }
            }
        }
    }

    /// Reports finished operations as `(tag, result)` (a write's tag is its
    /// buffer slot), the result being the bytes written (0 for a sync) or a
    /// negated errno; with `wait`, blocks for at least one.
    /// Returns whether any was reported; an error means the backend itself
    /// is unusable (a bad fd or memory fault, which our own submissions
    /// never cause, or an I/O thread that is gone), and nothing in flight
    /// will ever be reported.
    pub(super) fn complete(
        &mut self,
        wait: bool,
        mut report: impl FnMut(usize, i32),
    ) -> std::io::Result<bool> {
        let ring = match self {
            Backend::Uring(ring) => ring,
            Backend::Pwrite(worker) => return worker.complete(wait, report),
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

/// The pwrite path's I/O thread (`capline-io`): it makes the writes and
/// syncs sent to it as calls, one at a time in the order sent, and reports
/// each result, so that the writer goes on serializing the next batch while
/// a write is at the disk, as it does through io_uring.
pub(super) struct Worker {
    ops: Arc<Queue<Op>>,
    done: Arc<Queue<(usize, i32)>>,
    thread: Option<JoinHandle<()>>,
}

/// An operation for the I/O thread.
struct Op {
    file: Arc<File>,
    what: What,
    tag: usize,
}

enum What {
    Write {
        ptr: *const u8,
        len: usize,
        offset: u64,
    },
    Sync(Durable),
}

// SAFETY: the only non-`Send` part is a write's pointer, into a buffer that
// `Backend::start`'s caller keeps allocated and unwritten until the write's
// completion is reported, which the I/O thread does after its last use.
unsafe impl Send for Op {}

/// A queue between the writer and its I/O thread. A taker with nothing to
/// take sleeps on a condition variable (one futex wait), and a putter wakes
/// it only if it sleeps: `crossbeam-channel`'s blocking receive spins with
/// `sched_yield` before it sleeps, which on a busy machine hands the CPU
/// around at every write (DECISIONS.md, "The pwrite path writes on an I/O
/// thread").
struct Queue<T> {
    state: Mutex<QueueState<T>>,
    ready: Condvar,
}

struct QueueState<T> {
    items: VecDeque<T>,
    /// The taker sleeps, waiting for an item.
    asleep: bool,
    /// No item will come any more.
    closed: bool,
}

impl<T> Queue<T> {
    fn new() -> Queue<T> {
        Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                asleep: false,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        // Neither side panics holding the lock; if one did, the queue is
        // still consistent (each change is one push or pop).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an item; `false` once the queue is closed.
    fn put(&self, item: T) -> bool {
        let mut s = self.lock();
        if s.closed {
            return false;
        }
        s.items.push_back(item);
        let wake = s.asleep;
        drop(s);
        if wake {
            self.ready.notify_one();
        }
        true
    }

    /// The next item, waiting for one if `wait`; `None` without one (and,
    /// with `wait`, only once the queue is closed and empty).
    fn take(&self, wait: bool) -> Option<T> {
        let mut s = self.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                return Some(item);
            }
            if !wait || s.closed {
                return None;
            }
            s.asleep = true;
            s = self.ready.wait(s).unwrap_or_else(PoisonError::into_inner);
            s.asleep = false;
        }
    }

    /// Lets the taker end once it has taken what is queued.
    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }
}

impl Worker {
    fn start() -> std::io::Result<Worker> {
        let ops = Arc::new(Queue::<Op>::new());
        let done = Arc::new(Queue::new());
        let thread = {
            let (ops, done) = (Arc::clone(&ops), Arc::clone(&done));
            std::thread::Builder::new()
                .name("capline-io".into())
                .spawn(move || {
                    while let Some(op) = ops.take(true) {
                        let result = run(&op);
                        let tag = op.tag;
                        // The file's last reference may be this one.
                        drop(op);
                        done.put((tag, result));
                    }
                    // The writer waiting for a result learns there is none.
                    done.close();
                })?
        };
        Ok(Worker {
            ops,
            done,
            thread: Some(thread),
        })
    }

    fn send(&mut self, op: Op) -> Started {
        if self.ops.put(op) {
            Started::InFlight
        } else {
            Started::Failed(std::io::Error::other("the I/O thread is gone"))
        }
    }

    fn complete(
        &mut self,
        wait: bool,
        mut report: impl FnMut(usize, i32),
    ) -> std::io::Result<bool> {
        let mut any = false;
        if wait {
            let (tag, result) = self
                .done
                .take(true)
                .ok_or_else(|| std::io::Error::other("the I/O thread is gone"))?;
            report(tag, result);
            any = true;
        }
        while let Some((tag, result)) = self.done.take(false) {
            report(tag, result);
            any = true;
        }
        Ok(any)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has made what was sent.
        self.ops.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Makes one operation; returns the bytes written (0 for a sync) or a
/// negated errno, as io_uring reports them.
fn run(op: &Op) -> i32 {
    let result = match op.what {
        What::Write { ptr, len, offset } => {
            // SAFETY: `Backend::start`'s caller keeps `ptr .. ptr + len`
            // allocated and unwritten until this write's completion is
            // reported, which is after this call.
            let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
            rustix::io::pwrite(&*op.file, bytes, offset)
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
        }
        What::Sync(Durable::Data) => rustix::fs::fdatasync(&*op.file).map(|()| 0),
        What::Sync(Durable::All) => rustix::fs::fsync(&*op.file).map(|()| 0),
    };
    result.unwrap_or_else(|e| -e.raw_os_error())
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
        return Started::Failed(std::io::Error::other(
            "the io_uring submission queue stayed full",
        ));
    }
    // An operation that never reached the kernel has failed; there is
    // nothing to wait for.
    match ring.submit() {
        Ok(_) => Started::InFlight,
        Err(e) => Started::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_io_thread_reports_each_result_by_its_tag_in_the_order_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = Arc::new(File::create(&path).expect("create"));
        let read_only = Arc::new(File::open(&path).expect("open"));
        let data = vec![7u8; 8192];
        let mut backend = Backend::Pwrite(Worker::start().expect("worker"));
        let mut started = Vec::new();
        // SAFETY: `data` outlives the writes: they are all reported below.
        unsafe {
            started.push(backend.start(&file, data.as_ptr(), 8192, 0, 1));
            started.push(backend.start(&read_only, data.as_ptr(), 4096, 0, 2));
        }
        started.push(backend.start_sync(&file, Durable::Data, 9));
        assert!(started.iter().all(|s| matches!(s, Started::InFlight)));
        let mut reports = Vec::new();
        while reports.len() < 3 {
            backend
                .complete(true, |tag, res| reports.push((tag, res)))
                .expect("complete");
        }
        let ebadf = rustix::io::Errno::BADF.raw_os_error();
        assert_eq!(reports, [(1, 8192), (2, -ebadf), (9, 0)]);
        assert_eq!(std::fs::read(&path).expect("read"), data);
        // Nothing more comes, and a wait-less call says so.
        assert!(!backend.complete(false, |_, _| {}).expect("complete"));
    }
}
