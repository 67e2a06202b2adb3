//! Upload: delivers sealed segments to the destination, exactly once.
//!
//! A segment's object key is fixed when the segment is created and is carried
//! in its spool file name, so a retry (after a failure, a crash or a restart)
//! writes the same key again and can never produce a second object. The spool
//! file is removed only after the destination holds the complete object.
//!
//! The uploader thread knows destinations only through [`Destination`]; each
//! destination is one module beside this one ([`local`] for `file://`,
//! `s3` for `s3://`), and [`open`] is the one place that picks it from the
//! config.

mod local;
#[cfg(feature = "s3")]
mod s3;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use crate::config::{Config, Destination as Target};
use crate::error::{Error, Result};
use crate::spool::{Sealed, Spool};
use crate::stats::{Counters, add, inc, unix_millis};

/// A delivery failure (retried while the segment is on disk).
pub(crate) type DeliverError = Box<dyn std::error::Error + Send + Sync>;

/// Where sealed segments go. Only the uploader thread uses it.
pub(crate) trait Destination: Send + std::fmt::Debug {
    /// Puts one segment at its key, or confirms that an earlier attempt or
    /// run already did. Must be idempotent: delivering the same segment again
    /// leaves one object with the same bytes. The destination may take the
    /// spool file itself (a rename); otherwise the uploader removes it after
    /// this returns `Ok`. Adds what it sends to `bytes_uploaded`.
    ///
    /// `next` is the segment that will be delivered after this one, if any:
    /// the destination may start preparing it while `seg` goes out.
    fn deliver(&self, seg: &Sealed, next: Option<&Sealed>) -> Result<(), DeliverError>;

    /// Settles what an earlier run left at the destination for the segments
    /// still pending (retried before each delivery until it succeeds).
    fn reconcile(&self, pending: &VecDeque<Sealed>) -> Result<(), DeliverError>;
}

/// The destination `config` names.
pub(crate) fn open(
    config: &Config,
    spool: &Arc<Spool>,
    counters: &Arc<Counters>,
) -> Result<Box<dyn Destination>> {
    Ok(match &config.destination {
        Target::Local { dir } => Box::new(local::LocalDir::new(
            dir.clone(),
            spool.fs().clone(),
            counters.clone(),
        )),
        #[cfg(feature = "s3")]
        Target::S3 { bucket, prefix } => Box::new(
            s3::S3Dest::new(
                bucket,
                prefix,
                config.kms_key_id.clone(),
                &config.engine.s3,
                spool.clone(),
                counters.clone(),
            )
            .map_err(|e| Error::io("start the S3 client runtime", &config.engine.spool_dir, e))?,
        ),
        #[cfg(not(feature = "s3"))]
        Target::S3 { .. } => return Err(Error::S3NotBuilt),
    })
}

/// The uploader thread's state.
#[derive(Debug)]
pub(crate) struct Uploader {
    dest: Box<dyn Destination>,
    spool: Arc<Spool>,
    /// Newly sealed segments, from the writer.
    sealed: Receiver<Sealed>,
    /// The shutdown deadline, from the engine.
    stop: Receiver<Instant>,
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

/// What arrived while the uploader waited.
enum Wake {
    Segment(Sealed),
    Stop(Instant),
    /// Nothing: a timeout, or the writer's channel closed.
    Nothing,
}

/// Which channel closed.
enum Closed {
    Sealed,
    Stop,
}

impl Uploader {
    /// `recovered` are segments found sealed in the spool at start.
    pub(crate) fn new(
        dest: Box<dyn Destination>,
        spool: Arc<Spool>,
        sealed: Receiver<Sealed>,
        stop: Receiver<Instant>,
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
            spool,
            sealed,
            stop,
            pending: recovered.into(),
            counters,
        };
        up.note_oldest();
        up
    }

    /// Waits up to `wait` (forever for `None`) for a segment or the stop.
    /// When the writer is gone, its channel is replaced by one that never
    /// fires; when the engine's stop sender is gone without a word, nobody
    /// can tell the uploader to stop any more, which counts as a stop now.
    fn wake(&mut self, wait: Option<Duration>) -> Wake {
        let got = match wait {
            Some(d) => select! {
                recv(self.sealed) -> s => s.map(Wake::Segment).map_err(|_| Closed::Sealed),
                recv(self.stop) -> d => d.map(Wake::Stop).map_err(|_| Closed::Stop),
                default(d) => Ok(Wake::Nothing),
            },
            None => select! {
                recv(self.sealed) -> s => s.map(Wake::Segment).map_err(|_| Closed::Sealed),
                recv(self.stop) -> d => d.map(Wake::Stop).map_err(|_| Closed::Stop),
            },
        };
        match got {
            Ok(w) => w,
            Err(Closed::Sealed) => {
                self.sealed = crossbeam_channel::never();
                Wake::Nothing
            }
            Err(Closed::Stop) => {
                self.stop = crossbeam_channel::never();
                Wake::Stop(Instant::now())
            }
        }
    }

    /// Runs until told to shut down (or nobody can tell it any more). No
    /// segment is ever given up while it is on disk: failures are retried
    /// with backoff.
    pub(crate) fn run(mut self) {
        let mut reconciled = false;
        let mut backoff = BACKOFF_MIN;
        let mut deadline: Option<Instant> = None;
        let mut attempts = 0u32;
        loop {
            // Take in everything that has arrived.
            loop {
                match self.wake(Some(Duration::ZERO)) {
                    Wake::Segment(s) => self.push(s),
                    Wake::Stop(d) => deadline = Some(d),
                    Wake::Nothing => break,
                }
            }
            let Some(seg) = self.pending.front().cloned() else {
                if deadline.is_some() {
                    return;
                }
                match self.wake(None) {
                    Wake::Segment(s) => self.push(s),
                    Wake::Stop(d) => deadline = Some(d),
                    Wake::Nothing => {}
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
            if !reconciled {
                match self.dest.reconcile(&self.pending) {
                    Ok(()) => reconciled = true,
                    Err(e) => {
                        tracing::warn!(error = %DisplayChain(&*e), "could not settle what an earlier run left at the destination; will try again");
                    }
                }
            }
            let size = seg.size();
            inc(&self.counters.delivery_attempts);
            attempts += 1;
            let started = Instant::now();
            let delivered = self
                .dest
                .deliver(&seg, self.pending.get(1))
                .and_then(|()| Ok(self.spool.remove(&seg)?));
            match delivered {
                Ok(()) => {
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
                    match self.wake(Some(wait)) {
                        Wake::Segment(s) => self.push(s),
                        Wake::Stop(d) => deadline = Some(d),
                        Wake::Nothing => {}
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
