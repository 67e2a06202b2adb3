//! The consumer side: read each committed record in place, hand it to the
//! writer, clear its header, and release its bytes to the producers.

#[cfg(capline_loom)]
use loom::sync::atomic::Ordering;
#[cfg(not(capline_loom))]
use std::sync::atomic::Ordering;

use std::sync::Arc;

use super::{KIND_RECORD, RecordParts, Shared};

/// The consumer side, owned by the writer thread.
#[derive(Debug)]
pub(crate) struct Consumer {
    pub(super) shared: Arc<Shared>,
    /// The consumer's own head; published to `shared.head` in batches.
    pub(super) head: u64,
    pub(super) published: u64,
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

impl Consumer {
    /// The ring's size in bytes.
    pub(crate) fn capacity(&self) -> u64 {
        self.shared.capacity
    }

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
                // of sweeping the whole buffer. The skipped headers are already clear.
                let at = self.head & mask;
                if at >= s.warm {
                    let next = self.head + (s.capacity - at);
                    if s.claim
                        .0
                        .tail
                        .compare_exchange(self.head, next, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                    {
                        self.head = next;
                    }
                }
                publish(s, self.head, &mut self.published);
                // Closed, and every claim committed (tail == head): nothing more will come.
                let closed = s.closed.load(Ordering::Acquire)
                    && s.claim.0.tail.load(Ordering::Acquire) == self.head;
                return if closed { Pop::Closed } else { Pop::Empty };
            }
            let len = word >> 32;
            let is_record = word & 0xff == KIND_RECORD;
            if is_record && let Some(f) = f.take() {
                s.prefetch_next(self.head + len);
                // SAFETY: the header is committed (Acquire above), so the
                // producer finished writing `off .. off + len` and will not
                // touch it again; no producer reuses it before we publish a
                // head past it, which happens after `f` returns.
                unsafe { s.storage.read_record(off, len as usize, f) };
            }
            // Every header outside `head .. tail` is clear; the bytes are
            // left as they are (no header is read from them).
            s.storage.header(off).store(0, Ordering::Relaxed);
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

impl Drop for Consumer {
    /// Publishes the consumer's own head, so the ring's last owner knows
    /// which records were never consumed (and drops the bodies they hold).
    fn drop(&mut self) {
        self.published = u64::MAX;
        publish(&self.shared, self.head, &mut self.published);
    }
}

/// Lets producers reuse everything before `head`.
fn publish(s: &Shared, head: u64, published: &mut u64) {
    if *published != head {
        // Release: the consumer's reads of the consumed bytes and its clearing
        // of their headers happen-before any producer that Acquire-loads this
        // head writes to them.
        s.head.0.store(head, Ordering::Release);
        *published = head;
    }
}

impl Shared {
    /// Starts pulling the record after this one into the writer's cache
    /// while this one is serialized, if it is committed already (never a
    /// record a producer is still writing: that would take its lines away
    /// from the producer).
    #[cfg(all(target_arch = "x86_64", not(capline_loom)))]
    #[inline]
    fn prefetch_next(&self, at: u64) {
        let off = (at & (self.capacity - 1)) as usize;
        if self.storage.header(off).load(Ordering::Relaxed) & 0xff != KIND_RECORD {
            return;
        }
        let p = self.storage.bytes().wrapping_add(off);
        for line in 0..4 {
            // SAFETY: a prefetch is only a hint; it never faults and reads
            // nothing the program sees.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p.wrapping_add(line * 64).cast(),
                )
            };
        }
    }

    #[cfg(not(all(target_arch = "x86_64", not(capline_loom))))]
    #[inline]
    fn prefetch_next(&self, _at: u64) {}
}
