//! The C ABI of capline: a thin shell over the `capline` crate, with no logic
//! of its own. Conventions follow rustls-ffi:
//!
//! - the engine is an opaque handle, created by `capline_engine_new` and freed
//!   exactly once by `capline_engine_free`;
//! - every function returns an `int32_t` status: `CAPLINE_OK` (0), a capture
//!   outcome (`>= 0`), or a `CAPLINE_ERR_*` code (`< 0`); outputs go through
//!   out-parameters;
//! - on an error the calling thread's last-error message explains it
//!   (`capline_last_error`);
//! - every export catches panics and returns `CAPLINE_ERR_PANIC`: no panic
//!   crosses into the host.
//!
//! The reference, with ownership and threading rules, is docs/C-API.md.

#![allow(non_camel_case_types)]
#![warn(missing_docs)]

use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, UNIX_EPOCH};

use engine::{Capture, Config, DropReason, Engine, Outcome, Payload, RejectReason};

/// Success (for functions other than `capline_capture`).
pub const CAPLINE_OK: i32 = 0;
/// `capline_capture`: the record was queued for writing.
pub const CAPLINE_KEPT: i32 = 0;
/// `capline_capture`: not selected by sampling.
pub const CAPLINE_SAMPLED_OUT: i32 = 1;
/// `capline_capture`: dropped, capture is disabled (`capline_set_enabled`).
pub const CAPLINE_DROPPED_DISABLED: i32 = 2;
/// `capline_capture`: dropped, the disk watermark (or a failed write) closed the gate.
pub const CAPLINE_DROPPED_WATERMARK: i32 = 3;
/// `capline_capture`: dropped, undelivered segments reached `SpoolMaxBytes`.
pub const CAPLINE_DROPPED_SPOOL_FULL: i32 = 4;
/// `capline_capture`: dropped, the ring had no room (the writer is behind).
pub const CAPLINE_DROPPED_RING_FULL: i32 = 5;
/// `capline_capture`: dropped, the record exceeds `MaxRecordBytes`.
pub const CAPLINE_DROPPED_TOO_LARGE: i32 = 6;
/// `capline_capture`: rejected, the inference id is not 1-64 printable ASCII characters.
pub const CAPLINE_REJECTED_INFERENCE_ID: i32 = 7;
/// `capline_capture`: rejected, a content type is over 1024 bytes.
pub const CAPLINE_REJECTED_CONTENT_TYPE: i32 = 8;
/// `capline_capture`: rejected, the time is before 1970 or after 9999.
pub const CAPLINE_REJECTED_TIME: i32 = 9;

/// A required pointer is NULL, or a data pointer is NULL with a non-zero length.
pub const CAPLINE_ERR_NULL: i32 = -1;
/// A pointer is not aligned for its type.
pub const CAPLINE_ERR_MISALIGNED: i32 = -2;
/// A length is larger than `PTRDIFF_MAX`.
pub const CAPLINE_ERR_LENGTH: i32 = -3;
/// A string argument (content type, inference id, config) is not valid UTF-8.
pub const CAPLINE_ERR_UTF8: i32 = -4;
/// The config is invalid; the last error names the field.
pub const CAPLINE_ERR_CONFIG: i32 = -5;
/// The engine could not start (spool directory, lock, threads, io_uring).
pub const CAPLINE_ERR_START: i32 = -6;
/// `capline_flush` or `capline_engine_free` did not finish in time.
pub const CAPLINE_ERR_TIMEOUT: i32 = -7;
/// An argument is out of range (a sampling percentage outside 0-100, a NaN).
pub const CAPLINE_ERR_ARGUMENT: i32 = -8;
/// A panic inside capline was caught; the engine may be unusable, the host is unharmed.
pub const CAPLINE_ERR_PANIC: i32 = -9;
/// A background thread of the engine has stopped.
pub const CAPLINE_ERR_ENGINE: i32 = -10;

/// `capline_event.time_unix_ms` value meaning "now" (the time of the call).
pub const CAPLINE_TIME_NOW: i64 = 0;

/// A running capture engine (opaque).
pub struct capline_engine {
    engine: Engine,
}

