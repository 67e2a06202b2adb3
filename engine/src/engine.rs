//! The engine and its hot path, [`Engine::capture`].
//!
//! `capture()` is called on every inference by server threads. It checks the
//! gate, draws the sampling decision, validates what it must, and copies a
//! kept pair into the ring for the writer thread. It never blocks on the writer
//! or on I/O; a record it cannot keep is dropped and counted with its reason.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;

use crate::clock::Clock;
use crate::config::{Config, ConfigError, Destination};
pub use crate::format::Payload;
use crate::format::{EncodingRules, LineWriter, is_valid_inference_id};
use crate::io::Spool;
use crate::ring::{RecordParts, Ring, ring};
use crate::sample::{Closed, GATE_DISABLED, GATE_SPOOL, GATE_WATERMARK, Sampler};
use crate::segment::{Segments, Settings};
use crate::stats::{Counters, Stats, inc};
use crate::upload::{Dest, LocalDir, Msg, Uploader};
#[cfg(feature = "s3")]
use crate::upload_s3::S3Dest;
use crate::watermark::{Controls, Monitor};
use crate::writer::{Control, Sink, Writer};
use crate::{Error, Result};

/// Longest accepted Content-Type header, in bytes.
pub const MAX_CONTENT_TYPE: usize = 1024;

/// First instant that no longer fits `YYYY` (10000-01-01T00:00:00Z), in milliseconds.
const MAX_TIME_MILLIS: u64 = 253_402_300_800_000;

/// One inference to capture.
#[derive(Debug, Clone, Copy)]
pub struct Capture<'a> {
    /// The request: its Content-Type and body.
    pub request: Payload<'a>,
    /// The response: its Content-Type and body.
    pub response: Payload<'a>,
    /// The caller's inference id (`X-Amzn-SageMaker-Inference-Id`): 1–64 printable ASCII characters.
    pub inference_id: Option<&'a str>,
    /// When the inference happened; `None` means now.
    pub time: Option<SystemTime>,
}

/// What `capture()` did with a call. Every call has exactly one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Queued for writing.
    Kept,
    /// Not selected by sampling.
    SampledOut,
    /// Not kept, for a reason that is not the caller's fault.
    Dropped(DropReason),
    /// Not kept because the call's data broke a rule.
    Rejected(RejectReason),
}

/// Why a call was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Capture is disabled.
    Disabled,
    /// The disk watermark (or a failed segment write) closed the gate.
    Watermark,
    /// Undelivered segments reached `SpoolMaxBytes`.
    SpoolFull,
    /// The ring had no room (the writer is behind).
    RingFull,
    /// The record is larger than `MaxRecordBytes`.
    TooLarge,
}

/// Why a call was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The inference id is empty, longer than 64 bytes, starts with a space, or is not printable ASCII.
    InferenceId,
    /// A content type is longer than [`MAX_CONTENT_TYPE`] bytes.
    ContentType,
    /// The time is before 1970 or after year 9999.
    Time,
}

/// A running capture engine: a writer thread, an uploader thread, and the
/// capture path. `Engine` is `Sync`: share it (for example in an `Arc`) and
/// call [`capture`](Engine::capture) from any number of threads.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    counters: Arc<Counters>,
    sampler: Arc<Sampler>,
    ring: Ring,
    max_record_bytes: u64,
    clock: Clock,
    capture_input: bool,
    capture_output: bool,
    control: Option<Sender<Control>>,
    upload_tx: Sender<Msg>,
    writer: Option<JoinHandle<()>>,
    uploader: Option<JoinHandle<()>>,
    monitor: Option<(Sender<()>, JoinHandle<()>)>,
    _spool: Spool,
}

fn spawn<F: FnOnce() + Send + 'static>(name: &str, f: F) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::io("spawn thread", name, e))
}

impl Engine {
    /// Starts an engine: takes the spool, recovers what an earlier run left
    /// there, and starts the writer and uploader threads.
    pub fn start(config: Config) -> Result<Engine> {
        Engine::start_with(config, false)
    }

    /// For benchmarks of the capture path only: an engine whose writer
    /// drains the ring and discards every record (nothing is written).
    #[doc(hidden)]
    pub fn start_discarding(config: Config) -> Result<Engine> {
        Engine::start_with(config, true)
    }

