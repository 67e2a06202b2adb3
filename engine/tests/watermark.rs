//! The disk watermark on real filesystems this test mounts itself (a
//! loop-mounted ext4 image, a tmpfs), for both I/O modes:
//! 1. filling past the watermark stops capture, deleting the filler resumes it;
//! 2. a truly full disk (watermark 100 %): the engine survives ENOSPC, sealed
//!    segments stay valid, capture resumes when space returns;
//! 3. graceful degradation between the soft watermark and the watermark;
//! 4. the spool cap, with delivery paused by a read-only destination;
//! 5. the next segment's file is made ahead only with twice its size free.
//!
//! Mounting needs root. Without it the tests fail with a clear message when
//! `CI` is set, and skip (saying why) otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use capline::format::check::parse_line;
use capline::{Capture, Config, DropReason, Engine, Outcome, Payload, Stats};

mod support;

/// A filesystem mounted for one test, unmounted on drop.
struct Mount {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Mounts a filesystem, or explains why not: a failure under CI, a skip elsewhere.
fn mount(kind: &str, size_mib: u64) -> Option<Mount> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.to_string_lossy().into_owned();
    let result = match kind {
        "ext4" => {
            let img = tmp.path().join("disk.img").to_string_lossy().into_owned();
            run("truncate", &["-s", &format!("{size_mib}M"), &img])
                .and_then(|()| run("mkfs.ext4", &["-q", "-F", "-m", "0", &img]))
                .and_then(|()| run("mount", &["-o", "loop", &img, &d]))
        }
        _ => run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mib}m"),
                "tmpfs",
                &d,
            ],
        ),
    };
    match result {
        Ok(()) => Some(Mount { dir, _tmp: tmp }),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("cannot mount a {kind} filesystem for the watermark tests (they need root): {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: cannot mount a {kind} filesystem (needs root): {e}");
            None
        }
    }
}

fn config(spool: &Path, dest: &Path, io: &str, engine: &str) -> Config {
    Config::from_json(&format!(
        r#"{{"EndpointName":"wm","DataCaptureConfig":{{"InitialSamplingPercentage":100,
            "DestinationS3Uri":"file://{}","CaptureOptions":[{{"CaptureMode":"InputAndOutput"}}],
            "CaptureContentTypeHeader":{{"CsvContentTypes":["text/csv"]}}}},
            "Engine":{{"SpoolDir":"{}","Io":"{io}","DiskCheckIntervalMillis":50{engine}}}}}"#,
        dest.display(),
        spool.display()
    ))
    .unwrap()
}

