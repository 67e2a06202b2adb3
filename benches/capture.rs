//! The capture path, each group beside the "afternoon" baseline (a
//! crossbeam channel of `Vec<u8>`, see `ChannelCapture`) measured in the same
//! run; the sampled-in groups also beside `memcpy`, the bare copy of the
//! same bytes into a reused buffer, and `handoff`, the same copy into a
//! window that a thread on the other core reads at each drain; and
//! `capline_shared`, the same calls with the bodies handed over as `Bytes`
//! (`Engine::capture_shared`), which the ring holds instead of copying.
//! `scripts/bench-capture.sh` runs this and prints every group's medians as
//! ratios, with the CPU model.
//!
//! `cargo bench -p capline-benches --bench capture`
//!
//! Sampled-in groups time the capture calls only: they run in chunks that fit
//! the ring (or channel), and between chunks, untimed, wait for the consumer
//! to drain. The engine's writer discards records here (`start_discarding`),
//! so the figures are the capture path's cost, not the disk's; the writer
//! still drains the ring concurrently on the other core, and reads a byte
//! of every cache line of each record, as serializing it would.

use std::hint::black_box;
use std::time::{Duration, Instant};

use capline::bytes::Bytes;
use capline::{Engine, Outcome};
use capline_benches::{ChannelCapture, Handoff, Shape, capture_shapes, discarding_engine};
use criterion::{Criterion, criterion_group, criterion_main};

/// Records per timed chunk in steady state: bursts that stay inside the
/// ring's warm window (256 KiB), so the writer keeps up, as in a server
/// whose capture rate the writer can sustain.
fn steady(s: &Shape) -> u64 {
    (200 * 1024 / (s.request.len() + s.response.len())) as u64
}

/// Records per timed chunk in a burst: far more than the writer drains
/// meanwhile, so the producer sweeps cold ring memory (48 MiB of a 64 MiB ring).
fn burst(s: &Shape) -> u64 {
    (48 << 20) / (s.request.len() + s.response.len() + 64) as u64
}

const RING: u64 = 64 << 20;

/// Times `iters` captures in chunks; panics if any was not kept.
fn timed(iters: u64, chunk: u64, capture: &dyn Fn() -> bool, drain: &dyn Fn()) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        let start = Instant::now();
        let kept = (0..n).filter(|_| capture()).count() as u64;
        total += start.elapsed();
        assert_eq!(kept, n, "every sampled-in capture was kept");
        drain();
        left -= n;
    }
    total
}

