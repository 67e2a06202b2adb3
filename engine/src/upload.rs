//! Upload: delivers sealed segments to the destination, exactly once.
//!
//! A segment's object key is fixed when the segment is created and is carried
//! in its spool file name, so a retry (after a failure, a crash or a restart)
//! writes the same key again and can never produce a second object. The spool
//! file is removed only after the destination holds the complete object.
//!
//! Foundation version: the `file://` destination. A segment is renamed into
//! place when spool and destination share a filesystem; otherwise it is copied
//! to `{dest}/.capline-tmp/`, synced, and renamed into place, so a file appears
//! under its key only when complete.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::stats::{Counters, add, inc, unix_millis};
use crate::timestamp::Timestamp;

/// A segment's object key below the destination prefix:
/// `{endpoint}/{variant}/yyyy/mm/dd/hh/MM-SS-mmm-{uuid}.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key(String);

/// Separates key components in a spool file name (never valid in a name or a UUID).
const SPOOL_SEP: char = '+';

impl Key {
    /// The key for a segment whose first record has time `first`.
    pub(crate) fn new(endpoint: &str, variant: &str, first: &Timestamp, uuid: &[u8; 16]) -> Key {
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::from_bytes(*uuid)
            .hyphenated()
            .encode_lower(&mut id);
        Key(format!(
            "{endpoint}/{variant}/{}-{id}.jsonl",
            first.key_path()
        ))
    }

    /// The key as a `/`-separated relative path.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The flat file name the segment has in the spool.
    pub(crate) fn spool_name(&self) -> String {
        self.0.replace('/', &SPOOL_SEP.to_string())
    }

    /// Reads a key back from a spool file name; `None` if the name is not one of ours.
    pub(crate) fn from_spool_name(name: &str) -> Option<Key> {
        let parts: Vec<&str> = name.split(SPOOL_SEP).collect();
        let [endpoint, variant, yyyy, mm, dd, hh, file] = parts[..] else {
            return None;
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_digit());
        let file_ok = file.len() == "MM-SS-mmm-".len() + 36 + ".jsonl".len()
            && file.ends_with(".jsonl")
            && file.is_char_boundary(10)
            && digits(&file[0..2], 2)
            && digits(&file[3..5], 2)
            && digits(&file[6..9], 3)
            && uuid::Uuid::try_parse(&file[10..46]).is_ok();
        let ok = crate::config::is_valid_name(endpoint)
            && crate::config::is_valid_name(variant)
            && digits(yyyy, 4)
            && digits(mm, 2)
            && digits(dd, 2)
            && digits(hh, 2)
            && file_ok;
        ok.then(|| Key(parts.join("/")))
    }
}

/// A sealed, durable segment waiting in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub(crate) path: PathBuf,
    pub(crate) key: Key,
    /// When it was sealed (its file's mtime for one found at start).
    pub(crate) sealed_at: SystemTime,
    /// Found in the spool at start: an earlier run may already have delivered it.
    pub(crate) recovered: bool,
}

impl Sealed {
    fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }
}

/// Messages to the uploader thread.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A newly sealed segment.
    Segment(Sealed),
    /// Deliver what can be delivered before the deadline, then stop.
    Shutdown(Instant),
}

/// Where segments go (a validated `file://` destination).
#[derive(Debug)]
pub(crate) struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    pub(crate) fn new(dir: PathBuf) -> Self {
        LocalDir { dir }
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join(".capline-tmp")
    }

    /// Removes leftovers of copies interrupted by a crash (never visible under a key).
    pub(crate) fn clean_tmp(&self) {
        if let Ok(entries) = std::fs::read_dir(self.tmp_dir()) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Puts one segment at its key. Idempotent: delivering the same segment
    /// again replaces the object with identical bytes.
    pub(crate) fn deliver(&self, seg: &Sealed) -> std::io::Result<()> {
        let target = self.dir.join(seg.key.as_str());
        let parent = target.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)?;
        match std::fs::rename(&seg.path, &target) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                let tmp_dir = self.tmp_dir();
                std::fs::create_dir_all(&tmp_dir)?;
                let tmp = tmp_dir.join(seg.key.spool_name());
                std::fs::copy(&seg.path, &tmp)?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &target)?;
                crate::io::sync_dir(parent)?;
                std::fs::remove_file(&seg.path)?;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        crate::io::sync_dir(parent)?;
        if let Some(spool) = seg.path.parent() {
            crate::io::sync_dir(spool)?;
        }
        Ok(())
    }
}

/// A delivery failure (retried while the segment is on disk).
pub(crate) type DeliverError = Box<dyn std::error::Error + Send + Sync>;

/// Where the uploader delivers.
#[derive(Debug)]
pub(crate) enum Dest {
    /// `file://`.
    Local(LocalDir),
    /// `s3://`.
    #[cfg(feature = "s3")]
    S3(Box<crate::upload_s3::S3Dest>),
}

impl Dest {
    fn deliver(&self, seg: &Sealed) -> Result<(), DeliverError> {
        match self {
            Dest::Local(d) => Ok(d.deliver(seg)?),
            #[cfg(feature = "s3")]
            Dest::S3(d) => {
                d.deliver(seg)?;
                // Only now, with the object complete, does the spool copy go;
                // its upload progress goes last (a crash in between leaves an
                // orphan that the next start removes).
                std::fs::remove_file(&seg.path)?;
                if let Some(dir) = seg.path.parent() {
                    crate::io::sync_dir(dir)?;
                }
                d.forget(seg);
                Ok(())
            }
        }
    }

