//! Every failure path of the writer, the seal, recovery and delivery, made to
//! happen on purpose through the engine's file-system interface
//! ([`capline::Fs`]): no root, no full disk. Each runs in both I/O modes, and
//! each checks the accounting exactly: every kept record is either delivered
//! once, counted in `dropped_io_error`, or still in the spool (and delivered
//! by the next start). The loop-mounted full-disk tests (`tests/watermark.rs`)
//! stay as the proof on real filesystems.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capline::format::check::parse_line;
use capline::{Capture, Config, Engine, Error, Fs, Outcome, Payload, RealFs, Stats};

mod support;

/// A file system that fails the operations it is told to, and otherwise
/// behaves as [`RealFs`].
#[derive(Debug, Default)]
struct Faults {
    /// Segment writes so far.
    writes: AtomicU64,
    /// The write (1-based) that fails with `write_errno`; 0: none.
    fail_write: AtomicU64,
    write_errno: AtomicI32,
    /// The write (1-based) that writes only part of its bytes; 0: none.
    short_write: AtomicU64,
    /// How many of the next calls fail with EIO (a sync the writer starts
    /// without waiting counts as one, through `admit_sync`).
    fdatasync_failures: AtomicU32,
    /// `fdatasync` calls on a segment opened to be read and cut again (a
    /// seal tried again, or recovery); the writer's own segments are opened
    /// write-only.
    reseal_syncs: AtomicU64,
    /// How many of the syncs right after a cut (a seal's: through
    /// `admit_sync` with io_uring, `fdatasync` with pwrite) fail with EIO.
    seal_sync_failures: AtomicU32,
    /// A cut was made, and no sync asked for since.
    cut: std::sync::atomic::AtomicBool,
    ftruncate_failures: AtomicU32,
    create_failures: AtomicU32,
    /// How many of the next creates of a file made ahead for a next
    /// segment (`active/.next-*`) fail with ENOSPC.
    ahead_create_failures: AtomicU32,
    /// How many of the next renames to a path containing `rename_into` fail
    /// with `rename_errno`.
    rename_failures: AtomicU32,
    rename_into: Mutex<String>,
    rename_errno: AtomicI32,
}

fn take(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

fn errno(e: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(e)
}

const EIO: i32 = 5;
const EXDEV: i32 = 18;
const ENOSPC: i32 = 28;

impl Fs for Faults {
    fn create(&self, path: &Path, direct: bool) -> std::io::Result<std::fs::File> {
        let ahead = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".next-"));
        if take(&self.create_failures) || (ahead && take(&self.ahead_create_failures)) {
            return Err(errno(ENOSPC));
        }
        RealFs.create(path, direct)
    }
    fn admit_write(&self, len: usize) -> std::io::Result<usize> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_write.load(Ordering::SeqCst) {
            return Err(errno(self.write_errno.load(Ordering::SeqCst)));
        }
        if n == self.short_write.load(Ordering::SeqCst) {
            return Ok(len / 2 / 4096 * 4096);
        }
        Ok(len)
    }
    fn admit_sync(&self) -> std::io::Result<()> {
        self.sync_fault()
    }
    fn fdatasync(&self, file: &std::fs::File) -> std::io::Result<()> {
        let mode = rustix::fs::fcntl_getfl(file)?;
        if mode.contains(rustix::fs::OFlags::RDWR) {
            self.reseal_syncs.fetch_add(1, Ordering::SeqCst);
        }
        // The pwrite path's seal syncs by this call.
        self.sync_fault()?;
        RealFs.fdatasync(file)
    }
    fn ftruncate(&self, file: &std::fs::File, len: u64) -> std::io::Result<()> {
        if take(&self.ftruncate_failures) {
            return Err(errno(EIO));
        }
        self.cut.store(true, Ordering::SeqCst);
        RealFs.ftruncate(file, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let into = self.rename_into.lock().unwrap().clone();
        if !into.is_empty() && to.to_string_lossy().contains(&into) && take(&self.rename_failures) {
            return Err(errno(self.rename_errno.load(Ordering::SeqCst)));
        }
        RealFs.rename(from, to)
    }
}

