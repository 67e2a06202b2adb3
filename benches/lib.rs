//! Shared by the benches: deterministic record shapes, the "afternoon"
//! baseline capture path, and engine set-up.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use capline::{Config, Engine};
use crossbeam_channel::{Sender, TrySendError};

/// A named request/response pair.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Bench id, e.g. `csv_1k`.
    pub name: &'static str,
    /// Request Content-Type.
    pub request_type: &'static str,
    /// Request body.
    pub request: Vec<u8>,
    /// Response Content-Type.
    pub response_type: &'static str,
    /// Response body.
    pub response: Vec<u8>,
}

impl Shape {
    /// This pair as a capture call (no inference id, time now).
    pub fn capture(&self) -> capline::Capture<'_> {
        capline::Capture {
            request: capline::Payload::new(self.request_type, &self.request),
            response: capline::Payload::new(self.response_type, &self.response),
            inference_id: None,
            time: None,
        }
    }

    /// The pair's bodies as `Bytes` of their own (for `capture_shared`):
    /// new buffers at each call, as a server's requests have.
    pub fn shared_bodies(&self) -> (capline::bytes::Bytes, capline::bytes::Bytes) {
        (
            capline::bytes::Bytes::from(self.request.clone()),
            capline::bytes::Bytes::from(self.response.clone()),
        )
    }

    /// This pair's call through `capture_shared`, with `bodies` (no
    /// inference id, time now).
    pub fn shared_capture(
        &self,
        (request, response): (capline::bytes::Bytes, capline::bytes::Bytes),
    ) -> capline::SharedCapture<'_> {
        capline::SharedCapture {
            request: capline::SharedPayload::new(self.request_type, request),
            response: capline::SharedPayload::new(self.response_type, response),
            inference_id: None,
            time: None,
        }
    }

    /// Payload bytes in the pair.
    pub fn bytes(&self) -> u64 {
        (self.request.len() + self.response.len()) as u64
    }

    /// The `memcpy` floor's copy: the request, then the response, into
    /// `buf` (exactly [`bytes`](Self::bytes) long), kept from being optimized away.
    pub fn copy_into(&self, buf: &mut [u8]) {
        let (req, resp) = buf.split_at_mut(self.request.len());
        req.copy_from_slice(std::hint::black_box(&self.request));
        resp.copy_from_slice(std::hint::black_box(&self.response));
        std::hint::black_box(buf);
    }
}

/// CSV text of exactly `n` bytes ending in `\n`: numbers and commas, like the churn rows.
pub fn csv(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0u64;
    while out.len() < n - 1 {
        out.extend_from_slice(format!("{}.{},", i * 37 % 400, i % 10).as_bytes());
        i += 1;
    }
    out.truncate(n - 1);
    out.push(b'\n');
    out
}

/// JSON text of exactly `n` bytes, quote-heavy (one `"` every 6 bytes or so).
pub fn json(n: usize) -> Vec<u8> {
    let mut out = b"{\"instances\":[".to_vec();
    let mut i = 0u64;
    while out.len() < n - 3 {
        out.extend_from_slice(format!("{{\"f\":{i}}},").as_bytes());
        i += 1;
    }
    out.truncate(n - 2);
    out.extend_from_slice(b"]}");
    out
}

/// `n` pseudo-random bytes (a fixed xorshift stream).
pub fn binary(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The serializer benches' encoding rules: CSV for `text/csv`, JSON for
/// `application/json` (what the format shapes use), BASE64 otherwise.
pub fn format_rules() -> capline::format::EncodingRules {
    capline::format::EncodingRules::new(Some(capline::config::ContentTypes {
        csv: vec!["text/csv".into()],
        json: vec!["application/json".into()],
    }))
}

impl Shape {
    /// This pair as one line's event for the serializer benches: both
    /// sides, no inference id, at 2024-01-19T19:27:57Z.
    pub fn event(&self, event_id: [u8; 16]) -> capline::format::Event<'_> {
        capline::format::Event {
            input: Some(capline::format::Payload::new(
                self.request_type,
                &self.request,
            )),
            output: Some(capline::format::Payload::new(
                self.response_type,
                &self.response,
            )),
            event_id,
            inference_id: None,
            time: capline::format::Timestamp::from_unix_millis(1_705_692_477_000)
                .expect("a valid time"),
        }
    }
}

