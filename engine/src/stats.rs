//! Stats: exact counters for every outcome, plus writer and delivery figures.
//!
//! Accounting rule: every `capture()` call adds exactly one to exactly one of
//! `kept`, `sampled_out`, `dropped_*` or `rejected_*`. Every kept record later
//! adds one to `records_written` or `dropped_io_error` (after `shutdown`,
//! `kept == records_written + dropped_io_error`).
//!
//! The per-call counters are striped: each capturing thread adds to its own
//! cache-line-sized stripe (chosen once per thread), so counting never makes
//! two server threads contend on one cache line. A snapshot sums the stripes.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Number of stripes; threads beyond this share stripes round-robin.
const STRIPES: usize = 16;

macro_rules! counters {
    (
        per_call { $( $(#[$pdoc:meta])* $p:ident ),* $(,)? }
        shared { $( $(#[$sdoc:meta])* $s:ident ),* $(,)? }
    ) => {
        /// The per-call counters of one stripe, alone on their cache lines.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub(crate) struct Stripe {
            $( pub(crate) $p: AtomicU64, )*
        }

        /// Live counters, shared by the capture path, the writer and the uploader.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            stripes: [Stripe; STRIPES],
            $( pub(crate) $s: AtomicU64, )*
        }

        /// A snapshot of the engine's counters.
        #[derive(Debug, Clone, Default, PartialEq)]
        #[non_exhaustive]
        pub struct Stats {
            $( $(#[$pdoc])* pub $p: u64, )*
            $( $(#[$sdoc])* pub $s: u64, )*
            /// The sampling percentage in force.
            pub sampling_percentage: f64,
            /// Whether capture is enabled (`set_enabled`).
            pub capture_enabled: bool,
            /// The sampling percentage after disk-pressure degradation.
            pub effective_sampling_percentage: f64,
            /// Whether the disk watermark (or a failed write) has closed the gate.
            pub gate_watermark_closed: bool,
            /// Whether `SpoolMaxBytes` has closed the gate.
            pub gate_spool_closed: bool,
            /// How long the oldest undelivered segment has waited since it
            /// was sealed, in milliseconds; 0 when every segment is delivered.
            pub delivery_lag_millis: u64,
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> Stats {
                let mut s = Stats::default();
                for stripe in &self.stripes {
                    $( s.$p += stripe.$p.load(Ordering::Relaxed); )*
                }
                $( s.$s = self.$s.load(Ordering::Relaxed); )*
                if s.oldest_pending_sealed_unix_ms != 0 {
                    s.delivery_lag_millis =
                        unix_millis(std::time::SystemTime::now())
                            .saturating_sub(s.oldest_pending_sealed_unix_ms);
                }
                s
            }
        }

        impl Stats {
            /// Every counter as `(name, value)`, in declaration order.
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![
                    $( (stringify!($p), self.$p), )*
                    $( (stringify!($s), self.$s), )*
                    ("delivery_lag_millis", self.delivery_lag_millis),
                ]
            }

            /// The sum of every per-call outcome; equals the number of `capture()` calls.
            pub fn calls(&self) -> u64 {
                0 $( + self.$p )*
            }
        }
    };
}

counters! {
    per_call {
        /// Calls whose record was queued for writing.
        kept,
        /// Calls the sampler decided not to keep.
        sampled_out,
        /// Calls made while capture was disabled (`set_enabled(false)` or `EnableCapture: false`).
        dropped_disabled,
        /// Calls made while the disk watermark (or a failed write) had closed the gate.
        dropped_watermark,
        /// Calls made while undelivered segments filled `SpoolMaxBytes`.
        dropped_spool_full,
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
    }
    shared {
        /// Payload bytes (bodies, content types, inference ids) of kept
        /// records, counted as the writer takes them from the ring.
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
        /// Delivery attempts (a segment's first try and every retry).
        delivery_attempts,
        /// Failed delivery attempts (each is retried).
        delivery_failures,
        /// Bytes the destination acknowledged: parts, single-part objects and
        /// local files (a part sent again after a failure counts again).
        bytes_uploaded,
        /// When the oldest undelivered segment was sealed, in Unix
        /// milliseconds; 0 when none waits. See `delivery_lag_millis`.
        oldest_pending_sealed_unix_ms,
        /// Segments sealed but not yet delivered.
        segments_pending,
        /// Segments whose seal failed, waiting in the spool's `active/` for
        /// another try (with backoff while running; at the next start after).
        segments_unsealed,
        /// Bytes of sealed segments not yet delivered.
        spool_sealed_bytes,
        /// Bytes of data in the open segment.
        spool_active_bytes,
        /// Times the disk monitor opened or closed the gate.
        gate_changes,
        /// Spool filesystem usage, in hundredths of a percent (df's rule).
        disk_usage_basis_points,
    }
}

/// `t` in milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_millis(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stripe; `usize::MAX` until first use. Const-initialized,
    /// so reading it never allocates.
    static MY_STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl Counters {
    /// The calling thread's stripe.
    #[inline]
    pub(crate) fn stripe(&self) -> &Stripe {
        let i = MY_STRIPE.with(|c| {
            let mut i = c.get();
            if i == usize::MAX {
                i = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
                c.set(i);
            }
            i
        });
        &self.stripes[i]
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
