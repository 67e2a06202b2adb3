//! The writer thread: drains the ring, redacts each record's bodies (when
//! `Engine.Redaction` is set), formats the record as a line, and appends it
//! to the open segment. It makes segments durable every
//! `FlushIntervalMillis` (the `fdatasync` then runs while it goes on),
//! on `flush()` (which answers once it has finished), and when sealing.
//!
//! Producers never wake the writer (that would be a syscall on the capture
//! path). It polls: while records arrive it loops without sleeping; when the
//! ring is empty it parks for 1 ms, doubling while records come in slowly
//! (to 33.5 ms with the default ring, [`idle_max`]) or not at all (to 10
//! ms), and back to 1 ms once a wake finds more than a 16th of the ring
//! filled since the last ([`next_idle`]). A `flush()` request or shutdown
//! unparks it at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use rand::{SeedableRng, rngs::SmallRng};

use crate::clock::{Clock, TimeBase};
use crate::format::Event;
use crate::redact::{Redactor, Verdict};
use crate::ring::{Consumer, Pop, RecordParts};
use crate::segment::{Segments, uuid_v4};
use crate::stats::{Counters, add, inc};
use crate::timestamp::Timestamps;

const IDLE_MIN: Duration = Duration::from_millis(1);
/// The longest sleep after one that brought no record: a ring that stays
/// empty may be at the start of a burst, which should not wait long for the
/// writer (nor leave the disk idle).
const IDLE_EMPTY_MAX: Duration = Duration::from_millis(10);
/// While records come in, the longest sleep is the time a burst of
/// [`BURST_BYTES_PER_SEC`] takes to fill half the ring, from
/// [`IDLE_EMPTY_MAX`] (rings of 20 MB or less) to this: 33.5 ms for the
/// default 64 MiB ring ([`idle_max`]).
const IDLE_MAX_CEIL: Duration = Duration::from_millis(40);
/// The burst a sleeping writer must be able to absorb: bytes a second.
const BURST_BYTES_PER_SEC: u128 = 1_000_000_000;
/// A wake that finds more than `capacity / REFILL_SHARE` bytes filled since
/// the previous one brings the sleep back to [`IDLE_MIN`].
const REFILL_SHARE: u64 = 16;
/// Records taken per pass before looking at timers and requests.
const PASS: usize = 4096;

/// The longest sleep while records come in, for a ring of `capacity` bytes.
fn idle_max(capacity: u64) -> Duration {
    let half_ring_ns = u128::from(capacity / 2) * 1_000_000_000 / BURST_BYTES_PER_SEC;
    Duration::from_nanos(u64::try_from(half_ring_ns).unwrap_or(u64::MAX))
        .clamp(IDLE_EMPTY_MAX, IDLE_MAX_CEIL)
}

/// How long to park when the ring is found empty, given `idle`, the last
/// sleep, and `filled`, the bytes of records taken since the writer last
/// parked, out of a ring of `capacity`. While records come in slowly the
/// sleep doubles up to [`idle_max`]; once a wake finds more than a 16th of
/// the ring filled it is [`IDLE_MIN`] again; a wake that found nothing
/// sleeps at most [`IDLE_EMPTY_MAX`]. At a steady rate the ring then stays
/// under about an 8th full between wakes, and a server capturing a few
/// thousand records a second wakes the writer about thirty times a second
/// rather than a thousand; an idle engine's writer wakes every 10 ms.
fn next_idle(idle: Duration, filled: u64, capacity: u64) -> Duration {
    if filled > capacity / REFILL_SHARE {
        IDLE_MIN
    } else if filled == 0 {
        (idle * 2).min(IDLE_EMPTY_MAX)
    } else {
        (idle * 2).min(idle_max(capacity))
    }
}

/// Requests to the writer.
#[derive(Debug)]
pub(crate) enum Control {
    /// Make every record queued before this request durable, then answer.
    Flush(Sender<()>),
}

/// Turns ring records into lines in segments.
#[derive(Debug)]
pub(crate) struct Sink {
    segments: Segments,
    counters: Arc<Counters>,
    /// Draws event ids, off the caller's thread.
    rng: SmallRng,
    time: TimeBase,
    /// Stamps' Unix milliseconds as timestamps.
    timestamps: Timestamps,
    /// `Engine.Redaction`, when configured.
    redactor: Option<Redactor>,
}

