//! Watermark: a monitor thread that protects the host's disk.
//!
//! Every `DiskCheckIntervalMillis` it reads `statvfs` on the spool's
//! filesystem and computes usage as `df` does:
//! `used / (used + available to unprivileged users)`, with
//! `used = blocks - free`. It then decides, with hysteresis:
//!
//! - **disk gate**: closed at or above `DiskWatermarkPercent` (below 100; at
//!   100 the usage check is off), or as soon as a segment write has failed
//!   (ENOSPC, EIO); reopened once usage is below the watermark minus
//!   `DiskHysteresisPercent` and no write failed since the last check;
//! - **spool gate**: closed while undelivered segments (sealed plus the open
//!   one) reach `SpoolMaxBytes`; reopened below that cap minus the hysteresis share;
//! - **degradation** (opt-in): between `DiskSoftWatermarkPercent` and the
//!   watermark, the effective sampling rate is the configured one scaled by
//!   `(watermark - usage) / (watermark - soft)`.
//!
//! The capture path only ever sees the gate's atomic bits and the sampling
//! threshold; the monitor acts on them through [`Controls`], so this module
//! knows nothing of the stages it throttles. Every gate change is logged with
//! its reason, usage and thresholds, and counted in `gate_changes`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::stats::{Counters, inc};

/// What the monitor can change.
pub(crate) trait Controls: Send {
    /// Closes (`true`) or opens the disk gate.
    fn disk_gate(&self, closed: bool);
    /// Closes (`true`) or opens the spool-cap gate.
    fn spool_gate(&self, closed: bool);
    /// Sets the degradation factor, `0.0 ..= 1.0`.
    fn sampling_factor(&self, factor: f64);
}

/// The monitor's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) spool: PathBuf,
    pub(crate) watermark: f64,
    pub(crate) hysteresis: f64,
    pub(crate) soft: Option<f64>,
    pub(crate) spool_max: Option<u64>,
    pub(crate) interval: Duration,
}

/// Spool filesystem usage in percent, as `df` computes it.
pub(crate) fn disk_usage(path: &std::path::Path) -> std::io::Result<f64> {
    let st = rustix::fs::statvfs(path)?;
    let used = st.f_blocks.saturating_sub(st.f_bfree);
    let total = used + st.f_bavail;
    Ok(if total == 0 {
        100.0
    } else {
        used as f64 * 100.0 / total as f64
    })
}

/// The monitor thread's state.
pub(crate) struct Monitor {
    settings: Settings,
    controls: Box<dyn Controls>,
    counters: Arc<Counters>,
    disk_closed: bool,
    spool_closed: bool,
    factor: f64,
    io_errors_seen: u64,
    warned_statvfs: bool,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("settings", &self.settings)
            .field("disk_closed", &self.disk_closed)
            .field("spool_closed", &self.spool_closed)
            .finish()
    }
}

impl Monitor {
    pub(crate) fn new(
        settings: Settings,
        controls: Box<dyn Controls>,
        counters: Arc<Counters>,
    ) -> Monitor {
        Monitor {
            settings,
            controls,
            counters,
            disk_closed: false,
            spool_closed: false,
            factor: 1.0,
            io_errors_seen: 0,
            warned_statvfs: false,
        }
    }

    /// Checks once now, then every interval until `stop` fires or closes.
    pub(crate) fn run(mut self, stop: Receiver<()>) {
        loop {
            self.check();
            match stop.recv_timeout(self.settings.interval) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn check(&mut self) {
        let Settings {
            watermark,
            hysteresis,
            soft,
            spool_max,
            ..
        } = self.settings;
        let usage = match disk_usage(&self.settings.spool) {
            Ok(u) => u,
            Err(e) => {
                if !self.warned_statvfs {
                    tracing::warn!(spool = %self.settings.spool.display(), error = %e, "statvfs failed; the disk watermark cannot be checked");
                    self.warned_statvfs = true;
                }
                return;
            }
        };
        self.counters
            .disk_usage_basis_points
            .store((usage * 100.0).round() as u64, Ordering::Relaxed);
        let io_errors = self.counters.dropped_io_error.load(Ordering::Relaxed);
        let write_failed = io_errors > self.io_errors_seen;
        self.io_errors_seen = io_errors;

        let reopen_below = watermark - hysteresis;
        // At 100 % the usage check is off: only a failed write closes the gate.
        let over = watermark < 100.0 && usage >= watermark;
        if !self.disk_closed && (over || write_failed) {
            let reason = if write_failed {
                "a segment write failed"
            } else {
                "disk usage reached the watermark"
            };
            tracing::warn!(
                reason,
                usage = format!("{usage:.1}%"),
                watermark = watermark,
                reopen_below,
                "capture gate closed"
            );
            self.set_disk(true);
        } else if self.disk_closed && usage < reopen_below && !write_failed {
            tracing::warn!(
                usage = format!("{usage:.1}%"),
                watermark = watermark,
                reopen_below,
                "capture gate reopened: disk usage is below the watermark minus hysteresis"
            );
            self.set_disk(false);
        }

        if let Some(max) = spool_max {
            let spool = self.counters.spool_sealed_bytes.load(Ordering::Relaxed)
                + self.counters.spool_active_bytes.load(Ordering::Relaxed);
            let reopen = (max as f64 * (1.0 - hysteresis / 100.0)) as u64;
            if !self.spool_closed && spool >= max {
                tracing::warn!(
                    spool_bytes = spool,
                    spool_max = max,
                    reopen_below = reopen,
                    "capture gate closed: undelivered segments reached SpoolMaxBytes"
                );
                self.set_spool(true);
            } else if self.spool_closed && spool < reopen {
                tracing::warn!(
                    spool_bytes = spool,
                    spool_max = max,
                    "capture gate reopened: the spool drained below its cap minus hysteresis"
                );
                self.set_spool(false);
            }
        }

        if let Some(soft) = soft {
            let factor = if usage <= soft {
                1.0
            } else if usage >= watermark {
                0.0
            } else {
                (watermark - usage) / (watermark - soft)
            };
            if (factor == 1.0) != (self.factor == 1.0) {
                tracing::warn!(
                    usage = format!("{usage:.1}%"),
                    soft,
                    watermark = watermark,
                    factor,
                    "disk pressure: effective sampling rate {}",
                    if factor < 1.0 { "reduced" } else { "restored" }
                );
            }
            if factor != self.factor {
                self.controls.sampling_factor(factor);
                self.factor = factor;
            }
        }
    }

    fn set_disk(&mut self, closed: bool) {
        self.controls.disk_gate(closed);
        self.disk_closed = closed;
        inc(&self.counters.gate_changes);
    }

    fn set_spool(&mut self, closed: bool) {
        self.controls.spool_gate(closed);
        self.spool_closed = closed;
        inc(&self.counters.gate_changes);
    }
}