/// [`timed`] for shared bodies: each chunk's pairs are made first, untimed
/// (a server has its bodies as `Bytes` before it captures them), each pair
/// its own buffers; the calls hand them over.
fn timed_shared(iters: u64, chunk: u64, s: &Shape, engine: &Engine) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        let mut pairs: Vec<(Bytes, Bytes)> = (0..n).map(|_| s.shared_bodies()).collect();
        let start = Instant::now();
        let mut kept = 0;
        while let Some(bodies) = pairs.pop() {
            kept += u64::from(engine.capture_shared(s.shared_capture(bodies)) == Outcome::Kept);
        }
        total += start.elapsed();
        assert_eq!(kept, n, "every sampled-in capture was kept");
        engine.flush(Duration::from_secs(60)).expect("flush");
        left -= n;
    }
    total
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let shapes = capture_shapes();
    let small = &shapes[0];

    // Sampled out and disabled: the decision alone.
    let engine = discarding_engine(tmp.path(), 0, RING);
    let base = ChannelCapture::new(65536, 0.0);
    let cap = small.capture();
    let mut g = c.benchmark_group("capture/sampled_out");
    g.bench_function("capline", |b| {
        b.iter(|| assert_eq!(engine.capture(black_box(&cap)), Outcome::SampledOut))
    });
    g.bench_function("channel", |b| {
        b.iter(|| assert!(!base.capture(black_box(small))))
    });
    g.finish();

    engine.set_enabled(false);
    base.set_enabled(false);
    let mut g = c.benchmark_group("capture/disabled");
    g.bench_function("capline", |b| {
        b.iter(|| engine.capture(black_box(&cap)) != Outcome::Kept)
    });
    g.bench_function("channel", |b| b.iter(|| base.capture(black_box(small))));
    g.finish();
    drop(engine);
    drop(base);

    // Sampled in: the pair is copied into the ring (or a Vec sent on the channel).
    for s in &shapes {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine: Engine = discarding_engine(dir.path(), 100, RING);
        let base = ChannelCapture::new(65536, 100.0);
        let cap = s.capture();
        for (mode, chunk) in [("sampled_in", steady(s)), ("burst", burst(s).min(65536))] {
            let mut g = c.benchmark_group(format!("capture/{mode}_{}", s.name));
            g.bench_function("capline", |b| {
                b.iter_custom(|iters| {
                    timed(
                        iters,
                        chunk,
                        &|| engine.capture(black_box(&cap)) == Outcome::Kept,
                        &|| engine.flush(Duration::from_secs(60)).expect("flush"),
                    )
                })
            });
            // The same calls with the bodies handed over as `Bytes`
            // (`capture_shared`): no copy on the calling thread.
            g.bench_function("capline_shared", |b| {
                b.iter_custom(|iters| timed_shared(iters, chunk, s, &engine))
            });
            g.bench_function("channel", |b| {
                b.iter_custom(|iters| {
                    timed(iters, chunk, &|| base.capture(black_box(s)), &|| {
                        base.drain()
                    })
                })
            });
            if mode == "sampled_in" {
                // The floor of a hand-off to the other core: the same bodies
                // copied into a window a reader thread reads at each drain.
                let handoff = Handoff::new();
                g.bench_function("handoff", |b| {
                    b.iter_custom(|iters| {
                        timed(iters, chunk, &|| handoff.copy(black_box(s)), &|| {
                            handoff.drain()
                        })
                    })
                });
                drop(handoff);
                // The floor: the same bytes copied into one reused buffer of
                // the same size (warm in this core's cache).
                let mut buf = vec![0u8; s.bytes() as usize];
                g.bench_function("memcpy", |b| b.iter(|| s.copy_into(&mut buf)));
            }
            g.finish();
        }
    }

    // Two threads capturing at once. Each thread times its own chunk; the
    // figure is the mean cost of one capture while the other thread captures too.
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = discarding_engine(dir.path(), 100, RING);
    let base = ChannelCapture::new(65536, 100.0);
    let mut g = c.benchmark_group("capture/contention_2_threads_1k_1k");
    let chunk = steady(small) / 2;
    g.bench_function("capline", |b| {
        b.iter_custom(|iters| {
            two_threads(
                iters,
                chunk,
                &|| engine.capture(black_box(&cap)) == Outcome::Kept,
                &|| engine.flush(Duration::from_secs(60)).expect("flush"),
            )
        })
    });
    g.bench_function("channel", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, chunk, &|| base.capture(black_box(small)), &|| {
                base.drain()
            })
        })
    });
    g.finish();
}

/// Runs `iters` captures on each of two threads in chunks (drained in between,
/// untimed); returns the mean per-thread time, i.e. `iters` captures' worth.
fn two_threads(
    iters: u64,
    chunk: u64,
    capture: &(dyn Fn() -> bool + Sync),
    drain: &(dyn Fn() + Sync),
) -> Duration {
    let start = std::sync::Barrier::new(3);
    let done = std::sync::Barrier::new(3);
    let chunks = iters.div_ceil(chunk);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut total = Duration::ZERO;
                    for i in 0..chunks {
                        let n = chunk.min(iters - i * chunk);
                        start.wait();
                        let t = Instant::now();
                        let kept = (0..n).filter(|_| capture()).count() as u64;
                        total += t.elapsed();
                        assert_eq!(kept, n, "every sampled-in capture was kept");
                        done.wait();
                    }
                    total
                })
            })
            .collect();
        for _ in 0..chunks {
            start.wait();
            done.wait();
            drain();
        }
        let sum: Duration = workers.into_iter().map(|w| w.join().expect("worker")).sum();
        sum / 2
    })
}

criterion_group!(benches, bench);
criterion_main!(benches);