impl Faults {
    /// Whether a segment sync fails: a seal's (the first sync after a cut)
    /// while `seal_sync_failures` lasts, any while `fdatasync_failures` does.
    fn sync_fault(&self) -> std::io::Result<()> {
        if self.cut.swap(false, Ordering::SeqCst) && take(&self.seal_sync_failures) {
            return Err(errno(EIO));
        }
        if take(&self.fdatasync_failures) {
            return Err(errno(EIO));
        }
        Ok(())
    }

    fn renames_into(self, into: &str, failures: u32, errno: i32) -> Self {
        *self.rename_into.lock().unwrap() = into.to_string();
        self.rename_failures.store(failures, Ordering::SeqCst);
        self.rename_errno.store(errno, Ordering::SeqCst);
        self
    }
}

struct Dirs {
    _tmp: tempfile::TempDir,
    dest: PathBuf,
    spool: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    Dirs {
        dest: tmp.path().join("dest"),
        spool: tmp.path().join("spool"),
        _tmp: tmp,
    }
}

/// Both I/O modes; only explicit flushes, shutdowns and failures write.
const MODES: [&str; 2] = ["uring", "pwrite"];

fn config(d: &Dirs, io: &str) -> Config {
    config_with(d, io, "")
}

fn config_with(d: &Dirs, io: &str, extra: &str) -> Config {
    Config::from_json(&format!(
        r#"{{"EndpointName":"faults","DataCaptureConfig":{{
            "InitialSamplingPercentage":100,"DestinationS3Uri":"file://{}",
            "CaptureOptions":[{{"CaptureMode":"Input"}},{{"CaptureMode":"Output"}}],
            "CaptureContentTypeHeader":{{"CsvContentTypes":["text/csv"]}}}},
          "Engine":{{"SpoolDir":"{}","Io":"{io}","FlushIntervalMillis":60000,
            "SegmentMaxAgeSeconds":3600,"DiskWatermarkPercent":100{extra}}}}}"#,
        d.dest.display(),
        d.spool.display()
    ))
    .unwrap()
}

/// Captures `batches` × `per` records with unique inference ids, flushing
/// after each batch (so each batch is one segment write and one sync);
/// returns the ids that were kept. Calls refused by a closed gate are
/// accounted for by the stats, not returned.
fn capture(engine: &Engine, first: usize, batches: usize, per: usize) -> Vec<String> {
    let mut kept = Vec::new();
    for b in 0..batches {
        for i in 0..per {
            let id = format!("r{}", first + b * per + i);
            let outcome = engine.capture(&Capture {
                request: Payload::new("text/csv", b"1,2,3,4,5,6,7,8,9,10"),
                response: Payload::new("text/csv", b"0.25"),
                inference_id: Some(&id),
                time: None,
            });
            if outcome == Outcome::Kept {
                kept.push(id);
            }
        }
        engine.flush(Duration::from_secs(10)).unwrap();
    }
    kept
}

/// The inference ids of every record delivered, each line checked against
/// the schema; panics on a duplicate.
fn delivered(dest: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut files = Vec::new();
    walk(dest, &mut files);
    let mut ids = BTreeSet::new();
    for f in files {
        assert!(
            !f.to_string_lossy().contains(".capline-tmp"),
            "a temporary copy is left: {}",
            f.display()
        );
        let bytes = std::fs::read(&f).unwrap();
        assert_eq!(bytes.last(), Some(&b'\n'), "{}", f.display());
        for line in bytes[..bytes.len() - 1].split(|&b| b == b'\n') {
            let rec = parse_line(line, None).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let id = rec.inference_id.expect("every record has an id");
            assert!(ids.insert(id.clone()), "{id} delivered twice");
        }
    }
    ids
}

/// Segment files left in the spool.
fn in_spool(spool: &Path) -> usize {
    ["active", "sealed"]
        .iter()
        .map(|d| std::fs::read_dir(spool.join(d)).map_or(0, |r| r.count()))
        .sum()
}

