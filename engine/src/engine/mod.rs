//! The engine: starts the pipeline's threads, and stops them.
//!
//! [`Engine::start`] takes the spool, recovers what an earlier run left
//! there, and starts three threads: the writer (ring → format → segment), the
//! uploader (sealed segments → destination) and the disk monitor. The hot
//! path, [`Engine::capture`], is in [`capture`] on its own.

mod call;
mod capture;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

pub use call::{
    Capture, DropReason, Inference, Outcome, RejectReason, SharedCapture, SharedPayload,
};

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::error::{Error, Result};
use crate::format::{EncodingRules, LineWriter};
use crate::io::{Fs, Output, RealFs};
use crate::redact::Redactor;
use crate::ring::{Producer, ring};
use crate::sample::{GATE_DISABLED, GATE_SPOOL, GATE_WATERMARK, Sampler};
use crate::segment::{Segments, Settings};
use crate::spool::Spool;
use crate::stats::{Counters, Stats};
use crate::upload::Uploader;
use crate::watermark::{Controls, Monitor};
use crate::writer::{Control, Sink, Writer};

/// A running capture engine: a writer thread, an uploader thread, and the
/// capture path. `Engine` is `Sync`: share it (for example in an `Arc`) and
/// call [`capture`](Engine::capture) from any number of threads.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    counters: Arc<Counters>,
    sampler: Arc<Sampler>,
    ring: Producer,
    max_record_bytes: u64,
    clock: Clock,
    capture_input: bool,
    capture_output: bool,
    control: Option<Sender<Control>>,
    /// Tells the uploader its shutdown deadline.
    upload_stop: Sender<Instant>,
    writer: Option<JoinHandle<()>>,
    uploader: Option<JoinHandle<()>>,
    monitor: Option<(Sender<()>, JoinHandle<()>)>,
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
        Engine::start_with(config, Arc::new(RealFs), false)
    }

    /// [`start`](Self::start) with the spool's I/O going through `fs`: for
    /// tests that make chosen operations fail, or a file system of your own.
    pub fn start_on(config: Config, fs: Arc<dyn Fs>) -> Result<Engine> {
        Engine::start_with(config, fs, false)
    }

    /// For benchmarks of the capture path only: an engine whose writer
    /// drains the ring and discards every record (nothing is written),
    /// after reading a byte of each of its cache lines as serializing would.
    #[doc(hidden)]
    pub fn start_discarding(config: Config) -> Result<Engine> {
        Engine::start_with(config, Arc::new(RealFs), true)
    }

    fn start_with(config: Config, fs: Arc<dyn Fs>, discard: bool) -> Result<Engine> {
        let es = &config.engine;
        // Patterns were compiled once when the config was read; this cannot
        // fail for a config that came through `Config::from_json`.
        let redactor = es
            .redaction
            .as_ref()
            .map(|r| Redactor::new(r, EncodingRules::new(config.content_types.clone())))
            .transpose()
            .map_err(|e| ConfigError {
                field: "Engine.Redaction.Patterns".into(),
                rule: e.to_string(),
                value: None,
            })?;
        let spool = Spool::open(&es.spool_dir, fs.clone())?;
        let recovered = crate::recover::recover(&spool)?;
        let counters = Arc::new(Counters::default());
        let dest = crate::upload::open(&config, &spool, &counters)?;

        let (sealed_tx, sealed_rx) = crossbeam_channel::unbounded();
        let (upload_stop, stop_rx) = crossbeam_channel::bounded(1);
        let uploader = Uploader::new(
            dest,
            spool.clone(),
            sealed_rx,
            stop_rx,
            recovered,
            counters.clone(),
        );
        let uploader = spawn("capline-upload", move || uploader.run())?;

        let out = Output::new(es.io, fs)
            .map_err(|e| Error::io("set up io_uring (Engine.Io is \"uring\")", &es.spool_dir, e))?;
        tracing::info!(io = ?out.io_path(), "segment writer ready");
        crate::io::irq::log_disk_interrupt_cpus(&es.spool_dir);
        let (producer, consumer) = ring(es.ring_bytes);
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let segments = Segments::new(
            Settings {
                endpoint: &config.endpoint_name,
                variant: &config.variant_name,
                max_bytes: es.segment_max_bytes,
                max_age: es.segment_max_age,
            },
            LineWriter::new(
                EncodingRules::new(config.content_types.clone()),
                es.inference_time_millis,
            ),
            out,
            spool,
            sealed_tx,
            counters.clone(),
        );
        let clock = Clock::new(es.inference_time_millis);
        let writer = Writer {
            ring: consumer,
            control: control_rx,
            sink: Sink::new(segments, counters.clone(), clock.clone(), redactor),
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
            ring: producer,
            control: Some(control_tx),
            upload_stop,
            writer: Some(writer),
            uploader: Some(uploader),
            monitor: Some((stop_tx, monitor)),
        })
    }

    /// Waits until every record kept before this call is durable in the spool.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        let control = self.control.as_ref().ok_or(Error::ThreadGone("writer"))?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        control
            .send(Control::Flush(tx))
            .map_err(|_| Error::ThreadGone("writer"))?;
        self.wake_writer();
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

    /// Ends the writer's sleep, if it sleeps (it parks between polls).
    fn wake_writer(&self) {
        if let Some(w) = &self.writer {
            w.thread().unpark();
        }
    }

    fn stop(&mut self, deadline: Duration) -> Result<()> {
        let until = Instant::now() + deadline;
        if let Some((stop, handle)) = self.monitor.take() {
            let _ = stop.send(());
            let _ = handle.join();
        }
        // Closing the ring lets the writer drain it, seal, and exit; waking
        // it ends its sleep.
        self.ring.close();
        self.control = None;
        self.wake_writer();
        let writer_ok = self.writer.take().is_none_or(|h| h.join().is_ok());
        let _ = self.upload_stop.send(until);
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
