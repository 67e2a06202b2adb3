//! Stats: exact counters for every outcome, plus writer and delivery figures.
//!
//! Accounting rule: every `capture()` call adds exactly one to exactly one of
//! `kept`, `sampled_out`, `dropped_*` or `rejected_*`. Every kept record later
//! adds one to `records_written`, `dropped_unparsable` or `dropped_io_error`
//! (after `shutdown`, `kept == records_written + dropped_unparsable +
//! dropped_io_error`).
//!
//! The per-call counters are striped, and a stripe has one writer: each
//! capturing thread claims a slot of its own on its first call (one atomic
//! bit in a process-wide map), and adds to its stripe with a plain load and
//! store, not a locked read-modify-write. So counting costs a sampled-out or
//! disabled call no more than an ordinary store, and never makes two server
//! threads contend on one cache line. A snapshot sums the stripes. Threads
//! after the first `OWNED` share a few stripes with atomic adds.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots a thread can own (one stripe each, one writer).
pub(crate) const OWNED: usize = 128;
/// Stripes shared, with atomic adds, by threads that found no free slot.
const SHARED: usize = 8;
/// Stripes per engine.
const STRIPES: usize = OWNED + SHARED;

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
        #[derive(Debug)]
        pub(crate) struct Counters {
            /// Slot `i`'s stripe at `i`, the shared ones after.
            stripes: [Stripe; STRIPES],
            $( pub(crate) $s: AtomicU64, )*
        }

        impl Default for Counters {
            fn default() -> Self {
                Counters {
                    stripes: std::array::from_fn(|_| Stripe::default()),
                    $( $s: AtomicU64::new(0), )*
                }
            }
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
        /// Records in which redaction replaced something.
        records_redacted,
        /// Records with a body redaction could not parse as its content
        /// type (kept whole or dropped, by `Redaction.OnUnparsable`).
        redaction_unparsable,
        /// Kept records dropped by the writer because a body could not be
        /// parsed for redaction (`OnUnparsable: Drop`).
        dropped_unparsable,
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
        /// Bytes in `active/`: the open segment's data, the segments cut
        /// and waiting for their seal's sync, and the next segment's file
        /// when it is made ahead (its whole preallocation).
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

/// Which slots threads own: bit `i % 64` of word `i / 64` for slot `i`.
static CLAIMED: [AtomicU64; OWNED / 64] = [const { AtomicU64::new(0) }; OWNED / 64];

/// Threads that found no free slot, spread over the shared stripes.
static OVERFLOW: AtomicU64 = AtomicU64::new(0);

/// Not yet chosen.
const UNSET: usize = usize::MAX;

thread_local! {
    /// This thread's slot (an index into every engine's stripes): `UNSET`
    /// until its first call. Const-initialized and without a destructor, so
    /// reading it is one thread-local load, and a thread's first call
    /// registers nothing (a destructor's registration may allocate, and so
    /// make a system call).
    static MY_SLOT: Cell<usize> = const { Cell::new(UNSET) };
}

/// A free slot, or a shared stripe's index when none is left. Slots are not
/// given back when a thread exits (that would need a thread-exit hook, whose
/// registration allocates): a process that has started more than [`OWNED`]
/// capturing threads in its life counts the later ones on shared stripes.
#[cold]
fn claim() -> usize {
    for (w, word) in CLAIMED.iter().enumerate() {
        let mut bits = word.load(Ordering::Relaxed);
        while bits != u64::MAX {
            let bit = (!bits).trailing_zeros() as usize;
            match word.compare_exchange_weak(
                bits,
                bits | (1u64 << bit),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return w * 64 + bit,
                Err(now) => bits = now,
            }
        }
    }
    OWNED + (OVERFLOW.fetch_add(1, Ordering::Relaxed) as usize % SHARED)
}

/// The calling thread's stripe in one engine, and whether the thread is its
/// only writer.
pub(crate) struct Lane<'a> {
    /// The stripe.
    pub(crate) s: &'a Stripe,
    owned: bool,
}

