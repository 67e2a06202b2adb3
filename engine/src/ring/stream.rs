//! Copying a record into cold ring memory with non-temporal stores (x86-64).
//!
//! Past the ring's warm start, the bytes a producer claims were last written
//! a lap of the ring ago, and are in no cache. An ordinary store first reads
//! each such line from memory (a read for ownership) and writes it back
//! later; a non-temporal store writes whole lines through the CPU's
//! write-combining buffers and reads nothing. So a record there is copied in
//! whole 64-byte lines of streaming stores, followed by an `sfence`: streaming
//! stores are not ordered by the `Release` store of the record's header, the
//! fence orders them before it.
//!
//! A line goes out in two 32-byte stores where the CPU has AVX2, in four
//! 16-byte ones otherwise: with the wider stores the tail of a kept 16 KiB
//! call under a saturated writer was shorter on the Intel Xeon (DECISIONS.md,
//! "Streaming stores 32 bytes wide").

use std::arch::x86_64::{
    __m128i, __m256i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128, _mm256_loadu_si256,
    _mm256_stream_si256,
};

const LINE: usize = 64;

/// One line, assembled from the pieces that share it.
#[repr(align(64))]
struct Line([u8; LINE]);

/// Copies `pieces` back to back to `dst` with streaming stores, in whole
/// lines (the last one filled with zeros), then fences them.
///
/// # Safety
/// `dst` is 64-byte aligned, and the caller has exclusive use of the
/// pieces' total length, rounded up to a multiple of 64, from `dst`.
pub(super) unsafe fn write<'a>(dst: *mut u8, pieces: impl Iterator<Item = &'a [u8]>) {
    // The test is a load of std's cached CPU features and a branch.
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2; the rest is the caller's contract.
        unsafe { write_ymm(dst, pieces) }
    } else {
        // SAFETY: the caller's contract; SSE2 is part of x86-64.
        unsafe { write_xmm(dst, pieces) }
    }
    // SAFETY: `sfence` has no preconditions (SSE, part of x86-64).
    unsafe { _mm_sfence() };
}

/// The body of [`write`] but its fence, compiled once per store width so
/// that the line store is inlined into a function built for the
/// instructions it uses.
macro_rules! write_with {
    ($(#[$feature:meta])* $name:ident, $stream_line:ident) => {
        #[doc = concat!("[`write`] without its fence, a line at a time by `", stringify!($stream_line), "`.")]
        ///
        /// # Safety
        /// As [`write`]'s, and the CPU has the line store's instructions.
        $(#[$feature])*
        unsafe fn $name<'a>(mut dst: *mut u8, pieces: impl Iterator<Item = &'a [u8]>) {
            let mut line = Line([0; LINE]);
            let mut fill = 0;
            for mut p in pieces {
                if fill > 0 {
                    let n = (LINE - fill).min(p.len());
                    line.0[fill..fill + n].copy_from_slice(&p[..n]);
                    (fill, p) = (fill + n, &p[n..]);
                    if fill < LINE {
                        continue;
                    }
                    // SAFETY: `dst` is the next line of the record (caller's
                    // contract); the CPU has the instructions (ditto).
                    unsafe { $stream_line(dst, line.0.as_ptr()) };
                    // SAFETY: still within the record's lines, or one past its end.
                    dst = unsafe { dst.add(LINE) };
                }
                // No line is half assembled now: whole lines go straight from
                // the piece, and its rest starts the next line.
                while p.len() >= LINE {
                    // SAFETY: as above; `p` has at least 64 readable bytes.
                    unsafe { $stream_line(dst, p.as_ptr()) };
                    // SAFETY: as above.
                    dst = unsafe { dst.add(LINE) };
                    p = &p[LINE..];
                }
                line.0[..p.len()].copy_from_slice(p);
                fill = p.len();
            }
            if fill > 0 {
                line.0[fill..].fill(0);
                // SAFETY: the record's last line, which its footprint covers whole.
                unsafe { $stream_line(dst, line.0.as_ptr()) };
            }
        }
    };
}

write_with!(
    #[target_feature(enable = "avx2")]
    write_ymm,
    line_ymm
);
write_with!(write_xmm, line_xmm);

/// Streams the 64 bytes at `src` (any alignment) to the line at `dst`, in
/// two 32-byte stores.
///
/// # Safety
/// `src` has 64 readable bytes; `dst` is a 64-byte aligned line we may
/// write; the CPU has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn line_ymm(dst: *mut u8, src: *const u8) {
    for i in 0..LINE / 32 {
        // SAFETY: in bounds of both (caller's contract); `loadu` takes any
        // alignment, and `dst + 32 i` is 32-byte aligned as `stream` needs.
        unsafe {
            let v = _mm256_loadu_si256(src.add(32 * i).cast::<__m256i>());
            _mm256_stream_si256(dst.add(32 * i).cast::<__m256i>(), v);
        }
    }
}

