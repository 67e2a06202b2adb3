//! Segment: groups lines into files, rolls them, and seals them for delivery.
//!
//! A segment is created on its first record and named by that record's time
//! (`MM-SS-mmm`) plus a random UUID; that name is its object key for life. It
//! is sealed (written out, `fdatasync`ed, renamed from `active/` to `sealed/`)
//! when the next record belongs to another UTC hour, when it would grow past
//! `SegmentMaxBytes`, or `SegmentMaxAgeSeconds` after it was created.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::io::{AlignedBuf, Output, Progress, sync_dir};
use crate::stats::{Counters, add, inc};
use crate::timestamp::Timestamp;
use crate::upload::{Key, Msg, Sealed};

/// Segments are preallocated this far ahead of their data (or to
/// `SegmentMaxBytes`, if smaller).
const PREALLOC: u64 = 8 << 20;

/// The open segment's identity; its bytes are in the writer's [`Output`].
#[derive(Debug)]
struct Open {
    key: Key,
    path: PathBuf,
    first: Timestamp,
    created: Instant,
}

/// Rolling settings and the segment being written.
#[derive(Debug)]
pub(crate) struct Segments {
    endpoint: String,
    variant: String,
    active_dir: PathBuf,
    sealed_dir: PathBuf,
    max_bytes: u64,
    max_age: Duration,
    out: Output,
    open: Option<Open>,
    /// Holds a line while it moves to a new segment (capacity reused).
    spare: Vec<u8>,
    sealed_tx: Sender<Msg>,
    counters: Arc<Counters>,
}

/// Settings for [`Segments::new`].
#[derive(Debug)]
pub(crate) struct Settings<'a> {
    pub(crate) endpoint: &'a str,
    pub(crate) variant: &'a str,
    pub(crate) active_dir: &'a Path,
    pub(crate) sealed_dir: &'a Path,
    pub(crate) max_bytes: u64,
    pub(crate) max_age: Duration,
}

impl Segments {
    pub(crate) fn new(
        s: Settings,
        out: Output,
        sealed_tx: Sender<Msg>,
        counters: Arc<Counters>,
    ) -> Self {
        Segments {
            endpoint: s.endpoint.to_string(),
            variant: s.variant.to_string(),
            active_dir: s.active_dir.to_path_buf(),
            sealed_dir: s.sealed_dir.to_path_buf(),
            max_bytes: s.max_bytes,
            max_age: s.max_age,
            out,
            open: None,
            spare: Vec::new(),
            sealed_tx,
            counters,
        }
    }

    /// The buffer to append the next line to, for a record with time `t`.
    /// Rolls first when `t` is in another hour or the segment is too old.
    /// `None` when no segment could be created (the record is lost to I/O).
    pub(crate) fn buffer_for(&mut self, t: &Timestamp, uuid: [u8; 16]) -> Option<&mut AlignedBuf> {
        if self
            .open
            .as_ref()
            .is_some_and(|o| !o.first.same_hour(t) || o.created.elapsed() >= self.max_age)
        {
            self.seal();
        }
        if self.open.is_none() {
            self.create(t, uuid)?;
        }
        Some(self.out.buf())
    }

    /// Accounts for the line just appended from buffer offset `start` on. When
    /// it pushed the segment past `SegmentMaxBytes`, it moves to a new segment (`uuid`).
    pub(crate) fn commit_line(&mut self, start: usize, t: &Timestamp, uuid: [u8; 16]) {
        let line_len = (self.out.buf().len() - start) as u64;
        let total = self.out.data_len();
        if total > self.max_bytes && total > line_len {
            self.spare.clear();
            self.spare
                .extend_from_slice(&self.out.buf().as_slice()[start..]);
            self.out.buf().truncate(start);
            self.seal();
            if self.create(t, uuid).is_none() {
                inc(&self.counters.dropped_io_error);
                return;
            }
            let line = std::mem::take(&mut self.spare);
            self.out.buf().extend_from_slice(&line);
            self.spare = line;
        }
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
            .store(self.out.data_len(), std::sync::atomic::Ordering::Relaxed);
        if self.out.failed() {
            self.seal();
        }
    }

    fn create(&mut self, t: &Timestamp, uuid: [u8; 16]) -> Option<()> {
        let key = Key::new(&self.endpoint, &self.variant, t, &uuid);
        let path = self.active_dir.join(key.spool_name());
        match self.out.open(&path, self.max_bytes.min(PREALLOC)) {
            Ok(()) => {
                self.open = Some(Open {
                    key,
                    path,
                    first: *t,
                    created: Instant::now(),
                });
                Some(())
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot create segment");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes out, truncates, syncs and hands the open segment to the uploader.
    pub(crate) fn seal(&mut self) {
        let Some(o) = self.open.take() else {
            return;
        };
        let (p, len) = self.out.close();
        add(&self.counters.records_written, p.written);
        add(&self.counters.dropped_io_error, p.lost);
        self.counters
            .spool_active_bytes
            .store(0, std::sync::atomic::Ordering::Relaxed);
        if len == 0 {
            let _ = std::fs::remove_file(&o.path);
            return;
        }
        add(&self.counters.bytes_written, len);
        let sealed = self.sealed_dir.join(o.key.spool_name());
        let result = std::fs::rename(&o.path, &sealed)
            .and_then(|()| sync_dir(&self.sealed_dir))
            .and_then(|()| sync_dir(&self.active_dir));
        match result {
            Ok(()) => {
                inc(&self.counters.segments_sealed);
                // The uploader outlives the writer; if it is gone, recovery delivers at next start.
                let _ = self.sealed_tx.send(Msg::Segment(Sealed {
                    path: sealed,
                    key: o.key,
                    sealed_at: std::time::SystemTime::now(),
                    recovered: false,
                }));
            }
            Err(e) => {
                tracing::error!(key = o.key.as_str(), error = %e, "sealing failed; the segment stays in the spool for recovery at next start");
            }
        }
    }
}
