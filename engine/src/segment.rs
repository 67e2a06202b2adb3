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

use crate::io::{SegmentFile, sync_dir};
use crate::stats::{Counters, add, inc};
use crate::timestamp::Timestamp;
use crate::upload::{Key, Msg, Sealed};

/// Lines are gathered in memory and written in batches of about this size.
const BATCH_BYTES: usize = 1 << 20;

/// The open segment.
#[derive(Debug)]
struct Open {
    key: Key,
    path: PathBuf,
    file: SegmentFile,
    first: Timestamp,
    created: Instant,
    /// Lines not yet written to the file.
    buf: Vec<u8>,
    buffered_records: u64,
    /// Records in the file.
    written_records: u64,
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
    open: Option<Open>,
    /// A spare buffer so rolling does not allocate.
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
    pub(crate) fn new(s: Settings, sealed_tx: Sender<Msg>, counters: Arc<Counters>) -> Self {
        Segments {
            endpoint: s.endpoint.to_string(),
            variant: s.variant.to_string(),
            active_dir: s.active_dir.to_path_buf(),
            sealed_dir: s.sealed_dir.to_path_buf(),
            max_bytes: s.max_bytes,
            max_age: s.max_age,
            open: None,
            spare: Vec::with_capacity(BATCH_BYTES * 2),
            sealed_tx,
            counters,
        }
    }

    /// The buffer to append the next line to, for a record with time `t`.
    /// Rolls first when `t` is in another hour or the segment is too old.
    /// `None` when no segment could be created (the record is lost to I/O).
    pub(crate) fn buffer_for(&mut self, t: &Timestamp, uuid: [u8; 16]) -> Option<&mut Vec<u8>> {
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
        self.open.as_mut().map(|o| &mut o.buf)
    }

    /// Accounts for the line just appended from `start` on. When it pushed the
    /// segment past `SegmentMaxBytes`, it moves to a new segment (`uuid`).
    pub(crate) fn commit_line(&mut self, start: usize, t: &Timestamp, uuid: [u8; 16]) {
        let Some(o) = self.open.as_mut() else { return };
        let total = o.file.len() + o.buf.len() as u64;
        let earlier = o.written_records + o.buffered_records;
        if total > self.max_bytes && earlier > 0 {
            let mut line = std::mem::take(&mut self.spare);
            line.clear();
            line.extend_from_slice(&o.buf[start..]);
            o.buf.truncate(start);
            self.seal();
            if self.create(t, uuid).is_none() {
                self.spare = line;
                return;
            }
            let Some(o) = self.open.as_mut() else { return };
            std::mem::swap(&mut o.buf, &mut line);
            self.spare = line;
        }
        if let Some(o) = self.open.as_mut() {
            o.buffered_records += 1;
            if o.buf.len() >= BATCH_BYTES {
                self.write_batch();
            }
        }
    }

    /// Writes buffered lines and makes the open segment durable.
    pub(crate) fn sync(&mut self) {
        self.write_batch();
        if let Some(o) = self.open.as_mut()
            && let Err(e) = o.file.sync()
        {
            tracing::error!(key = o.key.as_str(), error = %e, "fdatasync failed; sealing the segment");
            self.seal();
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

    fn create(&mut self, t: &Timestamp, uuid: [u8; 16]) -> Option<()> {
        let key = Key::new(&self.endpoint, &self.variant, t, &uuid);
        let path = self.active_dir.join(key.spool_name());
        match SegmentFile::create(&path) {
            Ok(file) => {
                let mut buf = std::mem::take(&mut self.spare);
                buf.clear();
                self.open = Some(Open {
                    key,
                    path,
                    file,
                    first: *t,
                    created: Instant::now(),
                    buf,
                    buffered_records: 0,
                    written_records: 0,
                });
                Some(())
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot create segment");
                None
            }
        }
    }

    /// Writes the buffered lines. On failure they are counted as lost and the
    /// segment is sealed at its last good record.
    fn write_batch(&mut self) {
        let Some(o) = self.open.as_mut() else { return };
        if o.buf.is_empty() {
            return;
        }
        match o.file.append(&o.buf) {
            Ok(()) => {
                add(&self.counters.records_written, o.buffered_records);
                add(&self.counters.bytes_written, o.buf.len() as u64);
                o.written_records += o.buffered_records;
            }
            Err(e) => {
                tracing::error!(key = o.key.as_str(), error = %e, records = o.buffered_records, "segment write failed; records lost");
                add(&self.counters.dropped_io_error, o.buffered_records);
                o.buf.clear();
                o.buffered_records = 0;
                self.seal();
                return;
            }
        }
        o.buf.clear();
        o.buffered_records = 0;
    }

    /// Writes out, syncs and hands the open segment to the uploader.
    pub(crate) fn seal(&mut self) {
        self.write_batch();
        let Some(mut o) = self.open.take() else {
            return;
        };
        let mut spare = std::mem::take(&mut o.buf);
        spare.clear();
        self.spare = spare;
        if o.written_records == 0 {
            drop(o.file);
            let _ = std::fs::remove_file(&o.path);
            return;
        }
        let sealed = self.sealed_dir.join(o.key.spool_name());
        let result = o
            .file
            .sync()
            .and_then(|()| {
                drop(o.file);
                std::fs::rename(&o.path, &sealed)
            })
            .and_then(|()| sync_dir(&self.sealed_dir))
            .and_then(|()| sync_dir(&self.active_dir));
        match result {
            Ok(()) => {
                inc(&self.counters.segments_sealed);
                // The uploader outlives the writer; if it is gone, recovery delivers at next start.
                let _ = self.sealed_tx.send(Msg::Segment(Sealed {
                    path: sealed,
                    key: o.key,
                }));
            }
            Err(e) => {
                tracing::error!(key = o.key.as_str(), error = %e, "sealing failed; the segment stays in the spool for recovery at next start");
            }
        }
    }
}
