//! Segment: formats each record as a line into the open segment, rolls
//! segments, and seals them for delivery.
//!
//! A segment is created on its first record and named by that record's time
//! (`MM-SS-mmm`) plus a random UUID drawn then; that name is its object key
//! for life (see [`crate::spool`]). It is sealed (written out, cut to its
//! last line, `fdatasync`ed, renamed from `active/` to `sealed/`) when the
//! next record belongs to another UTC hour, when the next line would push it
//! past `SegmentMaxBytes`, or `SegmentMaxAgeSeconds` after it was created.
//!
//! Through io_uring the seal's `fdatasync` runs in the background (an
//! `Fsync`) while the writer goes on with the next segment; the rename
//! follows once it has finished, so `sealed/` only ever holds durable
//! segments, and the directory syncs after the rename run in the background
//! too. `flush()` and shutdown wait for them all. On the pwrite path they
//! are calls on the writer.
//!
//! A segment whose seal fails (the cut to its last line, its sync, or the
//! rename) stays in `active/` with its records counted as written, and is
//! sealed again with backoff while the engine runs ([`Spool::cut_and_seal`],
//! the way recovery seals it at start); `segments_unsealed` counts such
//! segments.
//!
//! Once the open segment is half full (and `SegmentMaxBytes` is larger than
//! the first preallocation step, with twice it free on the filesystem), the
//! next segment's file is made ahead:
//! created in `active/` and preallocated whole on a thread of its own, and
//! renamed to the next segment's name when that is created, so the disk is
//! not left idle while the writer grows a file ([`Output::prepare`]). It
//! counts in `spool_active_bytes`. One left unused (the records stopped) is
//! removed `SegmentMaxAgeSeconds` after it was made, and at shutdown.
//!
//! The roll is decided before a line is written, so a line is serialized
//! once, straight into the segment's aligned buffer. Whether a line fits is
//! known from its worst-case length for almost every record; only a record
//! that might not fit is measured exactly ([`LineWriter::line_len`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rand::{Rng, SeedableRng, rngs::SmallRng};

use crate::format::{Event, LineWriter};
use crate::io::{Closed, Output, Progress};
use crate::spool::{Key, Sealed, Spool, State};
use crate::stats::{Counters, add, inc};
use crate::timestamp::Timestamp;

/// A new segment is preallocated this far (or to `SegmentMaxBytes`, if
/// smaller); the output doubles each further step, up to 64 MiB.
const PREALLOC: u64 = 8 << 20;

/// A failed seal is tried again after this, doubling up to `RESEAL_MAX`.
const RESEAL_MIN: Duration = Duration::from_millis(100);
const RESEAL_MAX: Duration = Duration::from_secs(30);

/// A segment whose seal failed, waiting in `active/` for another try.
#[derive(Debug)]
struct Unsealed {
    key: Key,
    next: Instant,
    backoff: Duration,
}

/// A segment cut to its last line whose `fdatasync` is in flight; renamed
/// into `sealed/` once it has finished.
#[derive(Debug)]
struct Sealing {
    /// The output's name for the close.
    ticket: usize,
    key: Key,
    /// Bytes, counted in `spool_active_bytes` until the rename.
    len: u64,
}

/// The open segment's identity; its bytes are in the [`Output`].
#[derive(Debug)]
struct Open {
    key: Key,
    first: Timestamp,
    created: Instant,
    /// Lines appended so far.
    lines: u64,
    /// The next segment's file has been asked for while this one is open
    /// (once per segment, whether or not the output could make it).
    ahead_asked: bool,
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
    /// Segments whose seal's sync is in flight, oldest first.
    sealing: VecDeque<Sealing>,
    /// Segments whose seal failed, oldest first.
    unsealed: Vec<Unsealed>,
    /// Draws segment UUIDs.
    rng: SmallRng,
    sealed_tx: Sender<Sealed>,
    counters: Arc<Counters>,
}