/// One request/response pair for `capline_capture`. Zero-initialize it and
/// fill in what you have: `{0}` plus the pointers and lengths. Strings are
/// pointer + length (no NUL needed) and must be UTF-8. capline copies the
/// bytes only when the record is kept; the caller keeps ownership throughout.
#[repr(C)]
pub struct capline_event {
    /// The request body (may be NULL when `request_len` is 0).
    pub request: *const u8,
    /// Length of `request` in bytes.
    pub request_len: usize,
    /// The request's Content-Type (may be NULL when its length is 0).
    pub request_content_type: *const c_char,
    /// Length of `request_content_type` in bytes.
    pub request_content_type_len: usize,
    /// The response body (may be NULL when `response_len` is 0).
    pub response: *const u8,
    /// Length of `response` in bytes.
    pub response_len: usize,
    /// The response's Content-Type (may be NULL when its length is 0).
    pub response_content_type: *const c_char,
    /// Length of `response_content_type` in bytes.
    pub response_content_type_len: usize,
    /// The inference id (`X-Amzn-SageMaker-Inference-Id`), or NULL for none.
    pub inference_id: *const c_char,
    /// Length of `inference_id` in bytes.
    pub inference_id_len: usize,
    /// When the inference happened, in milliseconds since the Unix epoch;
    /// `CAPLINE_TIME_NOW` (0) means the time of the call.
    pub time_unix_ms: i64,
}

/// The engine's counters (see docs/OPERATIONS.md, "Stats"), filled by
/// `capline_stats`. (The `_t` keeps the type apart from that function: C has
/// one namespace for both.)
#[repr(C)]
#[derive(Default)]
pub struct capline_stats_t {
    /// Calls whose record was queued for writing.
    pub kept: u64,
    /// Calls not selected by sampling.
    pub sampled_out: u64,
    /// Calls while capture was disabled.
    pub dropped_disabled: u64,
    /// Calls while the disk watermark (or a failed write) had closed the gate.
    pub dropped_watermark: u64,
    /// Calls while undelivered segments filled `SpoolMaxBytes`.
    pub dropped_spool_full: u64,
    /// Calls dropped because the ring had no room.
    pub dropped_ring_full: u64,
    /// Calls dropped because the record exceeded `MaxRecordBytes`.
    pub dropped_too_large: u64,
    /// Calls rejected for an invalid inference id.
    pub rejected_inference_id: u64,
    /// Calls rejected for a content type over 1024 bytes.
    pub rejected_content_type: u64,
    /// Calls rejected for a time before 1970 or after 9999.
    pub rejected_time: u64,
    /// Payload bytes of kept records taken by the writer.
    pub bytes_kept: u64,
    /// Kept records written to a segment.
    pub records_written: u64,
    /// Records in which redaction replaced something.
    pub records_redacted: u64,
    /// Records with a body redaction could not parse as its content type
    /// (kept whole or dropped, by `Redaction.OnUnparsable`).
    pub redaction_unparsable: u64,
    /// Kept records lost to a write error.
    pub dropped_io_error: u64,
    /// Kept records dropped by the writer because a body could not be
    /// parsed for redaction (`OnUnparsable: Drop`).
    pub dropped_unparsable: u64,
    /// JSON Lines bytes written.
    pub bytes_written: u64,
    /// Segments sealed.
    pub segments_sealed: u64,
    /// Segments delivered to the destination.
    pub segments_delivered: u64,
    /// Delivery attempts.
    pub delivery_attempts: u64,
    /// Failed delivery attempts (each is retried).
    pub delivery_failures: u64,
    /// Bytes the destination acknowledged.
    pub bytes_uploaded: u64,
    /// Segments sealed but not yet delivered.
    pub segments_pending: u64,
    /// Segments whose seal failed, waiting in the spool for another try.
    pub segments_unsealed: u64,
    /// Bytes of sealed segments not yet delivered.
    pub spool_sealed_bytes: u64,
    /// Bytes in the spool's `active/`: the open segment's data, segments
    /// waiting for their seal's sync, and the next segment's file when it
    /// is made ahead.
    pub spool_active_bytes: u64,
    /// Age of the oldest undelivered segment, in milliseconds.
    pub delivery_lag_millis: u64,
    /// Spool filesystem usage in hundredths of a percent.
    pub disk_usage_basis_points: u64,
    /// Times the disk monitor opened or closed the gate.
    pub gate_changes: u64,
    /// The sampling percentage in force.
    pub sampling_percentage: f64,
    /// The sampling percentage after disk-pressure degradation.
    pub effective_sampling_percentage: f64,
    /// Whether capture is enabled.
    pub capture_enabled: bool,
    /// Whether the disk watermark (or a failed write) has closed the gate.
    pub gate_watermark_closed: bool,
    /// Whether `SpoolMaxBytes` has closed the gate.
    pub gate_spool_closed: bool,
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_error(msg: impl Into<String>) {
    let msg = msg.into();
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
}

/// An error status and its message.
struct Fail(i32, String);

fn fail<T>(code: i32, msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail(code, msg.into()))
}