/// The format bench shapes: 1 KiB CSV pair, 1 KiB JSON pair, 16 KiB + 1 KiB
/// quote-dense JSON (the throughput harness's `json_16k`), 16 KiB binary (BASE64).
pub fn format_shapes() -> Vec<Shape> {
    vec![
        Shape {
            name: "csv_1k_pair",
            request_type: "text/csv",
            request: csv(1024),
            response_type: "text/csv; charset=utf-8",
            response: csv(1024),
        },
        Shape {
            name: "json_1k_pair",
            request_type: "application/json",
            request: json(1024),
            response_type: "application/json",
            response: json(1024),
        },
        Shape {
            name: "json_16k_pair",
            request_type: "application/json",
            request: json(16 * 1024),
            response_type: "application/json",
            response: json(1024),
        },
        Shape {
            name: "base64_16k",
            request_type: "application/x-npy",
            request: binary(16 * 1024),
            response_type: "text/csv",
            response: b"0.7312".to_vec(),
        },
    ]
}

/// The capture path a team writes in an afternoon: an atomic flag, a
/// `rand::random` draw, and the pair copied into a `Vec<u8>` sent over a
/// bounded crossbeam channel to a consumer thread (which here just drops it).
#[derive(Debug)]
pub struct ChannelCapture {
    tx: Sender<Vec<u8>>,
    enabled: AtomicBool,
    /// The sampling percentage as `f64` bits.
    percent: AtomicU64,
    consumer: Option<std::thread::JoinHandle<()>>,
}

impl ChannelCapture {
    /// A channel of `capacity` records and its consumer thread.
    pub fn new(capacity: usize, percent: f64) -> Self {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(capacity);
        let consumer = std::thread::spawn(move || {
            for v in rx {
                drop(std::hint::black_box(v));
            }
        });
        ChannelCapture {
            tx,
            enabled: AtomicBool::new(true),
            percent: AtomicU64::new(percent.to_bits()),
            consumer: Some(consumer),
        }
    }