/// The accounting every test ends with: each call has one outcome; each kept
/// record is written or lost to I/O; what was delivered is exactly what was
/// written, and was kept.
fn check(stats: &Stats, calls: usize, kept: &[String], delivered: &BTreeSet<String>) {
    assert_eq!(stats.calls(), calls as u64, "{stats:?}");
    assert_eq!(stats.kept, kept.len() as u64, "{stats:?}");
    assert_eq!(
        stats.kept,
        stats.records_written + stats.dropped_io_error,
        "{stats:?}"
    );
    assert_eq!(delivered.len() as u64, stats.records_written, "{stats:?}");
    let kept: BTreeSet<&String> = kept.iter().collect();
    assert!(delivered.iter().all(|id| kept.contains(id)));
}

/// Runs `batches` of 50 records through an engine on `faults`, shuts it down,
/// and checks the accounting with nothing left in the spool.
fn run(io: &str, faults: Faults, batches: usize) -> Stats {
    let d = dirs();
    let faults = Arc::new(faults);
    let engine = Engine::start_on(config(&d, io), faults.clone()).unwrap();
    let kept = capture(&engine, 0, batches, 50);
    let stats = engine.shutdown(Duration::from_secs(10)).unwrap();
    check(&stats, batches * 50, &kept, &delivered(&d.dest));
    assert_eq!(in_spool(&d.spool), 0, "everything written was delivered");
    stats
}

#[test]
fn a_write_failing_with_eio_loses_only_the_lines_it_carried() {
    for io in MODES {
        let f = Faults::default();
        f.fail_write.store(3, Ordering::SeqCst);
        f.write_errno.store(EIO, Ordering::SeqCst);
        let s = run(io, f, 6);
        // The third batch's lines were only in the failed write.
        assert!(s.dropped_io_error >= 50, "{io}: {s:?}");
        assert!(s.records_written >= 100, "{io}: {s:?}");
        assert!(
            s.segments_sealed >= 2,
            "{io}: the failed segment is sealed, a new one follows"
        );
    }
}

#[test]
fn a_write_failing_with_enospc_loses_only_the_lines_it_carried() {
    for io in MODES {
        let f = Faults::default();
        f.fail_write.store(2, Ordering::SeqCst);
        f.write_errno.store(ENOSPC, Ordering::SeqCst);
        let s = run(io, f, 5);
        assert!(s.dropped_io_error >= 50, "{io}: {s:?}");
        assert!(s.records_written >= 50, "{io}: {s:?}");
    }
}

#[test]
fn a_short_write_counts_as_failed() {
    for io in MODES {
        let f = Faults::default();
        f.short_write.store(2, Ordering::SeqCst);
        let s = run(io, f, 4);
        assert!(s.dropped_io_error >= 50, "{io}: {s:?}");
        assert!(s.records_written >= 50, "{io}: {s:?}");
    }
}

#[test]
fn a_failing_fdatasync_seals_the_segment_and_moves_on() {
    for io in MODES {
        let d = dirs();
        let faults = Arc::new(Faults::default());
        let engine = Engine::start_on(config(&d, io), faults.clone()).unwrap();
        let mut kept = capture(&engine, 0, 2, 50);
        faults.fdatasync_failures.store(1, Ordering::SeqCst);
        kept.extend(capture(&engine, 100, 3, 50));
        let s = engine.shutdown(Duration::from_secs(10)).unwrap();
        // The lines whose writes had completed stay in the failed segment,
        // which is sealed at once (cut to them, and synced again at close);
        // the later batches go to a new segment.
        check(&s, 250, &kept, &delivered(&d.dest));
        assert_eq!(s.segments_sealed, 2, "{io}: {s:?}");
        assert_eq!(s.dropped_io_error, 0, "{io}: {s:?}");
        assert_eq!(in_spool(&d.spool), 0);
    }
}

#[test]
fn a_failing_create_drops_the_record_that_needed_the_segment() {
    for io in MODES {
        let f = Faults::default();
        f.create_failures.store(1, Ordering::SeqCst);
        let s = run(io, f, 3);
        assert_eq!(s.dropped_io_error, 1, "{io}: {s:?}");
        assert_eq!(s.records_written, s.kept - 1, "{io}: {s:?}");
    }
}

