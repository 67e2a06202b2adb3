//! Ring: a bounded many-producer, one-consumer byte ring of variable-length
//! records, allocated once.
//!
//! The design follows Agrona's `ManyToOneRingBuffer` (Aeron,
//! <https://github.com/real-logic/agrona>): producers claim space by moving a
//! shared tail with a compare-and-swap, copy their record into the claimed
//! bytes, then publish it by storing its header with `Release`. The single
//! consumer reads headers with `Acquire` at its head, hands the record to the
//! writer *in place* (borrowed slices, no copy), zeroes the bytes it consumed,
//! and publishes its head with `Release` so producers may reuse them.
//!
//! Positions (`tail`, `head`) are byte counts that only grow; `pos & mask` is
//! the offset in the buffer. Every record starts 8-byte aligned with one
//! 8-byte header word:
//!
//! ```text
//! header word: 0                          not yet committed (or free)
//!              (len << 32) | KIND_RECORD  a record of `len` bytes, header included
//!              (len << 32) | KIND_PAD     `len` bytes to skip (the end of the buffer)
//! record:      header | time stamp u64 | ct lens u16,u16 | id len u8 | flags u8 | pad u16
//!              | data lens u32,u32 | in ct | in data | out ct | out data | id | pad to 8
//! ```
//!
//! A record never wraps: when it does not fit before the end of the buffer,
//! the producer first claims the rest of the buffer as padding. When the ring
//! is full, `try_push` returns `false` and the caller drops the record; it
//! never waits.

#[cfg(capline_loom)]
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(capline_loom))]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::sync::Arc;

use crate::format::Payload;

/// A record as the capture path hands it over (borrowed from the caller), or
/// as the consumer reads it back (borrowed from the ring).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordParts<'a> {
    pub(crate) input: Option<Payload<'a>>,
    pub(crate) output: Option<Payload<'a>>,
    pub(crate) inference_id: Option<&'a str>,
    pub(crate) stamp: u64,
}

impl RecordParts<'_> {
    /// Payload bytes this record carries (bodies, content types, id).
    pub(crate) fn size(&self) -> u64 {
        let p = |p: &Option<Payload>| p.map_or(0, |p| p.content_type.len() + p.data.len());
        (p(&self.input) + p(&self.output) + self.inference_id.map_or(0, str::len)) as u64
    }
}

/// When the consumer finds the ring empty at least this far into the buffer
/// (or an eighth of it, if smaller), it moves both ends back to the start.
const WARM_WINDOW: u64 = 256 * 1024;
const KIND_RECORD: u64 = 1;
const KIND_PAD: u64 = 2;
const HEADER: usize = 8;
/// Fixed fields after the header: time, two content-type lengths, id length,
/// flags, two data lengths.
const FIXED: usize = 24;
const HAS_INPUT: u8 = 1;
const HAS_OUTPUT: u8 = 2;
const HAS_ID: u8 = 4;

fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

/// Bytes a record of `payload` bytes occupies in the ring.
pub(crate) fn footprint(payload: u64) -> u64 {
    align8(HEADER as u64 + FIXED as u64 + payload)
}

/// Pads a hot atomic to its own cache line, so the producers' tail and the
/// consumer's head do not share one.
#[repr(align(128))]
#[derive(Debug)]
struct Padded<T>(T);

/// The shared buffer and positions.
#[derive(Debug)]
struct Shared {
    storage: Storage,
    /// Buffer size in bytes: a power of two, at least 64.
    capacity: u64,
    /// Size of the warm window at the buffer start (see `try_push`).
    warm: u64,
    /// Next position to claim; in range `head ..= head + capacity`.
    tail: Padded<AtomicU64>,
    /// Every byte before this position is consumed and zeroed.
    head: Padded<AtomicU64>,
    /// Set when no producer will push again.
    closed: AtomicBool,
}

/// The producer side; shared by every capturing thread.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    shared: Arc<Shared>,
}

