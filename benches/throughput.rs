//! The throughput harness: capline end to end (capture → ring → serializer →
//! O_DIRECT segments), beside the disk's limit and the "afternoon" baseline,
//! in one run.
//!
//! `cargo run --release -p capline-benches --bin throughput [-- --dir DIR --scale F]`
//! (`-- --redaction`: the writer with `Engine.Redaction` on against off;
//! `-- --only SHAPE`: one shape, `csv_1k`, `json_16k` or `binary_64k`;
//! `-- --capture-cpu N`: the capturing thread runs on CPU N alone during
//! capline's runs, after the engine's threads have started elsewhere;
//! `-- --shared`: capline's runs hand the bodies over as `Bytes`
//! (`Engine::capture_shared`, each call a clone, made before its timing,
//! of one of [`SHARED_POOL`] distinct body pairs) instead of lending them;
//! `-- --segment-mib N`: capline's runs seal segments at N MiB
//! (`SegmentMaxBytes`) instead of the default 256: each seal costs the disk
//! a cache flush or more, which the disk-limit probe's one file does not)
//!
//! For each record shape it measures:
//! - **disk limit**: the same number of bytes as capline's JSON lines, written
//!   through capline's own I/O path (3.5 MiB O_DIRECT batches through
//!   io_uring, 4 in flight, then fdatasync), with no serialization, right
//!   before and right after capline's io_uring run; "of limit" is against
//!   their mean;
//! - **baseline**: a crossbeam channel (65 536) of owned `Vec`s to a writer
//!   thread running serde_json into a `BufWriter<File>`, fsync at the end;
//! - **capline** with `Io: uring` and with `Io: pwrite`: one producer thread
//!   capturing at full speed (a ring-full refusal is retried after a spin),
//!   timed until a final `flush()` returns.
//!
//! - **memcpy**: the floor for a capture call, the pair copied into one
//!   reused buffer, each copy timed the same way, with no writer running;
//!   and **memcpy under load**: the same copy timed inside capline's runs,
//!   at one refusal in [`UNDER_LOAD_EVERY`] (the ring full, so the writer
//!   saturated), once into a reused buffer and once into cold memory
//!   (`ColdArea`), which tells what the machine does to a bare copy at
//!   those moments.
//!
//! Records/s and MB/s count the JSON lines written; `writer/rec` and
//! `writer/MB` are the writer thread's CPU time (with `pwrite`, plus its
//! I/O thread's, `capline-io`) per record and per MB of lines
//! (`/proc/self/task/*/schedstat`): what capture takes from a server's
//! other work. capture() latency is per
//! call (CPU counter, its own cost subtracted), under full writer load, for
//! the calls that kept their record; calls refused because the ring was full
//! (the producer outran the writer) are counted in the last column. For the
//! baseline it is the blocking `send` (its channel applies backpressure).
//!
//! Below each shape's table, what the tail is made of: the capturing
//! thread's page faults and preemptions; the kept calls slower than p99.9,
//! split by whether the ring had refused the record first and by how many
//! calls had been kept since it last refused one; and, with
//! `--capture-cpu`, the interrupts on that CPU, with how many of its timer
//! interrupts are expected to have landed inside a kept call (their number
//! times the share of the run spent in kept calls). How often the
//! capturing thread's CPU is taken away with no engine running: a thread
//! spins on the CPU counter for a second (on `--capture-cpu`'s CPU, if
//! given) and counts gaps of over 10 µs, and how many of those are expected
//! to land inside kept calls (their rate times the time spent in kept
//! calls), beside the number of calls slower than p99.9; in a virtual
//! machine most of them are the host's. And how busy the disk
//! was: the share of each run's time during which the block device holding
//! `--dir` had a request in flight (`io_ticks` in its sysfs `stat`). A writer
//! below the limit with the disk idle part of the time is losing to waits
//! of its own, not to the disk. And where the writer thread's time went:
//! on a CPU, runnable but waiting for one, or asleep. And where the
//! capturing thread ran: the share of its samples (one every 1024 tries)
//! taken on a CPU that takes the spool disk's interrupts, where the kernel
//! completes the writer's writes; a thread that never sleeps there delays
//! them (OPERATIONS.md, "Placing the server's threads").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use capline::bench_io::Output;
use capline::bytes::Bytes;
use capline::config::IoMode;
use capline::{Capture, Config, DropReason, Engine, Outcome, Payload};
use capline_benches::{Shape, Timer, binary, csv, json};
use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Debug, Default)]
struct Figures {
    records_per_s: f64,
    mb_per_s: f64,
    /// Latency of the capture calls that kept their record (or, for the
    /// baseline, of the blocking send).
    p50: u64,
    p99: u64,
    p999: u64,
    /// capline: calls refused because the ring was full (each retried).
    refused: u64,
    /// capline: CPU time of the writer thread over the run, in nanoseconds.
    writer_cpu_ns: Option<u64>,
    /// capline: CPU time of the pwrite path's I/O thread over the run (0
    /// through io_uring, which has none).
    io_cpu_ns: u64,
    /// capline: time the writer thread was runnable but waited for a CPU.
    writer_wait_ns: Option<u64>,
    /// capline: the run's time from the first capture to the final flush.
    secs: f64,
    /// Minor page faults taken by the capturing thread during the run.
    faults: u64,
    /// Times the capturing thread was preempted during the run.
    preempted: u64,
    /// With `--capture-cpu`: hardware interrupts on that CPU during the run.
    irqs: Option<u64>,
    /// With `--capture-cpu`: local timer interrupts on that CPU during the run.
    timer_irqs: Option<u64>,
    /// capline: the spool's disk and the CPUs that take its interrupts,
    /// where they are known, and the share of the capturing thread's CPU
    /// samples (one every `CPU_SAMPLE_EVERY` tries) taken on those CPUs.
    on_irq_cpu: Option<(capline::bench_io::DiskIrqs, f64)>,
    /// capline: of the kept calls slower than p99.9, how many were kept at
    /// their first try, and how many after the ring had refused the record.
    tail_first: u64,
    tail_retried: u64,
    /// capline: the share of the run's time spent inside kept calls.
    kept_share: f64,
    /// capline: the time spent inside kept calls, in seconds.
    kept_secs: f64,
    /// capline: kept calls slower than p99.9 by how many calls were kept
    /// since the ring last refused one: 0, 1–9, 10–99, 100 or more.
    tail_by_streak: [u64; 4],
    /// capline: all kept calls, in the same buckets.
    kept_by_streak: [u64; 4],
    /// capline: the floor's copy timed at one refusal in `UNDER_LOAD_EVERY`
    /// (the ring full, the writer saturated): how many, and their p50, p99
    /// and p99.9.
    copy_under_load: [u64; 4],
    /// capline: the same copy into cold memory ([`ColdArea`]), same moments.
    cold_copy_under_load: [u64; 4],
    /// The share of the run during which the disk had a request in flight
    /// (`io_ticks`); `None` where the directory is on no block device.
    disk_busy: Option<f64>,
}

