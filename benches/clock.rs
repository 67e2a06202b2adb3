//! The clocks the capture path can stamp a record with, read as it reads
//! them (see `engine/src/clock.rs`): the coarse wall clock, which it reads by
//! default, beside the CPU counter it reads with `InferenceTimeMillis` and
//! `SystemTime::now()`, which it read at first. Each is turned into a `u64`
//! as the capture path stores it.
//!
//! `cargo bench -p capline-benches --bench clock`

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use rustix::time::{ClockId, clock_gettime};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("clock");
    g.bench_function("coarse", |b| {
        b.iter(|| {
            let t = clock_gettime(black_box(ClockId::RealtimeCoarse));
            u64::try_from(t.tv_sec).map_or(0, |s| s * 1000 + t.tv_nsec as u64 / 1_000_000)
        })
    });
    let counter = quanta::Clock::new();
    g.bench_function("counter", |b| b.iter(|| black_box(&counter).raw()));
    g.bench_function("system_time", |b| {
        b.iter(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
