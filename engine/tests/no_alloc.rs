//! `capture()` never allocates per record: a counting global allocator sees
//! zero allocations on the capturing thread over 100 000 sampled-in captures
//! and 100 000 sampled-out ones, after warm-up; and the same for
//! `capture_shared()`, whose bodies are handed over.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use capline::bytes::Bytes;
use capline::{Capture, Config, Engine, Outcome, Payload, SharedCapture, SharedPayload};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter only observes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and frees) made by this thread while running `f`.
fn count(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn capture_does_not_allocate() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Config::from_json(&format!(
        r#"{{"EndpointName":"e","DataCaptureConfig":{{"InitialSamplingPercentage":100,
            "DestinationS3Uri":"file://{}/dest","CaptureOptions":[{{"CaptureMode":"InputAndOutput"}}],
            "CaptureContentTypeHeader":{{"CsvContentTypes":["text/csv"]}}}},
            "Engine":{{"SpoolDir":"{}/spool","RingBytes":268435456,"SamplingMode":"Deterministic"}}}}"#,
        tmp.path().display(),
        tmp.path().display()
    ))
    .unwrap();
    let engine = Engine::start(config).unwrap();
    let request = vec![b'1'; 1024];
    let response = vec![b'2'; 1024];
    let ids: Vec<String> = (0..100_000).map(|i| format!("id-{i}")).collect();
    let c = |id: Option<&str>| -> Outcome {
        engine.capture(&Capture {
            request: Payload::new("text/csv", &request),
            response: Payload::new("text/csv", &response),
            inference_id: id,
            time: None,
        })
    };
    // Warm-up: thread-locals (RNG, counter stripe) are set up on first use.
    for _ in 0..1000 {
        c(None);
    }
    engine.flush(Duration::from_secs(30)).unwrap();

    let mut kept = 0;
    let n = count(|| {
        for (i, id) in ids.iter().enumerate() {
            let id = (i % 2 == 0).then_some(id.as_str());
            if c(id) == Outcome::Kept {
                kept += 1;
            }
        }
    });
    assert_eq!(kept, 100_000, "every call was sampled in and kept");
    assert_eq!(
        n, 0,
        "allocations on the capturing thread while keeping records"
    );

    engine.set_sampling_percentage(0.0).unwrap();
    let mut sampled_out = 0;
    let n = count(|| {
        for (i, id) in ids.iter().enumerate() {
            let id = (i % 2 == 0).then_some(id.as_str());
            if c(id) == Outcome::SampledOut {
                sampled_out += 1;
            }
        }
    });
    assert_eq!(sampled_out, 100_000);
    assert_eq!(
        n, 0,
        "allocations on the capturing thread while sampling out"
    );

    // Shared bodies: handing them over (kept) or dropping this call's share
    // (sampled out) allocates and frees nothing on this thread either. The
    // clones are made before counting, as a server's are by its own code.
    let (req, resp) = (Bytes::from(request.clone()), Bytes::from(response.clone()));
    for percent in [100.0, 0.0] {
        engine.flush(Duration::from_secs(30)).unwrap();
        engine.set_sampling_percentage(percent).unwrap();
        let mut pairs: Vec<(Bytes, Bytes)> =
            (0..100_000).map(|_| (req.clone(), resp.clone())).collect();
        let (mut kept, mut sampled_out) = (0, 0);
        let n = count(|| {
            while let Some((a, b)) = pairs.pop() {
                let out = engine.capture_shared(SharedCapture {
                    request: SharedPayload::new("text/csv", a),
                    response: SharedPayload::new("text/csv", b),
                    inference_id: None,
                    time: None,
                });
                kept += u32::from(out == Outcome::Kept);
                sampled_out += u32::from(out == Outcome::SampledOut);
            }
        });
        let want = if percent > 0.0 {
            (100_000, 0)
        } else {
            (0, 100_000)
        };
        assert_eq!((kept, sampled_out), want, "at {percent} %");
        assert_eq!(
            n, 0,
            "allocations on the capturing thread, shared bodies at {percent} %"
        );
    }

    // The counter itself works: a Vec on this thread is seen.
    assert!(count(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
    let stats = engine.shutdown(Duration::from_secs(30)).unwrap();
    assert_eq!(stats.records_written, 201_000);
}
