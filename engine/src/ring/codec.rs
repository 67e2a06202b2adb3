//! A record's bytes after its header word: the fixed fields, then the
//! variable-length pieces (see the layout in the module above).

use super::{FIXED, RecordParts};
use crate::format::Payload;

const HAS_INPUT: u8 = 1;
const HAS_OUTPUT: u8 = 2;
const HAS_ID: u8 = 4;

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
pub(super) fn decode(body: &[u8]) -> RecordParts<'_> {
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
