//! The writer thread: drains the ring, redacts each record's bodies (when
//! `Engine.Redaction` is set), formats the record as a line, and appends it
//! to the open segment. It makes segments durable every
//! `FlushIntervalMillis`, on `flush()`, and when sealing.
//!
//! Producers never wake the writer (that would be a syscall on the capture
//! path). It polls: while records arrive it loops without sleeping; when the
//! ring is empty it parks for 1 ms, doubling to 10 ms while records come in
//! slowly or not at all, and back to 1 ms once a wake finds more than a
//! 64th of the ring filled since the last ([`next_idle`]). A `flush()`
//! request or shutdown unparks it at once.

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
use crate::timestamp::Timestamp;

const IDLE_MIN: Duration = Duration::from_millis(1);
const IDLE_MAX: Duration = Duration::from_millis(10);
/// A wake that finds more than `capacity / REFILL_SHARE` bytes filled since
/// the previous one brings the sleep back to [`IDLE_MIN`].
const REFILL_SHARE: u64 = 64;
/// Records taken per pass before looking at timers and requests.
const PASS: usize = 4096;

/// How long to park when the ring is found empty, given `idle`, the last
/// sleep, and `filled`, the bytes of records taken since the writer last
/// parked, out of a ring of `capacity`. While records come in slowly the
/// sleep doubles up to [`IDLE_MAX`]; once a wake finds more than a 64th of
/// the ring filled it is [`IDLE_MIN`] again. At a steady rate the ring then
/// stays under about a 32nd full between wakes, and a server capturing a
/// few thousand records a second wakes the writer about a hundred times a
/// second rather than a thousand.
fn next_idle(idle: Duration, filled: u64, capacity: u64) -> Duration {
    if filled > capacity / REFILL_SHARE {
        IDLE_MIN
    } else {
        (idle * 2).min(IDLE_MAX)
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
            redactor,
        }
    }

    /// Serializes one record straight from the ring into the open segment.
    fn write(&mut self, rec: RecordParts<'_>) {
        // capture() only queues times that convert.
        let Some(time) = Timestamp::from_unix_millis(self.time.unix_millis(rec.stamp)) else {
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
                self.sink.segments.sync();
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
        // 4 MB/s into a 64 MiB ring: 40 KB a 10 ms sleep, far under a 64th.
        let mut idle = IDLE_MIN;
        let mut sleeps = Vec::new();
        for _ in 0..6 {
            let filled = 4_000 * idle.as_millis() as u64;
            idle = next_idle(idle, filled, 64 * MIB);
            sleeps.push(idle.as_millis());
        }
        assert_eq!(sleeps, [2, 4, 8, 10, 10, 10]);
    }

    #[test]
    fn a_wake_that_finds_a_64th_of_the_ring_filled_sleeps_the_least() {
        assert_eq!(next_idle(IDLE_MAX, MIB + 1, 64 * MIB), IDLE_MIN);
        assert_eq!(next_idle(IDLE_MAX, MIB, 64 * MIB), IDLE_MAX);
        assert_eq!(
            next_idle(Duration::from_millis(4), MIB, 64 * MIB),
            Duration::from_millis(8)
        );
        // A small ring comes back sooner for the same bytes.
        assert_eq!(next_idle(IDLE_MAX, 20_000, MIB), IDLE_MIN);
    }

    #[test]
    fn at_a_steady_rate_the_ring_stays_under_a_32nd_full_between_wakes() {
        // Rates from 1 KB/s to 1 GB/s into a 1 MiB ring and a 64 MiB one.
        for capacity in [MIB, 64 * MIB] {
            for rate in [1e3, 1e5, 1e6, 1e7, 1e8, 1e9] {
                let mut idle = IDLE_MIN;
                for _ in 0..50 {
                    let filled = (rate * idle.as_secs_f64()) as u64;
                    let next = next_idle(idle, filled, capacity);
                    let at_next_wake = (rate * next.as_secs_f64()) as u64;
                    // The first sleep of all (1 ms) is the only one not chosen
                    // by what the last one found; past it, a 32nd at most.
                    assert!(
                        at_next_wake <= capacity / 32 || next == IDLE_MIN,
                        "{rate} B/s, ring {capacity}: {at_next_wake} bytes in {next:?}"
                    );
                    idle = next;
                }
            }
        }
    }
}
