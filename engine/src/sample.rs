//! Sample: the gate and the sampling decision, both one relaxed atomic load.
//!
//! The threshold is stored as `p / 100 * 2^63` in an `AtomicU64`; a call is kept
//! when a 63-bit random draw is below it, so 0 % keeps none and 100 % (2^63)
//! keeps all. Setters store with `Relaxed`: the next call on any thread sees
//! the new value without a lock or a restart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const ONE: f64 = (1u64 << 63) as f64;

/// The capture gate and sampling rate.
#[derive(Debug)]
pub(crate) struct Sampler {
    enabled: AtomicBool,
    /// Keep when `draw < threshold`; in range `0 ..= 2^63`.
    threshold: AtomicU64,
}

fn threshold_for(percent: f64) -> u64 {
    if percent >= 100.0 {
        1u64 << 63
    } else {
        (percent / 100.0 * ONE) as u64
    }
}

impl Sampler {
    pub(crate) fn new(enabled: bool, percent: f64) -> Self {
        Sampler {
            enabled: AtomicBool::new(enabled),
            threshold: AtomicU64::new(threshold_for(percent)),
        }
    }

    /// Whether the gate is open.
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// One random sampling decision.
    #[inline]
    pub(crate) fn keep(&self) -> bool {
        (fastrand::u64(..) >> 1) < self.threshold.load(Ordering::Relaxed)
    }

    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// `percent` must already be checked to lie in `0.0..=100.0`.
    pub(crate) fn set_percentage(&self, percent: f64) {
        self.threshold
            .store(threshold_for(percent), Ordering::Relaxed);
    }

    pub(crate) fn percentage(&self) -> f64 {
        self.threshold.load(Ordering::Relaxed) as f64 / ONE * 100.0
    }
}
