//! The hot path: [`Engine::capture`], and what it answers.
//!
//! `capture()` is called on every inference by server threads. It checks the
//! gate, draws the sampling decision, validates what it must, and copies a
//! kept pair into the ring for the writer thread ([`crate::ring::Producer`]).
//! It never blocks, takes no lock, makes no syscall and never allocates; a
//! record it cannot keep is dropped and counted with its reason. What a call
//! takes and answers is in [`super::call`].

use std::mem::ManuallyDrop;
use std::time::UNIX_EPOCH;

use bytes::Bytes;

use super::Engine;
use super::call::{Capture, DropReason, Outcome, RejectReason, SharedCapture};
use crate::clock::{Clock, MAX_TIME_MILLIS};
use crate::format::{MAX_CONTENT_TYPE, Payload, is_valid_inference_id};
use crate::ring::RecordParts;
use crate::sample::Closed;
use crate::stats::{Lane, claim_slot};

impl Engine {
    /// Offers one inference for capture. Never blocks, never takes a lock,
    /// never makes a syscall and never allocates; returns what happened.
    ///
    /// Only the gate is decided here. Sampling and a kept call's work are
    /// functions of their own (`sample`, then `offer`), as is a thread's
    /// first call, which claims its counter slot and starts again: so a
    /// call that ends at a closed gate does not save the registers, nor
    /// build the stack frame, that their work needs (`DECISIONS.md`, "The
    /// gate alone in `capture()`").
    pub fn capture(&self, c: &Capture) -> Outcome {
        self.capture_with(c, None)
    }

    /// [`capture`](Self::capture) without the copy: the bodies are handed
    /// over as [`Bytes`], and a kept record holds on to them (in the ring,
    /// in place of the copied bytes) until the writer has serialized it, on
    /// its own thread, which then drops them. The call then costs what a
    /// kept call costs without its `memcpy`, whatever the bodies' size: for
    /// bodies of tens of kilobytes or more, the copy is most of a kept
    /// call's time on the serving thread. Every other rule is the same:
    /// never blocks, takes no lock, makes no syscall, never allocates; the
    /// same sampling, checks, counters and outcomes. The ring's space still
    /// bounds what kept records hold: a held body takes as much of it as
    /// its copy would.
    ///
    /// A body not kept (sampled out, dropped, rejected, or of a payload the
    /// config does not capture) is dropped before this returns, on this
    /// thread. The buffers stay alive, and unchanged (`Bytes` are
    /// immutable), until the record is written, up to the writer's sleep
    /// (tens of milliseconds) after the call: a server that reuses a buffer
    /// once every `Bytes` of it is gone (a `BytesMut` it reads into) will
    /// allocate a new one meanwhile. Pass a clone (`Bytes::clone`, a
    /// reference count) to keep using a body.
    pub fn capture_shared(&self, c: SharedCapture<'_>) -> Outcome {
        // Ours until the ring takes them: only a kept record's captured
        // payloads are moved in (`RecordParts::held_bodies`).
        let request = ManuallyDrop::new(c.request.data);
        let response = ManuallyDrop::new(c.response.data);
        let outcome = self.capture_with(
            &Capture {
                request: Payload::new(c.request.content_type, &request),
                response: Payload::new(c.response.content_type, &response),
                inference_id: c.inference_id,
                time: c.time,
            },
            Some(&[&request, &response]),
        );
        let kept = outcome == Outcome::Kept;
        if !(kept && self.capture_input) {
            drop(ManuallyDrop::into_inner(request));
        }
        if !(kept && self.capture_output) {
            drop(ManuallyDrop::into_inner(response));
        }
        outcome
    }

    /// Both kinds of call: `held` are the bodies a shared call hands over.
    #[inline(always)]
    fn capture_with(&self, c: &Capture, held: Option<&[&Bytes; 2]>) -> Outcome {
        let Some(n) = self.counters.lane() else {
            return self.first_capture(c, held);
        };
        match self.sampler.gate() {
            None => {}
            Some(Closed::Disabled) => {
                n.inc(&n.s.dropped_disabled);
                return Outcome::Dropped(DropReason::Disabled);
            }
            Some(Closed::Watermark) => {
                n.inc(&n.s.dropped_watermark);
                return Outcome::Dropped(DropReason::Watermark);
            }
            Some(Closed::SpoolFull) => {
                n.inc(&n.s.dropped_spool_full);
                return Outcome::Dropped(DropReason::SpoolFull);
            }
        }
        self.sample(c, n, held)
    }

    /// The sampling decision at an open gate; a kept call goes on to
    /// [`offer`](Self::offer).
    #[inline(never)]
    fn sample(&self, c: &Capture, n: Lane<'_>, held: Option<&[&Bytes; 2]>) -> Outcome {
        if !self.sampler.keep(c.inference_id) {
            n.inc(&n.s.sampled_out);
            return Outcome::SampledOut;
        }
        self.offer(c, n, held)
    }

    /// A thread's first call: its counter slot is claimed, then the call
    /// is made again.
    #[cold]
    #[inline(never)]
    fn first_capture(&self, c: &Capture, held: Option<&[&Bytes; 2]>) -> Outcome {
        claim_slot();
        self.capture_with(c, held)
    }

    /// A sampled-in call: checks what the caller passed, then copies the
    /// record into the ring (or, for `held` bodies, moves their handles
    /// in), or drops it and counts why.
    #[inline(never)]
    fn offer(&self, c: &Capture, n: Lane<'_>, held: Option<&[&Bytes; 2]>) -> Outcome {
        if c.inference_id.is_some_and(|id| !is_valid_inference_id(id)) {
            n.inc(&n.s.rejected_inference_id);
            return Outcome::Rejected(RejectReason::InferenceId);
        }
        if c.request.content_type.len() > MAX_CONTENT_TYPE
            || c.response.content_type.len() > MAX_CONTENT_TYPE
        {
            n.inc(&n.s.rejected_content_type);
            return Outcome::Rejected(RejectReason::ContentType);
        }
        let stamp = match c.time {
            // One read of the coarse clock or the CPU counter (see `clock`).
            None => self.clock.stamp(),
            Some(t) => t
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_millis())
                .filter(|ms| *ms < u128::from(MAX_TIME_MILLIS))
                .map(|ms| Clock::stamp_millis(ms as u64)),
        };
        let Some(stamp) = stamp else {
            n.inc(&n.s.rejected_time);
            return Outcome::Rejected(RejectReason::Time);
        };
        let rec = RecordParts {
            input: self.capture_input.then_some(c.request),
            output: self.capture_output.then_some(c.response),
            inference_id: c.inference_id,
            stamp,
            held: held.map_or([None, None], |&[i, o]| [Some(i), Some(o)]),
        };
        let size = rec.size();
        if size > self.max_record_bytes {
            n.inc(&n.s.dropped_too_large);
            return Outcome::Dropped(DropReason::TooLarge);
        }
        if !self.ring.try_push(&rec, size) {
            n.inc(&n.s.dropped_ring_full);
            return Outcome::Dropped(DropReason::RingFull);
        }
        n.inc(&n.s.kept);
        Outcome::Kept
    }

    /// Counts a record the caller refused before offering it, because it is
    /// larger than `MaxRecordBytes` (a middleware that will not buffer a
    /// body past the limit): it ends as `dropped_too_large`, as if
    /// `capture()` had been called with it, so the accounting stays exact.
    pub fn count_too_large(&self) -> Outcome {
        let n = self.counters.lane_or_claim();
        n.inc(&n.s.dropped_too_large);
        Outcome::Dropped(DropReason::TooLarge)
    }
}