/// Runs `f`, turning a panic into `CAPLINE_ERR_PANIC` and a `Fail` into its
/// code plus the thread's last error.
fn boundary(f: impl FnOnce() -> Result<i32, Fail>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(code)) => code,
        Ok(Err(Fail(code, msg))) => {
            set_error(msg);
            code
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            set_error(format!("panic inside capline (caught): {what}"));
            CAPLINE_ERR_PANIC
        }
    }
}

/// Checks a `(pointer, length)` argument and borrows it as bytes.
///
/// # Safety
/// When `ptr` is non-NULL and `len` > 0, `ptr` must point to `len` readable
/// bytes that stay valid and unmodified for `'a`.
unsafe fn bytes<'a>(what: &str, ptr: *const u8, len: usize) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return fail(
            CAPLINE_ERR_NULL,
            format!("{what} is NULL with length {len}"),
        );
    }
    if len > isize::MAX as usize {
        return fail(
            CAPLINE_ERR_LENGTH,
            format!("{what}: length {len} is larger than PTRDIFF_MAX"),
        );
    }
    // SAFETY: ptr is non-NULL and len ≤ isize::MAX; the caller guarantees
    // len readable bytes valid for 'a (u8 needs no alignment).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Checks a `(pointer, length)` string argument and borrows it as UTF-8.
///
/// # Safety
/// As for [`bytes`].
unsafe fn text<'a>(what: &str, ptr: *const c_char, len: usize) -> Result<&'a str, Fail> {
    // SAFETY: forwarded from the caller.
    let b = unsafe { bytes(what, ptr.cast(), len)? };
    std::str::from_utf8(b).or_else(|e| fail(CAPLINE_ERR_UTF8, format!("{what}: {e}")))
}

/// Checks a pointer to a `T` (non-NULL, aligned) and borrows it.
///
/// # Safety
/// When non-NULL and aligned, `ptr` must point to a valid `T` for `'a`.
unsafe fn object<'a, T>(what: &str, ptr: *const T) -> Result<&'a T, Fail> {
    if ptr.is_null() {
        return fail(CAPLINE_ERR_NULL, format!("{what} is NULL"));
    }
    if !ptr.is_aligned() {
        return fail(
            CAPLINE_ERR_MISALIGNED,
            format!(
                "{what} ({ptr:p}) is not aligned to {} bytes",
                std::mem::align_of::<T>()
            ),
        );
    }
    // SAFETY: non-NULL and aligned; the caller guarantees it points to a valid T.
    Ok(unsafe { &*ptr })
}

fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

fn engine_error(e: engine::Error) -> Fail {
    let code = match e {
        engine::Error::Config(_) => CAPLINE_ERR_CONFIG,
        engine::Error::Timeout(_) => CAPLINE_ERR_TIMEOUT,
        engine::Error::ThreadGone(_) => CAPLINE_ERR_ENGINE,
        _ => CAPLINE_ERR_START,
    };
    Fail(code, e.to_string())
}

