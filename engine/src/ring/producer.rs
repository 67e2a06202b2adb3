//! The producer side: claim space with a compare-and-swap on the shared
//! tail, copy the record in, commit it by storing its header. The consumer's
//! `head` is read only when the head a producer saw last leaves no room.

#[cfg(capline_loom)]
use loom::sync::atomic::Ordering;
#[cfg(not(capline_loom))]
use std::sync::atomic::Ordering;

use std::sync::Arc;

use super::{KIND_PAD, KIND_RECORD, PREFETCH_MAX, RecordParts, Shared, footprint};

/// The producer side; shared by every capturing thread.
#[derive(Debug, Clone)]
pub(crate) struct Producer {
    pub(super) shared: Arc<Shared>,
}

impl Producer {
    /// Copies the record in; `false` when there is no room. Never blocks,
    /// never allocates. `size` is `rec.size()` (the capture path has it
    /// already, from its size check). On `true`, the ring owns the bodies
    /// in `rec.held_bodies()`: the caller must forget its `Bytes` for them.
    pub(crate) fn try_push(&self, rec: &RecordParts, size: u64) -> bool {
        let s = &*self.shared;
        // A held body takes its full length of the ring's space (at least
        // its handle's) but only its handle's bytes are written: how to
        // write, and what to prefetch, follow what is written.
        let holds = rec.holds();
        let (need, wrote) = if holds {
            let wrote = footprint(rec.written());
            (footprint(size).max(wrote), wrote)
        } else {
            (footprint(size), footprint(size))
        };
        if need > s.capacity {
            return false;
        }
        let mask = s.capacity - 1;
        let c = &s.claim.0;
        let mut tail = c.tail.load(Ordering::Relaxed);
        // Acquire: pairs with the Release store of whoever saw this head
        // (the consumer's Release store of `head` happened before that load).
        let mut head = c.head_seen.load(Ordering::Acquire);
        // Whether `head` is the consumer's own, read just now.
        let mut fresh = false;
        let (pad, start) = loop {
            let to_end = s.capacity - (tail & mask);
            let pad = if need > to_end { to_end } else { 0 };
            if head > tail {
                // Our `tail` is stale: others claimed and the consumer freed
                // past it since we read it. Read it again (it is >= `head` now).
                tail = c.tail.load(Ordering::Relaxed);
                continue;
            }
            let (claim_end, record) = if tail + pad + need - head <= s.capacity {
                (tail + pad + need, true)
            } else if !fresh {
                // No room before the head we saw; the consumer may have
                // freed more since. Acquire: the consumer read everything
                // before `head` and cleared its headers before it published
                // it, and those bytes are what we are about to reuse.
                let now = s.head.0.load(Ordering::Acquire);
                if now > head {
                    // Release: whoever loads this with Acquire is ordered
                    // after the consumer's release of the space, as we are.
                    c.head_seen.store(now, Ordering::Release);
                }
                (head, fresh) = (now, true);
                continue;
            } else if pad > 0 && tail + pad - head <= s.capacity {
                // Only the padding fits: claim it so the next push starts at offset 0.
                (tail + pad, false)
            } else {
                return false;
            };
            // Try moving the tail over the claim; on failure another producer
            // moved it first, so start again from its value.
            match c.tail.compare_exchange_weak(
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
        // The header's line is stored to last: start taking it now, while
        // the record is copied (the next claim's compare-and-swap waits
        // for that store).
        s.storage.prefetch_header_for_write(off);
        // Never a held record: its handles are copied untyped, byte for byte.
        let stream = off as u64 >= s.cold && need >= s.stream_min && !holds;
        // SAFETY: the CAS above gave this producer `start .. start + need`
        // (`wrote <= need` of it is written) exclusively, the bytes lie
        // within the buffer (a record never wraps),
        // `off` is a multiple of 64 (as every claim is), and the consumer was
        // done with them before publishing the `head` we compared with
        // (Acquire loads above).
        unsafe { s.storage.write_record(off, rec, stream) };
        // Release: the record's bytes are visible to whoever sees the header.
        s.storage
            .header(off)
            .store((need << 32) | KIND_RECORD, Ordering::Release);
        s.prefetch_claim(start + need, wrote, head);
        true
    }

    /// Tells the consumer that no producer will push again.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

impl Shared {
    /// Starts taking into this core's cache, for writing, the free lines
    /// the next claim will write: as many as this record took (the next
    /// record is often alike), at most [`PREFETCH_MAX`] bytes, and none past
    /// the buffer's end, past the space the consumer has released (`head`),
    /// or where the next record would be streamed. Without it the next
    /// copy's stores wait for each line to come back from the writer's core,
    /// and the next claim's compare-and-swap, a locked instruction, waits for
    /// those stores (DECISIONS.md, "The producer prefetches its next claim
    /// for writing"). A prefetch is a hint: a line another producer then
    /// claims only moves once more.
    #[inline]
    fn prefetch_claim(&self, at: u64, need: u64, head: u64) {
        let (off, len) = self.prefetch_span(at, need, head);
        self.storage.prefetch_for_write(off as usize, len as usize);
        if len > 0 {
            self.storage.prefetch_header_for_write(off as usize);
        }
    }

    /// The buffer offset and length [`Self::prefetch_claim`] prefetches
    /// after a record of footprint `need` claimed up to `at`, with `head`
    /// the consumer's head the claim was checked against.
    #[inline]
    pub(super) fn prefetch_span(&self, at: u64, need: u64, head: u64) -> (u64, u64) {
        let off = at & (self.capacity - 1);
        if need > PREFETCH_MAX || (off >= self.cold && need >= self.stream_min) {
            return (off, 0);
        }
        let free = (head + self.capacity).saturating_sub(at);
        (off, need.min(self.capacity - off).min(free))
    }

    fn publish_pad(&self, at: u64, pad: u64) {
        let off = (at & (self.capacity - 1)) as usize;
        self.storage
            .header(off)
            .store((pad << 32) | KIND_PAD, Ordering::Release);
    }
}