/// The consumer side, owned by the writer thread.
#[derive(Debug)]
pub(crate) struct RingReader {
    shared: Arc<Shared>,
    /// The consumer's own head; published to `shared.head` in batches.
    head: u64,
    published: u64,
}

/// A ring of at least `bytes` bytes (rounded up to a power of two, minimum 64).
pub(crate) fn ring(bytes: u64) -> (Ring, RingReader) {
    let capacity = bytes.max(64).next_power_of_two();
    let shared = Arc::new(Shared {
        storage: Storage::new(capacity as usize),
        capacity,
        warm: (capacity / 8).min(WARM_WINDOW),
        tail: Padded(AtomicU64::new(0)),
        head: Padded(AtomicU64::new(0)),
        closed: AtomicBool::new(false),
    });
    (
        Ring {
            shared: shared.clone(),
        },
        RingReader {
            shared,
            head: 0,
            published: 0,
        },
    )
}

impl Ring {
    /// Copies the record in; `false` when there is no room. Never blocks,
    /// never allocates.
    #[cfg(test)]
    pub(crate) fn try_push(&self, rec: &RecordParts) -> bool {
        self.try_push_sized(rec, rec.size())
    }

    /// [`try_push`](Self::try_push) for a caller that already knows
    /// `rec.size()` (the capture path computes it for the size check).
    pub(crate) fn try_push_sized(&self, rec: &RecordParts, size: u64) -> bool {
        let s = &*self.shared;
        let need = footprint(size);
        if need > s.capacity {
            return false;
        }
        let mask = s.capacity - 1;
        let mut tail = s.tail.0.load(Ordering::Relaxed);
        let (pad, start) = loop {
            let to_end = s.capacity - (tail & mask);
            let pad = if need > to_end { to_end } else { 0 };
            // Acquire: the consumer zeroed everything before `head` before it
            // published it, and those bytes are what we are about to reuse.
            let head = s.head.0.load(Ordering::Acquire);
            if head > tail {
                // Our `tail` is stale: others claimed and the consumer freed
                // past it since we read it. Read it again (it is >= `head` now).
                tail = s.tail.0.load(Ordering::Relaxed);
                continue;
            }
            let (claim_end, record) = if tail + pad + need - head <= s.capacity {
                (tail + pad + need, true)
            } else if pad > 0 && tail + pad - head <= s.capacity {
                // Only the padding fits: claim it so the next push starts at offset 0.
                (tail + pad, false)
            } else {
                return false;
            };
            // Try moving the tail over the claim; on failure another producer
            // moved it first, so start again from its value.
            match s.tail.0.compare_exchange_weak(
                tail,
                claim_end,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) if record => break (pad, tail + pad),
                Ok(_) => {
                    s.publish_pad(tail, pad);
                    return false;
                }
                Err(now) => tail = now,
            }
        };
        if pad > 0 {
            s.publish_pad(start - pad, pad);
        }
        let off = (start & mask) as usize;
        // SAFETY: the CAS above gave this producer `start .. start + need`
        // exclusively, the bytes lie within the buffer (a record never wraps),
        // and the consumer zeroed them before publishing `head` (Acquire above).
        unsafe { s.storage.write_record(off, rec) };
        // Release: the record's bytes are visible to whoever sees the header.
        s.storage
            .header(off)
            .store((need << 32) | KIND_RECORD, Ordering::Release);
        true
    }

    /// Tells the consumer that no producer will push again.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

impl Shared {
    fn publish_pad(&self, at: u64, pad: u64) {
        let off = (at & (self.capacity - 1)) as usize;
        self.storage
            .header(off)
            .store((pad << 32) | KIND_PAD, Ordering::Release);
    }
}

/// What the reader found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pop {
    /// A record, handed to the callback.
    Record,
    /// Nothing committed right now.
    Empty,
    /// Nothing, and no producer will push again.
    Closed,
}

