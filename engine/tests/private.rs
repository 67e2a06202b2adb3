//! Captured payloads are private on disk whatever the umask: every directory
//! the engine creates (spool and destination) is 0700 and every file 0600.
//! This test sets the most permissive umask (000) for its process, so the
//! modes it sees are the ones the engine set itself. The file made ahead
//! for a next segment is among them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use capline::{Capture, Config, Engine, Payload};

mod support;

/// Every directory and file below `root` (itself excluded), with its mode.
fn modes(root: &Path) -> Vec<(String, bool, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let meta = e.metadata().unwrap();
        let name = e.path().display().to_string();
        out.push((name, meta.is_dir(), meta.permissions().mode() & 0o7777));
        if meta.is_dir() {
            out.extend(modes(&e.path()));
        }
    }
    out
}

#[test]
fn spool_and_capture_files_are_private_whatever_the_umask() {
    rustix::process::umask(rustix::fs::Mode::empty());
    let tmp = tempfile::tempdir().unwrap();
    let (dest, spool) = (tmp.path().join("dest"), tmp.path().join("spool"));
    let config = Config::from_json(&format!(
        r#"{{"EndpointName":"private","DataCaptureConfig":{{
            "InitialSamplingPercentage":100,"DestinationS3Uri":"file://{}",
            "CaptureOptions":[{{"CaptureMode":"Input"}},{{"CaptureMode":"Output"}}]}},
          "Engine":{{"SpoolDir":"{}","SegmentMaxBytes":16777216}}}}"#,
        dest.display(),
        spool.display()
    ))
    .unwrap();
    let engine = Engine::start(config).unwrap();
    // About 10 MiB: past half of the segment, so the next one's file is
    // made ahead too.
    let body = "1,2,3,".repeat(5000);
    for _ in 0..350 {
        let c = Capture {
            request: Payload::new("text/csv", body.as_bytes()),
            response: Payload::new("text/csv", b"0.5"),
            inference_id: None,
            time: None,
        };
        support::keep(&engine, &c);
    }
    // While running: the spool, its lock, the open segment and the file
    // made ahead (on a thread of its own: it appears soon after).
    engine.flush(Duration::from_secs(10)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut running = modes(&spool);
    while !running.iter().any(|(n, _, _)| n.contains("/active/.next-"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
        running = modes(&spool);
    }
    assert!(
        running.iter().any(|(n, _, _)| n.contains("/active/.next-")),
        "{running:?}"
    );
    assert!(
        running
            .iter()
            .any(|(n, _, _)| n.contains("/active/") && n.ends_with(".jsonl")),
        "{running:?}"
    );
    let stats = engine.shutdown(Duration::from_secs(10)).unwrap();
    assert_eq!(stats.segments_delivered, 1);

    // A world-permissive umask would have made 0777 / 0666.
    let all: Vec<_> = running
        .into_iter()
        .chain(modes(&spool))
        .chain(modes(&dest))
        .collect();
    assert!(all.iter().any(|(n, dir, _)| !dir && n.ends_with(".jsonl")));
    for (name, dir, mode) in &all {
        let want = if *dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{name} is {mode:o}, not {want:o}");
    }
    let root = std::fs::metadata(&spool).unwrap().permissions().mode() & 0o7777;
    assert_eq!(root, 0o700, "the spool directory the engine created");
}
