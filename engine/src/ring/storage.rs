//! Storage: the buffer and its header words (one per 64-byte unit). In
//! production the buffer is one allocation of `AtomicU64` words whose bytes
//! are written and read directly; under loom, loom-tracked cells for bytes,
//! so loom checks the data accesses too.

#[cfg(capline_loom)]
use loom::sync::atomic::AtomicU64;
#[cfg(not(capline_loom))]
use std::sync::atomic::AtomicU64;

use super::codec::{decode, fixed_fields, pieces, release};
use super::{RecordParts, UNIT};

/// One cache line of the buffer: units start on lines, so a record never
/// shares a line with another producer's.
#[cfg(not(capline_loom))]
#[repr(align(64))]
struct Line([AtomicU64; 8]);

#[cfg(not(capline_loom))]
pub(super) struct Storage {
    /// `capacity / 64` lines. `AtomicU64` is an `UnsafeCell`, so writing its
    /// bytes through a pointer derived from a shared reference is allowed.
    /// Every page is made resident here, before the first record.
    lines: Box<[Line]>,
    /// `capacity / 64` header words, one per unit.
    headers: Box<[AtomicU64]>,
    /// The CPU has `PREFETCHW` (CPUID `PRFCHW`), which takes a line in the
    /// state a store needs; otherwise [`Storage::prefetch_for_write`] reads.
    #[cfg(target_arch = "x86_64")]
    prefetchw: bool,
}

#[cfg(not(capline_loom))]
impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("bytes", &(self.lines.len() * UNIT as usize))
            .finish()
    }
}

#[cfg(not(capline_loom))]
impl Storage {
    pub(super) fn new(capacity: usize) -> Self {
        // The allocator hands out zeroed pages lazily; touch one word per
        // 4 KiB page now, so no capture() ever waits for the kernel to fault
        // a page in (a fault costs microseconds, more in a VM).
        let touch = |w: &AtomicU64| w.store(0, std::sync::atomic::Ordering::Relaxed);
        let lines: Box<[Line]> = std::iter::repeat_with(|| Line(Default::default()))
            .take(capacity / UNIT as usize)
            .collect();
        lines.iter().step_by(4096 / 64).for_each(|l| touch(&l.0[0]));
        let headers: Box<[AtomicU64]> = std::iter::repeat_with(AtomicU64::default)
            .take(capacity / UNIT as usize)
            .collect();
        headers.iter().step_by(4096 / 8).for_each(touch);
        Storage {
            lines,
            headers,
            #[cfg(target_arch = "x86_64")]
            prefetchw: has_prefetchw(),
        }
    }

    /// Hints that `off .. off + len` will be written soon, a prefetch per
    /// line.
    #[inline]
    pub(super) fn prefetch_for_write(&self, off: usize, len: usize) {
        let p = self.bytes().wrapping_add(off);
        for at in (0..len).step_by(UNIT as usize) {
            self.prefetch_line_for_write(p.wrapping_add(at));
        }
    }

    /// Hints that the header of the unit at `off` will be written soon.
    #[inline]
    pub(super) fn prefetch_header_for_write(&self, off: usize) {
        self.prefetch_line_for_write(self.header(off).as_ptr().cast());
    }

    /// Prefetches the cache line holding `line`: for writing where the CPU
    /// has a write prefetch, for reading otherwise.
    #[inline]
    fn prefetch_line_for_write(&self, line: *const u8) {
        #[cfg(target_arch = "x86_64")]
        if self.prefetchw {
            // SAFETY: a prefetch is only a hint: it never faults, changes no
            // memory, and the CPU has the instruction (`has_prefetchw`).
            unsafe {
                std::arch::asm!("prefetchw [{}]", in(reg) line, options(nostack, preserves_flags, readonly))
            };
            return;
        }
        crate::prefetch::read(line);
    }

    /// The header of the unit at byte offset `off`.
    pub(super) fn header(&self, off: usize) -> &AtomicU64 {
        &self.headers[off / UNIT as usize]
    }

    pub(super) fn bytes(&self) -> *mut u8 {
        self.lines.as_ptr().cast::<u8>().cast_mut()
    }

