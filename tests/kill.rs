//! SIGKILL test: a child captures at full speed and reports each completed
//! `flush()`; it is killed with SIGKILL at a random moment, 20 times per I/O
//! mode, restarting each time on the same spool. Then a clean start delivers
//! what is left, and the destination must hold only valid, untorn lines with
//! unique event ids, including every record a flush acknowledged before its kill.
//! Half the runs use segments large enough to have the next one's file made
//! ahead; whatever a kill leaves of it, the restart removes.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use capline::format::check::parse_line;
use capline_e2e::jsonl_files;

const KILLS: u64 = 20;

fn run(io: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, dest) = (tmp.path().join("spool"), tmp.path().join("dest"));
    let child_bin = env!("CARGO_BIN_EXE_capline-kill-child");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill test ({io}): seed {seed}");
    let mut acked: Vec<Option<u64>> = Vec::new();
    // Kills that left a next segment's file made ahead in `active/`.
    let mut killed_with_ahead = 0u64;
    for run in 0..KILLS {
        let mut child = Command::new(child_bin)
            .args([
                &run.to_string(),
                &spool.display().to_string(),
                &dest.display().to_string(),
                io,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                last = line.trim().parse::<u64>().ok().or(last);
            }
            last
        });
        // A random moment between 50 ms and 400 ms after the start.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(50 + seed % 350));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        acked.push(reader.join().unwrap());
        let ahead = std::fs::read_dir(spool.join("active"))
            .map(|r| {
                r.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".next-"))
            })
            .unwrap_or(false);
        killed_with_ahead += u64::from(ahead);
    }
    // A clean start seals and delivers everything the kills left behind.
    let config = capline::Config::from_json(&format!(
        r#"{{"EndpointName":"kill","DataCaptureConfig":{{"InitialSamplingPercentage":100,
            "DestinationS3Uri":"file://{}","CaptureOptions":[{{"CaptureMode":"InputAndOutput"}}]}},
            "Engine":{{"SpoolDir":"{}","Io":"{io}"}}}}"#,
        dest.display(),
        spool.display()
    ))
    .unwrap();
    capline::Engine::start(config)
        .unwrap()
        .shutdown(Duration::from_secs(60))
        .unwrap();

    let (found, lost) = verify(&dest, &acked);
    let acknowledged: u64 = acked.iter().map(|a| a.map_or(0, |s| s + 1)).sum();
    println!(
        "kill test ({io}): kills {KILLS}, {killed_with_ahead} of them with a next segment's file made ahead, records acknowledged {acknowledged}, records found {found}, records lost {lost}"
    );
    assert!(
        acknowledged > 0,
        "no flush completed before a kill: the test proves nothing"
    );
    assert_eq!(lost, 0);
    assert!(
        std::fs::read_dir(spool.join("active"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(
        std::fs::read_dir(spool.join("sealed"))
            .unwrap()
            .next()
            .is_none()
    );
}

/// Checks every line; returns (records found, acknowledged records missing).
fn verify(dest: &Path, acked: &[Option<u64>]) -> (u64, u64) {
    let mut event_ids = HashSet::new();
    let mut seen = HashSet::new();
    for f in jsonl_files(dest) {
        let text = std::fs::read(&f).unwrap();
        assert_eq!(
            text.last(),
            Some(&b'\n'),
            "{} ends with a newline",
            f.display()
        );
        for (i, line) in text[..text.len() - 1].split(|&b| b == b'\n').enumerate() {
            let rec =
                parse_line(line, None).unwrap_or_else(|e| panic!("{}:{}: {e}", f.display(), i + 1));
            assert!(
                event_ids.insert(rec.event_id),
                "duplicate eventId in {}",
                f.display()
            );
            let id = rec.inference_id.expect("every record has an id");
            assert_eq!(
                rec.output.unwrap().data,
                id.as_bytes(),
                "record {id} is intact"
            );
            assert!(seen.insert(id.clone()), "record {id} delivered twice");
        }
    }
    let mut lost = 0;
    for (run, ack) in acked.iter().enumerate() {
        for seq in 0..ack.map_or(0, |a| a + 1) {
            if !seen.contains(&format!("r{run}-{seq}")) {
                lost += 1;
            }
        }
    }
    (seen.len() as u64, lost)
}

#[test]
fn sigkill_loses_no_acknowledged_record_uring() {
    run("uring");
}

#[test]
fn sigkill_loses_no_acknowledged_record_pwrite() {
    run("pwrite");
}
