//! `latency`: per-call capture() latency percentiles, capline beside the
//! channel baseline, in one run.
//!
//! `cargo run --release -p capline-benches --bin latency [-- --ring-mib N]`
//! (`--ring-mib`: the ring's size for the sampled-in rows, default 64 MiB,
//! the engine's default)
//!
//! Each call is timed with the CPU's counter (quanta's raw clock, a few ns per
//! read); the cost of one timer read pair, measured in the same run, is
//! subtracted. Calls cheaper than the timer itself (sampled out, disabled) are
//! timed in batches of 64 and each batch's per-call mean is recorded, so their
//! percentiles are percentiles of 64-call means. Sampled-in calls run in
//! steady-state chunks (200 KiB of payload, then an untimed drain), as in the
//! criterion `capture/sampled_in_*` groups: back to back, and `spaced`, with
//! untimed work of the serving thread's own between calls (writing a 32 KiB
//! scratch buffer, as an inference touches its activations), as a server
//! calls capture() once per inference. Beside them, `memcpy`: the same pair
//! copied into one reused buffer, timed and spaced the same way (issue 17's
//! floor for a kept call).

use std::hint::black_box;
use std::time::Duration;

use capline::Outcome;
use capline_benches::{ChannelCapture, Timer, capture_shapes, discarding_engine};
use hdrhistogram::Histogram;

const SAMPLES: u64 = 300_000;
const BATCH: u64 = 64;

/// One row: `h`'s percentiles, and `other`'s p50 and p99 over `h`'s under
/// `label` (empty ratios when there is no `other`).
fn row(name: &str, h: &Histogram<u64>, label: &str, other: Option<&Histogram<u64>>) {
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p);
    let ratio = |p: f64| {
        other.map_or(String::new(), |o| {
            format!("{:.1}x", q(o, p) as f64 / q(h, p).max(1) as f64)
        })
    };
    println!(
        "{name:<34} p50 {:>6} ns  p99 {:>6} ns  p99.9 {:>7} ns   {label}: p50 {:>6} p99 {:>6}",
        q(h, 0.5),
        q(h, 0.99),
        q(h, 0.999),
        ratio(0.5),
        ratio(0.99),
    );
}

fn main() {
    let mut ring_mib: u64 = 64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ring-mib" => {
                ring_mib = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .expect("--ring-mib N (MiB, at least 1)");
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let timer = Timer::new();
    println!(
        "timer overhead subtracted: {:.0} ns per timed region; ring for sampled-in rows: {ring_mib} MiB",
        timer.overhead
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let shapes = capture_shapes();
    let small = &shapes[0];
    let new_hist = capline_benches::histogram;

    // Sampled out and disabled, in 64-call batches.
    let engine = discarding_engine(tmp.path(), 0, 64 << 20);
    let base = ChannelCapture::new(65536, 0.0);
    let cap = small.capture();
    for (name, disabled) in [("sampled_out", false), ("disabled", true)] {
        engine.set_enabled(!disabled);
        base.set_enabled(!disabled);
        let (mut hc, mut hb) = (new_hist(), new_hist());
        for _ in 0..SAMPLES / 4 {
            hc.record(timer.time(BATCH, || {
                black_box(engine.capture(black_box(&cap)));
            }))
            .expect("record");
            hb.record(timer.time(BATCH, || {
                black_box(base.capture(black_box(small)));
            }))
            .expect("record");
        }
        row(
            &format!("{name} (64-call means) channel"),
            &hb,
            "vs channel",
            None,
        );
        row(
            &format!("{name} (64-call means) capline"),
            &hc,
            "vs channel",
            Some(&hb),
        );
    }
    drop(engine);
    drop(base);

    // Sampled in, one call per sample, steady-state chunks; back to back,
    // then spaced by the thread's own work.
    let mut scratch = vec![0u64; 32 * 1024 / 8];
    for spaced in [false, true] {
        for s in &shapes {
            let dir = tempfile::tempdir().expect("tempdir");
            let engine = discarding_engine(dir.path(), 100, ring_mib << 20);
            let base = ChannelCapture::new(65536, 100.0);
            let cap = s.capture();
            let chunk = 200 * 1024 / s.bytes();
            let (mut hc, mut hb, mut hm) = (new_hist(), new_hist(), new_hist());
            let mut copy = vec![0u8; s.bytes() as usize];
            let mut work = || {
                if spaced {
                    inference(&mut scratch);
                }
            };
            let mut done = 0;
            while done < SAMPLES {
                for _ in 0..chunk {
                    work();
                    let mut kept = false;
                    hc.record(timer.time(1, || {
                        kept = engine.capture(black_box(&cap)) == Outcome::Kept
                    }))
                    .expect("record");
                    assert!(kept);
                }
                engine.flush(Duration::from_secs(60)).expect("flush");
                for _ in 0..chunk {
                    work();
                    let mut kept = false;
                    hb.record(timer.time(1, || kept = base.capture(black_box(s))))
                        .expect("record");
                    assert!(kept);
                }
                base.drain();
                for _ in 0..chunk {
                    work();
                    hm.record(timer.time(1, || s.copy_into(&mut copy)))
                        .expect("record");
                }
                done += chunk;
            }
            let name = format!(
                "sampled_in {}{}",
                s.name,
                if spaced { " spaced" } else { "" }
            );
            row(&format!("{name} channel"), &hb, "vs channel", None);
            row(&format!("{name} capline"), &hc, "vs channel", Some(&hb));
            row(
                &format!("{name} memcpy"),
                &hm,
                "capline / memcpy",
                Some(&hc),
            );
        }
    }
}

/// The serving thread's own work between two calls: every word of a 32 KiB
/// buffer read and written once (about a microsecond).
fn inference(scratch: &mut [u64]) {
    for (i, w) in scratch.iter_mut().enumerate() {
        *w = w.wrapping_mul(6364136223846793005).wrapping_add(i as u64);
    }
    black_box(scratch);
}
