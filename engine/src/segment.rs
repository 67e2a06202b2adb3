//! Segment: formats each record as a line into the open segment, rolls
//! segments, and seals them for delivery.
//!
//! A segment is created on its first record and named by that record's time
//! (`MM-SS-mmm`) plus a random UUID drawn then; that name is its object key
//! for life (see [`crate::spool`]). It is sealed when the next record
//! belongs to another UTC hour, when the next line would push it past
//! `SegmentMaxBytes`, or `SegmentMaxAgeSeconds` after it was created. The
//! writer writes it out and waits for its writes, then hands the file to
//! the sealing thread (`capline-seal`), which cuts it to its last line,
//! `fdatasync`s it and renames it from `active/` to `sealed/`, while the
//! writer goes on with the next segment: those syscalls (3 to 4 ms a seal
//! on a fast disk, far more on a slow one) no longer hold the writer, and
//! the disk has the next segment's writes meanwhile. A `flush()` waits for
//! the seals handed over before it.
//!
//! A segment whose seal fails (the cut to its last line, or the rename)
//! stays in `active/` with its records counted as written, and is sealed
//! again with backoff by the sealing thread while the engine runs
//! ([`Spool::cut_and_seal`], the way recovery seals it at start);
//! `segments_unsealed` counts such segments.
//!
//! The roll is decided before a line is written, so a line is serialized
//! once, straight into the segment's aligned buffer. Whether a line fits is
//! known from its worst-case length for almost every record; only a record
//! that might not fit is measured exactly ([`LineWriter::line_len`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rand::{Rng, SeedableRng, rngs::SmallRng};

use crate::format::{Event, LineWriter};
use crate::io::{Finished, Output, Progress};
use crate::spool::{Key, Sealed, Spool, State};
use crate::stats::{Counters, add, inc, sub};
use crate::timestamp::Timestamp;

/// A new segment is preallocated this far (or to `SegmentMaxBytes`, if
/// smaller); the output doubles each further step, up to 64 MiB.
const PREALLOC: u64 = 8 << 20;

/// A failed seal is tried again after this, doubling up to `RESEAL_MAX`.
const RESEAL_MIN: Duration = Duration::from_millis(100);
const RESEAL_MAX: Duration = Duration::from_secs(30);
/// Segments handed to the sealing thread and not yet sealed, at most; the
/// writer waits for room beyond that (each is an open file).
const SEALS_QUEUED: usize = 4;

/// A segment whose seal failed, waiting in `active/` for another try.
#[derive(Debug)]
struct Unsealed {
    key: Key,
    /// Its bytes, still counted in `spool_active_bytes`.
    len: u64,
    next: Instant,
    backoff: Duration,
}

/// The open segment's identity; its bytes are in the [`Output`].
#[derive(Debug)]
struct Open {
    key: Key,
    first: Timestamp,
    created: Instant,
    /// Lines appended so far.
    lines: u64,
}

/// `append` reads the clock for the segment's age at every this many lines
/// (the writer's `tick` also does, after every pass), so a segment is
/// sealed at most this many lines late; reading it for every line was a
/// few percent of the writer's time on 1 KiB records (DECISIONS.md, "The
/// writer reads the clock every 64 lines").
const AGE_CHECK_EVERY: u64 = 64;

/// Rolling settings for [`Segments::new`].
#[derive(Debug)]
pub(crate) struct Settings<'a> {
    pub(crate) endpoint: &'a str,
    pub(crate) variant: &'a str,
    pub(crate) max_bytes: u64,
    pub(crate) max_age: Duration,
}

/// The line format, the output, and the segment being written.
#[derive(Debug)]
pub(crate) struct Segments {
    endpoint: String,
    variant: String,
    max_bytes: u64,
    max_age: Duration,
    lines: LineWriter,
    out: Output,
    spool: Arc<Spool>,
    open: Option<Open>,
    /// The open segment's bytes as counted in `spool_active_bytes`, which
    /// also counts the segments waiting for their seal.
    counted: u64,
    /// Draws segment UUIDs.
    rng: SmallRng,
    counters: Arc<Counters>,
    /// Work for the sealing thread; `None` once closed.
    seals: Option<Sender<Job>>,
    sealer: Option<JoinHandle<()>>,
}

/// Work for the sealing thread.
#[derive(Debug)]
enum Job {
    /// A segment written out, every write finished: cut it, make it
    /// durable, move it to `sealed/`, hand it to the uploader.
    Seal(Key, Finished),
    /// Answer once every job sent before this one is done.
    Barrier(Sender<()>),
}

/// The sealing thread's state.
#[derive(Debug)]
struct Sealer {
    jobs: Receiver<Job>,
    spool: Arc<Spool>,
    /// Segments whose seal failed, oldest first.
    unsealed: Vec<Unsealed>,
    sealed_tx: Sender<Sealed>,
    counters: Arc<Counters>,
}

