//! The child of the SIGKILL test: `capline-kill-child RUN SPOOL DEST IO`.
//! Captures records with inference ids `r{RUN}-{SEQ}` as fast as it can;
//! every 1 000 records it calls `flush()` and then prints the highest
//! sequence number that flush acknowledged. It runs until it is killed.
//! Odd runs seal segments at 16 MiB, even runs at 4 MiB.

use std::io::Write;
use std::time::Duration;

use capline::{Capture, Config, DropReason, Engine, Outcome, Payload};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, run, spool, dest, io] = &args[..] else {
        eprintln!("usage: capline-kill-child RUN SPOOL DEST IO");
        std::process::exit(2);
    };
    // Odd runs: segments of 16 MiB, past the first 8 MiB preallocation
    // step, so a kill can find the next segment's file made ahead; even
    // runs: 4 MiB, so it finds seals in progress more often.
    let segment = if run.parse::<u64>().unwrap_or(0) % 2 == 1 {
        16 << 20
    } else {
        4 << 20
    };
    let config = Config::from_json(&format!(
        r#"{{"EndpointName":"kill","DataCaptureConfig":{{"InitialSamplingPercentage":100,
            "DestinationS3Uri":"file://{dest}","CaptureOptions":[{{"CaptureMode":"InputAndOutput"}}],
            "CaptureContentTypeHeader":{{"CsvContentTypes":["text/csv"]}}}},
            "Engine":{{"SpoolDir":"{spool}","Io":"{io}","SegmentMaxBytes":{segment},"SegmentMaxAgeSeconds":1}}}}"#
    ))
    .expect("config");
    let engine = Engine::start(config).expect("start");
    let body: Vec<u8> = (0..700).map(|i| b"0123456789,"[i % 11]).collect();
    let mut out = std::io::stdout().lock();
    for seq in 0u64.. {
        let id = format!("r{run}-{seq}");
        let c = Capture {
            request: Payload::new("text/csv", &body),
            response: Payload::new("text/csv", id.as_bytes()),
            inference_id: Some(&id),
            time: None,
        };
        loop {
            match engine.capture(&c) {
                Outcome::Kept => break,
                Outcome::Dropped(DropReason::RingFull) => std::thread::yield_now(),
                other => panic!("{other:?}"),
            }
        }
        if seq % 1000 == 999 {
            engine.flush(Duration::from_secs(30)).expect("flush");
            writeln!(out, "{seq}").expect("stdout");
            out.flush().expect("stdout");
        }
    }
}