fn usage(path: &Path) -> f64 {
    let out = Command::new("df")
        .args(["--output=used,avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<f64> = text
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    nums[0] * 100.0 / (nums[0] + nums[1])
}

/// Writes a filler file until the filesystem's usage is at least `target` %.
fn fill_to(dir: &Path, target: f64) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let chunk = vec![7u8; 256 * 1024];
    while usage(dir) < target {
        if f.write_all(&chunk).is_err() {
            break;
        }
        f.sync_all().unwrap();
    }
    path
}

fn capture(engine: &Engine, body: &[u8]) -> Outcome {
    engine.capture(&Capture {
        request: Payload::new("text/csv", body),
        response: Payload::new("text/csv", b"0.5"),
        inference_id: None,
        time: None,
    })
}

/// Captures until `want` comes back (or `limit` passes); returns the calls made.
fn until(engine: &Engine, body: &[u8], want: Outcome, limit: Duration) -> (u64, Duration) {
    let start = Instant::now();
    let mut calls = 0;
    loop {
        calls += 1;
        if capture(engine, body) == want {
            return (calls, start.elapsed());
        }
        assert!(start.elapsed() < limit, "no {want:?} within {limit:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Every line in the destination parses; returns how many there are.
fn valid_lines(dest: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![dest.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if !e.file_name().to_string_lossy().starts_with('.') {
                    stack.push(p);
                }
                continue;
            }
            let text = std::fs::read(&p).unwrap();
            assert_eq!(text.last(), Some(&b'\n'), "{}", p.display());
            for line in text[..text.len() - 1].split(|&b| b == b'\n') {
                parse_line(line, None).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
    }
    n
}

fn assert_accounting(stats: &Stats, calls: u64) {
    assert_eq!(stats.calls(), calls, "{stats:?}");
    assert_eq!(
        stats.kept,
        stats.records_written + stats.dropped_io_error,
        "{stats:?}"
    );
}

/// Captures `n` calls as fast as possible; returns how long they took.
fn burst(engine: &Engine, n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(capture(engine, b"1,2,3\n"));
    }
    start.elapsed()
}

fn filling_past_the_watermark(io: &str) {
    let Some(m) = mount("ext4", 64) else { return };
    let dest = tempfile::tempdir().unwrap();
    let engine = Engine::start(config(&m.dir.join("spool"), dest.path(), io, "")).unwrap();
    let mut calls = 0;
    assert_eq!(capture(&engine, b"1,2\n"), Outcome::Kept);
    calls += 1;
    // Before: how long 200 000 sampled-out calls take.
    engine.set_sampling_percentage(0.0).unwrap();
    let sampled_out = burst(&engine, 200_000);
    calls += 200_000;
    engine.set_sampling_percentage(100.0).unwrap();

    let filler = fill_to(&m.dir, 80.0);
    // The monitor (every 50 ms here) usually closes the gate while the filler is
    // still being written; `took` is how long after the filler the first refusal came.
    let (n, took) = until(
        &engine,
        b"1,2\n",
        Outcome::Dropped(DropReason::Watermark),
        Duration::from_secs(10),
    );
    calls += n;
    let stats = engine.stats();
    assert!(stats.gate_watermark_closed);
    assert!(stats.disk_usage_basis_points >= 7500, "{stats:?}");
    // While closed: the same 200 000 calls, now refused at the gate.
    let refused = burst(&engine, 200_000);
    calls += 200_000;
    println!(
        "watermark ({io}): gate closed {took:?} after the filler; 200k sampled-out calls {sampled_out:?}, 200k refused calls {refused:?}"
    );

    std::fs::remove_file(&filler).unwrap();
    let (n, took) = until(&engine, b"3,4\n", Outcome::Kept, Duration::from_secs(10));
    calls += n;
    println!("watermark ({io}): capture resumed {took:?} after the filler was deleted");
    let stats = engine.shutdown(Duration::from_secs(30)).unwrap();
    assert_accounting(&stats, calls);
    assert!(stats.dropped_watermark >= 200_001, "{stats:?}");
    assert!(stats.gate_changes >= 2);
    assert_eq!(valid_lines(dest.path()), stats.records_written);
}

fn truly_full_disk(io: &str) {
    let Some(m) = mount("ext4", 64) else { return };
    let dest = tempfile::tempdir().unwrap();
    let engine = Engine::start(config(
        &m.dir.join("spool"),
        dest.path(),
        io,
        r#","DiskWatermarkPercent":100,"SegmentMaxBytes":2097152"#,
    ))
    .unwrap();
    let filler = fill_to(&m.dir, 96.0);
    let body = vec![b'9'; 8000];
    let mut calls = 0u64;
    let start = Instant::now();
    while engine.stats().dropped_io_error == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never hit ENOSPC: {:?}",
            engine.stats()
        );
        for _ in 0..200 {
            capture(&engine, &body);
            calls += 1;
        }
        let _ = engine.flush(Duration::from_secs(10));
    }
    // The engine is alive and refuses capture until space returns.
    let (n, _) = until(
        &engine,
        &body,
        Outcome::Dropped(DropReason::Watermark),
        Duration::from_secs(10),
    );
    calls += n;
    let during = engine.stats();
    println!(
        "full disk ({io}): {} written, {} lost to ENOSPC, gate closed",
        during.records_written, during.dropped_io_error
    );
    std::fs::remove_file(&filler).unwrap();
    let (n, _) = until(&engine, &body, Outcome::Kept, Duration::from_secs(10));
    calls += n;
    for _ in 0..100 {
        assert_eq!(capture(&engine, &body), Outcome::Kept);
        calls += 1;
    }
    let stats = engine.shutdown(Duration::from_secs(60)).unwrap();
    assert_accounting(&stats, calls);
    assert!(
        stats.records_written > during.records_written + 100 - 1,
        "written again after space returned"
    );
    assert_eq!(
        valid_lines(dest.path()),
        stats.records_written,
        "every sealed record intact"
    );
}

fn degradation(io: &str) {
    let Some(m) = mount("ext4", 64) else { return };
    let dest = tempfile::tempdir().unwrap();
    let engine = Engine::start(config(
        &m.dir.join("spool"),
        dest.path(),
        io,
        r#","DiskWatermarkPercent":90,"DiskSoftWatermarkPercent":50"#,
    ))
    .unwrap();
    let mut filler = None;
    for target in [0.0, 65.0, 80.0] {
        if target > 0.0 {
            filler = Some(fill_to(&m.dir, target));
        }
        std::thread::sleep(Duration::from_millis(300));
        let before = engine.stats();
        let n = 4000u64;
        let mut kept = 0;
        for _ in 0..n {
            if capture(&engine, b"1") != Outcome::SampledOut {
                kept += 1;
            }
        }
        let after = engine.stats();
        let u = (before.disk_usage_basis_points + after.disk_usage_basis_points) as f64 / 200.0;
        let expected = ((90.0 - u) / 40.0).clamp(0.0, 1.0) * 100.0;
        let share = kept as f64 * 100.0 / n as f64;
        println!(
            "degradation ({io}): usage {u:.1} %, effective rate {:.1} % (expected {expected:.1} %), kept {share:.1} % of {n}",
            after.effective_sampling_percentage
        );
        assert_eq!(
            after.sampling_percentage, 100.0,
            "the configured rate is unchanged"
        );
        assert!((after.effective_sampling_percentage - expected).abs() < 6.0);
        assert!(
            (share - expected).abs() < 8.0,
            "kept {share} %, expected {expected} %"
        );
    }
    drop(filler);
    engine.shutdown(Duration::from_secs(30)).unwrap();
}

fn spool_cap(io: &str) {
    let Some(dest) = mount("tmpfs", 64) else {
        return;
    };
    let spool = tempfile::tempdir().unwrap();
    let d = dest.dir.to_string_lossy().into_owned();
    run("mount", &["-o", "remount,ro", &d]).unwrap();
    let engine = Engine::start(config(
        spool.path(),
        &dest.dir,
        io,
        r#","SpoolMaxBytes":2097152,"SegmentMaxBytes":262144,"SegmentMaxAgeSeconds":1"#,
    ))
    .unwrap();
    let body = vec![b'4'; 4000];
    let (mut calls, took) = until(
        &engine,
        &body,
        Outcome::Dropped(DropReason::SpoolFull),
        Duration::from_secs(30),
    );
    let stats = engine.stats();
    assert!(stats.gate_spool_closed);
    assert!(stats.delivery_failures > 0, "delivery is paused");
    println!(
        "spool cap ({io}): gate closed after {took:?} with {} bytes sealed + {} open",
        stats.spool_sealed_bytes, stats.spool_active_bytes
    );
    run("mount", &["-o", "remount,rw", &d]).unwrap();
    let (n, took) = until(&engine, &body, Outcome::Kept, Duration::from_secs(30));
    calls += n;
    println!("spool cap ({io}): delivery resumed, capture reopened after {took:?}");
    let stats = engine.shutdown(Duration::from_secs(30)).unwrap();
    assert_accounting(&stats, calls);
    assert!(stats.dropped_spool_full > 0);
    assert_eq!(stats.spool_sealed_bytes, 0, "the spool drained");
    assert_eq!(valid_lines(&dest.dir), stats.records_written);
}

/// Files in `active/` made ahead for a next segment, waiting up to `wait`
/// for one to appear (it is made on a thread of its own).
fn made_ahead(spool: &Path, wait: Duration) -> usize {
    let deadline = Instant::now() + wait;
    loop {
        let n = support::made_ahead(&spool.join("active"));
        if n > 0 || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A 16 MiB segment past half full has the next one's file made ahead on a
/// filesystem with room for it; on the same filesystem with less than twice
/// that free it is not (the reservation would take the space the open
/// segment grows into), and every record is still written and delivered.
fn ahead_only_with_room(io: &str) {
    let Some(m) = mount("ext4", 96) else { return };
    let spool = m.dir.join("spool");
    let engine_extra = r#","SegmentMaxBytes":16777216,"DiskWatermarkPercent":100"#;
    let body = vec![b'7'; 30_000];
    for room in [true, false] {
        let filler = (!room).then(|| {
            // Leave about 26 MiB: the 10 MiB written below brings it under 32.
            let total = 96.0 * 1024.0 * 1024.0;
            fill_to(&m.dir, 100.0 - 26.0 * 1024.0 * 1024.0 * 100.0 / total)
        });
        let dest = tempfile::tempdir().unwrap();
        let engine = Engine::start(config(&spool, dest.path(), io, engine_extra)).unwrap();
        let mut calls = 0;
        // About 10 MiB: past half of the first segment.
        for _ in 0..350 {
            calls += until(&engine, &body, Outcome::Kept, Duration::from_secs(10)).0;
        }
        engine.flush(Duration::from_secs(10)).unwrap();
        let wait = if room {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(500)
        };
        let n = made_ahead(&spool, wait);
        assert_eq!(n, usize::from(room), "{io}, room {room}: files made ahead");
        let stats = engine.shutdown(Duration::from_secs(30)).unwrap();
        assert_accounting(&stats, calls);
        assert_eq!(
            (stats.kept, stats.records_written),
            (350, 350),
            "{io}, room {room}"
        );
        assert_eq!(valid_lines(dest.path()), 350);
        assert_eq!(
            made_ahead(&spool, Duration::ZERO),
            0,
            "{io}: removed at shutdown"
        );
        if let Some(f) = filler {
            std::fs::remove_file(f).unwrap();
        }
    }
}

#[test]
fn disk_ahead_needs_room_uring() {
    ahead_only_with_room("uring");
}
#[test]
fn disk_ahead_needs_room_pwrite() {
    ahead_only_with_room("pwrite");
}
#[test]
fn disk_watermark_uring() {
    filling_past_the_watermark("uring");
}
#[test]
fn disk_watermark_pwrite() {
    filling_past_the_watermark("pwrite");
}
#[test]
fn disk_full_uring() {
    truly_full_disk("uring");
}
#[test]
fn disk_full_pwrite() {
    truly_full_disk("pwrite");
}
#[test]
fn disk_degradation_uring() {
    degradation("uring");
}
#[test]
fn disk_degradation_pwrite() {
    degradation("pwrite");
}
#[test]
fn disk_spool_cap_uring() {
    spool_cap("uring");
}
#[test]
fn disk_spool_cap_pwrite() {
    spool_cap("pwrite");
}