/// A random (version 4) UUID.
///
/// One 128-bit draw (two steps of the generator): `rng.random::<[u8; 16]>()`
/// draws once per byte, sixteen steps, which took 5 % of the writer's time
/// on 1 KiB records.
pub(crate) fn uuid_v4(rng: &mut SmallRng) -> [u8; 16] {
    let mut b = rng.random::<u128>().to_le_bytes();
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
    ) -> Self {
        Segments {
            endpoint: s.endpoint.to_string(),
            variant: s.variant.to_string(),
            max_bytes: s.max_bytes,
            max_age: s.max_age,
            lines,
            out,
            spool,
            open: None,
            sealing: VecDeque::new(),
            unsealed: Vec::new(),
            rng: SmallRng::from_os_rng(),
            sealed_tx,
            counters,
        }
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
        // Past half of a segment larger than the first preallocation step,
        // the next one's file is asked for, once per segment.
        let mut ask_ahead = false;
        if let Some(o) = self.open.as_mut() {
            o.lines += 1;
            if !o.ahead_asked
                && self.max_bytes > PREALLOC
                && self.out.data_len() > self.max_bytes / 2
            {
                o.ahead_asked = true;
                ask_ahead = true;
            }
        }
        let p = self.out.pump();
        self.account(p);
        if ask_ahead {
            let path = self.spool.ahead_path(&uuid_v4(&mut self.rng));
            self.out.prepare(path, self.max_bytes);
        }
    }

    /// Writes buffered lines and starts making the open segment durable
    /// (through io_uring the `fdatasync` runs while the writer goes on).
    pub(crate) fn sync(&mut self) {
        if self.open.is_some() {
            let p = self.out.sync();
            self.account(p);
        }
    }

    /// Writes buffered lines and makes the open segment durable before
    /// returning, and finishes the seals in flight.
    pub(crate) fn sync_wait(&mut self) {
        let p = if self.open.is_some() {
            self.out.sync_wait()
        } else {
            self.out.settle()
        };
        self.account(p);
        // The renames' directory syncs.
        let p = self.out.settle();
        self.account(p);
    }

    /// Seals the open segment when it has reached its age, tries again
    /// the failed seals that are due, and removes a file made ahead that no
    /// segment has taken for `SegmentMaxAgeSeconds`.
    pub(crate) fn tick(&mut self) {
        let p = self.out.collect();
        self.account(p);
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.created.elapsed() >= self.max_age)
        {
            self.seal();
        }
        if self
            .unused_ahead_until()
            .is_some_and(|t| Instant::now() >= t)
        {
            self.out.discard_ahead();
            self.count_active();
        }
        self.reseal(false);
    }

    /// The next moment `tick` has work: the open segment's age limit, a
    /// failed seal's next try, or the removal of an unused file made ahead.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let age = self.open.as_ref().map(|o| o.created + self.max_age);
        let retry = self.unsealed.iter().map(|u| u.next).min();
        age.into_iter()
            .chain(self.unused_ahead_until())
            .chain(retry)
            .min()
    }

    /// When a file made ahead that no segment has taken is removed: while
    /// no segment is open, `SegmentMaxAgeSeconds` after it was asked for.
    fn unused_ahead_until(&self) -> Option<Instant> {
        if self.open.is_some() {
            return None;
        }
        self.out.ahead_since().map(|t| t + self.max_age)
    }

    /// Seals the open segment and tries every failed seal once more, for the
    /// last time in this run; what still fails is left for the next start.
    pub(crate) fn close(&mut self) {
        self.seal();
        self.out.discard_ahead();
        self.sync_wait();
        self.reseal(true);
        if !self.unsealed.is_empty() {
            tracing::error!(
                segments = self.unsealed.len(),
                "segments could not be sealed; they stay in the spool's active/ for recovery at the next start"
            );
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
                    self.unsealed.remove(i);
                    if let Some(sealed) = sealed {
                        self.handed_over(sealed);
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

    /// Counts a sealed segment and hands it to the uploader.
    fn handed_over(&mut self, sealed: Sealed) {
        inc(&self.counters.segments_sealed);
        add(&self.counters.bytes_written, sealed.size());
        // The uploader outlives the writer; if it is gone, recovery delivers at next start.
        let _ = self.sealed_tx.send(sealed);
    }

    /// Remembers a segment whose seal failed, for another try.
    fn strand(&mut self, key: Key) {
        self.unsealed.push(Unsealed {
            key,
            next: Instant::now() + RESEAL_MIN,
            backoff: RESEAL_MIN,
        });
        self.counters
            .segments_unsealed
            .store(self.unsealed.len() as u64, Ordering::Relaxed);
    }

    /// Counts what the output reports; a failed file is sealed at its last
    /// good line; seals whose sync has finished are completed.
    fn account(&mut self, p: Progress) {
        add(&self.counters.records_written, p.written);
        add(&self.counters.dropped_io_error, p.lost);
        if self.out.failed() {
            self.seal();
        }
        if !self.sealing.is_empty() {
            self.finish_seals();
        }
        self.count_active();
    }

    /// `spool_active_bytes`: the open segment's bytes, those of the
    /// segments still being sealed, and the file made ahead.
    fn count_active(&self) {
        let sealing: u64 = self.sealing.iter().map(|s| s.len).sum();
        self.counters.spool_active_bytes.store(
            self.out.data_len() + sealing + self.out.ahead_bytes(),
            Ordering::Relaxed,
        );
    }

    /// Renames into `sealed/` and hands over every segment whose seal's sync
    /// has finished; one whose sync failed is sealed again later.
    fn finish_seals(&mut self) {
        while let Some((ticket, result)) = self.out.next_closed() {
            let at = self.sealing.iter().position(|s| s.ticket == ticket);
            let Some(s) = at.and_then(|i| self.sealing.remove(i)) else {
                continue;
            };
            if let Err(e) = result {
                // Its lines are written, but not known durable: it is cut
                // and synced again (as recovery would) on a later try.
                tracing::error!(key = s.key.as_str(), error = %e, "syncing the segment at its seal failed; it will be tried again");
                self.strand(s.key);
                continue;
            }
            match self.spool.rename_sealed(&s.key) {
                Ok(sealed) => {
                    for dir in self.spool.dir_handles() {
                        self.out.sync_dir(dir);
                    }
                    self.handed_over(sealed);
                }
                Err(e) => {
                    tracing::error!(key = s.key.as_str(), error = %e, "sealing failed; it will be tried again");
                    self.strand(s.key);
                }
            }
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
                    ahead_asked: false,
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

    /// Writes out and cuts the open segment, and starts its sync; it is
    /// renamed into `sealed/` and handed to the uploader once the sync has
    /// finished ([`finish_seals`](Self::finish_seals)).
    pub(crate) fn seal(&mut self) {
        let Some(o) = self.open.take() else {
            return;
        };
        let (p, closed) = self.out.close_start();
        add(&self.counters.records_written, p.written);
        add(&self.counters.dropped_io_error, p.lost);
        match closed {
            Ok(Closed::Syncing { ticket, len }) => self.sealing.push_back(Sealing {
                ticket,
                key: o.key,
                len,
            }),
            Ok(Closed::Empty) => {
                let _ = std::fs::remove_file(self.spool.path(State::Active, &o.key));
            }
            Err(e) => {
                // Its lines are on disk, but so is padding after them: it is
                // cut again (as recovery would) on a later try.
                tracing::error!(key = o.key.as_str(), error = %e, "cutting the segment to its last line failed; it will be tried again");
                self.strand(o.key);
            }
        }
        self.count_active();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Version 4, RFC 4122 variant, and random in every other bit: over
    /// 256 draws each of the 122 random bits is seen both set and clear,
    /// and no id repeats.
    #[test]
    fn uuid_v4_sets_version_and_variant_and_draws_the_rest() {
        let mut rng = SmallRng::seed_from_u64(7);
        let ids: Vec<u128> = (0..256)
            .map(|_| u128::from_be_bytes(uuid_v4(&mut rng)))
            .collect();
        for &id in &ids {
            let u = uuid::Uuid::from_u128(id);
            assert_eq!(u.get_version_num(), 4);
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        }
        let fixed = uuid::Uuid::from_bytes([0, 0, 0, 0, 0, 0, 0xf0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0])
            .as_u128();
        let (ones, zeros) = ids
            .iter()
            .fold((0u128, 0u128), |(o, z), &id| (o | id, z | !id));
        assert_eq!(ones & zeros, !fixed);
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }
}