    fn start_with(config: Config, discard: bool) -> Result<Engine> {
        let es = &config.engine;
        let spool = Spool::open(&es.spool_dir)?;
        let recovered = crate::recover::recover(&spool)?;
        let counters = Arc::new(Counters::default());
        let dest = match &config.destination {
            Destination::Local { dir } => Dest::Local(LocalDir::new(dir.clone())),
            #[cfg(feature = "s3")]
            Destination::S3 { bucket, prefix } => Dest::S3(Box::new(
                S3Dest::new(
                    bucket,
                    prefix,
                    config.kms_key_id.clone(),
                    &es.s3,
                    spool.uploads.clone(),
                    counters.clone(),
                )
                .map_err(|e| Error::io("start the S3 client runtime", &es.spool_dir, e))?,
            )),
            #[cfg(not(feature = "s3"))]
            Destination::S3 { .. } => return Err(Error::S3NotBuilt),
        };

        let (upload_tx, upload_rx) = crossbeam_channel::unbounded();
        let uploader = Uploader::new(dest, upload_rx, recovered, counters.clone());
        let uploader = spawn("capline-upload", move || uploader.run())?;

        let out = crate::io::Output::new(es.io)
            .map_err(|e| Error::io("set up io_uring (Engine.Io is \"uring\")", &es.spool_dir, e))?;
        tracing::info!(io = ?out.io_path(), "segment writer ready");
        let (ring, reader) = ring(es.ring_bytes);
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let segments = Segments::new(
            Settings {
                endpoint: &config.endpoint_name,
                variant: &config.variant_name,
                active_dir: &spool.active,
                sealed_dir: &spool.sealed,
                max_bytes: es.segment_max_bytes,
                max_age: es.segment_max_age,
            },
            out,
            upload_tx.clone(),
            counters.clone(),
        );
        let lines = LineWriter::new(
            EncodingRules::new(config.content_types.clone()),
            es.inference_time_millis,
        );
        let clock = Clock::new();
        let writer = Writer {
            ring: reader,
            control: control_rx,
            sink: Sink::new(lines, segments, counters.clone(), clock.clone()),
            flush_interval: es.flush_interval,
            discard,
        };
        let writer = spawn("capline-writer", move || writer.run())?;

        let sampler = Arc::new(Sampler::new(
            config.enable_capture,
            config.sampling_percentage,
            es.sampling_mode,
        ));
        let monitor = Monitor::new(
            crate::watermark::Settings {
                spool: es.spool_dir.clone(),
                watermark: es.disk_watermark_percent,
                hysteresis: es.disk_hysteresis_percent,
                soft: es.disk_soft_watermark_percent,
                spool_max: es.spool_max_bytes,
                interval: es.disk_check_interval,
            },
            Box::new(Gates(sampler.clone())),
            counters.clone(),
        );
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let monitor = spawn("capline-disk", move || monitor.run(stop_rx))?;

        Ok(Engine {
            sampler,
            max_record_bytes: es.max_record_bytes,
            clock,
            capture_input: config.capture_mode.input(),
            capture_output: config.capture_mode.output(),
            config,
            counters,
            ring,
            control: Some(control_tx),
            upload_tx,
            writer: Some(writer),
            uploader: Some(uploader),
            monitor: Some((stop_tx, monitor)),
            _spool: spool,
        })
    }

