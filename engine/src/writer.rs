//! The writer thread: drains the ring, redacts each record's bodies (when
//! `Engine.Redaction` is set), formats the record as a line, and appends it
//! to the open segment. It makes segments durable every
//! `FlushIntervalMillis`, on `flush()`, and when sealing.
//!
//! Producers never wake the writer (that would be a syscall on the capture
//! path). It polls: while records arrive it loops without sleeping; when the
//! ring is empty it parks for 1 ms, doubling to 10 ms while idle. A
//! `flush()` request or shutdown unparks it at once.

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
/// Records taken per pass before looking at timers and requests.
const PASS: usize = 4096;

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
        loop {
            let (taken, closed) = self.take(PASS);
            if taken > 0 {
                dirty = true;
                idle = IDLE_MIN;
            }
            if closed {
                break;
            }
            if taken == 0 {
                let timer = self
                    .sink
                    .segments
                    .next_deadline()
                    .map_or(next_sync, |d| d.min(next_sync));
                let wait = idle.min(timer.saturating_duration_since(Instant::now()));
                idle = (idle * 2).min(IDLE_MAX);
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
                let closed = self.take(usize::MAX).1;
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

    /// Takes up to `max` records; returns how many, and whether the ring is closed and empty.
    fn take(&mut self, max: usize) -> (usize, bool) {
        let mut n = 0;
        while n < max {
            let discard = self.discard;
            match self.ring.pop(|rec| {
                add(&self.sink.counters.bytes_kept, rec.size());
                if discard {
                    std::hint::black_box(touch_lines(&rec));
                } else {
                    self.sink.write(rec);
                }
            }) {
                Pop::Record => n += 1,
                Pop::Empty => return (n, false),
                Pop::Closed => return (n, true),
            }
        }
        (n, false)
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