/// [`line_ymm`] in four 16-byte stores (SSE2, part of x86-64).
///
/// # Safety
/// `src` has 64 readable bytes; `dst` is a 64-byte aligned line we may write.
#[inline(always)]
unsafe fn line_xmm(dst: *mut u8, src: *const u8) {
    for i in 0..LINE / 16 {
        // SAFETY: in bounds of both (caller's contract); `loadu` takes any
        // alignment, and `dst + 16 i` is 16-byte aligned as `stream` needs.
        unsafe {
            let v = _mm_loadu_si128(src.add(16 * i).cast::<__m128i>());
            _mm_stream_si128(dst.add(16 * i).cast::<__m128i>(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LINE, Line, write_xmm, write_ymm};
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    /// Streams `pieces` with `f` into a fresh run of lines and returns them.
    fn streamed(
        pieces: &[Vec<u8>],
        f: unsafe fn(*mut u8, std::slice::Iter<'_, Vec<u8>>),
    ) -> Vec<u8> {
        let total: usize = pieces.iter().map(Vec::len).sum();
        let mut lines: Vec<Line> = (0..total.div_ceil(LINE))
            .map(|_| Line([0xAA; LINE]))
            .collect();
        // SAFETY: `lines` is 64-byte aligned and covers the total rounded up
        // to whole lines; the CPU has what `f` needs (checked by the caller).
        unsafe { f(lines.as_mut_ptr().cast(), pieces.iter()) };
        // SAFETY: ordinary stores after the streaming ones; `sfence` has no
        // preconditions.
        unsafe { std::arch::x86_64::_mm_sfence() };
        lines.iter().flat_map(|l| l.0).collect()
    }

    #[test]
    fn both_store_widths_write_the_pieces_back_to_back_and_zero_the_last_line() {
        // Pieces of every length around a line's, so that lines are
        // assembled across two and three pieces and whole lines come
        // straight from a piece at every offset.
        let mut rng = SmallRng::seed_from_u64(0x9E37_79B9_7F4A_7C15);
        for round in 0..500 {
            let count = rng.random_range(1..=6);
            let pieces: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    let mut piece = vec![0; rng.random_range(0..200)];
                    rng.fill(&mut piece[..]);
                    piece
                })
                .collect();
            let mut want: Vec<u8> = pieces.concat();
            want.resize(want.len().div_ceil(LINE) * LINE, 0);
            let xmm = streamed(&pieces, |d, p| {
                // SAFETY: forwarded from `streamed`; SSE2 is part of x86-64.
                unsafe { write_xmm(d, p.map(Vec::as_slice)) }
            });
            assert_eq!(xmm, want, "16-byte stores, round {round}");
            if std::arch::is_x86_feature_detected!("avx2") {
                let ymm = streamed(&pieces, |d, p| {
                    // SAFETY: forwarded from `streamed`; the CPU has AVX2.
                    unsafe { write_ymm(d, p.map(Vec::as_slice)) }
                });
                assert_eq!(ymm, want, "32-byte stores, round {round}");
            }
        }
    }
}
