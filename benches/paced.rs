//! The writer at a server's pace: what capline's background thread costs a
//! server that captures a steady, moderate number of records a second (the
//! usual case: a few thousand requests a second, every one kept), as
//! opposed to the throughput harness's saturated writer.
//!
//! `cargo run --release -p capline-benches --bin paced [-- --rate R --secs S --dir DIR --io MODE]`
//!
//! One thread captures 1 KiB + 1 KiB CSV pairs at `R` a second (default
//! 2000), spaced evenly, for `S` seconds (default 5), into an engine with
//! the default settings and a `file://` destination. Printed: the CPU model,
//! and for the writer thread (`capline-writer`) over those seconds its CPU
//! time per second and per record (`/proc/self/task/*/schedstat`) and how
//! many times a second it went to sleep and was woken
//! (`voluntary_ctxt_switches`): each wake-up takes a CPU from the server's
//! own threads for a moment. With `--io pwrite` (`Engine.Io`; default
//! `auto`) the pwrite path's I/O thread (`capline-io`) counts with the
//! writer: its CPU time and its wake-ups. Alternate two builds to compare
//! them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use capline::{Config, Engine, Outcome};
use capline_benches::csv;

/// The writer thread's CPU time so far (ns) and how many times it slept;
/// with `pwrite`, its I/O thread's added.
fn writer_counters() -> Option<(u64, u64)> {
    let [on_cpu, _] = capline_benches::thread_sched_ns("capline-writer")?;
    let sleeps = capline_benches::thread_sleeps("capline-writer")?;
    let io_cpu = capline_benches::thread_sched_ns("capline-io").map_or(0, |t| t[0]);
    let io_sleeps = capline_benches::thread_sleeps("capline-io").unwrap_or(0);
    Some((on_cpu + io_cpu, sleeps + io_sleeps))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut rate, mut secs, mut dir) = (2000u64, 5u64, None::<PathBuf>);
    let mut io = String::from("auto");
    while let Some(a) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match a.as_str() {
            "--rate" => rate = value().parse().expect("--rate N"),
            "--secs" => secs = value().parse().expect("--secs N"),
            "--dir" => dir = Some(PathBuf::from(value())),
            "--io" => io = value(),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(rate > 0 && secs > 0, "--rate and --secs must be at least 1");
    let base = dir.unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("capline-paced-")
        .tempdir_in(&base)
        .expect("tempdir");
    let config = Config::from_json(&format!(
        r#"{{"EndpointName":"paced","DataCaptureConfig":{{"InitialSamplingPercentage":100,
            "DestinationS3Uri":"file://{0}/dest","CaptureOptions":[{{"CaptureMode":"InputAndOutput"}}],
            "CaptureContentTypeHeader":{{"CsvContentTypes":["text/csv"]}}}},
            "Engine":{{"SpoolDir":"{0}/spool","Io":"{1}"}}}}"#,
        tmp.path().display(),
        io
    ))
    .expect("config");
    let engine = Engine::start(config).expect("start");
    let body = csv(1024);
    let cap = capline::Capture {
        request: capline::Payload::new("text/csv", &body),
        response: capline::Payload::new("text/csv", &body),
        inference_id: None,
        time: None,
    };
    // Let the writer start and settle.
    std::thread::sleep(Duration::from_millis(200));
    let before = writer_counters().expect("the writer thread");
    let n = rate * secs;
    let start = Instant::now();
    let mut kept = 0u64;
    for i in 0..n {
        // The i-th call's moment, exact for any count (no per-call step rounded).
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        kept += u64::from(engine.capture(&cap) == Outcome::Kept);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = writer_counters().expect("the writer thread");
    engine.flush(Duration::from_secs(60)).expect("flush");
    let stats = engine.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert_eq!(stats.records_written, n, "every record written");
    let cpu_ns = (after.0 - before.0) as f64;
    let wakes = (after.1 - before.1) as f64;
    println!("cpu: {}", capline_benches::cpu_model());
    println!(
        "paced: {n} pairs of 1 KiB CSV at {rate}/s over {elapsed:.2} s ({kept} kept); writer: CPU {:.2} ms a second, {:.0} ns a record; woken {:.0} times a second ({:.2} records a wake)",
        cpu_ns / 1e6 / elapsed,
        cpu_ns / n as f64,
        wakes / elapsed,
        n as f64 / wakes.max(1.0)
    );
}
