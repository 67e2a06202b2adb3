//! The JSON string escaper lines are written with: eight bytes at a time
//! (SWAR), or 32 with AVX2 where the CPU has it (dense escapes written with
//! table-driven shuffles), straight into reserved room. It also notes whether
//! any byte had its high bit set, so a body it found all ASCII needs no
//! second pass to prove it UTF-8.

use std::mem::MaybeUninit;

use super::{LineBuf, is_utf8};

/// The length of `s` escaped by [`escape_into`].
pub(super) fn escaped_len(s: &[u8]) -> usize {
    let mut n = s.len();
    let mut words = s.chunks_exact(8);
    let grow = |b: u8| match ESCAPE[b as usize] {
        0 => 0,
        b'u' => 5,
        _ => 1,
    };
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        if escape_mask(u64::from_le_bytes(bytes)) != 0 {
            n += word.iter().map(|&b| grow(b)).sum::<usize>();
        }
    }
    n + words.remainder().iter().map(|&b| grow(b)).sum::<usize>()
}

/// What each byte becomes inside a JSON string: 0 = itself, `u` = `\u00XX`, else `\` + that byte.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` that must be escaped (`"`, `\\`, `< 0x20`).
/// Borrows can flag bytes above a flagged one, but the lowest flag is always exact.
#[inline]
fn escape_mask(w: u64) -> u64 {
    let ctrl = w.wrapping_sub(LO * 0x20) & !w;
    let q = w ^ (LO * u64::from(b'"'));
    let quote = q.wrapping_sub(LO) & !q;
    let b = w ^ (LO * u64::from(b'\\'));
    let backslash = b.wrapping_sub(LO) & !b;
    (ctrl | quote | backslash) & HI
}

/// Input bytes escaped per step, so the room reserved (6 bytes out per byte in,
/// the worst case) stays bounded for large payloads.
const ESCAPE_STEP: usize = 64 * 1024;

/// Appends `s` escaped as the inside of a JSON string.
///
/// Escapes `"`, `\\` and the C0 controls (short forms where JSON has them);
/// every other byte, including UTF-8 sequences, is copied as is. `s` must be
/// valid UTF-8 for the result to be valid JSON. Clean runs are found eight
/// bytes at a time (SWAR); output goes straight into reserved room, with no
/// per-byte capacity checks.
pub fn escape_into<B: LineBuf>(out: &mut B, s: &[u8]) {
    for part in s.chunks(ESCAPE_STEP) {
        let (written, _) = escape_to_spare(out, part);
        // SAFETY: `escape_to_spare` initialized the first `written` bytes
        // of the spare room.
        unsafe { out.advance(written) };
    }
}

/// Escapes `s` into `out`'s spare room without taking it as data; returns
/// the bytes written and whether every byte was ASCII.
#[inline]
fn escape_to_spare<B: LineBuf>(out: &mut B, s: &[u8]) -> (usize, bool) {
    let room = out.spare(s.len() * 6);
    escape_dispatch(&mut room[..s.len() * 6], s)
}

/// Appends `s` escaped if it is UTF-8 and returns true; returns false, having
/// appended nothing, if it is not.
///
/// A body of up to one escaping step is escaped first and validated only
/// if the escaper saw a byte outside ASCII: one pass over ASCII text (most
/// CSV and JSON bodies) instead of a validation pass and an escaping pass.
/// The escaped bytes count only once [`LineBuf::advance`] takes them, so a
/// body found invalid leaves `out` as it was.
pub(super) fn escape_text_into<B: LineBuf>(out: &mut B, s: &[u8]) -> bool {
    if s.len() > ESCAPE_STEP {
        if !is_utf8(s) {
            return false;
        }
        escape_into(out, s);
        return true;
    }
    let (written, ascii) = escape_to_spare(out, s);
    if !ascii && !is_utf8(s) {
        return false;
    }
    // SAFETY: `escape_to_spare` initialized the first `written` bytes of
    // the spare room.
    unsafe { out.advance(written) };
    true
}

/// An escaper: writes `s` escaped into room of at least `6 * s.len()`
/// bytes; returns the bytes written and whether every byte was ASCII.
type Escaper = fn(&mut [MaybeUninit<u8>], &[u8]) -> (usize, bool);

/// `s` escaped by the portable escaper and by the one this CPU uses (AVX2
/// where it has it), each with whether it found `s` all ASCII: the fuzz
/// target `escape` checks they agree.
pub(crate) fn escaped_both(s: &[u8]) -> ((Vec<u8>, bool), (Vec<u8>, bool)) {
    let run = |f: Escaper| {
        let mut room = vec![MaybeUninit::uninit(); s.len() * 6];
        let (n, ascii) = f(&mut room, s);
        // SAFETY: the escaper initialized the first `n` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(room.as_ptr().cast::<u8>(), n) };
        (bytes.to_vec(), ascii)
    };
    (run(escape_part), run(escape_dispatch))
}

