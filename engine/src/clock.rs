//! Clock: cheap capture-time stamps, turned into wall-clock time off the hot path.
//! A leaf module.
//!
//! `capture()` must stamp every kept record, and `SystemTime::now()` costs a
//! vDSO `clock_gettime` of the precise clock plus a conversion. The capture
//! path reads one of two cheaper clocks instead, chosen at start:
//!
//! - **Coarse** (the default, when `inferenceTime` is written in whole
//!   seconds): `CLOCK_REALTIME_COARSE` through the vDSO, which reads the time
//!   the kernel stored at its last tick (up to one tick ago: 1–10 ms, by
//!   `CONFIG_HZ`) and no hardware counter, so it never falls back to a system
//!   call. Stored as Unix milliseconds.
//! - **Counter** (`InferenceTimeMillis: true`, where a tick's error would show):
//!   `quanta`'s raw counter (the TSC where it is invariant, otherwise the
//!   monotonic clock), stored with the top bit set. The writer converts raw
//!   stamps to Unix milliseconds against an anchor pair (raw, wall clock) that
//!   it refreshes every flush interval, so wall-clock steps (NTP) are followed.
//!
//! A time the caller supplied is stored as Unix milliseconds with the top bit clear.

use std::time::{SystemTime, UNIX_EPOCH};

use rustix::time::{ClockId, clock_gettime};

/// Marks a stamp as a raw counter value rather than Unix milliseconds.
const RAW: u64 = 1 << 63;

/// First instant that no longer fits `YYYY` (10000-01-01T00:00:00Z), in milliseconds.
pub(crate) const MAX_TIME_MILLIS: u64 = 253_402_300_800_000;

/// The clock the capture path reads.
#[derive(Debug, Clone)]
pub(crate) enum Clock {
    /// `CLOCK_REALTIME_COARSE`, in Unix milliseconds.
    Coarse,
    /// A CPU counter, converted by the writer.
    Counter(quanta::Clock),
}

impl Clock {
    /// The coarse clock when `millis` is false; otherwise the counter, which
    /// is calibrated once per process (quanta caps this at a few hundred ms).
    pub(crate) fn new(millis: bool) -> Self {
        if millis {
            return Clock::Counter(quanta::Clock::new());
        }
        // The first read resolves the vDSO symbol; do it here, not in a capture.
        let _ = coarse_millis();
        Clock::Coarse
    }

    /// A stamp for "now": one read of the clock. `None` if the wall clock is
    /// before 1970 or after year 9999 (or the counter overflowed its 63 bits).
    #[inline]
    pub(crate) fn stamp(&self) -> Option<u64> {
        match self {
            Clock::Coarse => coarse_millis().filter(|ms| *ms < MAX_TIME_MILLIS),
            Clock::Counter(c) => {
                let raw = c.raw();
                (raw & RAW == 0).then_some(raw | RAW)
            }
        }
    }

    /// A stamp for a time the caller gave, in Unix milliseconds.
    #[inline]
    pub(crate) fn stamp_millis(millis: u64) -> u64 {
        millis & !RAW
    }
}

/// `CLOCK_REALTIME_COARSE` in Unix milliseconds (through the vDSO).
#[inline]
fn coarse_millis() -> Option<u64> {
    let t = clock_gettime(ClockId::RealtimeCoarse);
    let secs = u64::try_from(t.tv_sec).ok()?;
    Some(secs.saturating_mul(1000) + t.tv_nsec as u64 / 1_000_000)
}

/// A (counter, wall clock in nanoseconds) pair read back to back.
fn anchor(clock: &quanta::Clock) -> (u64, u128) {
    let raw = clock.raw();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (raw, wall)
}

/// Converts stamps to Unix milliseconds (owned by the writer).
#[derive(Debug)]
pub(crate) struct TimeBase {
    /// The counter and its anchor pair; `None` with the coarse clock, whose
    /// stamps are already Unix milliseconds.
    counter: Option<(quanta::Clock, u64, u128)>,
}

impl TimeBase {
    pub(crate) fn new(clock: Clock) -> Self {
        TimeBase {
            counter: match clock {
                Clock::Coarse => None,
                Clock::Counter(c) => {
                    let (raw, wall) = anchor(&c);
                    Some((c, raw, wall))
                }
            },
        }
    }

    /// Takes a fresh (counter, wall clock) pair.
    pub(crate) fn reanchor(&mut self) {
        if let Some((c, raw, wall)) = &mut self.counter {
            (*raw, *wall) = anchor(c);
        }
    }

    /// Unix milliseconds of a stamp.
    pub(crate) fn unix_millis(&self, stamp: u64) -> u64 {
        let (Some((clock, anchor_raw, wall_nanos)), true) = (&self.counter, stamp & RAW != 0)
        else {
            return stamp & !RAW;
        };
        let (anchor_raw, wall_nanos) = (*anchor_raw, *wall_nanos);
        let raw = stamp & !RAW;
        let nanos = if raw >= anchor_raw {
            wall_nanos + u128::from(clock.delta_as_nanos(anchor_raw, raw))
        } else {
            wall_nanos.saturating_sub(u128::from(clock.delta_as_nanos(raw, anchor_raw)))
        };
        // In 64 bits while the instant fits (until 2554): a 128-bit
        // division is a library call, once a record.
        match u64::try_from(nanos) {
            Ok(n) => n / 1_000_000,
            Err(_) => u64::try_from(nanos / 1_000_000).unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_millis() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[test]
    fn coarse_stamps_are_the_wall_clock_within_a_tick() {
        let clock = Clock::new(false);
        let base = TimeBase::new(clock.clone());
        for _ in 0..1000 {
            let before = now_millis();
            let ms = base.unix_millis(clock.stamp().unwrap());
            let after = now_millis();
            // The coarse clock lags by at most one tick (1-10 ms for HZ 1000-100).
            assert!(
                ms + 10 >= before && ms <= after,
                "{before} <= {ms} <= {after}"
            );
        }
    }

    #[test]
    fn raw_stamps_convert_to_the_wall_clock() {
        let clock = Clock::new(true);
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let stamp = clock.stamp().unwrap();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        std::thread::sleep(std::time::Duration::from_millis(20));
        let base = TimeBase::new(clock.clone());
        let ms = base.unix_millis(stamp);
        assert!(
            ms + 2 >= before && ms <= after + 2,
            "{before} <= {ms} <= {after}"
        );
        assert_eq!(base.unix_millis(Clock::stamp_millis(1234)), 1234);
    }
}