/// Milliseconds the block device holding `dir` has had requests in flight
/// (`io_ticks`, the tenth field of `/sys/dev/block/MAJOR:MINOR/stat`).
fn disk_busy_ms(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/stat"))
        .ok()?
        .split_whitespace()
        .nth(9)?
        .parse()
        .ok()
}

/// The share of `secs` during which the disk had requests in flight, from
/// [`disk_busy_ms`] before and after.
fn busy_share(before: Option<u64>, after: Option<u64>, secs: f64) -> Option<f64> {
    let ms = after?.checked_sub(before?)?;
    Some(ms as f64 / 1e3 / secs)
}

/// Hardware interrupts so far on `cpu` (the sum of its column in
/// `/proc/interrupts`, numbered lines only).
fn interrupts_on(cpu: usize) -> u64 {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(label, _)| label.trim_start().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|(_, counts)| counts.split_whitespace().nth(cpu)?.parse::<u64>().ok())
        .sum()
}

/// Local timer interrupts so far on `cpu` (the `LOC:` line of `/proc/interrupts`).
fn timer_interrupts_on(cpu: usize) -> u64 {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("LOC:"))
        .and_then(|counts| counts.split_whitespace().nth(cpu)?.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Minor page faults so far of the calling thread (`/proc/thread-self/stat`,
/// field 10).
fn my_minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command (which may hold spaces) start after ") ".
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.split_whitespace().nth(7))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Times the calling thread was preempted so far
/// (`nonvoluntary_ctxt_switches` in `/proc/thread-self/status`).
fn my_preemptions() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The copies under load are timed at one refusal in this many. Timed at
/// every refusal (two pairs copied, one into cold memory), their memory
/// traffic was about three times capture's and the writer's together for
/// 64 KiB records, and took disk throughput from the run they measured
/// (PERFORMANCE.md).
const UNDER_LOAD_EVERY: u64 = 8;
/// The capturing thread notes which CPU it is on at one try in this many.
const CPU_SAMPLE_EVERY: u64 = 1024;

/// How capline's runs capture: `--capture-cpu`, `--shared` and
/// `--segment-mib`.
#[derive(Debug, Clone, Copy, Default)]
struct How {
    /// The CPU the capturing thread runs on alone, if any.
    capture_cpu: Option<usize>,
    /// Calls hand the bodies over (`capture_shared`).
    shared: bool,
    /// `SegmentMaxBytes` in MiB, if not the default.
    segment_mib: Option<u64>,
}
/// Distinct body buffers `--shared` cycles through (so the writer reads
/// from more memory than its cache, as it would from a server's requests).
const SHARED_POOL: usize = 256;

/// The floor's copy: the pair into one reused buffer of its size, timed as
/// a capture call is; its latency in nanoseconds.
fn timed_copy(s: &Shape, buf: &mut [u8], timer: &Timer) -> u64 {
    timer.time(1, || s.copy_into(buf))
}

/// The floor for a capture call's latency: [`timed_copy`] `n` times, with
/// no writer running.
fn memcpy_run(s: &Shape, n: u64, timer: &Timer) -> Figures {
    let mut buf = vec![0u8; s.bytes() as usize];
    let mut h = capline_benches::histogram();
    let start = Instant::now();
    for _ in 0..n {
        let _ = h.record(timed_copy(s, &mut buf, timer));
    }
    let secs = start.elapsed().as_secs_f64();
    Figures {
        records_per_s: n as f64 / secs,
        mb_per_s: s.bytes() as f64 * n as f64 / secs / 1e6,
        p50: h.value_at_quantile(0.5),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        ..Figures::default()
    }
}

fn shapes() -> Vec<(Shape, u64)> {
    vec![
        (
            Shape {
                name: "csv_1k",
                request_type: "text/csv",
                request: csv(1024),
                response_type: "text/csv; charset=utf-8",
                response: b"0.0254181120544672".to_vec(),
            },
            1_000_000,
        ),
        (
            Shape {
                name: "json_16k",
                request_type: "application/json",
                request: json(16 * 1024),
                response_type: "application/json",
                response: json(1024),
            },
            60_000,
        ),
        (
            Shape {
                name: "binary_64k",
                request_type: "application/x-npy",
                request: binary(64 * 1024),
                response_type: "application/x-npy",
                response: binary(1024),
            },
            12_000,
        ),
    ]
}

/// `extra`: more `Engine` fields, each with a leading comma.
fn config(dir: &Path, io: &str, extra: &str) -> Config {
    Config::from_json(&format!(
        r#"{{"EndpointName":"throughput","DataCaptureConfig":{{"InitialSamplingPercentage":100,
            "DestinationS3Uri":"file://{}/dest","CaptureOptions":[{{"CaptureMode":"InputAndOutput"}}],
            "CaptureContentTypeHeader":{{"CsvContentTypes":["text/csv"],"JsonContentTypes":["application/json"]}}}},
            "Engine":{{"SpoolDir":"{}/spool","Io":"{io}","RingBytes":268435456{extra}}}}}"#,
        dir.display(),
        dir.display()
    ))
    .expect("config")
}

