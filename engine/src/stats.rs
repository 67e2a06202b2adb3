//! Stats: exact counters for every outcome, plus writer and delivery figures.
//!
//! Accounting rule: every `capture()` call adds exactly one to exactly one of
//! `kept`, `sampled_out`, `dropped_*` or `rejected_*`. Every kept record later
//! adds one to `records_written` or `dropped_io_error` (after `shutdown`,
//! `kept == records_written + dropped_io_error`).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Live counters, shared by the capture path, the writer and the uploader.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $( pub(crate) $name: AtomicU64, )*
        }

        /// A snapshot of the engine's counters.
        #[derive(Debug, Clone, Default, PartialEq)]
        #[non_exhaustive]
        pub struct Stats {
            $( $(#[$doc])* pub $name: u64, )*
            /// The sampling percentage in force.
            pub sampling_percentage: f64,
            /// Whether capture is enabled (`set_enabled`).
            pub capture_enabled: bool,
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> Stats {
                Stats {
                    $( $name: self.$name.load(Ordering::Relaxed), )*
                    ..Stats::default()
                }
            }
        }

        impl Stats {
            /// Every counter as `(name, value)`, in declaration order.
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![ $( (stringify!($name), self.$name), )* ]
            }
        }
    };
}

counters! {
    /// Calls whose record was queued for writing.
    kept,
    /// Calls the sampler decided not to keep.
    sampled_out,
    /// Calls made while capture was disabled (`set_enabled(false)` or `EnableCapture: false`).
    dropped_disabled,
    /// Calls dropped because the ring had no room.
    dropped_ring_full,
    /// Calls dropped because the record exceeded `MaxRecordBytes`.
    dropped_too_large,
    /// Calls rejected for an invalid inference id (must be 1-64 printable ASCII characters).
    rejected_inference_id,
    /// Calls rejected for a content type over 1024 bytes.
    rejected_content_type,
    /// Calls rejected for a time before 1970 or after 9999.
    rejected_time,
    /// Payload bytes (bodies, content types, inference ids) of kept records.
    bytes_kept,
    /// Kept records written to a segment file.
    records_written,
    /// Kept records lost to a write error.
    dropped_io_error,
    /// JSON Lines bytes written to segments.
    bytes_written,
    /// Segments sealed and queued for delivery.
    segments_sealed,
    /// Segments delivered to the destination.
    segments_delivered,
    /// Failed delivery attempts (each is retried).
    delivery_failures,
    /// Segments sealed but not yet delivered.
    segments_pending,
}

impl Stats {
    /// The sum of every per-call outcome; equals the number of `capture()` calls.
    pub fn calls(&self) -> u64 {
        self.kept
            + self.sampled_out
            + self.dropped_disabled
            + self.dropped_ring_full
            + self.dropped_too_large
            + self.rejected_inference_id
            + self.rejected_content_type
            + self.rejected_time
    }
}

/// Adds one to a counter.
#[inline]
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
#[inline]
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}
