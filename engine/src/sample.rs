//! Sample: the capture gate and the sampling decision.
//!
//! **Gate.** One `AtomicU32` folds together every reason capture may be
//! closed: bit 0 is "disabled" (`set_enabled(false)`), bit 1 is "disk
//! watermark" (or a failed segment write), bit 2 is "spool full"
//! (`SpoolMaxBytes`). The hot path does one relaxed load and compares with zero.
//!
//! **Threshold.** The sampling rate is stored as `p / 100 * 2^63` in an
//! `AtomicU64`. A call is kept when a 63-bit value is below it: 0 % keeps none,
//! 100 % (2^63) keeps all, and a value kept at `p` is kept at every `q > p`
//! (the rule is monotonic). The threshold is derived from two inputs set by
//! different threads: the configured percentage (the admin API, the C ABI)
//! and the degradation factor (the disk monitor). Setters take a small mutex
//! of their own, so each derives the threshold from the latest values of
//! both and no update is lost; the capture path never touches that mutex: it
//! only loads the threshold, with no lock and no restart.
//!
//! **The 63-bit value.** In random mode, and for calls without an inference id,
//! it is a thread-local wyrand draw (`fastrand`). In deterministic mode it is
//! `xxh3_64(inference_id bytes, seed 0) >> 1`: XXH3-64 is a fixed, published
//! function, so every replica, version and machine keeps the same ids.

#[cfg(capline_loom)]
use loom::sync::{
    Mutex,
    atomic::{AtomicU32, AtomicU64, Ordering},
};
#[cfg(not(capline_loom))]
use std::sync::{
    Mutex,
    atomic::{AtomicU32, AtomicU64, Ordering},
};

use crate::config::SamplingMode;

const ONE: f64 = (1u64 << 63) as f64;

/// Gate bit: capture disabled by the operator or the config.
pub(crate) const GATE_DISABLED: u32 = 1;
/// Gate bit: the disk watermark monitor closed the gate.
pub(crate) const GATE_WATERMARK: u32 = 2;
/// Gate bit: undelivered segments reached `SpoolMaxBytes`.
pub(crate) const GATE_SPOOL: u32 = 4;

/// The deterministic sampling value of an inference id: `xxh3_64(id, seed 0) >> 1`.
///
/// Out of line since `capture()` was split (DECISIONS.md, "The gate alone
/// in `capture()`"): inlined into the one function `capture()` was, its
/// registers were saved on every call, disabled ones too.
#[inline(never)]
pub fn deterministic_value(inference_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(inference_id.as_bytes()) >> 1
}

/// The gate and the sampling rate.
#[derive(Debug)]
pub(crate) struct Sampler {
    /// Zero when open; otherwise the `GATE_*` bits of every closing reason.
    gate: AtomicU32,
    /// Keep when `value < threshold`; in range `0 ..= 2^63`. Derived from
    /// `inputs`, and stored only while holding them.
    threshold: AtomicU64,
    /// The configured percentage, as `f64` bits: a copy of
    /// `inputs.percent`, for reading without the mutex.
    configured: AtomicU64,
    /// What the threshold is derived from; setters only.
    inputs: Mutex<Inputs>,
    deterministic: bool,
}

/// The inputs of the threshold.
#[derive(Debug, Clone, Copy)]
struct Inputs {
    /// The configured percentage, `0.0 ..= 100.0`.
    percent: f64,
    /// The degradation factor, `0.0 ..= 1.0`.
    factor: f64,
}

fn threshold_for(percent: f64) -> u64 {
    if percent >= 100.0 {
        1u64 << 63
    } else {
        (percent / 100.0 * ONE) as u64
    }
}

/// Why the gate is closed, from its bits (disabled wins, then the disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    Disabled,
    Watermark,
    SpoolFull,
}

impl Sampler {
    pub(crate) fn new(enabled: bool, percent: f64, mode: SamplingMode) -> Self {
        Sampler {
            gate: AtomicU32::new(if enabled { 0 } else { GATE_DISABLED }),
            threshold: AtomicU64::new(threshold_for(percent)),
            configured: AtomicU64::new(percent.to_bits()),
            inputs: Mutex::new(Inputs {
                percent,
                factor: 1.0,
            }),
            deterministic: mode == SamplingMode::Deterministic,
        }
    }

    /// `None` when the gate is open; otherwise why it is closed. One relaxed load.
    #[inline]
    pub(crate) fn gate(&self) -> Option<Closed> {
        match self.gate.load(Ordering::Relaxed) {
            0 => None,
            g if g & GATE_DISABLED != 0 => Some(Closed::Disabled),
            g if g & GATE_WATERMARK != 0 => Some(Closed::Watermark),
            _ => Some(Closed::SpoolFull),
        }
    }

