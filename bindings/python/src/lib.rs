//! capline for Python (`import capline`): the capture engine in the process
//! of a Python model server.
//!
//! A thin shell over the `capline` crate, as the C ABI is: `Engine` starts
//! the same engine a Rust server would, `capture` calls the same hot path.
//! Bodies are read in place (bytes, str's UTF-8, or any contiguous buffer of
//! bytes such as bytearray or memoryview) and copied once, into the ring.
//! `capture` never raises for a record it does not keep, and never blocks.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use capline::{Capture, Config, DropReason, Outcome as Kept, Payload, RejectReason, Stats};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyRuntimeError, PyTimeoutError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyInt, PyString};

pyo3::create_exception!(
    capline,
    ConfigError,
    PyValueError,
    "The config broke a rule; the message names the field."
);
pyo3::create_exception!(
    capline,
    EngineError,
    PyRuntimeError,
    "The engine could not start, or its threads stopped."
);

/// What `capture()` did with a call. Every call has exactly one outcome.
#[pyclass(eq, eq_int, frozen, module = "capline")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Queued for writing.
    KEPT = 0,
    /// Not selected by sampling.
    SAMPLED_OUT = 1,
    /// Capture is disabled.
    DROPPED_DISABLED = 2,
    /// The disk watermark (or a failed write) closed the gate.
    DROPPED_WATERMARK = 3,
    /// Undelivered segments reached `SpoolMaxBytes`.
    DROPPED_SPOOL_FULL = 4,
    /// The ring had no room (the writer is behind).
    DROPPED_RING_FULL = 5,
    /// The record is larger than `MaxRecordBytes`.
    DROPPED_TOO_LARGE = 6,
    /// The inference id is not 1-64 printable ASCII characters.
    REJECTED_INFERENCE_ID = 7,
    /// A content type is longer than 1024 bytes.
    REJECTED_CONTENT_TYPE = 8,
    /// The time is before 1970 or after 9999.
    REJECTED_TIME = 9,
}

#[pymethods]
impl Outcome {
    /// Whether the record was queued for writing.
    #[getter]
    fn kept(&self) -> bool {
        *self == Outcome::KEPT
    }

    /// Whether it was dropped (for a reason that is not the caller's fault).
    #[getter]
    fn dropped(&self) -> bool {
        (2..=6).contains(&(*self as u8))
    }

    /// Whether it was rejected (the call's data broke a rule).
    #[getter]
    fn rejected(&self) -> bool {
        (7..=9).contains(&(*self as u8))
    }
}

impl From<Kept> for Outcome {
    fn from(o: Kept) -> Self {
        match o {
            Kept::Kept => Outcome::KEPT,
            Kept::SampledOut => Outcome::SAMPLED_OUT,
            Kept::Dropped(DropReason::Disabled) => Outcome::DROPPED_DISABLED,
            Kept::Dropped(DropReason::Watermark) => Outcome::DROPPED_WATERMARK,
            Kept::Dropped(DropReason::SpoolFull) => Outcome::DROPPED_SPOOL_FULL,
            Kept::Dropped(DropReason::RingFull) => Outcome::DROPPED_RING_FULL,
            Kept::Dropped(DropReason::TooLarge) => Outcome::DROPPED_TOO_LARGE,
            Kept::Rejected(RejectReason::InferenceId) => Outcome::REJECTED_INFERENCE_ID,
            Kept::Rejected(RejectReason::ContentType) => Outcome::REJECTED_CONTENT_TYPE,
            Kept::Rejected(RejectReason::Time) => Outcome::REJECTED_TIME,
        }
    }
}

/// Borrows a body as bytes, in place: `bytes`, `str` (its UTF-8), or any
/// C-contiguous buffer of bytes (`bytearray`, `memoryview`, `array('B')`,
/// a NumPy `uint8` array). Anything else is a `TypeError` naming `what`.
fn with_bytes<R>(
    what: &str,
    obj: &Bound<'_, PyAny>,
    f: impl FnOnce(&[u8]) -> PyResult<R>,
) -> PyResult<R> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return f(b.as_bytes());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return f(s.to_str()?.as_bytes());
    }
    let buf = PyBuffer::<u8>::get(obj).map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be bytes, bytearray, memoryview (of bytes) or str, not {}",
            obj.get_type()
                .name()
                .map_or_else(|_| "?".to_string(), |n| n.to_string())
        ))
    })?;
    if !buf.is_c_contiguous() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a contiguous buffer"
        )));
    }
    let len = buf.len_bytes();
    let bytes = if len == 0 {
        &[][..]
    } else {
        // SAFETY: the buffer is exported (held by `buf`) for this whole
        // call, C-contiguous, and `len_bytes` bytes long from `buf_ptr`; its
        // owner cannot be resized while exported, and `f` does not keep the
        // slice (the engine copies it into the ring).
        unsafe { std::slice::from_raw_parts(buf.buf_ptr().cast::<u8>().cast_const(), len) }
    };
    f(bytes)
}