/// Starts an engine from a NUL-terminated JSON config (the same document as
/// the Rust API: `EndpointName`, `DataCaptureConfig`, `Engine`). On success
/// stores the handle in `*out` and returns `CAPLINE_OK`; on failure leaves
/// `*out` NULL and returns `CAPLINE_ERR_NULL`, `CAPLINE_ERR_MISALIGNED`,
/// `CAPLINE_ERR_UTF8`, `CAPLINE_ERR_CONFIG` (the last error names the field)
/// or `CAPLINE_ERR_START`.
///
/// Thread-safety: may be called from any thread. Create engines after any
/// `fork()`: the engine's threads do not survive a fork.
///
/// # Safety
/// `config_json` must be NULL or a NUL-terminated string; `out` must be NULL
/// or point to writable storage for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capline_engine_new(
    config_json: *const c_char,
    out: *mut *mut capline_engine,
) -> i32 {
    boundary(|| {
        if out.is_null() {
            return fail(CAPLINE_ERR_NULL, "out is NULL");
        }
        if !out.is_aligned() {
            return fail(CAPLINE_ERR_MISALIGNED, "out is not aligned");
        }
        // SAFETY: non-NULL and aligned; the caller guarantees it is writable.
        unsafe { out.write(std::ptr::null_mut()) };
        if config_json.is_null() {
            return fail(CAPLINE_ERR_NULL, "config_json is NULL");
        }
        // SAFETY: the caller guarantees a NUL-terminated string.
        let json = unsafe { std::ffi::CStr::from_ptr(config_json) };
        let json = json
            .to_str()
            .or_else(|e| fail(CAPLINE_ERR_UTF8, format!("config_json: {e}")))?;
        let config =
            Config::from_json(json).map_err(|e| Fail(CAPLINE_ERR_CONFIG, e.to_string()))?;
        let engine = Engine::start(config).map_err(engine_error)?;
        let handle = Box::into_raw(Box::new(capline_engine { engine }));
        // SAFETY: checked above.
        unsafe { out.write(handle) };
        Ok(CAPLINE_OK)
    })
}

/// Offers one request/response pair. Returns its outcome: `CAPLINE_KEPT`,
/// `CAPLINE_SAMPLED_OUT`, a `CAPLINE_DROPPED_*` or `CAPLINE_REJECTED_*` code
/// (every call counts in exactly one stats counter), or a `CAPLINE_ERR_*` code
/// for bad arguments (`NULL`, `MISALIGNED`, `LENGTH`, `UTF8`), which are not
/// counted. Never blocks, never takes a lock, never makes a system call;
/// copies the bytes only when the record is kept; the caller keeps ownership.
///
/// Thread-safety: safe from any number of threads at once on one engine.
///
/// # Safety
/// `engine` must be NULL or a live handle from `capline_engine_new`; `event`
/// must be NULL or point to a valid `capline_event` whose pointers are NULL
/// or point to at least their lengths of readable bytes for the whole call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capline_capture(
    engine: *const capline_engine,
    event: *const capline_event,
) -> i32 {
    boundary(|| {
        // SAFETY: forwarded from the caller (a live handle or NULL).
        let engine = unsafe { object("engine", engine)? };
        // SAFETY: forwarded from the caller (a valid event or NULL).
        let ev = unsafe { object("event", event)? };
        // SAFETY: the caller guarantees each pointer covers its length (here and below).
        let request = unsafe { bytes("event->request", ev.request, ev.request_len)? };
        // SAFETY: as above.
        let response = unsafe { bytes("event->response", ev.response, ev.response_len)? };
        // SAFETY: as above.
        let request_type = unsafe {
            text(
                "event->request_content_type",
                ev.request_content_type,
                ev.request_content_type_len,
            )?
        };
        // SAFETY: as above.
        let response_type = unsafe {
            text(
                "event->response_content_type",
                ev.response_content_type,
                ev.response_content_type_len,
            )?
        };
        let inference_id = if ev.inference_id.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { text("event->inference_id", ev.inference_id, ev.inference_id_len)? })
        };
        let time = match ev.time_unix_ms {
            CAPLINE_TIME_NOW => None,
            ms => {
                let d = Duration::from_millis(ms.unsigned_abs());
                let t = if ms > 0 {
                    UNIX_EPOCH.checked_add(d)
                } else {
                    UNIX_EPOCH.checked_sub(d)
                };
                // Unrepresentable: a time before 1970, which the engine rejects (and counts).
                t.or_else(|| UNIX_EPOCH.checked_sub(Duration::from_millis(1)))
            }
        };
        let outcome = engine.engine.capture(&Capture {
            request: Payload::new(request_type, request),
            response: Payload::new(response_type, response),
            inference_id,
            time,
        });
        Ok(match outcome {
            Outcome::Kept => CAPLINE_KEPT,
            Outcome::SampledOut => CAPLINE_SAMPLED_OUT,
            Outcome::Dropped(DropReason::Disabled) => CAPLINE_DROPPED_DISABLED,
            Outcome::Dropped(DropReason::Watermark) => CAPLINE_DROPPED_WATERMARK,
            Outcome::Dropped(DropReason::SpoolFull) => CAPLINE_DROPPED_SPOOL_FULL,
            Outcome::Dropped(DropReason::RingFull) => CAPLINE_DROPPED_RING_FULL,
            Outcome::Dropped(DropReason::TooLarge) => CAPLINE_DROPPED_TOO_LARGE,
            Outcome::Rejected(RejectReason::InferenceId) => CAPLINE_REJECTED_INFERENCE_ID,
            Outcome::Rejected(RejectReason::ContentType) => CAPLINE_REJECTED_CONTENT_TYPE,
            Outcome::Rejected(RejectReason::Time) => CAPLINE_REJECTED_TIME,
        })
    })
}

