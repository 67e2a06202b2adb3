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
//! The roll is decided before a line is written, so a line is serialized
//! once, straight into the segment's aligned buffer. Whether a line fits is
//! known from its worst-case length for almost every record; only a record
//! that might not fit is measured exactly ([`LineWriter::line_len`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rand::{Rng, SeedableRng, rngs::SmallRng};

use crate::format::{Event, LineWriter};
use crate::io::{Output, Progress};
use crate::spool::{Key, Sealed, Spool, State};
use crate::stats::{Counters, add, inc};
use crate::timestamp::Timestamp;

/// Segments are preallocated this far ahead of their data (or to
/// `SegmentMaxBytes`, if smaller).
const PREALLOC: u64 = 8 << 20;

/// The open segment's identity; its bytes are in the [`Output`].
#[derive(Debug)]
struct Open {
    key: Key,
    first: Timestamp,
    created: Instant,
}

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
    /// Draws segment UUIDs.
    rng: SmallRng,
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
        if self
            .open
            .as_ref()
            .is_some_and(|o| !o.first.same_hour(t) || o.created.elapsed() >= self.max_age)
        {
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

    /// When the open segment must be sealed for age, if there is one.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.created + self.max_age)
    }

    /// Counts what the output reports; a failed file is sealed at its last good line.
    fn account(&mut self, p: Progress) {
        add(&self.counters.records_written, p.written);
        add(&self.counters.dropped_io_error, p.lost);
        self.counters
            .spool_active_bytes
            .store(self.out.data_len(), Ordering::Relaxed);
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

    /// Writes out, cuts and syncs the open segment, and hands it to the uploader.
    pub(crate) fn seal(&mut self) {
        let Some(o) = self.open.take() else {
            return;
        };
        let (p, closed) = self.out.close();
        add(&self.counters.records_written, p.written);
        add(&self.counters.dropped_io_error, p.lost);
        self.counters.spool_active_bytes.store(0, Ordering::Relaxed);
        let len = match closed {
            Ok(len) => len,
            Err(e) => {
                // Its lines are on disk, but so is padding after them:
                // recovery cuts it at the next start.
                tracing::error!(key = o.key.as_str(), error = %e, "cutting the segment to its last line failed; it stays in the spool for recovery at next start");
                return;
            }
        };
        if len == 0 {
            let _ = std::fs::remove_file(self.spool.path(State::Active, &o.key));
            return;
        }
        add(&self.counters.bytes_written, len);
        match self.spool.seal(&o.key) {
            Ok(sealed) => {
                inc(&self.counters.segments_sealed);
                // The uploader outlives the writer; if it is gone, recovery delivers at next start.
                let _ = self.sealed_tx.send(sealed);
            }
            Err(e) => {
                tracing::error!(key = o.key.as_str(), error = %e, "sealing failed; the segment stays in the spool for recovery at next start");
            }
        }
    }
}
