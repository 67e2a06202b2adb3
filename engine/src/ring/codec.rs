//! A record's bytes after its header word: the fixed fields, then the
//! variable-length pieces (see the layout in the module above).
//!
//! A held body (`RecordParts::held`) is stored as its handle: the bytes of
//! the `Bytes` value itself, moved into the ring. Its data length field
//! still says how long the body is. [`release`] moves each handle out again
//! and drops it, once per record.

use std::mem::ManuallyDrop;

use bytes::Bytes;

use super::{FIXED, RecordParts};
use crate::format::Payload;

const HAS_INPUT: u8 = 1;
const HAS_OUTPUT: u8 = 2;
const HAS_ID: u8 = 4;
const HELD_INPUT: u8 = 8;
const HELD_OUTPUT: u8 = 16;

/// The bytes a held body's handle takes in a record.
pub(super) const HANDLE: usize = size_of::<Bytes>();

/// The bytes of a `Bytes` value, to be copied into the ring as they are.
fn handle_bytes(b: &Bytes) -> &[u8] {
    // SAFETY: `Bytes` is four initialised words (a pointer, a length, an
    // `AtomicPtr` nobody writes while we hold `&Bytes`, a vtable
    // reference), so all `HANDLE` bytes are initialised and readable for
    // the borrow's lifetime. They are only ever copied untyped
    // (`copy_nonoverlapping`), and read back as a `Bytes` by `handle_at`.
    unsafe { std::slice::from_raw_parts((b as *const Bytes).cast::<u8>(), HANDLE) }
}

/// The `Bytes` whose bytes `handle_bytes` gave, read back from a record
/// without taking it over (`ManuallyDrop`).
///
/// # Safety
/// `at` holds `HANDLE` bytes copied from a live `Bytes` the ring owns, not
/// yet released.
unsafe fn handle_at(at: &[u8]) -> ManuallyDrop<Bytes> {
    debug_assert!(at.len() >= HANDLE);
    // SAFETY: the caller's contract: the bytes are a `Bytes` value's, copied
    // untyped; `read_unaligned` because records place it at any offset.
    ManuallyDrop::new(unsafe { std::ptr::read_unaligned(at.as_ptr().cast::<Bytes>()) })
}

/// The fixed fields of a record, as bytes.
pub(super) fn fixed_fields(rec: &RecordParts) -> [u8; FIXED] {
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
    let [held_in, held_out] = rec.held_bodies();
    if held_in.is_some() {
        flags |= HELD_INPUT;
    }
    if held_out.is_some() {
        flags |= HELD_OUTPUT;
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
pub(super) fn pieces<'a>(rec: &RecordParts<'a>) -> [&'a [u8]; 5] {
    let ct = |p: Option<Payload<'a>>| p.map_or(&[][..], |p| p.content_type.as_bytes());
    let data = |p: Option<Payload<'a>>, held: Option<&'a Bytes>| match held {
        Some(b) => handle_bytes(b),
        None => p.map_or(&[][..], |p| p.data),
    };
    let [held_in, held_out] = rec.held_bodies();
    [
        ct(rec.input),
        data(rec.input, held_in),
        ct(rec.output),
        data(rec.output, held_out),
        rec.inference_id.map_or(&[][..], str::as_bytes),
    ]
}

/// Where a record's pieces lie in its bytes, from its fixed fields: in the
/// order of [`pieces`], each as (start, length in the record).
fn layout(body: &[u8]) -> (u8, [(usize, usize); 5]) {
    let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]) as usize;
    let u32_at =
        |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]) as usize;
    let flags = body[13];
    let held = |f: u8, len: usize| if flags & f != 0 { HANDLE } else { len };
    let lens = [
        u16_at(8),
        held(HELD_INPUT, u32_at(16)),
        u16_at(10),
        held(HELD_OUTPUT, u32_at(20)),
        body[12] as usize,
    ];
    let mut at = FIXED;
    let spans = lens.map(|n| {
        let span = (at, n);
        at += n;
        span
    });
    (flags, spans)
}

/// Reads a record back from its bytes after the header. A held body is
/// borrowed from its handle's memory, which lives until [`release`].
pub(super) fn decode(body: &[u8]) -> RecordParts<'_> {
    let (flags, spans) = layout(body);
    let mut time = [0u8; 8];
    time.copy_from_slice(&body[0..8]);
    let take = |i: usize| &body[spans[i].0..spans[i].0 + spans[i].1];
    // Content types and ids were `&str` when copied in, so this never
    // fails. They are nearly always ASCII, which a word-at-a-time check
    // settles sooner than a full UTF-8 validation (that took 5 % of the
    // writer's time on 1 KiB records).
    fn text(b: &[u8]) -> &str {
        if b.is_ascii() {
            // SAFETY: ASCII bytes are valid UTF-8.
            return unsafe { std::str::from_utf8_unchecked(b) };
        }
        std::str::from_utf8(b).unwrap_or("")
    }
    let data = |i: usize, held: u8| -> &[u8] {
        if flags & held == 0 {
            return take(i);
        }
        // SAFETY: the flag says the piece is a handle the ring owns; it is
        // released only after the record's reader is done (`read_record`).
        let b = unsafe { handle_at(take(i)) };
        // SAFETY: the body's memory is kept alive by the handle, which lives
        // in `body` until `release`: at least as long as `body`'s borrow.
        unsafe { std::slice::from_raw_parts(b.as_ptr(), b.len()) }
    };
    let in_ct = take(0);
    let in_data = data(1, HELD_INPUT);
    let out_ct = take(2);
    let out_data = data(3, HELD_OUTPUT);
    let id = take(4);
    RecordParts {
        input: (flags & HAS_INPUT != 0).then(|| Payload::new(text(in_ct), in_data)),
        output: (flags & HAS_OUTPUT != 0).then(|| Payload::new(text(out_ct), out_data)),
        inference_id: (flags & HAS_ID != 0).then(|| text(id)),
        stamp: u64::from_le_bytes(time),
        held: [None, None],
    }
}

/// Drops the bodies a record holds (if any), once its reader is done.
///
/// # Safety
/// `body` is a committed record's bytes, read for the last time: nobody
/// decodes or releases it again.
pub(super) unsafe fn release(body: &[u8]) {
    let (flags, spans) = layout(body);
    for (i, held) in [(1, HELD_INPUT), (3, HELD_OUTPUT)] {
        if flags & held != 0 {
            let at = &body[spans[i].0..spans[i].0 + spans[i].1];
            // SAFETY: a handle the ring owns, released only here, once
            // (the caller's contract); dropping it gives up the ring's share.
            drop(ManuallyDrop::into_inner(unsafe { handle_at(at) }));
        }
    }
}