fn capline_run(dir: &Path, io: &str, s: &Shape, n: u64, timer: &Timer, how: How) -> Figures {
    capline_run_with(dir, io, "", s, n, timer, how)
}

/// Runs the calling thread on `cpu` alone until the guard is dropped (threads
/// started before keep their own CPUs).
struct Pinned(Option<rustix::thread::CpuSet>);

impl Pinned {
    fn to(cpu: Option<usize>) -> Pinned {
        let Some(cpu) = cpu else {
            return Pinned(None);
        };
        let before = rustix::thread::sched_getaffinity(None).expect("sched_getaffinity");
        let mut only = rustix::thread::CpuSet::new();
        only.set(cpu);
        rustix::thread::sched_setaffinity(None, &only).expect("sched_setaffinity");
        Pinned(Some(before))
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(before) = &self.0 {
            let _ = rustix::thread::sched_setaffinity(None, before);
        }
    }
}

fn capline_run_with(
    dir: &Path,
    io: &str,
    extra: &str,
    s: &Shape,
    n: u64,
    timer: &Timer,
    how: How,
) -> Figures {
    let segment = how.segment_mib.map_or(String::new(), |m| {
        format!(r#","SegmentMaxBytes":{}"#, m << 20)
    });
    let engine = Engine::start(config(dir, io, &format!("{extra}{segment}"))).expect("start");
    // The writer names itself once it runs: wait for it (at most 1 s).
    for _ in 0..1000 {
        if capline_benches::thread_sched_ns("capline-writer").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let cap = Capture {
        request: Payload::new(s.request_type, &s.request),
        response: Payload::new(s.response_type, &s.response),
        inference_id: None,
        time: None,
    };
    let How {
        capture_cpu,
        shared,
        ..
    } = how;
    let pool: Vec<(Bytes, Bytes)> = (0..if shared { SHARED_POOL } else { 0 })
        .map(|_| {
            let pair = s.shared_bodies();
            // A `Bytes` from a `Vec` allocates on its first clone: done here.
            drop(pair.clone());
            pair
        })
        .collect();
    let mut attempt = 0usize;
    let mut h = capline_benches::histogram();
    let mut refused = 0u64;
    // Each record's kept call: its latency, how many calls were kept since
    // the ring last refused one (its place in the run of free space it
    // found), and whether the ring refused this record first. Filled in
    // advance, so its pages are not faulted in during the run.
    let mut kept: Vec<Kept> = vec![Kept::default(); n as usize];
    let mut streak = 0u64;
    // Where the capturing thread runs, against where the disk's
    // completions run (OPERATIONS.md, "Placing the server's threads").
    let disk = capline::bench_io::disk_interrupt_cpus(dir);
    let (mut tries, mut on_irq, mut samples) = (0u64, 0u64, 0u64);
    // The floor's copy, timed while the ring is full: the same bytes as the
    // bare floor, at the moments the writer is busiest.
    let mut copy_buf = vec![0u8; s.bytes() as usize];
    let mut under_load = capline_benches::histogram();
    // And into cold memory: the next slot of a 64 MiB area, as a ring's
    // space is once the writer has fallen behind (written in full now, so
    // no page is faulted in during the run).
    let mut cold = ColdArea::new(copy_buf.len());
    let mut under_load_cold = capline_benches::histogram();
    // After Engine::start, so the writer did not inherit the pin.
    let pinned = Pinned::to(capture_cpu);
    let irqs_before = capture_cpu.map(interrupts_on);
    let timer_before = capture_cpu.map(timer_interrupts_on);
    let faults_before = my_minor_faults();
    let preempted_before = my_preemptions();
    let busy_before = disk_busy_ms(dir);
    let cpu_before = capline_benches::thread_sched_ns("capline-writer");
    let io_before = capline_benches::thread_sched_ns("capline-io").map_or(0, |t| t[0]);
    let start = Instant::now();
    for call in &mut kept {
        let mut retried = false;
        loop {
            tries += 1;
            if tries.is_multiple_of(CPU_SAMPLE_EVERY)
                && let Some(d) = &disk
            {
                samples += 1;
                on_irq += u64::from(d.cpus.contains(&rustix::thread::sched_getcpu()));
            }
            let (a, o, b) = if shared {
                let bodies = pool[attempt % SHARED_POOL].clone();
                attempt += 1;
                let a = timer.clock.raw();
                let o = engine.capture_shared(s.shared_capture(bodies));
                (a, o, timer.clock.raw())
            } else {
                let a = timer.clock.raw();
                let o = engine.capture(&cap);
                (a, o, timer.clock.raw())
            };
            match o {
                Outcome::Kept => {
                    let ns = timer.clock.delta_as_nanos(a, b);
                    let ns = ns.saturating_sub(timer.overhead).max(1);
                    let _ = h.record(ns);
                    *call = Kept {
                        ns,
                        streak,
                        retried,
                    };
                    streak += 1;
                    break;
                }
                Outcome::Dropped(DropReason::RingFull) => {
                    refused += 1;
                    retried = true;
                    streak = 0;
                    if refused.is_multiple_of(UNDER_LOAD_EVERY) {
                        let _ = under_load.record(timed_copy(s, &mut copy_buf, timer));
                        let _ = under_load_cold.record(timed_copy(s, cold.next(), timer));
                    }
                    for _ in 0..64 {
                        std::hint::spin_loop();
                    }
                }
                other => panic!("{other:?}"),
            }
        }
    }
    let capture_secs = start.elapsed().as_secs_f64();
    let faults = my_minor_faults() - faults_before;
    let preempted = my_preemptions() - preempted_before;
    let irqs = capture_cpu
        .zip(irqs_before)
        .map(|(cpu, before)| interrupts_on(cpu) - before);
    let timer_irqs = capture_cpu
        .zip(timer_before)
        .map(|(cpu, before)| timer_interrupts_on(cpu) - before);
    drop(pinned);
    engine.flush(Duration::from_secs(600)).expect("flush");
    let secs = start.elapsed().as_secs_f64();
    let disk_busy = busy_share(busy_before, disk_busy_ms(dir), secs);
    let writer = capline_benches::thread_sched_ns("capline-writer")
        .zip(cpu_before)
        .map(|(after, before)| [0, 1].map(|i| after[i].saturating_sub(before[i])));
    let io_cpu_ns = capline_benches::thread_sched_ns("capline-io")
        .map_or(0, |t| t[0])
        .saturating_sub(io_before);
    let stats = engine.shutdown(Duration::from_secs(600)).expect("shutdown");
    let p999 = h.value_at_quantile(0.999);
    let tail = || kept.iter().filter(|k| k.ns > p999);
    assert_eq!(stats.records_written, n);
    Figures {
        records_per_s: n as f64 / secs,
        mb_per_s: stats.bytes_written as f64 / secs / 1e6,
        p50: h.value_at_quantile(0.5),
        p99: h.value_at_quantile(0.99),
        p999,
        refused,
        writer_cpu_ns: writer.map(|w| w[0]),
        writer_wait_ns: writer.map(|w| w[1]),
        io_cpu_ns,
        secs,
        faults,
        preempted,
        irqs,
        timer_irqs,
        on_irq_cpu: disk
            .filter(|_| samples > 0)
            .map(|d| (d, on_irq as f64 / samples as f64)),
        kept_share: h.mean() * h.len() as f64 / (capture_secs * 1e9),
        kept_secs: h.mean() * h.len() as f64 / 1e9,
        tail_by_streak: by_streak(tail()),
        kept_by_streak: by_streak(kept.iter()),
        tail_first: tail().filter(|k| !k.retried).count() as u64,
        tail_retried: tail().filter(|k| k.retried).count() as u64,
        copy_under_load: quantiles(&under_load),
        cold_copy_under_load: quantiles(&under_load_cold),
        disk_busy,
    }
}

/// A gap longer than this between two reads of the CPU counter by a thread
/// that does nothing else is time its CPU spent elsewhere.
const STALL_NS: u64 = 10_000;
/// How long [`cpu_stalls`] spins.
const STALL_PROBE: Duration = Duration::from_secs(1);

/// How often the capturing thread's CPU is taken away when nothing of the
/// run is going on: gaps of more than [`STALL_NS`] between two reads of
/// the CPU counter, and of more than 50 µs.
#[derive(Debug, Default)]
struct Stalls {
    /// Gaps over [`STALL_NS`] per second.
    per_s: f64,
    /// Gaps over 50 µs per second.
    over_50us_per_s: f64,
    /// The share of the probe's time lost in gaps over [`STALL_NS`].
    share: f64,
    /// The longest gap, in nanoseconds.
    longest_ns: u64,
}

/// Spins on the CPU counter for [`STALL_PROBE`] on `cpu` (or wherever the
/// thread runs), with no engine running, and counts the gaps. They are the
/// guest's interrupts and kernel work (the limit run's, finishing) and, in
/// a virtual machine, the host running something else on the virtual CPU:
/// whatever a capture call is doing when one comes, it is that much slower.
fn cpu_stalls(timer: &Timer, cpu: Option<usize>) -> Stalls {
    let _pinned = Pinned::to(cpu);
    let (mut over, mut over_50us, mut lost, mut longest) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut prev = timer.clock.raw();
    while start.elapsed() < STALL_PROBE {
        // Read the counter 1000 times between checks of the wall clock.
        for _ in 0..1000 {
            let now = timer.clock.raw();
            let gap = timer.clock.delta_as_nanos(prev, now);
            prev = now;
            if gap > STALL_NS {
                over += 1;
                lost += gap;
                over_50us += u64::from(gap > 50_000);
                longest = longest.max(gap);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Stalls {
        per_s: over as f64 / secs,
        over_50us_per_s: over_50us as f64 / secs,
        share: lost as f64 / 1e9 / secs,
        longest_ns: longest,
    }
}

/// A histogram's count, p50, p99 and p99.9.
fn quantiles(h: &Histogram<u64>) -> [u64; 4] {
    [
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
    ]
}

/// 64 MiB handed out in 64-byte aligned slots of one size, round and round:
/// each slot was last written 64 MiB ago, out of every cache.
struct ColdArea {
    bytes: Vec<u8>,
    len: usize,
    at: usize,
}

impl ColdArea {
    fn new(len: usize) -> ColdArea {
        ColdArea {
            bytes: vec![1u8; 64 << 20],
            len,
            at: 0,
        }
    }

    /// The next slot, `len` bytes long.
    fn next(&mut self) -> &mut [u8] {
        if self.at + self.len > self.bytes.len() {
            self.at = 0;
        }
        let start = self.at;
        self.at = (start + self.len).next_multiple_of(64);
        &mut self.bytes[start..start + self.len]
    }
}

/// A record's kept call in a capline run.
#[derive(Debug, Clone, Copy, Default)]
struct Kept {
    ns: u64,
    /// Calls kept since the ring last refused one.
    streak: u64,
    /// Whether the ring refused this record before keeping it.
    retried: bool,
}

/// Counts calls by their place since the ring last refused one: 0, 1–9,
/// 10–99, 100 or more.
fn by_streak<'a>(calls: impl Iterator<Item = &'a Kept>) -> [u64; 4] {
    let mut out = [0; 4];
    for k in calls {
        out[match k.streak {
            0 => 0,
            1..=9 => 1,
            10..=99 => 2,
            _ => 3,
        }] += 1;
    }
    out
}

/// The disk's limit: `bytes` through capline's own I/O path, no serialization.
fn disk_limit(dir: &Path, bytes: u64) -> Figures {
    let mut out =
        Output::new(IoMode::Uring, std::sync::Arc::new(capline::RealFs)).expect("io_uring");
    let path = dir.join("limit.bin");
    let chunk = vec![b'x'; 1 << 20];
    let busy_before = disk_busy_ms(dir);
    let start = Instant::now();
    out.open(&path, 8 << 20).expect("open");
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        out.buf().extend_from_slice(&chunk[..n]);
        out.line_end();
        out.pump();
        left -= n as u64;
    }
    out.close().1.expect("close the disk-limit file");
    let secs = start.elapsed().as_secs_f64();
    let disk_busy = busy_share(busy_before, disk_busy_ms(dir), secs);
    let _ = std::fs::remove_file(&path);
    Figures {
        mb_per_s: bytes as f64 / secs / 1e6,
        disk_busy,
        ..Figures::default()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    capture_data: CaptureData<'a>,
    event_metadata: Metadata,
    event_version: &'a str,
}
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CaptureData<'a> {
    endpoint_input: Side<'a>,
    endpoint_output: Side<'a>,
}
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Side<'a> {
    observed_content_type: &'a str,
    mode: &'a str,
    data: String,
    encoding: &'a str,
}
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    event_id: String,
    inference_time: String,
}

struct Owned {
    req_type: &'static str,
    req: Vec<u8>,
    resp_type: &'static str,
    resp: Vec<u8>,
}

fn side<'a>(ct: &'a str, mode: &'a str, data: &[u8]) -> Side<'a> {
    let media = ct.split(';').next().unwrap_or("").trim();
    let text = (media == "text/csv" || media == "application/json")
        .then(|| std::str::from_utf8(data).ok())
        .flatten();
    match text {
        Some(t) => Side {
            observed_content_type: ct,
            mode,
            data: t.to_string(),
            encoding: if media == "text/csv" { "CSV" } else { "JSON" },
        },
        None => Side {
            observed_content_type: ct,
            mode,
            data: base64::engine::general_purpose::STANDARD.encode(data),
            encoding: "BASE64",
        },
    }
}

/// The afternoon version: channel → serde_json → `BufWriter<File>`, fsync at the end.
fn baseline(dir: &Path, s: &Shape, n: u64, timer: &Timer) -> Figures {
    let (tx, rx) = crossbeam_channel::bounded::<Owned>(65536);
    let path = dir.join("baseline.jsonl");
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            let file = std::fs::File::create(&path).expect("create");
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let mut bytes = 0u64;
            for r in rx {
                let line = Line {
                    capture_data: CaptureData {
                        endpoint_input: side(r.req_type, "INPUT", &r.req),
                        endpoint_output: side(r.resp_type, "OUTPUT", &r.resp),
                    },
                    event_metadata: Metadata {
                        event_id: uuid::Uuid::new_v4().to_string(),
                        inference_time: "2026-11-25T12:00:00Z".to_string(),
                    },
                    event_version: "0",
                };
                let mut v = serde_json::to_vec(&line).expect("serialize");
                v.push(b'\n');
                bytes += v.len() as u64;
                w.write_all(&v).expect("write");
            }
            let file = w.into_inner().expect("flush");
            file.sync_all().expect("fsync");
            bytes
        })
    };
    let mut h = capline_benches::histogram();
    let start = Instant::now();
    for _ in 0..n {
        let a = timer.clock.raw();
        let r = Owned {
            req_type: s.request_type,
            req: s.request.clone(),
            resp_type: s.response_type,
            resp: s.response.clone(),
        };
        tx.send(r).expect("send");
        let b = timer.clock.raw();
        let _ = h.record(
            timer
                .clock
                .delta_as_nanos(a, b)
                .saturating_sub(timer.overhead)
                .max(1),
        );
    }
    drop(tx);
    let bytes = writer.join().expect("writer");
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    Figures {
        records_per_s: n as f64 / secs,
        mb_per_s: bytes as f64 / secs / 1e6,
        p50: h.value_at_quantile(0.5),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        ..Figures::default()
    }
}