    /// Turns capture on or off.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// One capture; `true` when the pair was queued.
    pub fn capture(&self, s: &Shape) -> bool {
        if !self.enabled.load(Ordering::Relaxed) {
            return false;
        }
        let percent = f64::from_bits(self.percent.load(Ordering::Relaxed));
        if rand::random::<f64>() * 100.0 >= percent {
            return false;
        }
        let mut v = Vec::with_capacity(
            s.request_type.len() + s.request.len() + s.response_type.len() + s.response.len(),
        );
        v.extend_from_slice(s.request_type.as_bytes());
        v.extend_from_slice(&s.request);
        v.extend_from_slice(s.response_type.as_bytes());
        v.extend_from_slice(&s.response);
        match self.tx.try_send(v) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// Waits until the consumer has taken everything.
    pub fn drain(&self) {
        while !self.tx.is_empty() {
            std::thread::yield_now();
        }
    }
}

impl Drop for ChannelCapture {
    fn drop(&mut self) {
        let (dead, _) = crossbeam_channel::bounded(1);
        drop(std::mem::replace(&mut self.tx, dead));
        if let Some(h) = self.consumer.take() {
            let _ = h.join();
        }
    }
}

/// Bytes of the window [`Handoff`] copies into: the ring's warm window.
const HANDOFF_WINDOW: usize = 256 * 1024;

/// One cache line of the [`Handoff`] window.
#[repr(align(64))]
struct HandoffLine([AtomicU64; 8]);

/// Pads a position to a line of its own (as the ring pads its own).
#[repr(align(128))]
struct HandoffPos(AtomicU64);

/// What the [`Handoff`] copier and reader share.
struct HandoffShared {
    lines: Box<[HandoffLine]>,
    /// What the reader is asked to read up to: the copier's position when
    /// `drain` was called, published with Release.
    drain_to: HandoffPos,
    /// Bytes the reader has read so far, published with Release.
    head: HandoffPos,
    stop: AtomicBool,
}

/// The floor of a hand-off to another core: the pair copied into a 256 KiB
/// window of cache lines (the size of the ring's warm window) that a thread
/// on the other core reads, one load per line, when asked to drain, as
/// capline's writer reads every record. Each copy then writes lines the
/// other core has read since they were last written, and must take them
/// back from its cache, which a copy into a reused buffer (`memcpy`) never
/// does. No claim, header, clock or counter: only the copy and the lines'
/// trips between the cores' caches. (A reader that follows right behind
/// the copier costs far more: its loads, and its prefetcher's, pull lines
/// away from the copier while it is still writing next to them.)
pub struct Handoff {
    shared: std::sync::Arc<HandoffShared>,
    /// Bytes copied in so far; only the copier's thread uses it.
    tail: std::cell::Cell<u64>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Handoff {
    /// The window and its reader thread.
    pub fn new() -> Self {
        let shared = std::sync::Arc::new(HandoffShared {
            lines: (0..HANDOFF_WINDOW / 64)
                .map(|_| HandoffLine(Default::default()))
                .collect(),
            drain_to: HandoffPos(AtomicU64::new(0)),
            head: HandoffPos(AtomicU64::new(0)),
            stop: AtomicBool::new(false),
        });
        let r = shared.clone();
        let reader = std::thread::spawn(move || {
            let mut pos = 0u64;
            let mut sum = 0u64;
            while !r.stop.load(Ordering::Relaxed) {
                // Acquire: the copier's bytes before `drain_to` are visible.
                let to = r.drain_to.0.load(Ordering::Acquire);
                while pos < to {
                    let line = (pos as usize % HANDOFF_WINDOW) / 64;
                    sum = sum.wrapping_add(r.lines[line].0[0].load(Ordering::Relaxed));
                    pos += 64;
                }
                // Release: our reads happen before the copier reuses the lines.
                r.head.0.store(pos, Ordering::Release);
                std::hint::spin_loop();
            }
            std::hint::black_box(sum);
        });
        Handoff {
            shared,
            tail: std::cell::Cell::new(0),
            reader: Some(reader),
        }
    }

    /// Copies the pair's bodies in at the copier's position, in whole lines
    /// (wrapping at the window's end); `false` when the reader has not freed
    /// the room. One thread copies.
    pub fn copy(&self, s: &Shape) -> bool {
        let sh = &*self.shared;
        let need = (s.request.len() + s.response.len()).next_multiple_of(64) as u64;
        let tail = self.tail.get();
        // Acquire: pairs with the reader's Release of `head`.
        if tail + need - sh.head.0.load(Ordering::Acquire) > HANDOFF_WINDOW as u64 {
            return false;
        }
        let base = sh.lines.as_ptr().cast::<u8>().cast_mut();
        let mut at = tail as usize;
        for piece in [&s.request[..], &s.response[..]] {
            let mut left = piece;
            while !left.is_empty() {
                let off = at % HANDOFF_WINDOW;
                let n = left.len().min(HANDOFF_WINDOW - off);
                // SAFETY: `off + n <= HANDOFF_WINDOW`, the window's size; the
                // bytes lie between the reader's `head` and `head + window`,
                // which the reader does not read until `drain_to` passes them; the
                // window is atomics (`UnsafeCell`), so writing them through a
                // pointer from a shared reference is allowed.
                unsafe { std::ptr::copy_nonoverlapping(left.as_ptr(), base.add(off), n) };
                left = &left[n..];
                at += n;
            }
        }
        self.tail.set(tail + need);
        true
    }

    /// Has the reader read everything copied in, and waits until it has.
    pub fn drain(&self) {
        let sh = &*self.shared;
        let tail = self.tail.get();
        // Release: the bytes before `tail` are visible to the reader that sees this.
        sh.drain_to.0.store(tail, Ordering::Release);
        while sh.head.0.load(Ordering::Acquire) != tail {
            std::hint::spin_loop();
        }
    }
}

impl Default for Handoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

/// An engine for capture-path benchmarks: sampling `percent`, a ring of
/// `ring_bytes`, and a writer that discards records (nothing touches disk).
pub fn discarding_engine(dir: &Path, percent: u32, ring_bytes: u64) -> Engine {
    let config = Config::from_json(&format!(
        r#"{{"EndpointName":"bench","DataCaptureConfig":{{"InitialSamplingPercentage":{percent},
            "DestinationS3Uri":"file://{}/dest","CaptureOptions":[{{"CaptureMode":"InputAndOutput"}}],
            "CaptureContentTypeHeader":{{"CsvContentTypes":["text/csv"],"JsonContentTypes":["application/json"]}}}},
            "Engine":{{"SpoolDir":"{}/spool","RingBytes":{ring_bytes}}}}}"#,
        dir.display(),
        dir.display()
    ))
    .expect("bench config");
    Engine::start_discarding(config).expect("start engine")
}