/// A random (version 4) UUID.
pub(crate) fn uuid_v4(rng: &mut SmallRng) -> [u8; 16] {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

impl Segments {
    pub(crate) fn new(
        s: Settings,
        lines: LineWriter,
        out: Output,
        spool: Arc<Spool>,
        sealed_tx: Sender<Sealed>,
        counters: Arc<Counters>,
    ) -> std::io::Result<Self> {
        let (seals, jobs) = crossbeam_channel::bounded(SEALS_QUEUED);
        let sealer = Sealer {
            jobs,
            spool: spool.clone(),
            unsealed: Vec::new(),
            sealed_tx,
            counters: counters.clone(),
        };
        let sealer = std::thread::Builder::new()
            .name("capline-seal".into())
            .spawn(move || sealer.run())?;
        Ok(Segments {
            endpoint: s.endpoint.to_string(),
            variant: s.variant.to_string(),
            max_bytes: s.max_bytes,
            max_age: s.max_age,
            lines,
            out,
            spool,
            open: None,
            counted: 0,
            rng: SmallRng::from_os_rng(),
            counters,
            seals: Some(seals),
            sealer: Some(sealer),
        })
    }

    /// Appends `ev` as one line, rolling first when it belongs in a new
    /// segment. A record no segment could be created for is counted as lost
    /// to I/O.
    pub(crate) fn append(&mut self, ev: &Event) {
        let t = &ev.time;
        if self.open.as_ref().is_some_and(|o| {
            !o.first.same_hour(t)
                || (o.lines % AGE_CHECK_EVERY == 0 && o.created.elapsed() >= self.max_age)
        }) {
            self.seal();
        }
        if self.open.is_some() {
            // A line goes to a new segment when it would push this one past
            // SegmentMaxBytes (a line alone may exceed it). Only a line whose
            // worst case does not fit is measured exactly.
            let used = self.out.data_len();
            if used > 0
                && used + self.lines.max_line_len(ev) as u64 > self.max_bytes
                && used + self.lines.line_len(ev) as u64 > self.max_bytes
            {
                self.seal();
            }
        }
        if self.open.is_none() && !self.create(t) {
            inc(&self.counters.dropped_io_error);
            return;
        }
        self.lines.write(self.out.buf(), ev);
        self.out.line_end();
        if let Some(o) = self.open.as_mut() {
            o.lines += 1;
        }
        let p = self.out.pump();
        self.account(p);
    }

    /// Writes buffered lines and makes the open segment durable.
    pub(crate) fn sync(&mut self) {
        if self.open.is_some() {
            let p = self.out.sync();
            self.account(p);
        }
    }

    /// Makes every record appended so far durable: the open segment's, and
    /// those of the segments handed to the sealing thread before now.
    pub(crate) fn flush(&mut self) {
        self.sync();
        let (reply, done) = crossbeam_channel::bounded(1);
        if let Some(seals) = &self.seals
            && seals.send(Job::Barrier(reply)).is_ok()
        {
            let _ = done.recv();
        }
    }

    /// Seals the open segment when it has reached its age.
    pub(crate) fn tick(&mut self) {
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.created.elapsed() >= self.max_age)
        {
            self.seal();
        }
    }

    /// The next moment `tick` has work: the open segment's age limit.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.created + self.max_age)
    }

    /// Seals the open segment and waits for the sealing thread to seal
    /// every segment handed to it, trying each failed seal once more, for
    /// the last time in this run; what still fails is left for the next
    /// start.
    pub(crate) fn close(&mut self) {
        self.seal();
        self.seals = None;
        if let Some(sealer) = self.sealer.take()
            && sealer.join().is_err()
        {
            tracing::error!(
                "the sealing thread panicked; recovery seals what it left at the next start"
            );
        }
    }

    /// Counts what the output reports; a failed file is sealed at its last good line.
    fn account(&mut self, p: Progress) {
        add(&self.counters.records_written, p.written);
        add(&self.counters.dropped_io_error, p.lost);
        self.count_open(self.out.data_len());
        if self.out.failed() {
            self.seal();
        }
    }

    /// Opens a new segment for a first record at `t`; `false` if it could not be created.
    fn create(&mut self, t: &Timestamp) -> bool {
        let key = Key::new(&self.endpoint, &self.variant, t, &uuid_v4(&mut self.rng));
        let path = self.spool.path(State::Active, &key);
        match self.out.open(&path, self.max_bytes.min(PREALLOC)) {
            Ok(()) => {
                self.open = Some(Open {
                    key,
                    first: *t,
                    created: Instant::now(),
                    lines: 0,
                });
                true
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot create segment");
                let _ = std::fs::remove_file(&path);
                false
            }
        }
    }

    /// Writes out the open segment and hands it to the sealing thread.
    pub(crate) fn seal(&mut self) {
        let Some(o) = self.open.take() else {
            return;
        };
        let (p, finished) = self.out.finish();
        add(&self.counters.records_written, p.written);
        add(&self.counters.dropped_io_error, p.lost);
        let len = finished.as_ref().map_or(0, |f| f.len);
        // Still counted until sealed: the sealing thread takes it off.
        self.count_open(len);
        self.counted = 0;
        let Some(f) = finished else {
            return;
        };
        if f.len == 0 {
            drop(f);
            let _ = std::fs::remove_file(self.spool.path(State::Active, &o.key));
            return;
        }
        // Waits only while SEALS_QUEUED seals are pending. Should the sealing
        // thread be gone, the file stays in `active/` for recovery.
        let sent = self
            .seals
            .as_ref()
            .is_some_and(|seals| seals.send(Job::Seal(o.key, f)).is_ok());
        if !sent {
            sub(&self.counters.spool_active_bytes, len);
        }
    }

    /// Counts `len` bytes for the open segment in `spool_active_bytes`.
    fn count_open(&mut self, len: u64) {
        let gauge = &self.counters.spool_active_bytes;
        if len >= self.counted {
            add(gauge, len - self.counted);
        } else {
            sub(gauge, self.counted - len);
        }
        self.counted = len;
    }
}

