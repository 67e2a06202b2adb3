//! A capline process under capture load, for the delivery tests:
//! `capline-load-child CONFIG RUN SECONDS RATE DEADLINE`.
//!
//! Starts an engine from the config file CONFIG and captures records with
//! inference ids `{RUN}-{SEQ}` (a ~1 KiB CSV request, the id as response) for
//! SECONDS seconds at RATE records per second (0: as fast as it can). Every
//! 1 000 records it calls `flush()` and prints `acked SEQ`, the highest
//! sequence number that flush made durable. Then it shuts down with a
//! DEADLINE-second deadline and prints `stat NAME VALUE` for every counter.

use std::io::Write;
use std::time::{Duration, Instant};

use capline::{Capture, Config, DropReason, Engine, Outcome, Payload};

fn main() {
    // Logs to stderr, as `CAPLINE_LOG` asks (default: info).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let [_, config, run, seconds, rate, deadline] = &args[..] else {
        eprintln!("usage: capline-load-child CONFIG RUN SECONDS RATE DEADLINE");
        std::process::exit(2);
    };
    let number = |s: &str| -> u64 { s.parse().expect("a number") };
    let (seconds, rate, deadline) = (number(seconds), number(rate), number(deadline));
    let config = Config::from_path(std::path::Path::new(config)).expect("config");
    let engine = Engine::start(config).expect("start");
    let body: Vec<u8> = (0..1000).map(|i| b"0123456789,"[i % 11]).collect();
    let mut out = std::io::stdout().lock();
    let start = Instant::now();
    let stop = start + Duration::from_secs(seconds);
    let mut seq = 0u64;
    while Instant::now() < stop {
        let id = format!("{run}-{seq}");
        let c = Capture {
            request: Payload::new("text/csv", &body),
            response: Payload::new("text/csv", id.as_bytes()),
            inference_id: Some(&id),
            time: None,
        };
        match engine.capture(&c) {
            Outcome::Kept => {}
            Outcome::Dropped(DropReason::RingFull) => {
                std::thread::yield_now();
                continue;
            }
            // Disk pressure is a legitimate outcome (counted); the run goes on.
            Outcome::Dropped(_) => {}
            other => panic!("{other:?}"),
        }
        if seq % 1000 == 999 {
            engine.flush(Duration::from_secs(60)).expect("flush");
            writeln!(out, "acked {seq}").expect("stdout");
            out.flush().expect("stdout");
        }
        seq += 1;
        if rate > 0 {
            let due = start + Duration::from_secs_f64(seq as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let stats = engine
        .shutdown(Duration::from_secs(deadline))
        .expect("shutdown");
    for (name, value) in stats.counters() {
        writeln!(out, "stat {name} {value}").expect("stdout");
    }
}
