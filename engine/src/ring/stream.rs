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

use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};

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
pub(super) unsafe fn write<'a>(mut dst: *mut u8, pieces: impl Iterator<Item = &'a [u8]>) {
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
            // SAFETY: `dst` is the next line of the record (caller's contract).
            unsafe { stream_line(dst, line.0.as_ptr()) };
            // SAFETY: still within the record's lines, or one past its end.
            dst = unsafe { dst.add(LINE) };
        }
        // No line is half assembled now: whole lines go straight from the
        // piece, and its rest starts the next line.
        while p.len() >= LINE {
            // SAFETY: as above; `p` has at least 64 readable bytes.
            unsafe { stream_line(dst, p.as_ptr()) };
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
        unsafe { stream_line(dst, line.0.as_ptr()) };
    }
    // SAFETY: `sfence` has no preconditions (SSE, part of x86-64).
    unsafe { _mm_sfence() };
}

/// Streams the 64 bytes at `src` (any alignment) to the line at `dst`.
///
/// # Safety
/// `src` has 64 readable bytes; `dst` is a 64-byte aligned line we may write.
#[inline(always)]
unsafe fn stream_line(dst: *mut u8, src: *const u8) {
    for i in 0..LINE / 16 {
        // SAFETY: in bounds of both (caller's contract); `loadu` takes any
        // alignment, and `dst + 16 i` is 16-byte aligned as `stream` needs.
        unsafe {
            let v = _mm_loadu_si128(src.add(16 * i).cast::<__m128i>());
            _mm_stream_si128(dst.add(16 * i).cast::<__m128i>(), v);
        }
    }
}