impl RingReader {
    /// Hands the oldest committed record to `f`, in place, then frees its bytes.
    pub(crate) fn pop(&mut self, f: impl FnOnce(RecordParts<'_>)) -> Pop {
        let s = &*self.shared;
        let mask = s.capacity - 1;
        let mut f = Some(f);
        loop {
            let off = (self.head & mask) as usize;
            // Acquire: pairs with the producer's Release store of this header.
            let word = s.storage.header(off).load(Ordering::Acquire);
            if word == 0 {
                // Empty. Past the warm window, move both ends to the buffer
                // start (if no producer claims first): while the writer keeps
                // up, producers then reuse the same cache-warm bytes instead
                // of sweeping the whole buffer. The skipped bytes are already zero.
                let at = self.head & mask;
                if at >= s.warm {
                    let next = self.head + (s.capacity - at);
                    if s.tail
                        .0
                        .compare_exchange(self.head, next, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                    {
                        self.head = next;
                    }
                }
                publish(s, self.head, &mut self.published);
                // Closed, and every claim committed (tail == head): nothing more will come.
                let closed = s.closed.load(Ordering::Acquire)
                    && s.tail.0.load(Ordering::Acquire) == self.head;
                return if closed { Pop::Closed } else { Pop::Empty };
            }
            let len = word >> 32;
            let is_record = word & 0xff == KIND_RECORD;
            if is_record && let Some(f) = f.take() {
                // SAFETY: the header is committed (Acquire above), so the
                // producer finished writing `off .. off + len` and will not
                // touch it again; no producer reuses it before we publish a
                // head past it, which happens after `f` returns.
                unsafe { s.storage.read_record(off, len as usize, f) };
            }
            // Everything outside `head .. tail` is zero. A record's bytes were
            // written, so all are zeroed; padding only ever had its header written.
            let dirty = if is_record { len as usize } else { HEADER };
            // SAFETY: the consumer owns `off .. off + len` until it publishes
            // a head past it, and nothing borrows it any more.
            unsafe { s.storage.zero(off, dirty) };
            self.head += len;
            if self.head - self.published >= s.capacity / 8 {
                publish(s, self.head, &mut self.published);
            }
            if is_record {
                return Pop::Record;
            }
        }
    }
}

/// Lets producers reuse everything before `head`.
fn publish(s: &Shared, head: u64, published: &mut u64) {
    if *published != head {
        // Release: the consumer's zeroing of the consumed bytes happens-before
        // any producer that Acquire-loads this head writes to them.
        s.head.0.store(head, Ordering::Release);
        *published = head;
    }
}

// ---------------------------------------------------------------------------
// Record encoding: shared by both storage backends.

/// The fixed fields of a record, as bytes.
fn fixed_fields(rec: &RecordParts) -> [u8; FIXED] {
    let ct = |p: &Option<Payload>| p.map_or(0, |p| p.content_type.len() as u16);
    let dl = |p: &Option<Payload>| p.map_or(0, |p| p.data.len() as u32);
    let mut flags = 0;
    if rec.input.is_some() {
        flags |= HAS_INPUT;
    }
    if rec.output.is_some() {
        flags |= HAS_OUTPUT;
    }
    if rec.inference_id.is_some() {
        flags |= HAS_ID;
    }
    let mut f = [0u8; FIXED];
    f[0..8].copy_from_slice(&rec.stamp.to_le_bytes());
    f[8..10].copy_from_slice(&ct(&rec.input).to_le_bytes());
    f[10..12].copy_from_slice(&ct(&rec.output).to_le_bytes());
    f[12] = rec.inference_id.map_or(0, |id| id.len() as u8);
    f[13] = flags;
    f[16..20].copy_from_slice(&dl(&rec.input).to_le_bytes());
    f[20..24].copy_from_slice(&dl(&rec.output).to_le_bytes());
    f
}

/// The variable-length pieces, in order.
fn pieces<'a>(rec: &RecordParts<'a>) -> [&'a [u8]; 5] {
    let ct = |p: Option<Payload<'a>>| p.map_or(&[][..], |p| p.content_type.as_bytes());
    let data = |p: Option<Payload<'a>>| p.map_or(&[][..], |p| p.data);
    [
        ct(rec.input),
        data(rec.input),
        ct(rec.output),
        data(rec.output),
        rec.inference_id.map_or(&[][..], str::as_bytes),
    ]
}

/// Reads a record back from its bytes after the header.
fn decode(body: &[u8]) -> RecordParts<'_> {
    let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]) as usize;
    let u32_at =
        |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]) as usize;
    let mut time = [0u8; 8];
    time.copy_from_slice(&body[0..8]);
    let flags = body[13];
    let lens = [
        u16_at(8),
        u32_at(16),
        u16_at(10),
        u32_at(20),
        body[12] as usize,
    ];
    let mut at = FIXED;
    let mut take = |n: usize| {
        let s = &body[at..at + n];
        at += n;
        s
    };
    // Content types and ids were `&str` when copied in, so this never fails.
    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap_or("")
    }
    let in_ct = take(lens[0]);
    let in_data = take(lens[1]);
    let out_ct = take(lens[2]);
    let out_data = take(lens[3]);
    let id = take(lens[4]);
    RecordParts {
        input: (flags & HAS_INPUT != 0).then(|| Payload::new(text(in_ct), in_data)),
        output: (flags & HAS_OUTPUT != 0).then(|| Payload::new(text(out_ct), out_data)),
        inference_id: (flags & HAS_ID != 0).then(|| text(id)),
        stamp: u64::from_le_bytes(time),
    }
}