    /// Offers one inference for capture. Never blocks, never takes a lock,
    /// never makes a syscall and never allocates; returns what happened.
    pub fn capture(&self, c: &Capture) -> Outcome {
        let n = self.counters.stripe();
        match self.sampler.gate() {
            None => {}
            Some(Closed::Disabled) => {
                inc(&n.dropped_disabled);
                return Outcome::Dropped(DropReason::Disabled);
            }
            Some(Closed::Watermark) => {
                inc(&n.dropped_watermark);
                return Outcome::Dropped(DropReason::Watermark);
            }
            Some(Closed::SpoolFull) => {
                inc(&n.dropped_spool_full);
                return Outcome::Dropped(DropReason::SpoolFull);
            }
        }
        if !self.sampler.keep(c.inference_id) {
            inc(&n.sampled_out);
            return Outcome::SampledOut;
        }
        if c.inference_id.is_some_and(|id| !is_valid_inference_id(id)) {
            inc(&n.rejected_inference_id);
            return Outcome::Rejected(RejectReason::InferenceId);
        }
        if c.request.content_type.len() > MAX_CONTENT_TYPE
            || c.response.content_type.len() > MAX_CONTENT_TYPE
        {
            inc(&n.rejected_content_type);
            return Outcome::Rejected(RejectReason::ContentType);
        }
        let stamp = match c.time {
            // One counter read; the writer turns it into wall-clock time.
            None => self.clock.stamp(),
            Some(t) => t
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_millis())
                .filter(|ms| *ms < u128::from(MAX_TIME_MILLIS))
                .map(|ms| Clock::stamp_millis(ms as u64)),
        };
        let Some(stamp) = stamp else {
            inc(&n.rejected_time);
            return Outcome::Rejected(RejectReason::Time);
        };
        let rec = RecordParts {
            input: self.capture_input.then_some(c.request),
            output: self.capture_output.then_some(c.response),
            inference_id: c.inference_id,
            stamp,
        };
        let size = rec.size();
        if size > self.max_record_bytes {
            inc(&n.dropped_too_large);
            return Outcome::Dropped(DropReason::TooLarge);
        }
        if !self.ring.try_push_sized(&rec, size) {
            inc(&n.dropped_ring_full);
            return Outcome::Dropped(DropReason::RingFull);
        }
        inc(&n.kept);
        Outcome::Kept
    }

    /// Waits until every record kept before this call is durable in the spool.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let control = self.control.as_ref().ok_or(Error::ThreadGone("writer"))?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        control
            .send(Control::Flush(tx))
            .map_err(|_| Error::ThreadGone("writer"))?;
        match rx.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(Error::Timeout(timeout)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                Err(Error::ThreadGone("writer"))
            }
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut s = self.counters.snapshot();
        s.sampling_percentage = self.sampler.percentage();
        s.effective_sampling_percentage = self.sampler.effective_percentage();
        s.capture_enabled = self.sampler.enabled();
        s.gate_watermark_closed = self.sampler.gate_has(GATE_WATERMARK);
        s.gate_spool_closed = self.sampler.gate_has(GATE_SPOOL);
        s
    }

    /// Changes the sampling rate for the next call on every thread. Fractions are allowed.
    pub fn set_sampling_percentage(&self, percent: f64) -> Result<(), ConfigError> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(ConfigError {
                field: "sampling_percentage".into(),
                rule: "must be a number from 0 to 100".into(),
                value: Some(percent.to_string()),
            });
        }
        self.sampler.set_percentage(percent);
        Ok(())
    }

    /// Turns capture on or off for the next call on every thread.
    pub fn set_enabled(&self, on: bool) {
        self.sampler.set_gate(GATE_DISABLED, on);
    }

    /// The config the engine was started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stops the engine: writes every kept record, seals the open segment, and
    /// delivers sealed segments until `deadline` has passed. What is not
    /// delivered by then stays in the spool and is delivered at the next start.
    /// Returns the final counters.
    pub fn shutdown(mut self, deadline: Duration) -> Result<Stats> {
        self.stop(deadline)?;
        Ok(self.stats())
    }

    fn stop(&mut self, deadline: Duration) -> Result<()> {
        let until = Instant::now() + deadline;
        if let Some((stop, handle)) = self.monitor.take() {
            let _ = stop.send(());
            let _ = handle.join();
        }
        // Closing the ring lets the writer drain it, seal, and exit; dropping
        // the control sender wakes it if it is asleep.
        self.ring.close();
        self.control = None;
        let writer_ok = self.writer.take().is_none_or(|h| h.join().is_ok());
        let _ = self.upload_tx.send(Msg::Shutdown(until));
        let uploader_ok = self.uploader.take().is_none_or(|h| h.join().is_ok());
        match (writer_ok, uploader_ok) {
            (true, true) => Ok(()),
            (false, _) => Err(Error::ThreadGone("writer")),
            (_, false) => Err(Error::ThreadGone("uploader")),
        }
    }
}

/// The disk monitor's hands on the capture gate and the sampling rate.
struct Gates(Arc<Sampler>);

impl Controls for Gates {
    fn disk_gate(&self, closed: bool) {
        self.0.set_gate(GATE_WATERMARK, !closed);
    }
    fn spool_gate(&self, closed: bool) {
        self.0.set_gate(GATE_SPOOL, !closed);
    }
    fn sampling_factor(&self, factor: f64) {
        self.0.set_factor(factor);
    }
}

impl Drop for Engine {
    /// Shuts down with a 5 s delivery deadline if [`Engine::shutdown`] was not called.
    fn drop(&mut self) {
        if self.writer.is_some() || self.uploader.is_some() || self.monitor.is_some() {
            let _ = self.stop(Duration::from_secs(5));
        }
    }
}