/// The next segment's file, made ahead once a segment is half full, fails
/// to be made (its create) or to be taken (its rename into place): the next
/// segment is created the usual way, no record is lost, and no file is
/// left behind.
#[test]
fn a_file_made_ahead_that_fails_costs_no_record() {
    for io in MODES {
        for fail in ["create", "rename"] {
            let d = dirs();
            let mut faults = Faults::default();
            if fail == "create" {
                faults.ahead_create_failures.store(1, Ordering::SeqCst);
            } else {
                // The only rename into active/ is a file made ahead being taken.
                faults = faults.renames_into("active", 1, EIO);
            }
            let faults = Arc::new(faults);
            let extra = r#","SegmentMaxBytes":16777216"#;
            let engine = Engine::start_on(config_with(&d, io, extra), faults.clone()).unwrap();
            let body = vec![b'7'; 30_000];
            let mut kept = Vec::new();
            // About 36 MiB: three segments, two files made ahead.
            for i in 0..1200 {
                let id = format!("r{i}");
                let c = Capture {
                    request: Payload::new("text/csv", &body),
                    response: Payload::new("text/csv", b"0.25"),
                    inference_id: Some(&id),
                    time: None,
                };
                support::keep(&engine, &c);
                kept.push(id);
            }
            let s = engine.shutdown(Duration::from_secs(20)).unwrap();
            let calls = s.calls() as usize;
            check(&s, calls, &kept, &delivered(&d.dest));
            assert_eq!(
                (s.records_written, s.dropped_io_error),
                (1200, 0),
                "{io} {fail}: {s:?}"
            );
            assert!(s.segments_sealed >= 3, "{io} {fail}: {s:?}");
            assert_eq!(in_spool(&d.spool), 0, "{io} {fail}: nothing left behind");
            if fail == "create" {
                assert_eq!(faults.ahead_create_failures.load(Ordering::SeqCst), 0);
            } else {
                assert_eq!(faults.rename_failures.load(Ordering::SeqCst), 0);
            }
        }
    }
}