    /// One sampling decision for a call with this inference id.
    #[inline]
    pub(crate) fn keep(&self, inference_id: Option<&str>) -> bool {
        let value = match inference_id {
            Some(id) if self.deterministic => deterministic_value(id),
            _ => fastrand::u64(..) >> 1,
        };
        value < self.threshold.load(Ordering::Relaxed)
    }

    /// Opens (`true`) or closes the gate's `bit`.
    pub(crate) fn set_gate(&self, bit: u32, open: bool) {
        if open {
            self.gate.fetch_and(!bit, Ordering::Relaxed);
        } else {
            self.gate.fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// Whether the "disabled" bit is clear (the watermark may still close the gate).
    pub(crate) fn enabled(&self) -> bool {
        self.gate.load(Ordering::Relaxed) & GATE_DISABLED == 0
    }

    /// `percent` must already be checked to lie in `0.0..=100.0`.
    pub(crate) fn set_percentage(&self, percent: f64) {
        self.update(|i| i.percent = percent);
    }

    /// Scales the configured rate by `factor` (`0.0 ..= 1.0`): graceful degradation.
    pub(crate) fn set_factor(&self, factor: f64) {
        self.update(|i| i.factor = factor.clamp(0.0, 1.0));
    }

    /// Changes an input and stores the threshold for both, under the
    /// setters' mutex (nothing in it can panic; a poisoned lock is still used).
    fn update(&self, change: impl FnOnce(&mut Inputs)) {
        let mut inputs = self
            .inputs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut inputs);
        self.configured
            .store(inputs.percent.to_bits(), Ordering::Relaxed);
        self.threshold.store(
            threshold_for(inputs.percent * inputs.factor),
            Ordering::Relaxed,
        );
    }

    /// The configured percentage.
    pub(crate) fn percentage(&self) -> f64 {
        f64::from_bits(self.configured.load(Ordering::Relaxed))
    }

    /// The percentage in force after degradation.
    pub(crate) fn effective_percentage(&self) -> f64 {
        self.threshold.load(Ordering::Relaxed) as f64 / ONE * 100.0
    }

    /// Whether the gate has `bit` set (closed for that reason).
    pub(crate) fn gate_has(&self, bit: u32) -> bool {
        self.gate.load(Ordering::Relaxed) & bit != 0
    }
}

#[cfg(all(test, not(capline_loom)))]
mod tests {
    use super::*;

    #[test]
    fn gate_bits_fold_together() {
        let s = Sampler::new(true, 50.0, SamplingMode::Random);
        assert_eq!(s.gate(), None);
        s.set_gate(GATE_WATERMARK, false);
        assert_eq!(s.gate(), Some(Closed::Watermark));
        s.set_gate(GATE_DISABLED, false);
        assert_eq!(s.gate(), Some(Closed::Disabled), "disabled wins");
        s.set_gate(GATE_DISABLED, true);
        assert_eq!(s.gate(), Some(Closed::Watermark));
        s.set_gate(GATE_WATERMARK, true);
        assert_eq!(s.gate(), None);
    }

    #[test]
    fn deterministic_value_is_fixed() {
        // The XXH3-64 test vector for empty input (seed 0), shifted right by
        // one: a published function, so this value must never change.
        assert_eq!(deterministic_value(""), 0x2d06800538d394c2 >> 1);
    }

    #[test]
    fn concurrent_setters_lose_no_update() {
        // The admin API (percentage) and the disk monitor (factor) race; after
        // both finish, the threshold must be the one for their last values.
        for round in 0..2_000 {
            let s = std::sync::Arc::new(Sampler::new(true, 100.0, SamplingMode::Random));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let (p, f) = (10.0 + (round % 80) as f64, 0.25 + (round % 3) as f64 / 4.0);
            let t = {
                let (s, barrier) = (s.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    s.set_factor(f);
                })
            };
            barrier.wait();
            s.set_percentage(p);
            t.join().unwrap();
            assert_eq!(
                s.threshold.load(Ordering::Relaxed),
                threshold_for(p * f),
                "round {round}: {p} % x {f}"
            );
            assert!((s.effective_percentage() - p * f).abs() < 1e-9);
        }
    }
}

/// Loom model check of the setters. Run with
/// `RUSTFLAGS="--cfg capline_loom" cargo test -p capline --release --lib sample::loom_tests`.
#[cfg(all(test, capline_loom))]
mod loom_tests {
    use super::*;

    /// A percentage and a factor set at once, under every interleaving: the
    /// threshold in force afterwards is the product of both.
    #[test]
    fn concurrent_setters_lose_no_update() {
        loom::model(|| {
            let s = std::sync::Arc::new(Sampler::new(true, 100.0, SamplingMode::Random));
            let s2 = s.clone();
            let t = loom::thread::spawn(move || s2.set_factor(0.5));
            s.set_percentage(40.0);
            t.join().unwrap();
            assert_eq!(s.threshold.load(Ordering::Relaxed), threshold_for(20.0));
        });
    }
}
