//! Ring: a bounded many-producer, one-consumer byte ring of variable-length
//! records, allocated once.
//!
//! The design follows Agrona's `ManyToOneRingBuffer` (Aeron,
//! <https://github.com/real-logic/agrona>): producers claim space by moving a
//! shared tail with a compare-and-swap, copy their record into the claimed
//! bytes, then publish it by storing its header with `Release`. The single
//! consumer reads headers with `Acquire` at its head, hands the record to the
//! writer *in place* (borrowed slices, no copy), clears the header, and
//! publishes its head with `Release` so producers may reuse the space.
//!
//! Unlike Agrona, the headers live in an array of their own, one word per
//! 64-byte unit of the buffer, and records start on unit boundaries. The
//! consumer then never writes to the bytes it reads: it clears one header
//! word per record instead of zeroing the record. Zeroed lines would sit
//! modified in the writer's cache, and every producer copy would first pull
//! each line back across cores; read lines are only shared, and a producer
//! takes them over without a transfer of their bytes. Stale bytes in the
//! buffer are harmless because no header is ever read from it.
//!
//! Positions (`tail`, `head`) are byte counts that only grow; `pos & mask` is
//! the offset in the buffer, and `offset / 64` its header's index:
//!
//! ```text
//! header word: 0                          not yet committed (or free)
//!              (len << 32) | KIND_RECORD  a record of `len` bytes
//!              (len << 32) | KIND_PAD     `len` bytes to skip (the end of the buffer)
//! record:      time stamp u64 | ct lens u16,u16 | id len u8 | flags u8 | pad u16
//!              | data lens u32,u32 | in ct | in data | out ct | out data | id | pad to 64
//! ```
//!
//! A record may hold its bodies instead (`Engine::capture_shared`): each
//! held body's data is then the 32 bytes of its `bytes::Bytes` value, a
//! flag says so, and the consumer drops the `Bytes` once the record has
//! been read (`codec`). Its claim still covers the bodies' whole length.
//!
//! After committing a record of up to 4 KiB, a producer prefetches, for
//! writing, as many free bytes past it as the record took: the next claim's
//! lines then come back from the writer's core while the caller goes on,
//! not inside the next call, whose compare-and-swap would otherwise wait for
//! this record's stores to reach them. The line of the next claim's header
//! word is prefetched with them, and a record's own header line right after
//! its claim (the header is stored last, after the copy).
//!
//! A record never wraps: when it does not fit before the end of the buffer,
//! the producer first claims the rest of the buffer as padding. When the ring
//! is full, [`Producer::try_push`] returns `false` and the caller drops the
//! record; it never waits.
//!
//! The files follow the roles, as rtrb splits its `Producer` and `Consumer`:
//! [`producer`] (claim, copy, commit), [`consumer`] (read in place, release),
//! [`codec`] (a record's bytes) and [`storage`] (the buffer itself, in
//! 64-byte aligned lines), with `stream` (x86-64: large records copied into
//! cold memory with streaming stores).

mod codec;
mod consumer;
#[cfg(all(test, capline_loom))]
mod loom_tests;
mod producer;
mod storage;
#[cfg(all(target_arch = "x86_64", not(capline_loom)))]
mod stream;
#[cfg(all(test, not(capline_loom)))]
mod tests;

#[cfg(capline_loom)]
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(capline_loom))]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::sync::Arc;

pub(crate) use consumer::{Consumer, Pop};
pub(crate) use producer::Producer;
use storage::Storage;

use bytes::Bytes;

use crate::format::Payload;

/// A record as the capture path hands it over (borrowed from the caller), or
/// as the consumer reads it back (borrowed from the ring, or from the bodies
/// a held record owns).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordParts<'a> {
    pub(crate) input: Option<Payload<'a>>,
    pub(crate) output: Option<Payload<'a>>,
    pub(crate) inference_id: Option<&'a str>,
    pub(crate) stamp: u64,
    /// Bodies handed over rather than copied (`Engine::capture_shared`):
    /// where one is set, its payload's data is that `Bytes`, and the ring
    /// stores a bitwise copy of the `Bytes` itself in the data's place. A
    /// successful push moves them into the ring (the caller must not drop
    /// them then); the consumer drops them once the record is read.
    pub(crate) held: [Option<&'a Bytes>; 2],
}

impl<'a> RecordParts<'a> {
    /// Payload bytes this record carries (bodies, content types, id). Held
    /// bodies count in full: the ring's space then bounds the memory the
    /// records it holds keep alive, copied or not.
    pub(crate) fn size(&self) -> u64 {
        let p = |p: &Option<Payload>| p.map_or(0, |p| p.content_type.len() + p.data.len());
        (p(&self.input) + p(&self.output) + self.inference_id.map_or(0, str::len)) as u64
    }

    /// Payload bytes actually written into the ring: [`Self::size`] with
    /// each held body counted as its handle.
    pub(crate) fn written(&self) -> u64 {
        let held = self.held_bodies().into_iter().flatten();
        held.fold(self.size(), |n, b| {
            n - b.len() as u64 + codec::HANDLE as u64
        })
    }

    /// Whether the record holds a body (see [`Self::held`]).
    pub(crate) fn holds(&self) -> bool {
        self.held_bodies().iter().any(Option::is_some)
    }