    /// Copies a record in at `off`; with `cold`, in whole lines of
    /// streaming stores where the CPU has them ([`super::stream`]).
    ///
    /// # Safety
    /// The caller has exclusive use of `off .. off + footprint(rec)`, which
    /// lies in the buffer; `off` is a multiple of 64.
    pub(super) unsafe fn write_record(&self, off: usize, rec: &RecordParts, cold: bool) {
        let fixed = fixed_fields(rec);
        #[cfg(target_arch = "x86_64")]
        if cold {
            let pieces = std::iter::once(&fixed[..]).chain(pieces(rec));
            // SAFETY: the buffer is of 64-byte aligned `Line`s, so `off` is a
            // line; the footprint, whole lines, is ours (caller's contract).
            unsafe { super::stream::write(self.bytes().add(off), pieces) };
            return;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = cold;
        let mut at = off;
        for piece in std::iter::once(&fixed[..]).chain(pieces(rec)) {
            // SAFETY: in bounds and exclusively ours (the caller's contract);
            // `piece` is caller memory, so the ranges do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(piece.as_ptr(), self.bytes().add(at), piece.len())
            };
            at += piece.len();
        }
    }

    /// Hands the record at `off` to `f`, then drops the bodies it holds.
    ///
    /// # Safety
    /// `off .. off + len` holds a committed record that nobody writes while
    /// `f` runs, read here for the last time.
    pub(super) unsafe fn read_record(
        &self,
        off: usize,
        len: usize,
        f: impl FnOnce(RecordParts<'_>),
    ) {
        // SAFETY: in bounds, and not written by anyone while the slice lives
        // (the caller's contract); the slice does not outlive this call.
        let body = unsafe { std::slice::from_raw_parts(self.bytes().add(off), len) };
        f(decode(body));
        // SAFETY: the record's last read (the caller's contract), and `f`
        // has returned, so nothing borrows its bodies any more.
        unsafe { release(body) };
    }
}

/// Whether the CPU has `PREFETCHW`: CPUID leaf 0x8000_0001, ECX bit 8
/// (`PRFCHW`; Linux calls it `3dnowprefetch`). Rust's `is_x86_feature_detected!`
/// does not know it on stable, and `_MM_HINT_ET0` compiles to a read
/// prefetch unless the whole crate is built for it.
#[cfg(all(target_arch = "x86_64", not(capline_loom)))]
pub(super) fn has_prefetchw() -> bool {
    // `__cpuid` is a safe function in recent Rust (1.95 here) and an unsafe
    // one in older releases the crate still builds with (rust-version 1.88).
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU; leaf 0x8000_0000 says which
    // extended leaves exist, and 0x8000_0001 is read only if it does.
    unsafe {
        std::arch::x86_64::__cpuid(0x8000_0000).eax >= 0x8000_0001
            && std::arch::x86_64::__cpuid(0x8000_0001).ecx & (1 << 8) != 0
    }
}

#[cfg(capline_loom)]
#[derive(Debug)]
pub(super) struct Storage {
    words: Box<[AtomicU64]>,
    bytes: Box<[loom::cell::UnsafeCell<u8>]>,
}

// SAFETY: the ring protocol gives each byte one writer at a time (the
// claiming producer) and orders it before every reader;
// under loom, every access goes through `with`/`with_mut`, so loom checks that claim.
#[cfg(capline_loom)]
unsafe impl Sync for Storage {}

#[cfg(capline_loom)]
impl Storage {
    pub(super) fn new(capacity: usize) -> Self {
        Storage {
            words: (0..capacity / UNIT as usize)
                .map(|_| AtomicU64::new(0))
                .collect(),
            bytes: (0..capacity)
                .map(|_| loom::cell::UnsafeCell::new(0))
                .collect(),
        }
    }

    pub(super) fn header(&self, off: usize) -> &AtomicU64 {
        &self.words[off / UNIT as usize]
    }

    /// A hint only; nothing under loom.
    pub(super) fn prefetch_for_write(&self, _off: usize, _len: usize) {}

    /// A hint only; nothing under loom.
    pub(super) fn prefetch_header_for_write(&self, _off: usize) {}

    pub(super) unsafe fn write_record(&self, off: usize, rec: &RecordParts, _cold: bool) {
        let fixed = fixed_fields(rec);
        let mut at = off;
        for piece in std::iter::once(&fixed[..]).chain(pieces(rec)) {
            for &b in piece {
                // SAFETY: loom checks that no other access races with this one.
                self.bytes[at].with_mut(|p| unsafe { *p = b });
                at += 1;
            }
        }
    }

    pub(super) unsafe fn read_record(
        &self,
        off: usize,
        len: usize,
        f: impl FnOnce(RecordParts<'_>),
    ) {
        let body: Vec<u8> = (off..off + len)
            // SAFETY: loom checks that no other access races with this one.
            .map(|i| self.bytes[i].with(|p| unsafe { *p }))
            .collect();
        f(decode(&body));
        // SAFETY: the record's last read (the caller's contract).
        unsafe { release(&body) };
    }
}