/// Waits up to `timeout_ms` until every record kept before the call is
/// durable in the spool. Returns `CAPLINE_OK`, `CAPLINE_ERR_TIMEOUT`,
/// `CAPLINE_ERR_ENGINE`, or an argument error. Calling it again (with nothing
/// new) is harmless.
///
/// Thread-safety: safe from any thread, concurrently with `capline_capture`.
///
/// # Safety
/// `engine` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capline_flush(engine: *const capline_engine, timeout_ms: u32) -> i32 {
    boundary(|| {
        // SAFETY: forwarded from the caller.
        let engine = unsafe { object("engine", engine)? };
        engine
            .engine
            .flush(millis(timeout_ms))
            .map_err(engine_error)?;
        Ok(CAPLINE_OK)
    })
}

/// Sets the sampling percentage (0-100, fractions allowed) for the next call
/// on every thread. Returns `CAPLINE_OK` or `CAPLINE_ERR_ARGUMENT`.
///
/// Thread-safety: safe from any thread, concurrently with `capline_capture`.
///
/// # Safety
/// `engine` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capline_set_sampling_percentage(
    engine: *const capline_engine,
    percent: f64,
) -> i32 {
    boundary(|| {
        // SAFETY: forwarded from the caller.
        let engine = unsafe { object("engine", engine)? };
        engine
            .engine
            .set_sampling_percentage(percent)
            .map_err(|e| Fail(CAPLINE_ERR_ARGUMENT, e.to_string()))?;
        Ok(CAPLINE_OK)
    })
}

/// Turns capture on or off for the next call on every thread (calls while
/// off return `CAPLINE_DROPPED_DISABLED`). Returns `CAPLINE_OK`.
///
/// Thread-safety: safe from any thread, concurrently with `capline_capture`.
///
/// # Safety
/// `engine` must be NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capline_set_enabled(engine: *const capline_engine, enabled: bool) -> i32 {
    boundary(|| {
        // SAFETY: forwarded from the caller.
        let engine = unsafe { object("engine", engine)? };
        engine.engine.set_enabled(enabled);
        Ok(CAPLINE_OK)
    })
}