// ---------------------------------------------------------------------------
// Storage: the buffer. In production one allocation of `AtomicU64` words whose
// bytes are also written and read directly; under loom, atomics for header
// words and loom-tracked cells for bytes, so loom checks the data accesses too.

#[cfg(not(capline_loom))]
struct Storage {
    /// `capacity / 8` words. `AtomicU64` is an `UnsafeCell`, so writing its
    /// bytes through a pointer derived from a shared reference is allowed.
    words: Box<[AtomicU64]>,
}

#[cfg(not(capline_loom))]
impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("bytes", &(self.words.len() * 8))
            .finish()
    }
}

#[cfg(not(capline_loom))]
impl Storage {
    fn new(capacity: usize) -> Self {
        Storage {
            words: std::iter::repeat_with(|| AtomicU64::new(0))
                .take(capacity / 8)
                .collect(),
        }
    }

    fn header(&self, off: usize) -> &AtomicU64 {
        &self.words[off / 8]
    }

    fn bytes(&self) -> *mut u8 {
        self.words.as_ptr().cast::<u8>().cast_mut()
    }

    /// # Safety
    /// The caller has exclusive use of `off .. off + footprint(rec)`, which lies in the buffer.
    unsafe fn write_record(&self, off: usize, rec: &RecordParts) {
        let fixed = fixed_fields(rec);
        let mut at = off + HEADER;
        for piece in std::iter::once(&fixed[..]).chain(pieces(rec)) {
            // SAFETY: in bounds and exclusively ours (the caller's contract);
            // `piece` is caller memory, so the ranges do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(piece.as_ptr(), self.bytes().add(at), piece.len())
            };
            at += piece.len();
        }
    }

    /// # Safety
    /// `off .. off + len` holds a committed record that nobody writes while `f` runs.
    unsafe fn read_record(&self, off: usize, len: usize, f: impl FnOnce(RecordParts<'_>)) {
        // SAFETY: in bounds, and not written by anyone while the slice lives
        // (the caller's contract); the slice does not outlive this call.
        let body =
            unsafe { std::slice::from_raw_parts(self.bytes().add(off + HEADER), len - HEADER) };
        f(decode(body));
    }

    /// # Safety
    /// The caller has exclusive use of `off .. off + len`, which lies in the buffer.
    unsafe fn zero(&self, off: usize, len: usize) {
        // SAFETY: in bounds and exclusively ours (the caller's contract).
        unsafe { std::ptr::write_bytes(self.bytes().add(off), 0, len) };
    }
}

