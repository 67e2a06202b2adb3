//! capline: SageMaker Data Capture for inference servers you run yourself.
//!
//! Server threads call [`Engine::capture`] with a request/response pair. The
//! engine samples it, queues kept pairs for a background writer, and the
//! writer serializes them as SageMaker-format JSON Lines into segments that are
//! delivered under SageMaker's hourly layout:
//! `{prefix}/{endpoint}/{variant}/yyyy/mm/dd/hh/MM-SS-mmm-{uuid}.jsonl`.
//!
//! The pipeline, one module per stage, data flowing one way:
//!
//! ```text
//! config ─► sample ─► ring ─► format ─► segment ─► io ─► upload
//!   (Engine::capture: sample + ring)   (writer thread)     (uploader thread)
//!                         recover (at start) ─► upload
//!                         stats (counters every stage adds to)
//! ```
//!
//! ```no_run
//! use capline::{Capture, Config, Engine, Payload};
//! use std::time::Duration;
//!
//! let config = Config::from_json(r#"{
//!   "EndpointName": "churn",
//!   "DataCaptureConfig": {
//!     "InitialSamplingPercentage": 100,
//!     "DestinationS3Uri": "file:///tmp/capture",
//!     "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
//!     "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]}
//!   },
//!   "Engine": {"SpoolDir": "/tmp/capline-spool"}
//! }"#)?;
//! let engine = Engine::start(config)?;
//! let outcome = engine.capture(&Capture {
//!     request: Payload::new("text/csv", b"1,2,3\n"),
//!     response: Payload::new("text/csv; charset=utf-8", b"0.25"),
//!     inference_id: Some("req-1"),
//!     time: None,
//! });
//! println!("{outcome:?}");
//! engine.shutdown(Duration::from_secs(5))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A server whose bodies are [`bytes::Bytes`] already (hyper, axum, tonic)
//! can hand them over instead of having them copied:
//! [`Engine::capture_shared`] keeps a kept record's `Bytes` in the ring
//! until the writer has serialized it, so the call costs the same whatever
//! the bodies' size.
//!
//! ```no_run
//! # let engine: capline::Engine = unimplemented!();
//! use capline::bytes::Bytes;
//! use capline::{SharedCapture, SharedPayload};
//!
//! let (request, response) = (Bytes::from_static(b"1,2,3\n"), Bytes::from_static(b"0.25"));
//! engine.capture_shared(SharedCapture {
//!     request: SharedPayload::new("text/csv", request.clone()),
//!     response: SharedPayload::new("text/csv", response.clone()),
//!     inference_id: None,
//!     time: None,
//! });
//! ```
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod clock;
pub mod config;
mod engine;
mod error;
pub mod format;
mod io;
mod prefetch;
mod recover;
mod redact;
mod ring;
mod sample;
mod segment;
mod spool;
pub mod stats;
mod timestamp;
mod upload;
mod watermark;
mod writer;

pub use config::{CaptureMode, Config, ConfigError, Destination};

/// For the throughput harness only: the segment writer's I/O path, to
/// measure the disk's limit with the same writes and sizes, and the CPUs
/// that take the spool disk's interrupts.
#[doc(hidden)]
pub mod bench_io {
    pub use crate::io::irq::{DiskIrqs, disk_interrupt_cpus};
    pub use crate::io::{IoPath, Output};
}
/// For the fuzz targets only: one body through redaction, as the writer
/// redacts it; the JSON escapers side by side.
#[doc(hidden)]
pub mod fuzzing {
    /// `s` escaped (the inside of a JSON string) by the portable escaper
    /// and by the one this CPU uses, each with whether it found `s` all ASCII.
    pub fn escapers(s: &[u8]) -> ((Vec<u8>, bool), (Vec<u8>, bool)) {
        crate::format::escaped_both(s)
    }

    use crate::config::{ContentTypes, Redaction};
    use crate::format::{EncodingRules, Payload};
    use crate::redact::{Redactor, Verdict};

    /// The body after redaction, and whether it parsed as its content type
    /// (`None` for a rule set whose patterns do not compile).
    pub fn redact(
        rules: &Redaction,
        types: Option<ContentTypes>,
        content_type: &str,
        body: &[u8],
    ) -> Option<(Vec<u8>, bool)> {
        let mut r = Redactor::new(rules, EncodingRules::new(types)).ok()?;
        let verdict = r.apply(Some(Payload::new(content_type, body)), None);
        let (out, _) = r.view(Some(Payload::new(content_type, body)), None);
        let parsed = matches!(verdict, Verdict::Unchanged | Verdict::Redacted);
        Some((out.map(|p| p.data.to_vec()).unwrap_or_default(), parsed))
    }
}
/// The `bytes` crate, whose [`bytes::Bytes`] bodies [`Engine::capture_shared`] takes.
pub use bytes;
pub use engine::{
    Capture, DropReason, Engine, Inference, Outcome, RejectReason, SharedCapture, SharedPayload,
};
pub use error::{Error, Result};
pub use format::Payload;
pub use io::fs::{Fs, RealFs};
pub use stats::Stats;
