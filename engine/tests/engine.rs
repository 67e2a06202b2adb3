//! The engine end to end through its Rust API, on the real filesystem:
//! exact stats, capture modes, the key layout, rolling, flush, recovery.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use capline::bytes::Bytes;
use capline::format::check::parse_line;
use capline::{
    Capture, Config, DropReason, Engine, Error, Outcome, Payload, RejectReason, SharedCapture,
    SharedPayload,
};
use support::keep;

mod support;

struct Dirs {
    _tmp: tempfile::TempDir,
    dest: PathBuf,
    spool: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let spool = tmp.path().join("spool");
    Dirs {
        dest,
        spool,
        _tmp: tmp,
    }
}

fn config(d: &Dirs, percent: u32, modes: &str, engine_extra: &str) -> Config {
    let text = format!(
        r#"{{"EndpointName":"churn","VariantName":"v-1","DataCaptureConfig":{{
            "InitialSamplingPercentage":{percent},"DestinationS3Uri":"file://{}/",
            "CaptureOptions":[{modes}],
            "CaptureContentTypeHeader":{{"CsvContentTypes":["text/csv"],"JsonContentTypes":["application/json"]}}}},
          "Engine":{{"SpoolDir":"{}"{engine_extra}}}}}"#,
        d.dest.display(),
        d.spool.display()
    );
    Config::from_json(&text).unwrap()
}

const BOTH: &str = r#"{"CaptureMode":"Input"},{"CaptureMode":"Output"}"#;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if !e.file_name().to_string_lossy().starts_with('.') {
                out.extend(files(&p));
            }
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Every line in the destination, each checked against the schema.
fn lines(dir: &Path) -> Vec<(PathBuf, capline::format::check::ParsedRecord)> {
    let mut out = Vec::new();
    for f in files(dir) {
        let text = std::fs::read(&f).unwrap();
        assert_eq!(
            text.last(),
            Some(&b'\n'),
            "{} ends with a newline",
            f.display()
        );
        for line in text[..text.len() - 1].split(|&b| b == b'\n') {
            let rec = parse_line(line, None).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            out.push((f.clone(), rec));
        }
    }
    out
}

fn capture<'a>(req: &'a [u8], resp: &'a [u8]) -> Capture<'a> {
    Capture {
        request: Payload::new("text/csv", req),
        response: Payload::new("text/csv; charset=utf-8", resp),
        inference_id: None,
        time: None,
    }
}

#[test]
fn stats_are_exact_and_kept_equals_records_on_disk() {
    let d = dirs();
    let engine = Arc::new(Engine::start(config(&d, 50, BOTH, "")).unwrap());
    let threads = 4;
    let per_thread = 5_000;
    let big = vec![b'x'; 20 << 20];
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let engine = engine.clone();
            let big = big.clone();
            std::thread::spawn(move || {
                let mut outcomes = [0u64; 4];
                for i in 0..per_thread {
                    let body = format!("{t},{i}\n");
                    let mut c = capture(body.as_bytes(), b"0.5");
                    let id = format!("t{t}-{i}");
                    match i % 10 {
                        0 => c.inference_id = Some("bad\nid"),
                        1 => c.request.data = &big,
                        2 => c.inference_id = Some(&id),
                        _ => {}
                    }
                    let slot = match engine.capture(&c) {
                        Outcome::Kept => 0,
                        Outcome::SampledOut => 1,
                        Outcome::Dropped(DropReason::TooLarge) => 2,
                        Outcome::Rejected(RejectReason::InferenceId) => 3,
                        other => panic!("unexpected {other:?}"),
                    };
                    outcomes[slot] += 1;
                    if i == per_thread / 2 && t == 0 {
                        engine.set_enabled(false);
                        assert_eq!(engine.capture(&c), Outcome::Dropped(DropReason::Disabled));
                        engine.set_enabled(true);
                    }
                }
                outcomes
            })
        })
        .collect();
    let mut seen = [0u64; 4];
    for h in handles {
        for (a, b) in seen.iter_mut().zip(h.join().unwrap()) {
            *a += b;
        }
    }
    let engine = Arc::into_inner(engine).unwrap();
    let stats = engine.shutdown(Duration::from_secs(10)).unwrap();
    let n = (threads * per_thread) as u64;
    assert_eq!(stats.calls(), n + 1, "every call counted exactly once");
    assert_eq!(stats.dropped_disabled, 1);
    assert_eq!(
        [
            stats.kept,
            stats.sampled_out,
            stats.dropped_too_large,
            stats.rejected_inference_id
        ],
        seen
    );
    assert!(stats.kept > 0 && stats.sampled_out > 0, "{stats:?}");
    assert_eq!(stats.records_written, stats.kept);
    assert_eq!(stats.dropped_io_error, 0);
    assert_eq!(stats.segments_delivered, stats.segments_sealed);
    let on_disk = lines(&d.dest);
    assert_eq!(
        on_disk.len() as u64,
        stats.kept,
        "kept equals the records in the files"
    );
    let ids: std::collections::HashSet<_> = on_disk.iter().map(|(_, r)| r.event_id).collect();
    assert_eq!(ids.len(), on_disk.len(), "event ids are unique");
    let with_id = on_disk
        .iter()
        .filter(|(_, r)| r.inference_id.is_some())
        .count();
    assert!(with_id > 0);
}