/// Copies a snapshot of the counters into `*out`. Returns `CAPLINE_OK` or an
/// argument error.
///
/// Thread-safety: safe from any thread, concurrently with `capline_capture`.
///
/// # Safety
/// `engine` must be NULL or a live handle; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capline_stats(
    engine: *const capline_engine,
    out: *mut capline_stats_t,
) -> i32 {
    boundary(|| {
        // SAFETY: forwarded from the caller.
        let engine = unsafe { object("engine", engine)? };
        if out.is_null() {
            return fail(CAPLINE_ERR_NULL, "out is NULL");
        }
        if !out.is_aligned() {
            return fail(CAPLINE_ERR_MISALIGNED, "out is not aligned");
        }
        let s = engine.engine.stats();
        let c = capline_stats_t {
            kept: s.kept,
            sampled_out: s.sampled_out,
            dropped_disabled: s.dropped_disabled,
            dropped_watermark: s.dropped_watermark,
            dropped_spool_full: s.dropped_spool_full,
            dropped_ring_full: s.dropped_ring_full,
            dropped_too_large: s.dropped_too_large,
            rejected_inference_id: s.rejected_inference_id,
            rejected_content_type: s.rejected_content_type,
            rejected_time: s.rejected_time,
            bytes_kept: s.bytes_kept,
            records_written: s.records_written,
            records_redacted: s.records_redacted,
            redaction_unparsable: s.redaction_unparsable,
            dropped_io_error: s.dropped_io_error,
            dropped_unparsable: s.dropped_unparsable,
            bytes_written: s.bytes_written,
            segments_sealed: s.segments_sealed,
            segments_delivered: s.segments_delivered,
            delivery_attempts: s.delivery_attempts,
            delivery_failures: s.delivery_failures,
            bytes_uploaded: s.bytes_uploaded,
            segments_pending: s.segments_pending,
            segments_unsealed: s.segments_unsealed,
            spool_sealed_bytes: s.spool_sealed_bytes,
            spool_active_bytes: s.spool_active_bytes,
            delivery_lag_millis: s.delivery_lag_millis,
            disk_usage_basis_points: s.disk_usage_basis_points,
            gate_changes: s.gate_changes,
            sampling_percentage: s.sampling_percentage,
            effective_sampling_percentage: s.effective_sampling_percentage,
            capture_enabled: s.capture_enabled,
            gate_watermark_closed: s.gate_watermark_closed,
            gate_spool_closed: s.gate_spool_closed,
        };
        // SAFETY: non-NULL and aligned; the caller guarantees it is writable.
        unsafe { out.write(c) };
        Ok(CAPLINE_OK)
    })
}

/// Shuts the engine down and frees it: writes every kept record, seals the
/// open segment, delivers until `deadline_ms` has passed (what is left stays
/// in the spool for the next start). The handle is invalid afterwards, whatever
/// the result. Returns `CAPLINE_OK`, `CAPLINE_ERR_ENGINE` (a background thread
/// had stopped), or `CAPLINE_ERR_NULL` / `CAPLINE_ERR_MISALIGNED` (nothing freed).
///
/// Thread-safety: call once, after every thread has stopped calling the
/// other functions on this engine.
///
/// # Safety
/// `engine` must be NULL or a live handle that no other thread is using; it
/// must not be used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capline_engine_free(engine: *mut capline_engine, deadline_ms: u32) -> i32 {
    boundary(|| {
        // SAFETY: forwarded from the caller.
        unsafe { object("engine", engine.cast_const())? };
        // SAFETY: a live handle from capline_engine_new (Box::into_raw), freed
        // exactly once per the contract above.
        let handle = unsafe { Box::from_raw(engine) };
        handle
            .engine
            .shutdown(millis(deadline_ms))
            .map_err(engine_error)?;
        Ok(CAPLINE_OK)
    })
}