#[cfg(capline_loom)]
#[derive(Debug)]
struct Storage {
    words: Box<[AtomicU64]>,
    bytes: Box<[loom::cell::UnsafeCell<u8>]>,
}

// SAFETY: the ring protocol gives each byte one writer at a time (a claiming
// producer, or the consumer while zeroing) and orders it before every reader;
// under loom, every access goes through `with`/`with_mut`, so loom checks that claim.
#[cfg(capline_loom)]
unsafe impl Sync for Storage {}

#[cfg(capline_loom)]
impl Storage {
    fn new(capacity: usize) -> Self {
        Storage {
            words: (0..capacity / 8).map(|_| AtomicU64::new(0)).collect(),
            bytes: (0..capacity)
                .map(|_| loom::cell::UnsafeCell::new(0))
                .collect(),
        }
    }

    fn header(&self, off: usize) -> &AtomicU64 {
        &self.words[off / 8]
    }

    unsafe fn write_record(&self, off: usize, rec: &RecordParts) {
        let fixed = fixed_fields(rec);
        let mut at = off + HEADER;
        for piece in std::iter::once(&fixed[..]).chain(pieces(rec)) {
            for &b in piece {
                // SAFETY: loom checks that no other access races with this one.
                self.bytes[at].with_mut(|p| unsafe { *p = b });
                at += 1;
            }
        }
    }

    unsafe fn read_record(&self, off: usize, len: usize, f: impl FnOnce(RecordParts<'_>)) {
        let body: Vec<u8> = (off + HEADER..off + len)
            // SAFETY: loom checks that no other access races with this one.
            .map(|i| self.bytes[i].with(|p| unsafe { *p }))
            .collect();
        f(decode(&body));
    }

    unsafe fn zero(&self, off: usize, len: usize) {
        for i in off..off + len {
            // SAFETY: loom checks that no other access races with this one.
            self.bytes[i].with_mut(|p| unsafe { *p = 0 });
        }
        for w in off / 8..(off + len) / 8 {
            self.words[w].store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(capline_loom)))]
mod tests {
    use super::*;

    fn rec<'a>(data: &'a [u8], id: Option<&'a str>, t: u64) -> RecordParts<'a> {
        RecordParts {
            input: Some(Payload::new("text/csv", data)),
            output: Some(Payload::new("application/json", b"{}")),
            inference_id: id,
            stamp: t,
        }
    }

    /// (input data, inference id, time) of a popped record.
    type Owned = (Vec<u8>, Option<String>, u64);

    fn pop_owned(r: &mut RingReader) -> (Pop, Option<Owned>) {
        let mut got = None;
        let p = r.pop(|parts| {
            got = Some((
                parts.input.unwrap().data.to_vec(),
                parts.inference_id.map(str::to_string),
                parts.stamp,
            ))
        });
        (p, got)
    }

    #[test]
    fn round_trips_every_field() {
        let (w, mut r) = ring(1024);
        assert!(w.try_push(&RecordParts {
            input: None,
            output: Some(Payload::new("text/csv; charset=utf-8", b"0.5")),
            inference_id: Some("id-7"),
            stamp: 42,
        }));
        let mut seen = false;
        assert_eq!(
            r.pop(|p| {
                assert!(p.input.is_none());
                let out = p.output.unwrap();
                assert_eq!(out.content_type, "text/csv; charset=utf-8");
                assert_eq!(out.data, b"0.5");
                assert_eq!(p.inference_id, Some("id-7"));
                assert_eq!(p.stamp, 42);
                seen = true;
            }),
            Pop::Record
        );
        assert!(seen);
        assert_eq!(r.pop(|_| {}), Pop::Empty);
        w.close();
        assert_eq!(r.pop(|_| {}), Pop::Closed);
    }