/// A capture time: a `datetime` (aware, or naive meaning UTC) or epoch
/// seconds (int or float). `None` (for the outcome `REJECTED_TIME`) when it
/// cannot be a time at all (not finite, or far out of range).
fn to_time(t: &Bound<'_, PyAny>) -> PyResult<Option<SystemTime>> {
    let seconds: f64 = if t.is_instance_of::<PyFloat>() || t.is_instance_of::<PyInt>() {
        if let Ok(i) = t.extract::<i64>() {
            return Ok(epoch_seconds(i as f64));
        }
        t.extract::<f64>()?
    } else if t.hasattr("tzinfo")? && t.hasattr("timestamp")? {
        let aware = if t.getattr("tzinfo")?.is_none() {
            let utc = t
                .py()
                .import("datetime")?
                .getattr("timezone")?
                .getattr("utc")?;
            let kwargs = PyDict::new(t.py());
            kwargs.set_item("tzinfo", utc)?;
            t.call_method("replace", (), Some(&kwargs))?
        } else {
            t.clone()
        };
        aware.call_method0("timestamp")?.extract()?
    } else {
        return Err(PyTypeError::new_err(
            "time must be a datetime or epoch seconds (int or float)",
        ));
    };
    Ok(epoch_seconds(seconds))
}

fn epoch_seconds(s: f64) -> Option<SystemTime> {
    if !s.is_finite() || s.abs() > 1e12 {
        return None;
    }
    let d = Duration::from_secs_f64(s.abs());
    if s >= 0.0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    }
}

fn engine_error(e: capline::Error) -> PyErr {
    match e {
        capline::Error::Config(c) => ConfigError::new_err(c.to_string()),
        capline::Error::Timeout(d) => PyTimeoutError::new_err(format!(
            "the writer did not finish within {:.3} s",
            d.as_secs_f64()
        )),
        other => EngineError::new_err(other.to_string()),
    }
}

fn seconds(timeout: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(timeout)
        .map_err(|_| PyValueError::new_err("timeout must be a number of seconds >= 0"))
}

fn stats_dict<'py>(py: Python<'py>, s: &Stats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, value) in s.counters() {
        d.set_item(name, value)?;
    }
    d.set_item("calls", s.calls())?;
    d.set_item("sampling_percentage", s.sampling_percentage)?;
    d.set_item(
        "effective_sampling_percentage",
        s.effective_sampling_percentage,
    )?;
    d.set_item("capture_enabled", s.capture_enabled)?;
    d.set_item("gate_watermark_closed", s.gate_watermark_closed)?;
    d.set_item("gate_spool_closed", s.gate_spool_closed)?;
    Ok(d)
}

/// A running capture engine: a writer thread, an uploader thread, and the
/// capture path. Thread-safe: share one engine between every thread that
/// serves requests.
#[pyclass(frozen, module = "capline")]
pub struct Engine {
    /// `None` once closed. Loading it is lock-free (no mutex on the capture path).
    inner: ArcSwapOption<capline::Engine>,
    max_record_bytes: u64,
}

impl Engine {
    fn with<R>(&self, f: impl FnOnce(&capline::Engine) -> PyResult<R>) -> PyResult<R> {
        let guard = self.inner.load();
        match guard.as_ref() {
            Some(e) => f(e),
            None => Err(EngineError::new_err("the engine is closed")),
        }
    }
}

#[pymethods]
impl Engine {
    /// Starts an engine from its config: a dict or a JSON string, the same
    /// document as everywhere (`EndpointName`, `DataCaptureConfig` in the
    /// API's or the SageMaker Python SDK's shape, `Engine`). A bad config
    /// raises `ConfigError` naming the field.
    #[new]
    fn new(py: Python<'_>, config: &Bound<'_, PyAny>) -> PyResult<Self> {
        let text: String = if let Ok(s) = config.cast::<PyString>() {
            s.to_str()?.to_owned()
        } else if config.is_instance_of::<PyDict>() {
            py.import("json")?
                .call_method1("dumps", (config,))?
                .extract()?
        } else {
            return Err(PyTypeError::new_err(
                "config must be a dict or a JSON string",
            ));
        };
        let config = Config::from_json(&text).map_err(|e| ConfigError::new_err(e.to_string()))?;
        let max_record_bytes = config.engine.max_record_bytes;
        let engine = py
            .detach(|| capline::Engine::start(config))
            .map_err(engine_error)?;
        Ok(Engine {
            inner: ArcSwapOption::from_pointee(engine),
            max_record_bytes,
        })
    }