    /// A hint: `seg` is next; a destination may start preparing it.
    fn prefetch(&self, _seg: &Sealed) {
        #[cfg(feature = "s3")]
        if let Dest::S3(d) = self {
            d.prefetch(_seg);
        }
    }

    /// Settles what an earlier run left at the destination for the segments
    /// still pending; `true` once done (retried before each delivery until then).
    fn reconcile(&self, _pending: &VecDeque<Sealed>) -> bool {
        match self {
            Dest::Local(d) => {
                d.clean_tmp();
                true
            }
            #[cfg(feature = "s3")]
            Dest::S3(d) => match d.reconcile(_pending) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "could not list open multipart uploads; will try again");
                    false
                }
            },
        }
    }
}

/// The uploader thread's state.
#[derive(Debug)]
pub(crate) struct Uploader {
    dest: Dest,
    rx: Receiver<Msg>,
    pending: VecDeque<Sealed>,
    counters: Arc<Counters>,
}

/// Retry delays grow from `BACKOFF_MIN` to `BACKOFF_MAX`, doubling per
/// failure; each wait is drawn uniformly from the upper half of the current
/// delay (jitter, so many instances do not retry in step).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

fn jittered(backoff: Duration) -> Duration {
    let half = backoff / 2;
    half + half.mul_f64(fastrand::f64())
}

impl Uploader {
    /// `recovered` are segments found sealed in the spool at start.
    pub(crate) fn new(
        dest: Dest,
        rx: Receiver<Msg>,
        recovered: Vec<Sealed>,
        counters: Arc<Counters>,
    ) -> Self {
        add(&counters.segments_pending, recovered.len() as u64);
        add(
            &counters.spool_sealed_bytes,
            recovered.iter().map(Sealed::size).sum(),
        );
        let up = Uploader {
            dest,
            rx,
            pending: recovered.into(),
            counters,
        };
        up.note_oldest();
        up
    }

    /// Runs until told to shut down (or every sender is gone). No segment is
    /// ever given up while it is on disk: failures are retried with backoff.
    pub(crate) fn run(mut self) {
        let mut reconciled = false;
        let mut backoff = BACKOFF_MIN;
        let mut deadline: Option<Instant> = None;
        let mut attempts = 0u32;
        loop {
            // Take in everything that has arrived.
            loop {
                match self.rx.try_recv() {
                    Ok(Msg::Segment(s)) => self.push(s),
                    Ok(Msg::Shutdown(d)) => deadline = Some(d),
                    Err(_) => break,
                }
            }
            let Some(seg) = self.pending.front().cloned() else {
                if deadline.is_some() {
                    return;
                }
                match self.rx.recv() {
                    Ok(Msg::Segment(s)) => self.push(s),
                    Ok(Msg::Shutdown(d)) => deadline = Some(d),
                    Err(_) => return,
                }
                continue;
            };
            if deadline.is_some_and(|d| Instant::now() >= d) {
                tracing::warn!(
                    pending = self.pending.len(),
                    "shutdown deadline reached; undelivered segments stay in the spool for the next start"
                );
                return;
            }
            reconciled = reconciled || self.dest.reconcile(&self.pending);
            if let Some(next) = self.pending.get(1) {
                self.dest.prefetch(next);
            }
            let size = seg.size();
            inc(&self.counters.delivery_attempts);
            attempts += 1;
            let started = Instant::now();
            match self.dest.deliver(&seg) {
                Ok(()) => {
                    if matches!(self.dest, Dest::Local(_)) {
                        add(&self.counters.bytes_uploaded, size);
                    }
                    self.counters
                        .spool_sealed_bytes
                        .fetch_sub(size, std::sync::atomic::Ordering::Relaxed);
                    self.pending.pop_front();
                    inc(&self.counters.segments_delivered);
                    self.counters
                        .segments_pending
                        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    self.note_oldest();
                    tracing::info!(
                        key = seg.key.as_str(),
                        bytes = size,
                        attempts,
                        took = ?started.elapsed(),
                        lag = ?seg.sealed_at.elapsed().unwrap_or_default(),
                        "segment delivered"
                    );
                    backoff = BACKOFF_MIN;
                    attempts = 0;
                }
                Err(e) => {
                    inc(&self.counters.delivery_failures);
                    let wait = jittered(backoff);
                    tracing::warn!(key = seg.key.as_str(), attempts, error = %DisplayChain(&*e), retry_in = ?wait, "delivery failed; the segment stays in the spool");
                    let wait = match deadline {
                        Some(d) => wait.min(d.saturating_duration_since(Instant::now())),
                        None => wait,
                    };
                    match self.rx.recv_timeout(wait) {
                        Ok(Msg::Segment(s)) => self.push(s),
                        Ok(Msg::Shutdown(d)) => deadline = Some(d),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => {
                            // Nobody can tell us to stop any more; keep the deadline semantics.
                            deadline.get_or_insert_with(Instant::now);
                        }
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    fn push(&mut self, s: Sealed) {
        inc(&self.counters.segments_pending);
        add(&self.counters.spool_sealed_bytes, s.size());
        self.pending.push_back(s);
        self.note_oldest();
    }

    /// Publishes the seal time of the oldest pending segment (for the delivery lag).
    fn note_oldest(&self) {
        let oldest = self
            .pending
            .iter()
            .map(|s| unix_millis(s.sealed_at).max(1))
            .min()
            .unwrap_or(0);
        self.counters
            .oldest_pending_sealed_unix_ms
            .store(oldest, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An error with its sources, `a: b: c` (the SDK's top-level message alone
/// says little more than "service error").
struct DisplayChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}
