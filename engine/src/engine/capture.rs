//! The hot path: [`Engine::capture`], and what it answers.
//!
//! `capture()` is called on every inference by server threads. It checks the
//! gate, draws the sampling decision, validates what it must, and copies a
//! kept pair into the ring for the writer thread ([`crate::ring::Producer`]).
//! It never blocks, takes no lock, makes no syscall and never allocates; a
//! record it cannot keep is dropped and counted with its reason.

use std::time::{SystemTime, UNIX_EPOCH};

use super::Engine;
use crate::clock::{Clock, MAX_TIME_MILLIS};
use crate::format::{MAX_CONTENT_TYPE, Payload, is_valid_inference_id};
use crate::ring::RecordParts;
use crate::sample::Closed;
use crate::stats::{Lane, claim_slot};

/// One inference to capture.
#[derive(Debug, Clone, Copy)]
pub struct Capture<'a> {
    /// The request: its Content-Type and body.
    pub request: Payload<'a>,
    /// The response: its Content-Type and body.
    pub response: Payload<'a>,
    /// The caller's inference id (`X-Amzn-SageMaker-Inference-Id`): 1–64 printable ASCII characters.
    pub inference_id: Option<&'a str>,
    /// When the inference happened; `None` means now.
    pub time: Option<SystemTime>,
}

/// What `capture()` did with a call. Every call has exactly one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Queued for writing.
    Kept,
    /// Not selected by sampling.
    SampledOut,
    /// Not kept, for a reason that is not the caller's fault.
    Dropped(DropReason),
    /// Not kept because the call's data broke a rule.
    Rejected(RejectReason),
}

/// Why a call was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Capture is disabled.
    Disabled,
    /// The disk watermark (or a failed segment write) closed the gate.
    Watermark,
    /// Undelivered segments reached `SpoolMaxBytes`.
    SpoolFull,
    /// The ring had no room (the writer is behind).
    RingFull,
    /// The record is larger than `MaxRecordBytes`.
    TooLarge,
}

/// Why a call was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The inference id is empty, longer than 64 bytes, starts with a space, or is not printable ASCII.
    InferenceId,
    /// A content type is longer than 1024 bytes (`MAX_CONTENT_TYPE`).
    ContentType,
    /// The time is before 1970 or after year 9999.
    Time,
}

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
        let Some(n) = self.counters.lane() else {
            return self.first_capture(c);
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
        self.sample(c, n)
    }

    /// The sampling decision at an open gate; a kept call goes on to
    /// [`offer`](Self::offer).
    #[inline(never)]
    fn sample(&self, c: &Capture, n: Lane<'_>) -> Outcome {
        if !self.sampler.keep(c.inference_id) {
            n.inc(&n.s.sampled_out);
            return Outcome::SampledOut;
        }
        self.offer(c, n)
    }

    /// A thread's first call: its counter slot is claimed, then the call
    /// is made again.
    #[cold]
    #[inline(never)]
    fn first_capture(&self, c: &Capture) -> Outcome {
        claim_slot();
        self.capture(c)
    }

    /// A sampled-in call: checks what the caller passed, then copies the
    /// record into the ring, or drops it and counts why.
    #[inline(never)]
    fn offer(&self, c: &Capture, n: Lane<'_>) -> Outcome {
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