/// The capture-path shapes: 1 KiB + 1 KiB and 16 KiB + 1 KiB CSV pairs.
pub fn capture_shapes() -> Vec<Shape> {
    vec![
        Shape {
            name: "1k_1k",
            request_type: "text/csv",
            request: csv(1024),
            response_type: "text/csv",
            response: csv(1024),
        },
        Shape {
            name: "16k_1k",
            request_type: "text/csv",
            request: csv(16 * 1024),
            response_type: "text/csv",
            response: csv(1024),
        },
    ]
}

/// The file `file` under `/proc/self/task/TID/` of each of this process's
/// threads named `name`; `None` when there is no such thread.
fn threads_named(name: &str, file: &str) -> Option<Vec<String>> {
    let texts: Vec<String> = std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .map(|t| std::fs::read_to_string(t.path().join(file)).unwrap_or_default())
        .collect();
    (!texts.is_empty()).then_some(texts)
}

/// Time so far of this process's threads named `name`, in nanoseconds, on
/// a CPU and waiting for one while runnable (the first two fields of
/// `/proc/self/task/*/schedstat`); `None` when there is no such thread.
pub fn thread_sched_ns(name: &str) -> Option<[u64; 2]> {
    let mut total = None;
    for stat in threads_named(name, "schedstat")? {
        let mut fields = stat.split_whitespace().map(|v| v.parse::<u64>().ok());
        if let (Some(Some(on)), Some(Some(waiting))) = (fields.next(), fields.next()) {
            let sum: &mut [u64; 2] = total.get_or_insert([0, 0]);
            sum[0] += on;
            sum[1] += waiting;
        }
    }
    total
}

/// Voluntary context switches so far (times it went to sleep) of this
/// process's threads named `name`; `None` when there is no such thread.
pub fn thread_sleeps(name: &str) -> Option<u64> {
    let statuses = threads_named(name, "status")?;
    let sleeps = statuses.iter().map(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    });
    Some(sleeps.sum())
}

/// A histogram of nanoseconds (1 ns to 60 s, 3 significant figures) whose
/// counts are allocated and written now. One that grows as values come
/// would allocate during the timed loop, and a large enough allocation is
/// a fresh mapping whose pages fault in at first touch, inside the loop.
pub fn histogram() -> hdrhistogram::Histogram<u64> {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .expect("histogram bounds");
    // Writes every count: the pages are resident from here on.
    h.clear();
    h
}

/// Times calls with the CPU counter (quanta's raw clock), less the cost of a
/// timer read pair measured at construction.
#[derive(Debug)]
pub struct Timer {
    /// The counter.
    pub clock: quanta::Clock,
    /// Nanoseconds an empty timed region costs (median of 100 000).
    pub overhead: u64,
}

impl Timer {
    /// Calibrates the counter and measures the timer's own cost.
    pub fn new() -> Timer {
        let clock = quanta::Clock::new();
        let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
        for _ in 0..100_000 {
            let a = clock.raw();
            let b = clock.raw();
            h.record(clock.delta_as_nanos(a, b).max(1)).expect("record");
        }
        Timer {
            overhead: h.value_at_quantile(0.5),
            clock,
        }
    }

    /// Nanoseconds per call of `f` run `batch` times, less the timer's own cost.
    pub fn time(&self, batch: u64, mut f: impl FnMut()) -> u64 {
        let a = self.clock.raw();
        for _ in 0..batch {
            f();
        }
        let b = self.clock.raw();
        let ns = self
            .clock
            .delta_as_nanos(a, b)
            .saturating_sub(self.overhead);
        (ns / batch).max(1)
    }
}

impl Default for Timer {
    fn default() -> Self {
        Timer::new()
    }
}

/// The CPU's model name (`/proc/cpuinfo`) and how many CPUs this process
/// may use, for the benches' output: figures differ between CPU models.
pub fn cpu_model() -> String {
    let name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{name}, {cpus} CPUs")
}

/// Serves HTTP/1 on `127.0.0.1:port` with `answer` for every request, on a
/// one-thread runtime, forever: the stand-in models of the endpoint and
/// streaming benches.
pub fn serve_forever<F, Fut, B>(port: u16, answer: F)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = Result<hyper::Response<B>, std::convert::Infallible>>
        + Send
        + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(stream),
                        hyper::service::service_fn(answer),
                    )
                    .await;
            });
        }
    });
}
