//! Clock: cheap capture-time stamps, turned into wall-clock time off the hot path.
//! A leaf module.
//!
//! `capture()` must stamp every kept record, and `SystemTime::now()` costs a
//! vDSO `clock_gettime` plus a conversion. Instead the capture path reads
//! `quanta`'s raw counter (the TSC where it is invariant, otherwise the
//! monotonic clock) and stores it with the top bit set. The writer converts raw
//! stamps to Unix milliseconds against an anchor pair (raw, wall clock) that it
//! refreshes every flush interval, so wall-clock steps (NTP) are followed.
//! A time the caller supplied is stored as Unix milliseconds with the top bit clear.

use std::time::{SystemTime, UNIX_EPOCH};

/// Marks a stamp as a raw counter value rather than Unix milliseconds.
const RAW: u64 = 1 << 63;

/// The counter the capture path reads.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    inner: quanta::Clock,
}

impl Clock {
    /// Calibrates the counter once per process (quanta caps this at a few hundred ms).
    pub(crate) fn new() -> Self {
        Clock {
            inner: quanta::Clock::new(),
        }
    }

    /// A stamp for "now": one counter read.
    #[inline]
    pub(crate) fn stamp(&self) -> Option<u64> {
        let raw = self.inner.raw();
        (raw & RAW == 0).then_some(raw | RAW)
    }

    /// A stamp for a time the caller gave, in Unix milliseconds.
    #[inline]
    pub(crate) fn stamp_millis(millis: u64) -> u64 {
        millis & !RAW
    }

    fn anchor(&self) -> (u64, u128) {
        let raw = self.inner.raw();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        (raw, wall)
    }
}

/// Converts stamps to Unix milliseconds (owned by the writer).
#[derive(Debug)]
pub(crate) struct TimeBase {
    clock: Clock,
    raw: u64,
    wall_nanos: u128,
}

impl TimeBase {
    pub(crate) fn new(clock: Clock) -> Self {
        let (raw, wall_nanos) = clock.anchor();
        TimeBase {
            clock,
            raw,
            wall_nanos,
        }
    }

    /// Takes a fresh (counter, wall clock) pair.
    pub(crate) fn reanchor(&mut self) {
        (self.raw, self.wall_nanos) = self.clock.anchor();
    }

    /// Unix milliseconds of a stamp.
    pub(crate) fn unix_millis(&self, stamp: u64) -> u64 {
        if stamp & RAW == 0 {
            return stamp;
        }
        let raw = stamp & !RAW;
        let nanos = if raw >= self.raw {
            self.wall_nanos + u128::from(self.clock.inner.delta_as_nanos(self.raw, raw))
        } else {
            self.wall_nanos
                .saturating_sub(u128::from(self.clock.inner.delta_as_nanos(raw, self.raw)))
        };
        u64::try_from(nanos / 1_000_000).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_stamps_convert_to_the_wall_clock() {
        let clock = Clock::new();
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