    #[test]
    fn full_ring_refuses_and_recovers() {
        let (w, mut r) = ring(256);
        let data = [7u8; 40];
        let mut pushed = 0;
        while w.try_push(&rec(&data, None, pushed)) {
            pushed += 1;
        }
        assert!(pushed >= 2, "{pushed}");
        for i in 0..pushed {
            let (p, got) = pop_owned(&mut r);
            assert_eq!(p, Pop::Record);
            assert_eq!(got.unwrap().2, i, "FIFO");
        }
        assert_eq!(r.pop(|_| {}), Pop::Empty);
        assert!(
            w.try_push(&rec(&data, None, 99)),
            "room again after the consumer freed it"
        );
    }

    #[test]
    fn wraps_around_with_padding_many_times() {
        let (w, mut r) = ring(512);
        for i in 0..10_000u64 {
            let n = (i * 37 % 150) as usize;
            let data: Vec<u8> = (0..n).map(|k| (k as u64 + i) as u8).collect();
            let id = format!("id{i}");
            // The consumer keeps up; a push may still need one retry when only
            // the end-of-buffer padding fit.
            let mut ok = w.try_push(&rec(&data, Some(&id), i));
            if !ok {
                assert_eq!(pop_owned(&mut r).0, Pop::Empty);
                ok = w.try_push(&rec(&data, Some(&id), i));
            }
            assert!(ok, "push {i}");
            let (p, got) = pop_owned(&mut r);
            assert_eq!(p, Pop::Record);
            let (d, got_id, t) = got.unwrap();
            assert_eq!((d, got_id.as_deref(), t), (data, Some(id.as_str()), i));
        }
    }

    #[test]
    fn an_empty_ring_rewinds_to_its_warm_start() {
        let (w, mut r) = ring(1 << 20); // warm window: 128 KiB
        let data = [3u8; 1000];
        for i in 0..200 {
            assert!(w.try_push(&rec(&data, None, i)));
        }
        while r.pop(|_| {}) == Pop::Record {}
        // The consumer found it empty past the window: both ends moved to the next lap's start.
        let tail = w.shared.tail.0.load(Ordering::Relaxed);
        assert_eq!(tail, 1 << 20);
        assert_eq!(w.shared.head.0.load(Ordering::Relaxed), tail);
        assert!(w.try_push(&rec(&data, None, 7)));
        assert_eq!(pop_owned(&mut r).1.unwrap().2, 7);
    }

    #[test]
    fn too_big_for_the_ring_is_refused() {
        let (w, _r) = ring(128);
        assert!(!w.try_push(&rec(&[0u8; 200], None, 0)));
    }

    #[test]
    fn a_large_record_is_never_starved_by_padding() {
        // Records bigger than half the ring: each must wait for the buffer
        // start, which the padding claim makes reachable.
        let (w, mut r) = ring(1024);
        let big = [1u8; 600];
        assert!(w.try_push(&rec(&[0u8; 100], None, 0)));
        assert_eq!(pop_owned(&mut r).0, Pop::Record);
        for i in 1..50 {
            let mut tries = 0;
            while !w.try_push(&rec(&big, None, i)) {
                assert_eq!(pop_owned(&mut r).0, Pop::Empty);
                tries += 1;
                assert!(tries < 3, "record {i} starved");
            }
            let (p, got) = pop_owned(&mut r);
            assert_eq!(p, Pop::Record);
            assert_eq!(got.unwrap().2, i);
        }
    }