/// Uses the AVX2 escaper where the CPU has it (checked once, cached by std).
/// Returns the bytes written and whether every byte of `s` was ASCII.
#[inline]
fn escape_dispatch(room: &mut [MaybeUninit<u8>], s: &[u8]) -> (usize, bool) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { avx2::escape_part(room, s) };
    }
    escape_part(room, s)
}

/// Escapes `s` into `room` (at least `6 * s.len()` bytes); returns the bytes
/// written and whether every byte was ASCII. Eight bytes at a time: a clean
/// word is copied whole, a word with something to escape goes byte by byte
/// through the table.
fn escape_part(room: &mut [MaybeUninit<u8>], s: &[u8]) -> (usize, bool) {
    let mut w = 0;
    let mut seen = 0u64;
    let mut words = s.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let word_bits = u64::from_le_bytes(bytes);
        seen |= word_bits;
        if escape_mask(word_bits) == 0 {
            for (d, &b) in room[w..w + 8].iter_mut().zip(word) {
                *d = MaybeUninit::new(b);
            }
            w += 8;
        } else {
            for &b in word {
                w = put_escaped(room, w, b);
            }
        }
    }
    for &b in words.remainder() {
        seen |= u64::from(b);
        w = put_escaped(room, w, b);
    }
    (w, seen & HI == 0)
}

/// Writes one byte, escaped if JSON needs it, at `room[w..]`; returns the new `w`.
#[inline(always)]
fn put_escaped(room: &mut [MaybeUninit<u8>], w: usize, b: u8) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ESCAPE[b as usize] {
        0 => {
            room[w] = MaybeUninit::new(b);
            w + 1
        }
        b'u' => {
            let seq = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ];
            for (d, c) in room[w..w + 6].iter_mut().zip(seq) {
                *d = MaybeUninit::new(c);
            }
            w + 6
        }
        e => {
            room[w] = MaybeUninit::new(b'\\');
            room[w + 1] = MaybeUninit::new(e);
            w + 2
        }
    }
}

/// Bytes whose escape is two bytes: `\\` then this letter (0: none).
static SHORT: [u8; 16] = {
    let mut t = [0u8; 16];
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t
};

/// For each 8-bit mask of bytes to escape among eight, the `pshufb` control
/// that spreads the eight bytes over sixteen with a zero slot before each
/// escaped one; `SPREAD_SLASH` puts the backslash in those slots.
static SPREAD: [[u8; 16]; 256] = spread_tables().0;
/// See [`SPREAD`].
static SPREAD_SLASH: [[u8; 16]; 256] = spread_tables().1;