/// The writer thread's state.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) ring: Consumer,
    pub(crate) control: Receiver<Control>,
    pub(crate) sink: Sink,
    pub(crate) flush_interval: Duration,
    /// Benchmarks only: drop records instead of writing them.
    pub(crate) discard: bool,
}

impl Sink {
    pub(crate) fn new(
        segments: Segments,
        counters: Arc<Counters>,
        clock: Clock,
        redactor: Option<Redactor>,
    ) -> Self {
        Sink {
            segments,
            counters,
            rng: SmallRng::from_os_rng(),
            time: TimeBase::new(clock),
            timestamps: Timestamps::default(),
            redactor,
        }
    }

    /// Serializes one record straight from the ring into the open segment.
    fn write(&mut self, rec: RecordParts<'_>) {
        // capture() only queues times that convert.
        let Some(time) = self.timestamps.at(self.time.unix_millis(rec.stamp)) else {
            inc(&self.counters.dropped_io_error);
            return;
        };
        let (input, output) = match &mut self.redactor {
            None => (rec.input, rec.output),
            Some(redactor) => {
                match redactor.apply(rec.input, rec.output) {
                    Verdict::Unchanged => {}
                    Verdict::Redacted => inc(&self.counters.records_redacted),
                    Verdict::KeptUnparsable(redacted) => {
                        inc(&self.counters.redaction_unparsable);
                        if redacted {
                            inc(&self.counters.records_redacted);
                        }
                    }
                    Verdict::Drop => {
                        inc(&self.counters.redaction_unparsable);
                        inc(&self.counters.dropped_unparsable);
                        return;
                    }
                }
                redactor.view(rec.input, rec.output)
            }
        };
        self.segments.append(&Event {
            input,
            output,
            event_id: uuid_v4(&mut self.rng),
            inference_id: rec.inference_id,
            time,
        });
    }
}

impl Writer {
    /// Runs until the ring is closed and empty, then seals the open segment.
    pub(crate) fn run(mut self) {
        let mut control = self.control.clone();
        let mut next_sync = Instant::now() + self.flush_interval;
        let mut dirty = false;
        let mut idle = IDLE_MIN;
        // Bytes of records taken since the writer last parked.
        let mut filled = 0u64;
        loop {
            let (taken, bytes, closed) = self.take(PASS);
            if taken > 0 {
                dirty = true;
                filled += bytes;
            }
            if closed {
                break;
            }
            if taken == 0 {
                idle = next_idle(idle, filled, self.ring.capacity());
                filled = 0;
                let timer = self
                    .sink
                    .segments
                    .next_deadline()
                    .map_or(next_sync, |d| d.min(next_sync));
                let wait = idle.min(timer.saturating_duration_since(Instant::now()));
                // A request or shutdown unparks this thread after sending or
                // closing. Parking is one futex wait; the channel's own
                // blocking receive spins with `sched_yield` first, which on a
                // busy machine hands the core to a server thread and back
                // at every sleep (up to once a millisecond).
                if control.is_empty() {
                    std::thread::park_timeout(wait);
                }
            }
            let request = match control.try_recv() {
                Ok(r) => Some(r),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => {
                    control = crossbeam_channel::never();
                    None
                }
            };
            if let Some(Control::Flush(reply)) = request {
                // Every record kept before the request is in the ring by now.
                let closed = self.take(usize::MAX).2;
                self.sink.segments.sync_wait();
                dirty = false;
                let _ = reply.send(());
                if closed {
                    break;
                }
            }
            let now = Instant::now();
            if now >= next_sync {
                self.sink.time.reanchor();
                if dirty {
                    self.sink.segments.sync();
                    dirty = false;
                }
                next_sync = now + self.flush_interval;
            }
            self.sink.segments.tick();
        }
        self.take(usize::MAX);
        self.sink.segments.close();
    }

    /// Takes up to `max` records; returns how many, their bytes, and whether
    /// the ring is closed and empty.
    fn take(&mut self, max: usize) -> (usize, u64, bool) {
        let (mut n, mut bytes) = (0, 0);
        while n < max {
            let discard = self.discard;
            match self.ring.pop(|rec| {
                add(&self.sink.counters.bytes_kept, rec.size());
                bytes += rec.size();
                if discard {
                    std::hint::black_box(touch_lines(&rec));
                } else {
                    self.sink.write(rec);
                }
            }) {
                Pop::Record => n += 1,
                Pop::Empty => return (n, bytes, false),
                Pop::Closed => return (n, bytes, true),
            }
        }
        (n, bytes, false)
    }
}

