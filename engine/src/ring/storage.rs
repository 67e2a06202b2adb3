//! Storage: the buffer and its header words (one per 64-byte unit). In
//! production the buffer is one allocation of `AtomicU64` words whose bytes
//! are written and read directly; under loom, loom-tracked cells for bytes,
//! so loom checks the data accesses too.

#[cfg(capline_loom)]
use loom::sync::atomic::AtomicU64;
#[cfg(not(capline_loom))]
use std::sync::atomic::AtomicU64;

use super::codec::{decode, fixed_fields, pieces};
use super::{RecordParts, UNIT};

#[cfg(not(capline_loom))]
pub(super) struct Storage {
    /// `capacity / 8` words. `AtomicU64` is an `UnsafeCell`, so writing its
    /// bytes through a pointer derived from a shared reference is allowed.
    /// Every page is made resident here, before the first record.
    words: Box<[AtomicU64]>,
    /// `capacity / 64` header words, one per unit.
    headers: Box<[AtomicU64]>,
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
    pub(super) fn new(capacity: usize) -> Self {
        let zeroed = |n: usize| -> Box<[AtomicU64]> {
            let words: Box<[AtomicU64]> = std::iter::repeat_with(|| AtomicU64::new(0))
                .take(n)
                .collect();
            // The allocator hands out zeroed pages lazily; touch one word per
            // 4 KiB page now, so no capture() ever waits for the kernel to
            // fault a page in (a fault costs microseconds, more in a VM).
            for w in words.iter().step_by(4096 / 8) {
                w.store(0, std::sync::atomic::Ordering::Relaxed);
            }
            words
        };
        Storage {
            words: zeroed(capacity / 8),
            headers: zeroed(capacity / UNIT as usize),
        }
    }

    /// The header of the unit at byte offset `off`.
    pub(super) fn header(&self, off: usize) -> &AtomicU64 {
        &self.headers[off / UNIT as usize]
    }

    pub(super) fn bytes(&self) -> *mut u8 {
        self.words.as_ptr().cast::<u8>().cast_mut()
    }

    /// # Safety
    /// The caller has exclusive use of `off .. off + footprint(rec)`, which lies in the buffer.
    pub(super) unsafe fn write_record(&self, off: usize, rec: &RecordParts) {
        let fixed = fixed_fields(rec);
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

    /// # Safety
    /// `off .. off + len` holds a committed record that nobody writes while `f` runs.
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

    pub(super) unsafe fn write_record(&self, off: usize, rec: &RecordParts) {
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
    }
}
