//! `capture-loop N DIR [IO]`: captures N 1 KiB + 1 KiB CSV pairs as fast as one
//! thread can, into a real engine writing under DIR, then shuts down and
//! prints the stats. Used under `strace` by `scripts/strace-check.sh` to show
//! that the capture loop makes no syscall and the whole run makes fewer than
//! one per 100 records. A record refused because the ring is full is retried
//! after a spin (never a syscall), so every record is kept.

use std::io::Write;
use std::time::{Duration, Instant};

use capline::{Capture, Config, DropReason, Engine, Outcome, Payload};
use capline_benches::csv;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: capture-loop N DIR [IO]");
    let dir = std::path::PathBuf::from(args.next().expect("usage: capture-loop N DIR [IO]"));
    let io = args.next().unwrap_or_else(|| "auto".into());
    let config = Config::from_json(&format!(
        r#"{{"EndpointName":"loop","DataCaptureConfig":{{"InitialSamplingPercentage":100,
            "DestinationS3Uri":"file://{}/dest","CaptureOptions":[{{"CaptureMode":"InputAndOutput"}}],
            "CaptureContentTypeHeader":{{"CsvContentTypes":["text/csv"]}}}},
            "Engine":{{"SpoolDir":"{}/spool","Io":"{io}"}}}}"#,
        dir.display(),
        dir.display()
    ))
    .expect("config");
    let engine = Engine::start(config).expect("start");
    let (request, response) = (csv(1024), csv(1024));
    let capture = Capture {
        request: Payload::new("text/csv", &request),
        response: Payload::new("text/csv", &response),
        inference_id: None,
        time: None,
    };
    let mut stderr = std::io::stderr();
    // Markers for the trace: the loop lies between these two writes.
    let _ = stderr.write_all(b"capture-loop: begin\n");
    let start = Instant::now();
    let mut retries = 0u64;
    for _ in 0..n {
        loop {
            match engine.capture(&capture) {
                Outcome::Kept => break,
                Outcome::Dropped(DropReason::RingFull) => {
                    retries += 1;
                    for _ in 0..256 {
                        std::hint::spin_loop();
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let elapsed = start.elapsed();
    let _ = stderr.write_all(b"capture-loop: end\n");
    let stats = engine.shutdown(Duration::from_secs(120)).expect("shutdown");
    println!(
        "captured {n} records in {:.3} s ({:.0} records/s); ring-full retries {retries}; written {}; segments {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        stats.records_written,
        stats.segments_delivered
    );
    assert_eq!(stats.records_written, n, "every record was written");
}