impl Sealer {
    /// Seals what the writer hands over, and tries failed seals again when
    /// due, until the writer is gone; then tries each failed seal once more.
    fn run(mut self) {
        loop {
            let due = self.unsealed.iter().map(|u| u.next).min();
            let job = match due {
                Some(at) => match self.jobs.recv_deadline(at) {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.jobs.recv() {
                    Ok(job) => Some(job),
                    Err(_) => break,
                },
            };
            match job {
                Some(Job::Seal(key, f)) => self.seal(key, f),
                Some(Job::Barrier(reply)) => {
                    let _ = reply.send(());
                }
                None => {}
            }
            self.reseal(false);
        }
        self.reseal(true);
        if !self.unsealed.is_empty() {
            tracing::error!(
                segments = self.unsealed.len(),
                "segments could not be sealed; they stay in the spool's active/ for recovery at the next start"
            );
        }
    }

    /// Cuts `f` to its last line, makes it durable, seals it and hands it
    /// to the uploader; on failure it waits in `active/` for another try.
    fn seal(&mut self, key: Key, f: Finished) {
        let len = f.len;
        match self.spool.cut_to_and_seal(&key, f) {
            Ok(sealed) => self.handed_over(sealed, len),
            Err(e) => {
                // Its lines are on disk, but perhaps padding after them too:
                // it is cut again (as recovery would) on a later try.
                tracing::error!(key = key.as_str(), error = %e, "sealing failed; it will be tried again");
                self.strand(key, len);
            }
        }
    }

    /// Tries again the failed seals that are due (all of them with `all`).
    fn reseal(&mut self, all: bool) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.unsealed.len() {
            let u = &mut self.unsealed[i];
            if !all && u.next > now {
                i += 1;
                continue;
            }
            match self.spool.cut_and_seal(&u.key) {
                Ok(sealed) => {
                    tracing::info!(key = u.key.as_str(), "sealed on a later try");
                    let u = self.unsealed.remove(i);
                    match sealed {
                        Some(sealed) => self.handed_over(sealed, u.len),
                        None => sub(&self.counters.spool_active_bytes, u.len),
                    }
                }
                Err(e) => {
                    u.backoff = (u.backoff * 2).min(RESEAL_MAX);
                    u.next = now + u.backoff;
                    tracing::warn!(key = u.key.as_str(), error = %e, retry_in = ?u.backoff, "sealing failed again");
                    i += 1;
                }
            }
        }
        self.counters
            .segments_unsealed
            .store(self.unsealed.len() as u64, Ordering::Relaxed);
    }

    /// Counts a sealed segment and hands it to the uploader, which counts
    /// its bytes as sealed; `len` bytes of it were counted as active.
    fn handed_over(&mut self, sealed: Sealed, len: u64) {
        inc(&self.counters.segments_sealed);
        add(&self.counters.bytes_written, sealed.size());
        // The uploader outlives this thread; if it is gone, recovery delivers at next start.
        let _ = self.sealed_tx.send(sealed);
        sub(&self.counters.spool_active_bytes, len);
    }

    /// Remembers a segment whose seal failed, for another try; its `len`
    /// bytes stay counted as active meanwhile.
    fn strand(&mut self, key: Key, len: u64) {
        self.unsealed.push(Unsealed {
            key,
            len,
            next: Instant::now() + RESEAL_MIN,
            backoff: RESEAL_MIN,
        });
        self.counters
            .segments_unsealed
            .store(self.unsealed.len() as u64, Ordering::Relaxed);
    }
}
