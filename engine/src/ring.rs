//! Ring: kept records waiting for the writer, bounded by `RingBytes`.
//!
//! Foundation version: each record is copied once into one heap buffer and
//! sent over a crossbeam channel; an atomic byte count enforces the bound.
//! The lock-free, allocation-free ring replaces this behind the same interface.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::format::Payload;

/// A record as the capture path hands it over (borrowed from the caller).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordParts<'a> {
    pub(crate) input: Option<Payload<'a>>,
    pub(crate) output: Option<Payload<'a>>,
    pub(crate) inference_id: Option<&'a str>,
    pub(crate) time_millis: u64,
}

impl RecordParts<'_> {
    /// Payload bytes this record occupies.
    pub(crate) fn size(&self) -> u64 {
        let p = |p: &Option<Payload>| p.map_or(0, |p| p.content_type.len() + p.data.len());
        (p(&self.input) + p(&self.output) + self.inference_id.map_or(0, str::len)) as u64
    }
}

/// One record in the ring: all bytes in one buffer, with the lengths needed to cut it up.
#[derive(Debug)]
pub(crate) struct Slot {
    bytes: Vec<u8>,
    /// (content type length, data length) of input and output.
    input: Option<(usize, usize)>,
    output: Option<(usize, usize)>,
    id_len: Option<usize>,
    time_millis: u64,
}

impl Slot {
    /// The record, borrowed from the slot.
    pub(crate) fn parts(&self) -> RecordParts<'_> {
        let mut at = 0;
        let mut take = |n: usize| {
            let s = &self.bytes[at..at + n];
            at += n;
            s
        };
        // Content types and ids were `&str` when copied in, so they are UTF-8.
        fn text(b: &[u8]) -> &str {
            std::str::from_utf8(b).unwrap_or("")
        }
        let mut payload = |lens: Option<(usize, usize)>| {
            lens.map(|(c, d)| {
                let ct = take(c);
                Payload::new(text(ct), take(d))
            })
        };
        let input = payload(self.input);
        let output = payload(self.output);
        let inference_id = self
            .id_len
            .map(|n| text(&self.bytes[self.bytes.len() - n..]));
        RecordParts {
            input,
            output,
            inference_id,
            time_millis: self.time_millis,
        }
    }
}

/// The producer side, used by every capturing thread.
#[derive(Debug)]
pub(crate) struct Ring {
    tx: Sender<Slot>,
    used: Arc<AtomicU64>,
    capacity: u64,
}

/// The consumer side, owned by the writer thread.
#[derive(Debug)]
pub(crate) struct RingReader {
    rx: Receiver<Slot>,
    used: Arc<AtomicU64>,
}

/// A ring holding at most `capacity` payload bytes.
pub(crate) fn ring(capacity: u64) -> (Ring, RingReader) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let used = Arc::new(AtomicU64::new(0));
    (
        Ring {
            tx,
            used: used.clone(),
            capacity,
        },
        RingReader { rx, used },
    )
}

impl Ring {
    /// Copies the record in; `false` when there is no room.
    pub(crate) fn try_push(&self, rec: &RecordParts) -> bool {
        let size = rec.size();
        if self.used.fetch_add(size, Ordering::Relaxed) + size > self.capacity {
            self.used.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        let mut bytes = Vec::with_capacity(size as usize);
        let mut copy = |p: Option<Payload>| {
            p.map(|p| {
                bytes.extend_from_slice(p.content_type.as_bytes());
                bytes.extend_from_slice(p.data);
                (p.content_type.len(), p.data.len())
            })
        };
        let input = copy(rec.input);
        let output = copy(rec.output);
        let id_len = rec.inference_id.map(|id| {
            bytes.extend_from_slice(id.as_bytes());
            id.len()
        });
        let slot = Slot {
            bytes,
            input,
            output,
            id_len,
            time_millis: rec.time_millis,
        };
        // The reader lives until every producer is gone, so send cannot fail.
        self.tx.send(slot).is_ok()
    }
}

/// What the reader found.
#[derive(Debug)]
pub(crate) enum Pop {
    /// A record.
    Record(Slot),
    /// Nothing right now.
    Empty,
    /// Nothing, and every producer is gone.
    Closed,
}

impl RingReader {
    /// Takes the oldest record without waiting.
    pub(crate) fn pop(&self) -> Pop {
        match self.rx.try_recv() {
            Ok(s) => Pop::Record(s),
            Err(TryRecvError::Empty) => Pop::Empty,
            Err(TryRecvError::Disconnected) => Pop::Closed,
        }
    }

    /// The channel, for the writer's select loop.
    pub(crate) fn receiver(&self) -> &Receiver<Slot> {
        &self.rx
    }

    /// Returns a processed record's room to the producers.
    pub(crate) fn release(&self, slot: Slot) {
        let size = slot.parts().size();
        self.used.fetch_sub(size, Ordering::Relaxed);
    }
}