/// Writes the engine's stats in the Prometheus text format (version 0.0.4,
/// the families `docs/OPERATIONS.md` lists: counters ending in `_total`,
/// durations in seconds) into `buf`: at most `len` bytes including the
/// terminating NUL, truncated if needed. Stores the text's full length (NUL
/// not included) in `*needed` when `needed` is not NULL, so a caller whose
/// buffer was short can call again with `*needed + 1` bytes. `buf` may be
/// NULL when `len` is 0, to ask for the length. Returns `CAPLINE_OK`,
/// `CAPLINE_ERR_NULL`, `CAPLINE_ERR_MISALIGNED` or `CAPLINE_ERR_LENGTH`.
///
/// Serve it on your own metrics endpoint as `text/plain; version=0.0.4`.
/// It holds every counter `capline_stats_t` has.
///
/// Thread-safety: any thread, concurrently with `capline_capture`.
///
/// # Safety
/// `engine` as for [`capline_capture`]; `buf` must be NULL or point to `len`
/// writable bytes; `needed` must be NULL or point to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capline_stats_prometheus(
    engine: *const capline_engine,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> i32 {
    boundary(|| {
        // SAFETY: forwarded from the caller.
        let engine = unsafe { object("engine", engine)? };
        if buf.is_null() && len > 0 {
            return fail(CAPLINE_ERR_NULL, format!("buf is NULL with length {len}"));
        }
        if len > isize::MAX as usize {
            return fail(
                CAPLINE_ERR_LENGTH,
                format!("buf: length {len} is larger than PTRDIFF_MAX"),
            );
        }
        if !needed.is_null() && !needed.is_aligned() {
            return fail(CAPLINE_ERR_MISALIGNED, "needed is not aligned");
        }
        let stats = engine.engine.stats();
        let text = engine::stats::prometheus_text(&[(&[], &stats)]);
        if len > 0 {
            let n = text.len().min(len - 1);
            // SAFETY: buf has len writable bytes (caller), n < len; the text
            // is ours and cannot overlap it.
            unsafe {
                std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
                buf.add(n).write(0);
            }
        }
        if !needed.is_null() {
            // SAFETY: non-NULL and aligned (checked); the caller guarantees it is writable.
            unsafe { needed.write(text.len()) };
        }
        Ok(CAPLINE_OK)
    })
}

/// Copies the calling thread's last error message into `buf` (at most `len`
/// bytes including the terminating NUL, truncated if needed) and returns the
/// full message length in bytes (0: no error yet). `buf` may be NULL when
/// `len` is 0, to ask for the length.
///
/// Thread-safety: the message is per thread; any thread may call it.
///
/// # Safety
/// `buf` must be NULL or point to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capline_last_error(buf: *mut c_char, len: usize) -> usize {
    catch_unwind(|| {
        LAST_ERROR.with(|e| {
            let msg = e.borrow();
            if !buf.is_null() && len > 0 && len <= isize::MAX as usize {
                let n = msg.len().min(len - 1);
                // SAFETY: buf has len writable bytes (caller), n < len; the
                // message and buf cannot overlap (ours is a Rust String).
                unsafe {
                    std::ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n);
                    buf.add(n).write(0);
                }
            }
            msg.len()
        })
    })
    .unwrap_or(0)
}

/// The library version, a static NUL-terminated string such as `"0.1.0"`.
///
/// Thread-safety: any thread.
#[unsafe(no_mangle)]
pub extern "C" fn capline_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        let mut buf = vec![0u8; 256];
        // SAFETY: buf has 256 writable bytes.
        let n = unsafe { capline_last_error(buf.as_mut_ptr().cast(), buf.len()) };
        buf.truncate(n.min(255));
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn a_panic_becomes_an_error_code_with_its_message() {
        let code = boundary(|| panic!("boom {}", 7));
        assert_eq!(code, CAPLINE_ERR_PANIC);
        assert!(last_error().contains("boom 7"), "{}", last_error());
        let code = boundary(|| std::panic::panic_any(42u8));
        assert_eq!(code, CAPLINE_ERR_PANIC);
        assert!(last_error().contains("unknown panic"));
    }

    #[test]
    fn a_failure_sets_the_message_and_success_leaves_it() {
        assert_eq!(boundary(|| fail(CAPLINE_ERR_ARGUMENT, "bad thing")), -8);
        assert_eq!(last_error(), "bad thing");
        assert_eq!(boundary(|| Ok(CAPLINE_SAMPLED_OUT)), 1);
        assert_eq!(last_error(), "bad thing");
    }

    #[test]
    fn version_is_the_crate_version() {
        // SAFETY: capline_version returns a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(capline_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
