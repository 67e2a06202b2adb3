//! The writer thread: drains the ring, formats each record as a line, and
//! appends it to the open segment. It makes segments durable every
//! `FlushIntervalMillis`, on `flush()`, and when sealing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select};
use rand::{Rng, SeedableRng, rngs::SmallRng};

use crate::format::{Event, LineWriter};
use crate::ring::{Pop, RingReader, Slot};
use crate::segment::Segments;
use crate::stats::{Counters, inc};
use crate::timestamp::Timestamp;

/// Requests to the writer.
#[derive(Debug)]
pub(crate) enum Control {
    /// Make every record queued before this request durable, then answer.
    Flush(Sender<()>),
}

/// The writer thread's state.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) ring: RingReader,
    pub(crate) control: Receiver<Control>,
    pub(crate) lines: LineWriter,
    pub(crate) segments: Segments,
    pub(crate) flush_interval: Duration,
    pub(crate) counters: Arc<Counters>,
}

/// A random (version 4) UUID; event ids and file names are made here, off the caller's thread.
fn uuid_v4(rng: &mut SmallRng) -> [u8; 16] {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

impl Writer {
    /// Runs until every producer is gone, then seals the open segment.
    pub(crate) fn run(mut self) {
        let mut rng = SmallRng::from_os_rng();
        let mut control = self.control.clone();
        let mut next_sync = Instant::now() + self.flush_interval;
        let mut dirty = false;
        loop {
            let wake = self
                .segments
                .next_deadline()
                .map_or(next_sync, |d| d.min(next_sync));
            let timeout = wake.saturating_duration_since(Instant::now());
            select! {
                recv(self.ring.receiver()) -> msg => match msg {
                    Ok(slot) => {
                        self.process(slot, &mut rng);
                        dirty = true;
                    }
                    Err(_) => break,
                },
                recv(control) -> msg => match msg {
                    Ok(Control::Flush(reply)) => {
                        let closed = self.drain(&mut rng);
                        self.segments.sync();
                        dirty = false;
                        let _ = reply.send(());
                        if closed {
                            break;
                        }
                    }
                    Err(_) => control = crossbeam_channel::never(),
                },
                default(timeout) => {}
            }
            let now = Instant::now();
            if now >= next_sync {
                if dirty {
                    self.segments.sync();
                    dirty = false;
                }
                next_sync = now + self.flush_interval;
            }
            self.segments.tick();
        }
        self.drain(&mut rng);
        self.segments.seal();
    }

    /// Processes every queued record; `true` when the ring is closed.
    fn drain(&mut self, rng: &mut SmallRng) -> bool {
        loop {
            match self.ring.pop() {
                Pop::Record(slot) => self.process(slot, rng),
                Pop::Empty => return false,
                Pop::Closed => return true,
            }
        }
    }

    fn process(&mut self, slot: Slot, rng: &mut SmallRng) {
        let rec = slot.parts();
        // capture() only queues times that convert.
        if let Some(time) = Timestamp::from_unix_millis(rec.time_millis) {
            let event = Event {
                input: rec.input,
                output: rec.output,
                event_id: uuid_v4(rng),
                inference_id: rec.inference_id,
                time,
            };
            let file_id = uuid_v4(rng);
            match self.segments.buffer_for(&time, file_id) {
                Some(buf) => {
                    let start = buf.len();
                    self.lines.write(buf, &event);
                    self.segments.commit_line(start, &time, file_id);
                }
                None => inc(&self.counters.dropped_io_error),
            }
        } else {
            inc(&self.counters.dropped_io_error);
        }
        self.ring.release(slot);
    }
}
