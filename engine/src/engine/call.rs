//! What a capture call takes ([`Capture`], [`SharedCapture`]) and what it
//! answers ([`Outcome`]).

use std::time::SystemTime;

use bytes::Bytes;

use crate::format::Payload;

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

/// One inference to capture whose bodies the caller hands over instead of
/// lending them: see [`Engine::capture_shared`](crate::Engine::capture_shared).
#[derive(Debug, Clone)]
pub struct SharedCapture<'a> {
    /// The request: its Content-Type and body.
    pub request: SharedPayload<'a>,
    /// The response: its Content-Type and body.
    pub response: SharedPayload<'a>,
    /// The caller's inference id (`X-Amzn-SageMaker-Inference-Id`): 1–64 printable ASCII characters.
    pub inference_id: Option<&'a str>,
    /// When the inference happened; `None` means now.
    pub time: Option<SystemTime>,
}

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