/// The redaction rules of `--redaction`: two JSON fields (one found by
/// `..`), two CSV columns, and an e-mail pattern over text.
const REDACTION: &str = r#","Redaction":{"JsonPaths":["$.customer.email","$..ssn"],
    "CsvColumns":[0,3],"Patterns":["[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[a-z]{2,}"]}"#;

/// A request as a PII-carrying JSON client sends it: about `n` bytes.
fn json_with_pii(n: usize) -> Vec<u8> {
    let mut out = br#"{"customer":{"email":"ann.lee@example.com","name":"Ann Lee","ssn":"123-45-6789"},"note":"call me at ann.lee@example.com","instances":["#.to_vec();
    let mut i = 0u64;
    while out.len() < n - 16 {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(format!("{{\"f\":{i},\"g\":{}.5}}", i * 7 % 1000).as_bytes());
        i += 1;
    }
    out.extend_from_slice(b"]}");
    out
}

/// `--redaction`: the writer's throughput with the rules above and without,
/// alternately, `rounds` times; medians.
fn redaction_bench(base_dir: &Path, scale: f64, timer: &Timer, how: How) {
    let shapes = [
        (
            Shape {
                name: "csv_1k",
                request_type: "text/csv",
                request: csv(1024),
                response_type: "text/csv",
                response: b"0.0254181120544672".to_vec(),
            },
            1_000_000,
        ),
        (
            Shape {
                name: "json_16k_pii",
                request_type: "application/json",
                request: json_with_pii(16 * 1024),
                response_type: "application/json",
                response: br#"{"score":0.25,"ssn":"123-45-6789"}"#.to_vec(),
            },
            60_000,
        ),
    ];
    let rounds = 3;
    println!(
        "redaction: records/s with Engine.Redaction on and off (Io uring), {rounds} rounds alternately; medians"
    );
    println!(
        "  rules: {}",
        REDACTION
            .trim_start_matches(',')
            .replace(char::is_whitespace, "")
    );
    for (s, n) in shapes {
        let n = ((n as f64) * scale).max(1000.0) as u64;
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            for (extra, out) in [("", &mut off), (REDACTION, &mut on)] {
                let d = tempfile::Builder::new()
                    .prefix("capline-redaction-")
                    .tempdir_in(base_dir)
                    .expect("tempdir");
                out.push(
                    capline_run_with(d.path(), "uring", extra, &s, n, timer, how).records_per_s,
                );
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (off_m, on_m) = (median(&mut off), median(&mut on));
        println!(
            "  {:<14} × {n}: off {off_m:>10.0} records/s, on {on_m:>10.0} records/s, on/off {:.3}",
            s.name,
            on_m / off_m
        );
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let mut scale = 1.0f64;
    let mut redaction = false;
    let mut only: Option<String> = None;
    let mut capture_cpu: Option<usize> = None;
    let mut shared = false;
    let mut segment_mib: Option<u64> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--only" => only = args.next(),
            "--capture-cpu" => {
                capture_cpu = Some(
                    args.next()
                        .and_then(|c| c.parse().ok())
                        .expect("--capture-cpu N"),
                )
            }
            "--dir" => dir = args.next().map(PathBuf::from),
            "--scale" => scale = args.next().and_then(|s| s.parse().ok()).unwrap_or(1.0),
            "--redaction" => redaction = true,
            "--shared" => shared = true,
            "--segment-mib" => {
                segment_mib = Some(
                    args.next()
                        .and_then(|m| m.parse().ok())
                        .expect("--segment-mib N"),
                )
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let base_dir = dir.unwrap_or_else(std::env::temp_dir);
    let timer = Timer::new();
    if redaction {
        // Only the segment size applies to the redaction comparison.
        let how = How {
            segment_mib,
            ..How::default()
        };
        redaction_bench(&base_dir, scale, &timer, how);
        return;
    }
    println!("cpu: {}", capline_benches::cpu_model());
    println!("timer overhead subtracted: {} ns", timer.overhead);
    if let Some(cpu) = capture_cpu {
        println!("capturing thread pinned to CPU {cpu} during capline's runs");
    }
    if shared {
        println!("capline's runs hand the bodies over as Bytes (capture_shared)");
    }
    if let Some(m) = segment_mib {
        println!("capline's runs seal segments at {m} MiB (SegmentMaxBytes)");
    }
    let how = How {
        capture_cpu,
        shared,
        segment_mib,
    };
    for (s, n) in shapes() {
        if only.as_ref().is_some_and(|o| o != s.name) {
            continue;
        }
        let n = ((n as f64) * scale).max(1000.0) as u64;
        let run = |name: &str| -> tempfile::TempDir {
            tempfile::Builder::new()
                .prefix(&format!("capline-{name}-"))
                .tempdir_in(&base_dir)
                .expect("tempdir")
        };
        // The disk's limit moves by ±20 % from one run to the next on a
        // virtual disk, so it is measured right before and right after the
        // io_uring run (the same number of bytes, from a first short run's
        // line size) and the run is compared with the mean of the two.
        let probe = (n / 100).max(1000);
        let d = run("probe");
        let line = {
            let f = capline_run(d.path(), "uring", &s, probe, &timer, How::default());
            f.mb_per_s * 1e6 / f.records_per_s
        };
        drop(d);
        let bytes = (line * n as f64) as u64;
        let d = run("limit");
        let before = disk_limit(d.path(), bytes);
        drop(d);
        let stalls = cpu_stalls(&timer, capture_cpu);
        let d = run("uring");
        let uring = capline_run(d.path(), "uring", &s, n, &timer, how);
        drop(d);
        let d = run("limit");
        let after = disk_limit(d.path(), bytes);
        drop(d);
        let limit = (before.mb_per_s + after.mb_per_s) / 2.0;
        let d = run("pwrite");
        let pwrite = capline_run(d.path(), "pwrite", &s, n, &timer, how);
        drop(d);
        let d = run("baseline");
        let base = baseline(d.path(), &s, n, &timer);
        drop(d);
        let copy = memcpy_run(&s, n, &timer);

        println!(
            "\n{} × {n} records ({:.0} MB of JSON lines)",
            s.name,
            bytes as f64 / 1e6
        );
        println!(
            "  {:<16} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>11} {:>11}",
            "",
            "records/s",
            "MB/s",
            "of limit",
            "vs base",
            "p50 ns",
            "p99 ns",
            "p99.9 ns",
            "ring-full",
            "writer/rec",
            "writer/MB"
        );
        println!(
            "  {:<16} {:>12} {:>9.0}   (mean of {:.0} before and {:.0} after the uring run)",
            "disk limit", "-", limit, before.mb_per_s, after.mb_per_s
        );
        println!(
            "  {:<16} {:>12.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "memcpy (floor)", copy.records_per_s, "-", "-", "-", copy.p50, copy.p99, copy.p999
        );
        for (name, f) in [
            ("baseline", &base),
            ("capline uring", &uring),
            ("capline pwrite", &pwrite),
        ] {
            // The writer thread's CPU time (and its I/O thread's) per record
            // and per MB of lines.
            let (per_rec, per_mb) = match f.writer_cpu_ns.map(|ns| ns + f.io_cpu_ns) {
                Some(ns) => {
                    let mb = f.mb_per_s * (n as f64 / f.records_per_s);
                    (
                        format!("{:.0} ns", ns as f64 / n as f64),
                        format!("{:.2} ms", ns as f64 / 1e6 / mb),
                    )
                }
                None => ("-".to_string(), "-".to_string()),
            };
            println!(
                "  {:<16} {:>12.0} {:>9.0} {:>8.0}% {:>8.2}x {:>9} {:>9} {:>10} {:>10} {:>11} {:>11}",
                name,
                f.records_per_s,
                f.mb_per_s,
                f.mb_per_s / limit * 100.0,
                f.records_per_s / base.records_per_s,
                f.p50,
                f.p99,
                f.p999,
                f.refused,
                per_rec,
                per_mb
            );
        }
        println!(
            "  capline uring / memcpy: p50 {:.2}x, p99.9 {:.2}x; the capturing thread's page faults: uring {}, pwrite {}; preemptions: uring {}, pwrite {} (p99.9 is the {}th slowest call)",
            uring.p50 as f64 / copy.p50.max(1) as f64,
            uring.p999 as f64 / copy.p999.max(1) as f64,
            uring.faults,
            pwrite.faults,
            uring.preempted,
            pwrite.preempted,
            n / 1000
        );
        if let (Some((d, u)), Some((_, p))) = (&uring.on_irq_cpu, &pwrite.on_irq_cpu) {
            println!(
                "  the capturing thread on a CPU that takes the spool disk's interrupts ({} on CPUs {:?}, rq_affinity {}): uring {:.0} %, pwrite {:.0} % of its samples",
                d.device,
                d.cpus,
                d.rq_affinity.map_or("-".into(), |a| a.to_string()),
                u * 100.0,
                p * 100.0
            );
        }
        let pct = |f: &Figures| {
            f.disk_busy
                .map_or("-".into(), |b| format!("{:.0} %", b * 100.0))
        };
        println!(
            "  disk busy (the share of each run's time the device had a request in flight): limit before / after {} / {}, uring {}, pwrite {}",
            pct(&before),
            pct(&after),
            pct(&uring),
            pct(&pwrite)
        );
        let shares = |f: &Figures| -> Option<[f64; 3]> {
            let on = f.writer_cpu_ns? as f64 / 1e9 / f.secs;
            let waiting = f.writer_wait_ns? as f64 / 1e9 / f.secs;
            Some([on, waiting, (1.0 - on - waiting).max(0.0)].map(|x| x * 100.0))
        };
        if let (Some(u), Some(p)) = (shares(&uring), shares(&pwrite)) {
            println!(
                "  the writer thread's time, uring / pwrite: on a CPU {:.0} % / {:.0} %, runnable but waiting for a CPU {:.0} % / {:.0} %, asleep (waiting for writes or syncs, or for records) {:.0} % / {:.0} %",
                u[0], p[0], u[1], p[1], u[2], p[2]
            );
        }
        for (name, f) in [("uring", &uring), ("pwrite", &pwrite)] {
            for (into, [count, p50, p99, p999]) in [
                ("a reused buffer", f.copy_under_load),
                ("cold memory", f.cold_copy_under_load),
            ] {
                if count > 0 {
                    println!(
                        "  memcpy under load ({name}), into {into}: the pair copied at {count} refusals (ring full; one in {UNDER_LOAD_EVERY}): p50 / p99 / p99.9 {p50} / {p99} / {p999} ns; capline {name} p99.9 is {:.2}x it",
                        f.p999 as f64 / p999.max(1) as f64
                    );
                }
            }
        }
        println!(
            "  calls slower than p99.9, kept at the first try / after the ring refused them: uring {} / {}, pwrite {} / {}",
            uring.tail_first, uring.tail_retried, pwrite.tail_first, pwrite.tail_retried
        );
        // Stalls come at times unrelated to the calls: those expected inside
        // kept calls are their rate times the time spent in kept calls.
        println!(
            "  the capturing thread's CPU taken away, a thread spinning on the counter for {} s between the first limit run and the uring run, no engine running: gaps over {} µs {:.0} a second ({:.2} % of the time), over 50 µs {:.0} a second, longest {:.0} µs; expected inside kept calls: uring {:.0}, pwrite {:.0} (calls slower than p99.9: {})",
            STALL_PROBE.as_secs(),
            STALL_NS / 1000,
            stalls.per_s,
            stalls.share * 100.0,
            stalls.over_50us_per_s,
            stalls.longest_ns as f64 / 1e3,
            stalls.per_s * uring.kept_secs,
            stalls.per_s * pwrite.kept_secs,
            n / 1000
        );
        println!(
            "  kept calls by how many were kept since the ring last refused one (0 / 1-9 / 10-99 / 100+): uring all {:?}, slower than p99.9 {:?}; pwrite all {:?}, slower than p99.9 {:?}",
            uring.kept_by_streak,
            uring.tail_by_streak,
            pwrite.kept_by_streak,
            pwrite.tail_by_streak
        );
        if let (Some(cpu), Some(u), Some(p)) = (capture_cpu, uring.irqs, pwrite.irqs) {
            println!("  hardware interrupts on CPU {cpu} during the run: uring {u}, pwrite {p}");
        }
        if let (Some(cpu), Some(u), Some(p)) = (capture_cpu, uring.timer_irqs, pwrite.timer_irqs) {
            // Interrupts land at times unrelated to the calls, so a share of
            // them equal to the share of time spent in kept calls lands in one.
            println!(
                "  timer interrupts on CPU {cpu} during the run: uring {u}, pwrite {p}; expected to land inside a kept call: uring {:.0}, pwrite {:.0} ({:.2} % / {:.2} % of the time)",
                u as f64 * uring.kept_share,
                p as f64 * pwrite.kept_share,
                uring.kept_share * 100.0,
                pwrite.kept_share * 100.0
            );
        }
    }
}