#[test]
fn capture_modes_select_payloads() {
    for (modes, input, output) in [
        (r#"{"CaptureMode":"Input"}"#, true, false),
        (r#"{"CaptureMode":"Output"}"#, false, true),
        (r#"{"CaptureMode":"InputAndOutput"}"#, true, true),
    ] {
        let d = dirs();
        let engine = Engine::start(config(&d, 100, modes, "")).unwrap();
        assert_eq!(engine.capture(&capture(b"1,2\n", b"0.1")), Outcome::Kept);
        engine.shutdown(Duration::from_secs(5)).unwrap();
        let recs = lines(&d.dest);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].1.input.is_some(), input, "{modes}");
        assert_eq!(recs[0].1.output.is_some(), output, "{modes}");
    }
}

#[test]
fn files_follow_the_hourly_layout_and_never_straddle_an_hour() {
    let d = dirs();
    let engine = Engine::start(config(&d, 100, BOTH, "")).unwrap();
    // 2024-01-19T19:59:59.900Z, then 100 ms later in the next hour, then back.
    let t0 = UNIX_EPOCH + Duration::from_millis(1_705_694_399_900);
    for (i, offset) in [0u64, 50, 200, 300].iter().enumerate() {
        let body = format!("{i}\n");
        let mut c = capture(body.as_bytes(), b"1");
        c.time = Some(t0 + Duration::from_millis(*offset));
        assert_eq!(engine.capture(&c), Outcome::Kept);
    }
    engine.shutdown(Duration::from_secs(5)).unwrap();
    let fs = files(&d.dest);
    let rel: Vec<String> = fs
        .iter()
        .map(|p| {
            p.strip_prefix(&d.dest)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(rel.len(), 2, "{rel:?}");
    assert!(
        rel[0].starts_with("churn/v-1/2024/01/19/19/59-59-900-"),
        "{rel:?}"
    );
    assert!(
        rel[1].starts_with("churn/v-1/2024/01/19/20/00-00-100-"),
        "{rel:?}"
    );
    for r in &rel {
        assert!(r.ends_with(".jsonl") && !r.contains("//"), "{r}");
        let name = r.rsplit('/').next().unwrap();
        assert_eq!(
            name.len(),
            "MM-SS-mmm-".len() + 36 + ".jsonl".len(),
            "{name}"
        );
    }
    for (f, rec) in lines(&d.dest) {
        let hour_dir = f
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(format!("{:02}", rec.time.hour), hour_dir);
    }
}

#[test]
fn segments_roll_on_size() {
    let d = dirs();
    let limit = 64 * 1024;
    let engine = Engine::start(config(
        &d,
        100,
        BOTH,
        &format!(r#","SegmentMaxBytes":{limit}"#),
    ))
    .unwrap();
    let body = vec![b'7'; 1000];
    for _ in 0..300 {
        assert_eq!(engine.capture(&capture(&body, b"0")), Outcome::Kept);
    }
    let stats = engine.shutdown(Duration::from_secs(5)).unwrap();
    let fs = files(&d.dest);
    assert!(fs.len() >= 4, "{} files", fs.len());
    for f in &fs {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= limit, "{} is {len} bytes", f.display());
    }
    assert_eq!(lines(&d.dest).len(), 300);
    assert_eq!(stats.segments_sealed, fs.len() as u64);
}

#[test]
fn segments_roll_on_age() {
    let d = dirs();
    let engine = Engine::start(config(&d, 100, BOTH, r#","SegmentMaxAgeSeconds":1"#)).unwrap();
    engine.capture(&capture(b"a\n", b"0"));
    // The writer seals on age without further input, and the uploader delivers.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while engine.stats().segments_delivered < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "age roll never happened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    engine.capture(&capture(b"b\n", b"0"));
    engine.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(files(&d.dest).len(), 2);
}

#[test]
fn flush_makes_records_durable_in_the_spool() {
    let d = dirs();
    let engine = Engine::start(config(&d, 100, BOTH, r#","FlushIntervalMillis":60000"#)).unwrap();
    for i in 0..100 {
        engine.capture(&capture(format!("{i}\n").as_bytes(), b"0"));
    }
    engine.flush(Duration::from_secs(5)).unwrap();
    let active = files(&d.spool.join("active"));
    assert_eq!(active.len(), 1, "one open segment");
    // The open segment is preallocated and its last block zero-padded: the
    // data is everything before the first NUL.
    let bytes = std::fs::read(&active[0]).unwrap();
    let data = &bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())];
    assert_eq!(data.iter().filter(|&&b| b == b'\n').count(), 100);
    assert_eq!(data.last(), Some(&b'\n'));
    assert!(files(&d.dest).is_empty(), "not delivered until sealed");
    engine.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(lines(&d.dest).len(), 100);
    assert!(files(&d.spool.join("active")).is_empty());
    assert!(files(&d.spool.join("sealed")).is_empty());
}

#[test]
fn recovery_cuts_torn_tails_and_delivers_leftovers() {
    let d = dirs();
    // A first run leaves one sealed segment behind (its delivery never ran).
    let engine = Engine::start(config(&d, 100, BOTH, "")).unwrap();
    engine.capture(&capture(b"x\n", b"1"));
    engine.flush(Duration::from_secs(5)).unwrap();
    let active = files(&d.spool.join("active"));
    let mut good = std::fs::read(&active[0]).unwrap();
    good.truncate(good.iter().position(|&b| b == 0).unwrap_or(good.len()));
    engine.shutdown(Duration::from_secs(5)).unwrap();
    let delivered = files(&d.dest);
    assert_eq!(delivered.len(), 1);

    // Plant what a crash leaves: an active segment with two good lines, a torn
    // third and zero padding; a sealed segment never delivered; a stray file.
    let name_active =
        "churn+v-1+2024+01+19+19+27-57-062-fb33b08e-de02-414b-ba16-969c14d7e0f1.jsonl";
    let name_sealed =
        "churn+v-1+2024+01+19+18+00-00-000-0b7bfd33-c8a7-4adf-a09a-98fd0af79974.jsonl";
    let mut torn = good.clone();
    torn.extend_from_slice(&good);
    torn.extend_from_slice(&good[..good.len() / 2]);
    torn.extend_from_slice(&[0u8; 4096]);
    std::fs::write(d.spool.join("active").join(name_active), &torn).unwrap();
    std::fs::write(d.spool.join("sealed").join(name_sealed), &good).unwrap();
    std::fs::write(d.spool.join("active").join("stray.txt"), b"not ours").unwrap();
    // And a segment created but never written (a crash before its first write).
    let name_empty = "churn+v-1+2024+01+19+19+28-00-000-5d0c8a2e-7d1b-4f0e-9a41-2c3b4d5e6f70.jsonl";
    std::fs::write(d.spool.join("active").join(name_empty), b"").unwrap();
    // And the next segment's file, made ahead and never taken.
    let name_ahead = ".next-8f0c2d7e6b5a49c3a1f2e3d4c5b6a798";
    std::fs::write(d.spool.join("active").join(name_ahead), [0u8; 4096]).unwrap();

    let engine = Engine::start(config(&d, 100, BOTH, "")).unwrap();
    let stats = engine.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(stats.segments_delivered, 2);
    let recovered = d
        .dest
        .join("churn/v-1/2024/01/19/19/27-57-062-fb33b08e-de02-414b-ba16-969c14d7e0f1.jsonl");
    let mut expected = good.clone();
    expected.extend_from_slice(&good);
    assert_eq!(
        std::fs::read(&recovered).unwrap(),
        expected,
        "cut to the last complete line"
    );
    let sealed = d
        .dest
        .join("churn/v-1/2024/01/19/18/00-00-000-0b7bfd33-c8a7-4adf-a09a-98fd0af79974.jsonl");
    assert_eq!(std::fs::read(&sealed).unwrap(), good);
    assert_eq!(lines(&d.dest).len(), 4);
    assert!(
        d.spool.join("active").join("stray.txt").exists(),
        "unknown files are left alone"
    );
    assert!(
        !d.spool.join("active").join(name_empty).exists(),
        "a segment with no line is removed, not delivered"
    );
    assert!(
        !d.spool.join("active").join(name_ahead).exists(),
        "a file made ahead is removed, not delivered"
    );
}

#[test]
fn a_spool_takes_one_engine() {
    let d = dirs();
    let first = Engine::start(config(&d, 100, BOTH, "")).unwrap();
    match Engine::start(config(&d, 100, BOTH, "")) {
        Err(Error::SpoolLocked(p)) => assert_eq!(p, d.spool),
        other => panic!("expected SpoolLocked, got {other:?}"),
    }
    first.shutdown(Duration::from_secs(5)).unwrap();
    Engine::start(config(&d, 100, BOTH, "")).unwrap();
}

#[test]
fn rejections_and_live_controls() {
    let d = dirs();
    let engine = Engine::start(config(&d, 100, BOTH, "")).unwrap();
    let (x65, y64) = ("x".repeat(65), "y".repeat(64));
    let mut c = capture(b"1\n", b"1");
    for bad in ["", " leading-space", "tab\there", &x65, "caf\u{e9}"] {
        c.inference_id = Some(bad);
        assert_eq!(
            engine.capture(&c),
            Outcome::Rejected(RejectReason::InferenceId),
            "{bad:?}"
        );
    }
    c.inference_id = Some(&y64);
    assert_eq!(engine.capture(&c), Outcome::Kept);
    c.inference_id = None;
    let long_type = "text/csv; x=".to_string() + &"a".repeat(1100);
    c.request.content_type = &long_type;
    assert_eq!(
        engine.capture(&c),
        Outcome::Rejected(RejectReason::ContentType)
    );
    c.request.content_type = "text/csv";
    c.time = Some(UNIX_EPOCH - Duration::from_secs(1));
    assert_eq!(engine.capture(&c), Outcome::Rejected(RejectReason::Time));
    c.time = Some(SystemTime::now());

    engine.set_sampling_percentage(0.0).unwrap();
    assert_eq!(engine.capture(&c), Outcome::SampledOut);
    assert!(engine.set_sampling_percentage(100.5).is_err());
    assert!(engine.set_sampling_percentage(f64::NAN).is_err());
    engine.set_sampling_percentage(0.5).unwrap();
    assert_eq!(engine.stats().sampling_percentage, 0.5);
    engine.set_sampling_percentage(100.0).unwrap();
    assert_eq!(engine.capture(&c), Outcome::Kept);
    let s = engine.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (
            s.rejected_inference_id,
            s.rejected_content_type,
            s.rejected_time
        ),
        (5, 1, 1)
    );
    assert_eq!(s.kept, 2);
}

#[test]
fn non_utf8_text_is_written_as_base64() {
    let d = dirs();
    let engine = Engine::start(config(&d, 100, BOTH, "")).unwrap();
    engine.capture(&capture(b"\xff\xfe,1\n", b"0.5"));
    engine.shutdown(Duration::from_secs(5)).unwrap();
    let recs = lines(&d.dest);
    let input = recs[0].1.input.as_ref().unwrap();
    assert_eq!(input.encoding, capline::format::Encoding::Base64);
    assert_eq!(input.data, b"\xff\xfe,1\n");
    assert_eq!(
        recs[0].1.output.as_ref().unwrap().encoding,
        capline::format::Encoding::Csv
    );
}

#[test]
fn both_io_paths_write_the_same_records() {
    for io in ["uring", "pwrite"] {
        let d = dirs();
        let extra = format!(r#","Io":"{io}","SegmentMaxBytes":262144"#);
        let engine = Engine::start(config(&d, 100, BOTH, &extra)).unwrap();
        let body = vec![b'5'; 3000];
        for i in 0..2000 {
            let id = format!("{io}-{i}");
            let mut c = capture(&body, b"0.5");
            c.inference_id = Some(&id);
            assert_eq!(engine.capture(&c), Outcome::Kept);
            if i % 500 == 0 {
                engine.flush(Duration::from_secs(10)).unwrap();
            }
        }
        let stats = engine.shutdown(Duration::from_secs(10)).unwrap();
        assert_eq!(stats.records_written, 2000, "{io}");
        let recs = lines(&d.dest);
        assert_eq!(recs.len(), 2000, "{io}");
        let ids: std::collections::HashSet<_> = recs
            .iter()
            .filter_map(|(_, r)| r.inference_id.clone())
            .collect();
        assert_eq!(ids.len(), 2000, "{io}: every record once");
        for f in files(&d.dest) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !bytes.contains(&0),
                "{io}: no padding left in {}",
                f.display()
            );
        }
    }
}

/// Files made ahead for a next segment in the spool's `active/`.
fn made_ahead(d: &Dirs) -> usize {
    support::made_ahead(&d.spool.join("active"))
}

/// A segment past half full has the next one's file made ahead in
/// `active/` (counted in `spool_active_bytes`); the next segment takes it,
/// and what is delivered is what a run without it delivers: every record
/// once, no file past the limit, no padding, nothing left in `active/`.
#[test]
fn the_next_segments_file_is_made_ahead_and_taken() {
    const LIMIT: u64 = 16 << 20;
    for io in ["uring", "pwrite"] {
        let d = dirs();
        let extra = format!(r#","Io":"{io}","SegmentMaxBytes":{LIMIT}"#);
        let engine = Engine::start(config(&d, 100, BOTH, &extra)).unwrap();
        let body = vec![b'5'; 30_000];
        let capture_n = |from: usize, to: usize| {
            for i in from..to {
                let id = format!("{io}-{i}");
                let mut c = capture(&body, b"0.5");
                c.inference_id = Some(&id);
                keep(&engine, &c);
            }
        };
        // About 10 MiB: past half of the first segment.
        capture_n(0, 350);
        engine.flush(Duration::from_secs(10)).unwrap();
        // Made on a thread of its own: it appears soon after.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while made_ahead(&d) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(made_ahead(&d), 1, "{io}: the next file, made ahead");
        assert!(
            engine.stats().spool_active_bytes >= LIMIT,
            "{io}: {} active bytes",
            engine.stats().spool_active_bytes
        );
        // About 45 MiB in all: three segments.
        capture_n(350, 1500);
        let stats = engine.shutdown(Duration::from_secs(20)).unwrap();
        assert_eq!(stats.records_written, 1500, "{io}");
        assert!(files(&d.spool.join("active")).is_empty(), "{io}");
        let delivered = files(&d.dest);
        assert!(delivered.len() >= 3, "{io}: {} files", delivered.len());
        assert_eq!(stats.segments_sealed, delivered.len() as u64, "{io}");
        for f in &delivered {
            let bytes = std::fs::read(f).unwrap();
            assert!(bytes.len() as u64 <= LIMIT, "{io}: {}", f.display());
            assert!(!bytes.contains(&0), "{io}: padding left in {}", f.display());
        }
        let recs = lines(&d.dest);
        let ids: std::collections::HashSet<_> = recs
            .iter()
            .filter_map(|(_, r)| r.inference_id.clone())
            .collect();
        assert_eq!(
            (recs.len(), ids.len()),
            (1500, 1500),
            "{io}: every record once"
        );
    }
}

/// A file made ahead that no segment takes (the records stopped) does not
/// hold its disk space for long: it is removed `SegmentMaxAgeSeconds` after
/// it was made, and `spool_active_bytes` falls back to 0.
#[test]
fn an_unused_file_made_ahead_is_removed_after_the_segment_age() {
    let d = dirs();
    let extra = r#","SegmentMaxBytes":16777216,"SegmentMaxAgeSeconds":1"#;
    let engine = Engine::start(config(&d, 100, BOTH, extra)).unwrap();
    let body = vec![b'5'; 30_000];
    for _ in 0..350 {
        keep(&engine, &capture(&body, b"0.5"));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen_ahead = false;
    loop {
        seen_ahead |= made_ahead(&d) > 0;
        let now = files(&d.spool.join("active"));
        if seen_ahead && now.is_empty() && engine.stats().spool_active_bytes == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still in active/: {now:?}, {} bytes counted (made ahead seen: {seen_ahead})",
            engine.stats().spool_active_bytes
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = engine.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!((stats.records_written, lines(&d.dest).len()), (350, 350));
}

/// A body whose buffer counts its drops.
struct Counted(Vec<u8>, Arc<std::sync::atomic::AtomicUsize>);

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_shared_capture_writes_what_a_copied_one_does_and_drops_each_body_once() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    for (modes, input, output) in [
        (BOTH, true, true),
        (r#"{"CaptureMode":"Input"}"#, true, false),
        (r#"{"CaptureMode":"Output"}"#, false, true),
    ] {
        let d = dirs();
        let engine = Engine::start(config(&d, 100, modes, r#","SegmentMaxBytes":262144"#)).unwrap();
        // Drops of request bodies, of response bodies.
        let sides = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
        let drops = || sides[0].load(SeqCst) + sides[1].load(SeqCst);
        let body =
            |side: usize, b: &[u8]| Bytes::from_owner(Counted(b.to_vec(), sides[side].clone()));
        // JSON, CSV, and bytes that are not UTF-8 (BASE64), small and large.
        let requests: [(&str, Vec<u8>); 3] = [
            ("application/json", br#"{"x":"a \"quoted\" word"}"#.to_vec()),
            ("text/csv", b"1,2,3\n".repeat(5000)),
            ("text/csv", vec![0xff, 0xfe, 0x00, 0x41]),
        ];
        let n = 300;
        for i in 0..n {
            let (ct, req) = &requests[i % 3];
            let resp = format!("{{\"score\":{i}}}");
            let copied = format!("copied-{i}");
            let shared = format!("shared-{i}");
            let c = Capture {
                request: Payload::new(ct, req),
                response: Payload::new("application/json", resp.as_bytes()),
                inference_id: Some(&copied),
                time: None,
            };
            assert_eq!(engine.capture(&c), Outcome::Kept);
            let out = engine.capture_shared(SharedCapture {
                request: SharedPayload::new(ct, body(0, req)),
                response: SharedPayload::new("application/json", body(1, resp.as_bytes())),
                inference_id: Some(&shared),
                time: None,
            });
            assert_eq!(out, Outcome::Kept);
        }
        // A body the config does not capture is dropped at once (the
        // writer never holds one), each side counted on its own.
        for (side, captured) in [input, output].into_iter().enumerate() {
            if !captured {
                assert_eq!(sides[side].load(SeqCst), n, "{modes}: side {side}");
            }
        }
        // Once written, every body a kept call handed over is dropped.
        engine.flush(Duration::from_secs(30)).unwrap();
        assert_eq!(drops(), 2 * n, "{modes}");
        // Not kept: dropped before the call returns.
        let bad = engine.capture_shared(SharedCapture {
            request: SharedPayload::new("text/csv", body(0, b"1")),
            response: SharedPayload::new("text/csv", body(1, b"2")),
            inference_id: Some(" starts with a space"),
            time: None,
        });
        assert_eq!(bad, Outcome::Rejected(RejectReason::InferenceId));
        assert_eq!(drops(), 2 * n + 2);
        engine.set_sampling_percentage(0.0).unwrap();
        let out = engine.capture_shared(SharedCapture {
            request: SharedPayload::new("text/csv", body(0, b"1")),
            response: SharedPayload::new("text/csv", body(1, b"2")),
            inference_id: None,
            time: None,
        });
        assert_eq!(out, Outcome::SampledOut);
        assert_eq!(drops(), 2 * n + 4);

        let stats = engine.shutdown(Duration::from_secs(30)).unwrap();
        assert_eq!(stats.records_written, 2 * n as u64, "{modes}");
        assert_eq!(drops(), 2 * n + 4, "{modes}: every body dropped once");
        let recs = lines(&d.dest);
        assert_eq!(recs.len(), 2 * n, "{modes}");
        let by_id: std::collections::HashMap<String, _> = recs
            .into_iter()
            .map(|(_, r)| (r.inference_id.clone().unwrap(), r))
            .collect();
        for i in 0..n {
            let (a, b) = (
                &by_id[&format!("copied-{i}")],
                &by_id[&format!("shared-{i}")],
            );
            assert_eq!(a.input, b.input, "{modes} {i}");
            assert_eq!(a.output, b.output, "{modes} {i}");
            assert_eq!(b.input.is_some(), input, "{modes}");
            assert_eq!(b.output.is_some(), output, "{modes}");
        }
    }
}