    #[test]
    fn many_producers_one_consumer_lose_and_duplicate_nothing() {
        let (w, mut r) = ring(4096);
        let producers = 4;
        let per = 20_000u64;
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let w = w.clone();
                std::thread::spawn(move || {
                    let mut dropped = 0u64;
                    for i in 0..per {
                        let payload = (p * per + i).to_le_bytes();
                        while !w.try_push(&rec(&payload, None, p)) {
                            dropped += 1;
                            std::thread::yield_now();
                        }
                    }
                    dropped
                })
            })
            .collect();
        let mut seen = vec![false; (producers * per) as usize];
        let mut last = vec![None::<u64>; producers as usize];
        let mut count = 0;
        while count < producers * per {
            let mut got = None;
            if r.pop(|p| {
                let mut b = [0u8; 8];
                b.copy_from_slice(p.input.unwrap().data);
                got = Some((p.stamp, u64::from_le_bytes(b)));
            }) == Pop::Record
            {
                let (producer, v) = got.unwrap();
                assert!(!seen[v as usize], "duplicate {v}");
                seen[v as usize] = true;
                // Each producer's records arrive in its own order.
                assert!(last[producer as usize].is_none_or(|l| l < v));
                last[producer as usize] = Some(v);
                count += 1;
            } else {
                std::thread::yield_now();
            }
        }
        for h in handles {
            h.join().unwrap();
        }
        assert!(seen.iter().all(|s| *s));
    }
}

/// Loom model checks of the claim/commit/consume protocol. Run with
/// `RUSTFLAGS="--cfg capline_loom" cargo test -p capline --release --lib ring::loom_tests`.
#[cfg(all(test, capline_loom))]
mod loom_tests {
    use super::*;

    fn rec(data: &[u8], t: u64) -> RecordParts<'_> {
        RecordParts {
            input: Some(Payload::new("", data)),
            output: None,
            inference_id: None,
            stamp: t,
        }
    }

    /// Two producers and the consumer: every record pushed is read exactly once, intact.
    #[test]
    fn two_producers_one_consumer() {
        loom::model(|| {
            let (w, mut r) = ring(128);
            let w2 = w.clone();
            let t = loom::thread::spawn(move || w2.try_push(&rec(&[2, 2, 2], 2)));
            let a = w.try_push(&rec(&[1], 1));
            let mut got = Vec::new();
            let b = t.join().unwrap();
            loop {
                let mut item = None;
                match r.pop(|p| item = Some((p.stamp, p.input.unwrap().data.to_vec()))) {
                    Pop::Record => got.push(item.unwrap()),
                    _ => break,
                }
            }
            got.sort();
            let mut want = Vec::new();
            if a {
                want.push((1, vec![1]));
            }
            if b {
                want.push((2, vec![2, 2, 2]));
            }
            assert_eq!(got, want);
        });
    }

    /// A producer reusing space the consumer just freed (wrap-around with
    /// padding) never races with the consumer's reads or zeroing.
    #[test]
    fn reuse_after_consume_is_ordered() {
        loom::model(|| {
            // 64 bytes: one 40-byte record fits; the second must wait for the first to be consumed.
            let (w, mut r) = ring(64);
            assert!(w.try_push(&rec(&[9; 8], 1)));
            let w2 = w.clone();
            let t = loom::thread::spawn(move || {
                let mut pushed = 0;
                for i in 0..2 {
                    if w2.try_push(&rec(&[7; 8], 10 + i)) {
                        pushed += 1;
                    }
                }
                pushed
            });
            let mut got = Vec::new();
            for _ in 0..3 {
                let mut item = None;
                if r.pop(|p| item = Some((p.stamp, p.input.unwrap().data.to_vec()))) == Pop::Record
                {
                    got.push(item.unwrap());
                }
            }
            let pushed = t.join().unwrap();
            while r.pop(|p| got.push((p.stamp, p.input.unwrap().data.to_vec()))) == Pop::Record {}
            assert_eq!(got.len(), 1 + pushed);
            assert_eq!(got[0], (1, vec![9; 8]));
            for g in &got[1..] {
                assert_eq!(g.1, vec![7; 8]);
            }
        });
    }
}