/// Reads one byte of every cache line of a record's payloads, as
/// serializing them would: a discarding writer (capture-path benchmarks)
/// leaves the ring's lines in its core's cache where a real one does, so
/// the producers' copies pay for taking them back.
fn touch_lines(rec: &RecordParts) -> u64 {
    let line_bytes = |d: &[u8]| -> u64 {
        let last = d.last().map_or(0, |&b| u64::from(b));
        d.iter().step_by(64).map(|&b| u64::from(b)).sum::<u64>() + last
    };
    [rec.input, rec.output]
        .iter()
        .flatten()
        .map(|p| line_bytes(p.data) + line_bytes(p.content_type.as_bytes()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn a_slow_steady_rate_lets_the_sleep_grow_to_its_longest() {
        // 4 MB/s into a 64 MiB ring: 134 KB a 33.5 ms sleep, far under a 16th.
        let mut idle = IDLE_MIN;
        let mut sleeps = Vec::new();
        for _ in 0..7 {
            let filled = 4_000 * idle.as_millis() as u64;
            idle = next_idle(idle, filled, 64 * MIB);
            sleeps.push(idle.as_micros());
        }
        assert_eq!(sleeps, [2000, 4000, 8000, 16000, 32000, 33554, 33554]);
    }

    #[test]
    fn the_longest_sleep_lets_a_burst_of_1_gb_a_second_fill_half_the_ring() {
        assert_eq!(idle_max(64 * MIB), Duration::from_nanos(33_554_432));
        // Small rings keep 10 ms; large ones sleep at most 40 ms.
        assert_eq!(idle_max(MIB), IDLE_EMPTY_MAX);
        assert_eq!(idle_max(19 * MIB), IDLE_EMPTY_MAX);
        assert_eq!(idle_max(1 << 40), IDLE_MAX_CEIL);
    }

    #[test]
    fn a_wake_that_found_nothing_sleeps_at_most_10_ms() {
        // An idle engine, or a trickle that stopped: a burst may come next.
        let longest = idle_max(64 * MIB);
        assert_eq!(next_idle(longest, 0, 64 * MIB), IDLE_EMPTY_MAX);
        assert_eq!(
            next_idle(Duration::from_millis(2), 0, 64 * MIB),
            Duration::from_millis(4)
        );
        let mut idle = IDLE_MIN;
        for _ in 0..10 {
            idle = next_idle(idle, 0, 64 * MIB);
        }
        assert_eq!(idle, IDLE_EMPTY_MAX);
    }

    #[test]
    fn a_wake_that_finds_a_16th_of_the_ring_filled_sleeps_the_least() {
        let longest = idle_max(64 * MIB);
        assert_eq!(next_idle(longest, 4 * MIB + 1, 64 * MIB), IDLE_MIN);
        assert_eq!(next_idle(longest, 4 * MIB, 64 * MIB), longest);
        assert_eq!(
            next_idle(Duration::from_millis(4), 4 * MIB, 64 * MIB),
            Duration::from_millis(8)
        );
        // A small ring comes back sooner for the same bytes.
        assert_eq!(next_idle(IDLE_EMPTY_MAX, 70_000, MIB), IDLE_MIN);
    }

    #[test]
    fn at_a_steady_rate_the_ring_stays_under_an_8th_full_between_wakes() {
        // Rates from 1 KB/s to 1 GB/s into a 1 MiB ring and a 64 MiB one.
        for capacity in [MIB, 64 * MIB] {
            for rate in [1e3, 1e5, 1e6, 1e7, 1e8, 1e9] {
                let mut idle = IDLE_MIN;
                for _ in 0..50 {
                    let filled = (rate * idle.as_secs_f64()) as u64;
                    let next = next_idle(idle, filled, capacity);
                    let at_next_wake = (rate * next.as_secs_f64()) as u64;
                    // The first sleep of all (1 ms) is the only one not chosen
                    // by what the last one found; past it, an 8th at most.
                    assert!(
                        at_next_wake <= capacity / 8 || next == IDLE_MIN,
                        "{rate} B/s, ring {capacity}: {at_next_wake} bytes in {next:?}"
                    );
                    idle = next;
                }
            }
        }
    }
}