const fn spread_tables() -> ([[u8; 16]; 256], [[u8; 16]; 256]) {
    let mut shuffle = [[0x80u8; 16]; 256];
    let mut slash = [[0u8; 16]; 256];
    let mut m = 0;
    while m < 256 {
        let mut j = 0;
        let mut b = 0;
        while b < 8 {
            if m & (1 << b) != 0 {
                slash[m][j] = b'\\';
                j += 1;
            }
            shuffle[m][j] = b as u8;
            j += 1;
            b += 1;
        }
        m += 1;
    }
    (shuffle, slash)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The same escaper, 32 bytes at a time. Three compares find `"`, `\\`
    //! and bytes below 0x20. A clean block is stored whole. A block whose
    //! escapes are all two-byte ones (`\"`, `\\`, `\n`, `\t`, ...; the
    //! common case, however dense) is written eight bytes at a time with one
    //! table-driven shuffle each: the letters substituted in one step, then
    //! each group of eight spread over sixteen with a backslash before every
    //! escaped byte. Only a block with a `\u00XX` control goes byte by byte.

    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    use super::{SHORT, SPREAD, SPREAD_SLASH, put_escaped};

    /// How far ahead of its loads the pair loop prefetches its input.
    const PREFETCH: usize = 1024;

    /// The vectors every block is compared with.
    #[derive(Clone, Copy)]
    struct Consts {
        quote: __m256i,
        backslash: __m256i,
        ctrl_max: __m256i,
        nibble_max: __m256i,
        short: __m256i,
        zero: __m256i,
    }

    impl Consts {
        #[target_feature(enable = "avx2")]
        fn new() -> Self {
            // SAFETY: SHORT is 16 bytes; the load reads exactly those.
            let short = unsafe { _mm_loadu_si128(SHORT.as_ptr().cast()) };
            Consts {
                quote: _mm256_set1_epi8(b'"' as i8),
                backslash: _mm256_set1_epi8(b'\\' as i8),
                ctrl_max: _mm256_set1_epi8(0x1f),
                nibble_max: _mm256_set1_epi8(0x0f),
                short: _mm256_broadcastsi128_si256(short),
                zero: _mm256_setzero_si256(),
            }
        }

        /// Bytes below 0x20: min(v, 0x1f) == v, unsigned.
        #[target_feature(enable = "avx2")]
        fn ctrl(&self, v: __m256i) -> __m256i {
            _mm256_cmpeq_epi8(_mm256_min_epu8(v, self.ctrl_max), v)
        }

        /// One bit per byte of `v` to escape (`"`, `\\`, below 0x20).
        #[target_feature(enable = "avx2")]
        fn mask(&self, v: __m256i) -> u32 {
            let hits = _mm256_or_si256(
                _mm256_or_si256(
                    _mm256_cmpeq_epi8(v, self.quote),
                    _mm256_cmpeq_epi8(v, self.backslash),
                ),
                self.ctrl(v),
            );
            _mm256_movemask_epi8(hits) as u32
        }
    }

    /// # Safety
    /// The CPU must support AVX2, and `room` must hold at least `6 * s.len()` bytes.
    #[target_feature(enable = "avx2,popcnt")]
    pub(super) unsafe fn escape_part(room: &mut [MaybeUninit<u8>], s: &[u8]) -> (usize, bool) {
        assert!(room.len() >= s.len() * 6);
        let k = Consts::new();
        // Every block loaded, OR-ed: its top bits say whether a byte was not ASCII.
        let mut seen = k.zero;
        let (mut w, mut i) = (0usize, 0usize);
        // Two blocks at a time: a clean pair is stored whole (one test for
        // both); otherwise each block goes through `block` with the mask
        // already computed, so escape-dense input does no work twice.
        'pairs: while i + 64 <= s.len() {
            // The input `PREFETCH` bytes ahead is asked for now: a large
            // kept body was copied into the ring with streaming stores, so
            // the writer reads it from memory, not from a cache
            // (DECISIONS.md, "The writer prefetches the bodies it reads").
            // Near the body's end the hint points past it, at the ring's
            // next bytes: a prefetch never faults.
            crate::prefetch::read(s.as_ptr().wrapping_add(i + PREFETCH));
            // SAFETY: `i + 64 <= s.len()`, so both 32-byte loads are in bounds.
            let (a, b) = unsafe {
                (
                    _mm256_loadu_si256(s.as_ptr().add(i).cast()),
                    _mm256_loadu_si256(s.as_ptr().add(i + 32).cast()),
                )
            };
            seen = _mm256_or_si256(seen, _mm256_or_si256(a, b));
            let (ma, mb) = (k.mask(a), k.mask(b));
            if ma | mb == 0 {
                // SAFETY: at the pair's start `w <= 6 * i` (no input byte
                // makes more than 6 output bytes), so both stores end by
                // `6 * i + 64 <= 6 * (i + 64) <= room.len()`.
                unsafe {
                    _mm256_storeu_si256(room.as_mut_ptr().add(w).cast(), a);
                    _mm256_storeu_si256(room.as_mut_ptr().add(w + 32).cast(), b);
                }
                w += 64;
                i += 64;
                continue;
            }
            for (v, mask) in [(a, ma), (b, mb)] {
                // SAFETY: `i + 32 <= s.len()` for either block of the pair,
                // `v` is the block at `i`, `mask` its mask, and the room is
                // the caller's (at least `6 * s.len()`).
                let whole = unsafe { block(&k, room, s, &mut w, &mut i, v, mask) };
                if !whole {
                    // A `\u00XX` control ended the block early: start again at `i`.
                    continue 'pairs;
                }
            }
        }
        while i + 32 <= s.len() {
            // SAFETY: `i + 32 <= s.len()`, so the 32-byte load is in bounds.
            let v = unsafe { _mm256_loadu_si256(s.as_ptr().add(i).cast()) };
            seen = _mm256_or_si256(seen, v);
            // SAFETY: as in the pair loop: the block at `i` and its mask.
            unsafe { block(&k, room, s, &mut w, &mut i, v, k.mask(v)) };
        }
        let mut ascii = _mm256_movemask_epi8(seen) == 0;
        for &b in &s[i..] {
            ascii &= b.is_ascii();
            w = put_escaped(room, w, b);
        }
        (w, ascii)
    }

    /// Writes the 32-byte block `v`, the input at `s[*i..]`, whose escape
    /// mask is `mask`, at `room[*w..]`, and moves both on. Returns `false`
    /// when the block held a control that needs `\u00XX`: then only the
    /// bytes up to and including it were taken, and `*i` is just past it.
    ///
    /// # Safety
    /// The CPU must support AVX2; `*i + 32 <= s.len()`; `room` holds at
    /// least `6 * s.len()` bytes and `*w <= 6 * *i`.
    #[target_feature(enable = "avx2,popcnt")]
    #[inline]
    unsafe fn block(
        k: &Consts,
        room: &mut [MaybeUninit<u8>],
        s: &[u8],
        w: &mut usize,
        i: &mut usize,
        v: __m256i,
        mask: u32,
    ) -> bool {
        // Bounds of every store below: `*w <= 6 * *i` and `*i + 32 <=
        // s.len()`. A 32-byte store at `*w` ends by `6 * *i + 32`; the four
        // groups' 16-byte stores start at most 16 apart and end by
        // `*w + 64`: both within `6 * (*i + 32) <= room.len()`.
        if mask == 0 {
            // SAFETY: see the bounds above.
            unsafe { _mm256_storeu_si256(room.as_mut_ptr().add(*w).cast(), v) };
            *w += 32;
            *i += 32;
            return true;
        }
        // The letter of each short control (0 for the others; the lookup
        // uses the low nibble, so only bytes below 0x10 count).
        let letter = _mm256_shuffle_epi8(k.short, v);
        let below_16 = _mm256_cmpeq_epi8(_mm256_min_epu8(v, k.nibble_max), v);
        let short_ctrl = _mm256_andnot_si256(_mm256_cmpeq_epi8(letter, k.zero), below_16);
        let long = _mm256_movemask_epi8(_mm256_andnot_si256(short_ctrl, k.ctrl(v))) as u32;
        if long != 0 {
            // A control that needs `\u00XX`: this block goes the old way,
            // up to and including its first byte to escape.
            // SAFETY: see the bounds above.
            unsafe { _mm256_storeu_si256(room.as_mut_ptr().add(*w).cast(), v) };
            let clean = mask.trailing_zeros() as usize;
            *w += clean;
            *i += clean;
            *w = put_escaped(room, *w, s[*i]);
            *i += 1;
            return false;
        }
        // Letters in place of the short controls; `"` and `\\` stay.
        let t = _mm256_blendv_epi8(v, letter, short_ctrl);
        let halves = [_mm256_castsi256_si128(t), _mm256_extracti128_si256::<1>(t)];
        for (h, half) in halves.into_iter().enumerate() {
            for g in 0..2 {
                let group = if g == 0 {
                    half
                } else {
                    _mm_srli_si128::<8>(half)
                };
                let m = ((mask >> (16 * h + 8 * g)) & 0xff) as usize;
                // SAFETY: the tables are 16 bytes per entry and `m < 256`.
                let (spread, slash) = unsafe {
                    (
                        _mm_loadu_si128(SPREAD[m].as_ptr().cast()),
                        _mm_loadu_si128(SPREAD_SLASH[m].as_ptr().cast()),
                    )
                };
                let out = _mm_or_si128(_mm_shuffle_epi8(group, spread), slash);
                // SAFETY: see the bounds above.
                unsafe { _mm_storeu_si128(room.as_mut_ptr().add(*w).cast(), out) };
                *w += 8 + m.count_ones() as usize;
            }
        }
        *i += 32;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 and the portable escaper write the same bytes, whatever
    /// the density of escapes, with and without `\u00XX` controls.
    #[test]
    fn escapers_agree() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let alphabets: [&[u8]; 3] = [
            &[b'"', b'\\', 0x01, b'\n', 0x1f],
            &[b'"', b'\\', b'\n', b'\t', b'\r', 0x08, 0x0c],
            &[b'"', b'"', b'\\', 0x18, 0x1d, 0x0b, 0x00],
        ];
        for len in 0..600 {
            for density in [1u64, 2, 3, 7, 50, 1000] {
                for special in alphabets {
                    let input: Vec<u8> = (0..len)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            if x.is_multiple_of(density) {
                                special[(x >> 8) as usize % special.len()]
                            } else {
                                b'a' + (x % 26) as u8
                            }
                        })
                        .collect();
                    assert_eq!(
                        portable(&input),
                        dispatched(&input),
                        "len {len} density {density}"
                    );
                }
            }
        }
    }

    fn portable(s: &[u8]) -> (Vec<u8>, bool) {
        escaped_both(s).0
    }

    fn dispatched(s: &[u8]) -> (Vec<u8>, bool) {
        escaped_both(s).1
    }

    /// Every byte value, alone and in every position of a 32-byte block.
    #[test]
    fn every_byte_in_every_lane() {
        for b in 0..=255u8 {
            for at in 0..64 {
                let mut input = vec![b'x'; 64];
                input[at] = b;
                let (p, d) = (portable(&input), dispatched(&input));
                assert_eq!(p, d, "byte {b:#x} at {at}");
                assert_eq!(p.1, b.is_ascii(), "byte {b:#x} at {at}: ASCII flag");
            }
        }
    }
}