/// A seal that fails once (the cut to the last line, its sync, or the
/// rename into `sealed/`) leaves the segment in `active/` with its records counted as
/// written, and heals inside the run: it is sealed on a later try and
/// delivered while the engine keeps capturing.
fn seal_fails_once_and_heals_while_running(io: &str, faults: Faults) {
    let d = dirs();
    let faults = Arc::new(faults);
    // Segments of 64 KiB: about 170 of these records each, so they roll
    // (and seal) while the engine runs.
    let engine = Engine::start_on(
        config_with(&d, io, r#","SegmentMaxBytes":65536"#),
        faults.clone(),
    )
    .unwrap();
    let mut kept = capture(&engine, 0, 4, 50);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = engine.stats();
        if s.segments_delivered >= 1 && s.segments_unsealed == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{io}: the failed seal did not heal while running: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The failure happened (and was retried, with a sync of its own): it is
    // used up.
    assert!(faults.reseal_syncs.load(Ordering::SeqCst) >= 1, "{io}");
    assert_eq!(faults.ftruncate_failures.load(Ordering::SeqCst), 0);
    assert_eq!(faults.seal_sync_failures.load(Ordering::SeqCst), 0);
    assert_eq!(faults.rename_failures.load(Ordering::SeqCst), 0);
    kept.extend(capture(&engine, 200, 2, 50));
    let s = engine.shutdown(Duration::from_secs(10)).unwrap();
    check(&s, 300, &kept, &delivered(&d.dest));
    assert_eq!(s.segments_unsealed, 0, "{io}: {s:?}");
    assert_eq!(s.segments_delivered, s.segments_sealed, "{io}: {s:?}");
    assert_eq!(in_spool(&d.spool), 0);
}

#[test]
fn a_failing_truncate_at_seal_heals_while_running() {
    for io in MODES {
        let f = Faults::default();
        f.ftruncate_failures.store(1, Ordering::SeqCst);
        seal_fails_once_and_heals_while_running(io, f);
    }
}

#[test]
fn a_failing_sync_at_seal_heals_while_running() {
    for io in MODES {
        let f = Faults::default();
        f.seal_sync_failures.store(1, Ordering::SeqCst);
        seal_fails_once_and_heals_while_running(io, f);
    }
}

#[test]
fn a_seal_whose_rename_fails_once_heals_while_running() {
    for io in MODES {
        seal_fails_once_and_heals_while_running(
            io,
            Faults::default().renames_into("/sealed/", 1, EIO),
        );
    }
}

/// A seal that keeps failing leaves the segment in the spool, counted in
/// `segments_unsealed`; the next start recovers and delivers it, once.
#[test]
fn a_seal_that_keeps_failing_waits_in_the_spool_for_the_next_start() {
    for io in MODES {
        let d = dirs();
        let faults = Arc::new(Faults::default().renames_into("/sealed/", u32::MAX, EIO));
        let engine = Engine::start_on(config(&d, io), faults).unwrap();
        let kept = capture(&engine, 0, 3, 50);
        let first = engine.shutdown(Duration::from_secs(10)).unwrap();
        assert_eq!(first.records_written, 150, "{io}: {first:?}");
        assert_eq!(first.segments_sealed, 0, "{io}: {first:?}");
        assert_eq!(first.segments_unsealed, 1, "{io}: {first:?}");
        assert!(delivered(&d.dest).is_empty());
        assert_eq!(
            in_spool(&d.spool),
            1,
            "{io}: the segment waits in the spool"
        );

        let engine = Engine::start(config(&d, io)).unwrap();
        let second = engine.shutdown(Duration::from_secs(10)).unwrap();
        assert_eq!(second.segments_delivered, 1, "{io}: {second:?}");
        check(&first, 150, &kept, &delivered(&d.dest));
        assert_eq!(in_spool(&d.spool), 0);
    }
}

#[test]
fn a_recovery_that_fails_stops_the_start_and_loses_nothing() {
    for io in MODES {
        let d = dirs();
        let faults = Arc::new(Faults::default().renames_into("/sealed/", u32::MAX, EIO));
        let engine = Engine::start_on(config(&d, io), faults).unwrap();
        let kept = capture(&engine, 0, 2, 50);
        let first = engine.shutdown(Duration::from_secs(10)).unwrap();
        assert_eq!(in_spool(&d.spool), 1);

        // Recovery's own seal fails: the start reports it, naming the segment.
        let faults = Arc::new(Faults::default().renames_into("/sealed/", 1, EIO));
        match Engine::start_on(config(&d, io), faults) {
            Err(Error::Io { op, path, .. }) => {
                assert_eq!(op, "recover segment");
                assert!(
                    path.starts_with(d.spool.join("active")),
                    "{}",
                    path.display()
                );
            }
            other => panic!("{io}: expected a recovery error, got {other:?}"),
        }
        assert_eq!(in_spool(&d.spool), 1, "still in the spool");

        let engine = Engine::start(config(&d, io)).unwrap();
        engine.shutdown(Duration::from_secs(10)).unwrap();
        check(&first, 100, &kept, &delivered(&d.dest));
        assert_eq!(in_spool(&d.spool), 0);
    }
}

#[test]
fn a_delivery_that_fails_is_retried_until_the_segment_is_delivered_once() {
    for io in MODES {
        let s = run(io, Faults::default().renames_into("/dest/", 2, EIO), 3);
        assert_eq!(s.delivery_failures, 2, "{io}: {s:?}");
        assert_eq!(s.delivery_attempts, 3, "{io}: {s:?}");
        assert_eq!(s.segments_delivered, 1, "{io}: {s:?}");
        assert_eq!(s.dropped_io_error, 0, "{io}: {s:?}");
    }
}

#[test]
fn a_destination_on_another_filesystem_is_filled_by_copy_and_rename() {
    for io in MODES {
        // EXDEV on the rename into the destination: the copy path, whose
        // own rename (from `.capline-tmp`) then succeeds.
        let s = run(io, Faults::default().renames_into("/dest/", 1, EXDEV), 3);
        assert_eq!(s.delivery_failures, 0, "{io}: {s:?}");
        assert_eq!(s.segments_delivered, 1, "{io}: {s:?}");
        assert_eq!(s.bytes_uploaded, s.bytes_written, "{io}: {s:?}");
    }
}