impl Lane<'_> {
    /// Adds one to `c`, a counter of this lane's stripe: a plain load and
    /// store when the thread owns the stripe, an atomic add when it shares it.
    #[inline]
    pub(crate) fn inc(&self, c: &AtomicU64) {
        if self.owned {
            c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        } else {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Counters {
    /// The calling thread's lane, or `None` before its first call has
    /// claimed a slot ([`claim_slot`]). Kept apart from the claim so that
    /// the callers' common path makes no call.
    #[inline]
    pub(crate) fn lane(&self) -> Option<Lane<'_>> {
        let i = MY_SLOT.with(Cell::get);
        (i != UNSET).then(|| self.lane_at(i))
    }

    /// The calling thread's lane, claiming its slot first if it has none.
    pub(crate) fn lane_or_claim(&self) -> Lane<'_> {
        claim_slot();
        self.lane_at(MY_SLOT.with(Cell::get))
    }

    /// Slot `i`'s lane.
    #[inline]
    fn lane_at(&self, i: usize) -> Lane<'_> {
        Lane {
            s: &self.stripes[i],
            owned: i < OWNED,
        }
    }
}

/// Gives the calling thread its slot if it has none yet (once per thread).
#[inline]
pub(crate) fn claim_slot() {
    if MY_SLOT.with(Cell::get) == UNSET {
        MY_SLOT.with(|c| c.set(claim()));
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

/// One sample of a family: an optional extra label, and the value.
type Sample = (Option<(&'static str, &'static str)>, f64);

/// A metric family as Prometheus exposes it: counters end in `_total`,
/// durations are in seconds, ratios in `0 ..= 1`.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    /// Its samples for one engine: an optional extra label, and the value.
    samples: fn(&Stats) -> Vec<Sample>,
}

/// One unlabelled sample.
macro_rules! one {
    ($f:expr) => {
        |s: &Stats| vec![(None, $f(s))]
    };
}

const FAMILIES: &[Family] = &[
    Family {
        name: "capline_kept_total",
        kind: "counter",
        help: "capture() calls whose record was queued for writing.",
        samples: one!(|s: &Stats| s.kept as f64),
    },
    Family {
        name: "capline_sampled_out_total",
        kind: "counter",
        help: "capture() calls the sampler did not keep.",
        samples: one!(|s: &Stats| s.sampled_out as f64),
    },
    Family {
        name: "capline_dropped_total",
        kind: "counter",
        help: "Records dropped, by reason: capture() calls (disabled, watermark, spool_full, ring_full, too_large) and kept records lost to a write error (io_error) or to a body redaction could not parse (unparsable).",
        samples: |s| {
            [
                ("disabled", s.dropped_disabled),
                ("watermark", s.dropped_watermark),
                ("spool_full", s.dropped_spool_full),
                ("ring_full", s.dropped_ring_full),
                ("too_large", s.dropped_too_large),
                ("io_error", s.dropped_io_error),
                ("unparsable", s.dropped_unparsable),
            ]
            .into_iter()
            .map(|(r, v)| (Some(("reason", r)), v as f64))
            .collect()
        },
    },
    Family {
        name: "capline_rejected_total",
        kind: "counter",
        help: "capture() calls rejected for their data, by reason.",
        samples: |s| {
            [
                ("inference_id", s.rejected_inference_id),
                ("content_type", s.rejected_content_type),
                ("time", s.rejected_time),
            ]
            .into_iter()
            .map(|(r, v)| (Some(("reason", r)), v as f64))
            .collect()
        },
    },
    Family {
        name: "capline_kept_bytes_total",
        kind: "counter",
        help: "Payload bytes (bodies, content types, inference ids) of kept records.",
        samples: one!(|s: &Stats| s.bytes_kept as f64),
    },
    Family {
        name: "capline_records_written_total",
        kind: "counter",
        help: "Kept records written to a segment.",
        samples: one!(|s: &Stats| s.records_written as f64),
    },
    Family {
        name: "capline_records_redacted_total",
        kind: "counter",
        help: "Records in which redaction replaced something.",
        samples: one!(|s: &Stats| s.records_redacted as f64),
    },
    Family {
        name: "capline_redaction_unparsable_total",
        kind: "counter",
        help: "Records with a body redaction could not parse as its content type (kept whole or dropped, by OnUnparsable).",
        samples: one!(|s: &Stats| s.redaction_unparsable as f64),
    },
    Family {
        name: "capline_written_bytes_total",
        kind: "counter",
        help: "JSON Lines bytes in sealed segments.",
        samples: one!(|s: &Stats| s.bytes_written as f64),
    },
    Family {
        name: "capline_segments_sealed_total",
        kind: "counter",
        help: "Segments sealed and queued for delivery.",
        samples: one!(|s: &Stats| s.segments_sealed as f64),
    },
    Family {
        name: "capline_segments_delivered_total",
        kind: "counter",
        help: "Segments delivered to the destination.",
        samples: one!(|s: &Stats| s.segments_delivered as f64),
    },
    Family {
        name: "capline_delivery_attempts_total",
        kind: "counter",
        help: "Delivery attempts (first tries and retries).",
        samples: one!(|s: &Stats| s.delivery_attempts as f64),
    },
    Family {
        name: "capline_delivery_failures_total",
        kind: "counter",
        help: "Failed delivery attempts (each is retried).",
        samples: one!(|s: &Stats| s.delivery_failures as f64),
    },
    Family {
        name: "capline_uploaded_bytes_total",
        kind: "counter",
        help: "Bytes the destination acknowledged.",
        samples: one!(|s: &Stats| s.bytes_uploaded as f64),
    },
    Family {
        name: "capline_gate_changes_total",
        kind: "counter",
        help: "Times the disk monitor opened or closed the capture gate.",
        samples: one!(|s: &Stats| s.gate_changes as f64),
    },
    Family {
        name: "capline_segments_pending",
        kind: "gauge",
        help: "Segments sealed but not yet delivered.",
        samples: one!(|s: &Stats| s.segments_pending as f64),
    },
    Family {
        name: "capline_segments_unsealed",
        kind: "gauge",
        help: "Segments whose seal failed, waiting in the spool for another try.",
        samples: one!(|s: &Stats| s.segments_unsealed as f64),
    },
    Family {
        name: "capline_spool_sealed_bytes",
        kind: "gauge",
        help: "Bytes of sealed segments not yet delivered.",
        samples: one!(|s: &Stats| s.spool_sealed_bytes as f64),
    },
    Family {
        name: "capline_spool_active_bytes",
        kind: "gauge",
        help: "Bytes in the spool's active/: the open segment's data, segments waiting for their seal's sync, and the next segment's file when made ahead.",
        samples: one!(|s: &Stats| s.spool_active_bytes as f64),
    },
    Family {
        name: "capline_delivery_lag_seconds",
        kind: "gauge",
        help: "How long the oldest undelivered segment has waited since it was sealed; 0 when none waits.",
        samples: one!(|s: &Stats| s.delivery_lag_millis as f64 / 1e3),
    },
    Family {
        name: "capline_oldest_pending_sealed_timestamp_seconds",
        kind: "gauge",
        help: "When the oldest undelivered segment was sealed (Unix time); 0 when none waits.",
        samples: one!(|s: &Stats| s.oldest_pending_sealed_unix_ms as f64 / 1e3),
    },
    Family {
        name: "capline_disk_usage_ratio",
        kind: "gauge",
        help: "Spool filesystem usage (df's rule), 0 to 1.",
        samples: one!(|s: &Stats| s.disk_usage_basis_points as f64 / 1e4),
    },
    Family {
        name: "capline_sampling_percentage",
        kind: "gauge",
        help: "The configured sampling percentage.",
        samples: one!(|s: &Stats| s.sampling_percentage),
    },
    Family {
        name: "capline_effective_sampling_percentage",
        kind: "gauge",
        help: "The sampling percentage in force after disk-pressure degradation.",
        samples: one!(|s: &Stats| s.effective_sampling_percentage),
    },
    Family {
        name: "capline_capture_enabled",
        kind: "gauge",
        help: "1 while capture is enabled, else 0.",
        samples: one!(|s: &Stats| f64::from(u8::from(s.capture_enabled))),
    },
    Family {
        name: "capline_gate_closed",
        kind: "gauge",
        help: "1 while the capture gate is closed for the reason in `gate` (watermark: the disk watermark or a failed write; spool: SpoolMaxBytes).",
        samples: |s| {
            vec![
                (
                    Some(("gate", "watermark")),
                    f64::from(u8::from(s.gate_watermark_closed)),
                ),
                (
                    Some(("gate", "spool")),
                    f64::from(u8::from(s.gate_spool_closed)),
                ),
            ]
        },
    },
];

/// A label value with `\`, `"` and newlines escaped, as the text format wants.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the stats of one engine or several in the Prometheus text
/// exposition format (version 0.0.4), each engine's samples with its own
/// labels (for example `[("variant", "A")]`): one `# HELP` and `# TYPE` per
/// family, counters ending in `_total`, durations in seconds. Serve it as
/// `text/plain; version=0.0.4`.
pub fn prometheus_text(series: &[(&[(&str, &str)], &Stats)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for f in FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, stats) in series {
            for (extra, value) in (f.samples)(stats) {
                let mut pairs: Vec<String> = labels
                    .iter()
                    .chain(extra.as_ref())
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                    .collect();
                let labels = if pairs.is_empty() {
                    String::new()
                } else {
                    pairs.sort();
                    format!("{{{}}}", pairs.join(","))
                };
                let _ = writeln!(out, "{}{labels} {value}", f.name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_follows_the_conventions() {
        let s = Stats {
            kept: 7,
            dropped_ring_full: 2,
            delivery_lag_millis: 1500,
            disk_usage_basis_points: 4250,
            capture_enabled: true,
            ..Stats::default()
        };
        let text = prometheus_text(&[(&[("variant", "A\"1")], &s)]);
        assert!(
            text.contains("capline_kept_total{variant=\"A\\\"1\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("capline_dropped_total{reason=\"ring_full\",variant=\"A\\\"1\"} 2\n")
        );
        assert!(text.contains("capline_delivery_lag_seconds{variant=\"A\\\"1\"} 1.5\n"));
        assert!(text.contains("capline_disk_usage_ratio{variant=\"A\\\"1\"} 0.425\n"));
        assert!(text.contains("capline_capture_enabled{variant=\"A\\\"1\"} 1\n"));
        // Every family: HELP, TYPE, then samples; counters end in _total; no
        // milliseconds.
        let mut kind = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, k) = rest.split_once(' ').unwrap();
                kind = k;
                assert_eq!(k == "counter", name.ends_with("_total"), "{line}");
                assert!(!name.contains("millis") && !name.ends_with("_ms"), "{line}");
            } else if !line.starts_with("# HELP ") {
                assert!(matches!(kind, "counter" | "gauge"), "{line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
        // Every stat is in it, under one name or another.
        assert_eq!(FAMILIES.len(), text.matches("# TYPE ").count());
    }

    /// More threads than slots: every count lands, whether the thread owns
    /// its stripe or shares one.
    #[test]
    fn counts_are_exact_with_more_threads_than_slots() {
        let counters = std::sync::Arc::new(super::Counters::default());
        let threads = super::OWNED + 40;
        let start = std::sync::Arc::new(std::sync::Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (c, start) = (counters.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    assert!(c.lane().is_none(), "a new thread has no slot yet");
                    let lane = c.lane_or_claim();
                    assert!(c.lane().is_some_and(|l| std::ptr::eq(l.s, lane.s)));
                    for _ in 0..1000 {
                        lane.inc(&lane.s.sampled_out);
                    }
                    lane.owned
                })
            })
            .collect();
        let owned = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&o| o)
            .count();
        assert_eq!(counters.snapshot().sampled_out, threads as u64 * 1000);
        // More threads than slots: at least `threads - OWNED` shared a stripe.
        assert!(owned <= super::OWNED, "{owned}");
    }
}