    /// Offers one inference for capture; returns what happened. Never
    /// blocks, never raises for a record it does not keep (after `close`, it
    /// answers `DROPPED_DISABLED`). A body of the wrong type is a `TypeError`.
    #[pyo3(signature = (request, response, *, request_content_type, response_content_type, inference_id=None, time=None))]
    #[allow(clippy::too_many_arguments)]
    fn capture(
        &self,
        request: &Bound<'_, PyAny>,
        response: &Bound<'_, PyAny>,
        request_content_type: &str,
        response_content_type: &str,
        inference_id: Option<&str>,
        time: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Outcome> {
        let time = match time {
            None => None,
            // A time that cannot be one (NaN, far out of range) goes to the
            // engine as a time before 1970, which it rejects and counts
            // like any other: every call is accounted for.
            Some(t) => Some(to_time(t)?.unwrap_or(UNIX_EPOCH - Duration::from_secs(1))),
        };
        with_bytes("request", request, |req| {
            with_bytes("response", response, |resp| {
                let guard = self.inner.load();
                let Some(engine) = guard.as_ref() else {
                    return Ok(Outcome::DROPPED_DISABLED);
                };
                Ok(engine
                    .capture(&Capture {
                        request: Payload::new(request_content_type, req),
                        response: Payload::new(response_content_type, resp),
                        inference_id,
                        time,
                    })
                    .into())
            })
        })
    }

    /// Counts a record refused before `capture` because it is larger than
    /// `max_record_bytes` (a middleware that does not buffer it), as
    /// `dropped_too_large`; returns `DROPPED_TOO_LARGE`.
    fn count_too_large(&self) -> Outcome {
        match self.inner.load().as_ref() {
            Some(e) => e.count_too_large().into(),
            None => Outcome::DROPPED_DISABLED,
        }
    }

    /// `Engine.MaxRecordBytes`: the largest record `capture` keeps.
    #[getter]
    fn max_record_bytes(&self) -> u64 {
        self.max_record_bytes
    }

    /// Waits until every record kept before this call is durable in the
    /// spool. Raises `TimeoutError` after `timeout` seconds.
    #[pyo3(signature = (timeout=10.0))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        let timeout = seconds(timeout)?;
        self.with(|e| py.detach(|| e.flush(timeout)).map_err(engine_error))
    }

    /// A snapshot of every stat, as a dict (docs/OPERATIONS.md, "Stats").
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.with(|e| stats_dict(py, &e.stats()))
    }

    /// The stats in the Prometheus text format (0.0.4), to serve on your
    /// own `/metrics`.
    fn prometheus(&self) -> PyResult<String> {
        self.with(|e| Ok(capline::stats::prometheus_text(&[(&[], &e.stats())])))
    }

    /// Changes the sampling rate for the next call on every thread
    /// (0 to 100, fractions allowed); `ValueError` outside that.
    fn set_sampling_percentage(&self, percent: f64) -> PyResult<()> {
        self.with(|e| {
            e.set_sampling_percentage(percent)
                .map_err(|err| PyValueError::new_err(err.to_string()))
        })
    }

    /// Turns capture on or off for the next call on every thread.
    fn set_enabled(&self, enabled: bool) -> PyResult<()> {
        self.with(|e| {
            e.set_enabled(enabled);
            Ok(())
        })
    }

    /// Whether the engine has been closed.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.load().is_none()
    }

    /// Stops the engine: writes every kept record, seals the open segment,
    /// and delivers what it can within `timeout` seconds (the rest stays in
    /// the spool for the next start). Returns the final stats; `None` when
    /// already closed (closing twice is safe).
    #[pyo3(signature = (timeout=30.0))]
    fn close<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Option<Bound<'py, PyDict>>> {
        let timeout = seconds(timeout)?;
        let Some(mut engine) = self.inner.swap(None) else {
            return Ok(None);
        };
        // Captures that loaded the engine before the swap finish first.
        let engine = py.detach(|| {
            loop {
                match Arc::try_unwrap(engine) {
                    Ok(e) => return e,
                    Err(shared) => {
                        engine = shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        });
        let stats = py
            .detach(|| engine.shutdown(timeout))
            .map_err(engine_error)?;
        stats_dict(py, &stats).map(Some)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py, 30.0)?;
        Ok(false)
    }
}

/// The extension module behind `import capline`.
#[pymodule]
fn _capline(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_class::<Outcome>()?;
    m.add("ConfigError", m.py().get_type::<ConfigError>())?;
    m.add("EngineError", m.py().get_type::<EngineError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