    /// The held bodies whose payload is in the record (input, output).
    pub(crate) fn held_bodies(&self) -> [Option<&'a Bytes>; 2] {
        let [i, o] = self.held;
        [
            i.filter(|_| self.input.is_some()),
            o.filter(|_| self.output.is_some()),
        ]
    }
}

/// When the consumer finds the ring empty at least this far into the buffer
/// (or an eighth of it, if smaller), it moves both ends back to the start.
const WARM_WINDOW: u64 = 256 * 1024;
/// Records at this offset or past it are copied with streaming stores
/// (or from half the buffer, if smaller): four warm windows, so past what
/// producers reuse while the writer keeps up, and past the L2 cache of the
/// AMD EPYC measured on (512 KiB a core).
const COLD_FROM: u64 = 1024 * 1024;
/// Records smaller than this (or an eighth of the buffer) are copied with
/// ordinary stores even there: with the writer saturated, the space a
/// producer claims is what the writer has just read, still in its cache, and
/// for a 2 KiB record fetching those lines beat streaming to memory and
/// fencing (PERFORMANCE.md); at 17 KiB and 64 KiB streaming won.
const STREAM_MIN: u64 = 8 * 1024;
/// The largest record after which a producer prefetches its next claim
/// (`Shared::prefetch_claim`). Larger copies are long enough for the CPU to
/// overlap their own line transfers, and prefetching 4 KiB after a 17 KiB
/// record made a single call's median slower (210–240 → 290–310 ns,
/// PERFORMANCE.md).
const PREFETCH_MAX: u64 = 4096;
const KIND_RECORD: u64 = 1;
const KIND_PAD: u64 = 2;
/// The unit records start on, with one header word each: a cache line.
const UNIT: u64 = 64;
/// A record's fixed fields: time, two content-type lengths, id length,
/// flags, two data lengths.
const FIXED: usize = 24;

/// Bytes a record of `payload` bytes occupies in the ring.
pub(crate) fn footprint(payload: u64) -> u64 {
    (FIXED as u64 + payload).next_multiple_of(UNIT)
}

/// Pads a hot atomic to its own cache line, so the producers' tail and the
/// consumer's head do not share one.
#[repr(align(128))]
#[derive(Debug)]
struct Padded<T>(T);

/// What every producer reads and writes, on one cache line of its own.
#[derive(Debug)]
struct Claim {
    /// Next position to claim; in range `head ..= head + capacity`.
    tail: AtomicU64,
    /// A value of `head` a producer read (so at most `head`): while the
    /// space it leaves is enough, producers claim without reading `head`,
    /// whose line the consumer writes after every batch. Stored with
    /// `Release` after an `Acquire` load of `head`, so loading it with
    /// `Acquire` orders the consumer's release of that space before us too.
    head_seen: AtomicU64,
}

/// The shared buffer and positions.
#[derive(Debug)]
struct Shared {
    storage: Storage,
    /// Buffer size in bytes: a power of two, at least 64.
    capacity: u64,
    /// Size of the warm window at the buffer start (see [`Consumer::pop`]).
    warm: u64,
    /// Offset from which the buffer is cold: reached only while the writer
    /// is behind, and then a lap of the ring after it was last written.
    /// Records there of at least `stream_min` bytes are copied with
    /// streaming stores (`stream`).
    cold: u64,
    /// The smallest record footprint copied with streaming stores.
    stream_min: u64,
    /// The producers' line: where the next claim starts, and the head they
    /// last read.
    claim: Padded<Claim>,
    /// Every byte before this position is consumed, and its headers cleared.
    head: Padded<AtomicU64>,
    /// Set when no producer will push again.
    closed: AtomicBool,
}

impl Drop for Shared {
    /// Drops the bodies held by records nobody consumed: every producer and
    /// the consumer are gone, and the consumer published its own head when
    /// it went (`Consumer`'s `Drop`), so `head .. tail` is exactly them.
    fn drop(&mut self) {
        let mask = self.capacity - 1;
        let tail = self.claim.0.tail.load(Ordering::Acquire);
        let mut at = self.head.0.load(Ordering::Acquire);
        while at < tail {
            let off = (at & mask) as usize;
            let word = self.storage.header(off).load(Ordering::Acquire);
            if word == 0 {
                // A claim never committed: nothing was written after it.
                break;
            }
            let len = word >> 32;
            if word & 0xff == KIND_RECORD {
                // SAFETY: a committed record (its header is set), never
                // consumed (at or past the consumer's final head), and no
                // producer or consumer is left to touch it.
                unsafe { self.storage.read_record(off, len as usize, |_| {}) };
            }
            at += len;
        }
    }
}

/// A ring of at least `bytes` bytes (rounded up to a power of two, minimum 64).
pub(crate) fn ring(bytes: u64) -> (Producer, Consumer) {
    let capacity = bytes.max(64).next_power_of_two();
    let shared = Arc::new(Shared {
        storage: Storage::new(capacity as usize),
        capacity,
        warm: (capacity / 8).min(WARM_WINDOW),
        cold: (capacity / 2).min(COLD_FROM),
        stream_min: (capacity / 8).min(STREAM_MIN),
        claim: Padded(Claim {
            tail: AtomicU64::new(0),
            head_seen: AtomicU64::new(0),
        }),
        head: Padded(AtomicU64::new(0)),
        closed: AtomicBool::new(false),
    });
    (
        Producer {
            shared: shared.clone(),
        },
        Consumer {
            shared,
            head: 0,
            published: 0,
        },
    )
}
