//! What a capture call takes ([`Capture`], [`SharedCapture`]: an
//! [`Inference`] with borrowed or shared bodies) and what it answers
//! ([`Outcome`]).

use std::time::SystemTime;

use bytes::Bytes;

use crate::format::Payload;

/// One inference to capture, its bodies of type `P`: lent
/// ([`Capture`], for [`Engine::capture`](crate::Engine::capture)) or handed
/// over ([`SharedCapture`], for
/// [`Engine::capture_shared`](crate::Engine::capture_shared)).
#[derive(Debug, Clone, Copy)]
pub struct Inference<'a, P> {
    /// The request: its Content-Type and body.
    pub request: P,
    /// The response: its Content-Type and body.
    pub response: P,
    /// The caller's inference id (`X-Amzn-SageMaker-Inference-Id`): 1–64 printable ASCII characters.
    pub inference_id: Option<&'a str>,
    /// When the inference happened; `None` means now.
    pub time: Option<SystemTime>,
}

/// One inference to capture, its bodies borrowed.
pub type Capture<'a> = Inference<'a, Payload<'a>>;

/// One inference to capture whose bodies the caller hands over instead of
/// lending them: see [`Engine::capture_shared`](crate::Engine::capture_shared).
pub type SharedCapture<'a> = Inference<'a, SharedPayload<'a>>;

/// A body with its Content-Type, the body a shared [`Bytes`] buffer.
#[derive(Debug, Clone)]
pub struct SharedPayload<'a> {
    /// The `Content-Type` header value (empty when the request had none).
    pub content_type: &'a str,
    /// The body.
    pub data: Bytes,
}

impl<'a> SharedPayload<'a> {
    /// A payload of `data` with `content_type`.
    pub fn new(content_type: &'a str, data: Bytes) -> Self {
        SharedPayload { content_type, data }
    }
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
