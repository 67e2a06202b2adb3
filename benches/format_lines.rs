//! Writes N lines of one serializer shape (the `format` bench's shapes) and
//! prints the bytes written: a fixed amount of work for instruction counts,
//! which stay the same from run to run where timings on a shared host do not.
//!
//! `valgrind --tool=callgrind target/release/format-lines csv_1k_pair 2000`,
//! minus the same with 0 lines, divided by 2000: instructions per line.

use capline::format::LineWriter;
use capline_benches::{format_rules, format_shapes};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: format-lines SHAPE LINES (shapes: {:?})", names());
        std::process::exit(2);
    };
    let Some(shape) = format_shapes().into_iter().find(|s| s.name == name) else {
        eprintln!("no shape {name}; shapes: {:?}", names());
        std::process::exit(2);
    };
    let mut writer = LineWriter::new(format_rules(), false);
    let event = shape.event([7; 16]);
    let mut out = Vec::with_capacity(1 << 20);
    let mut total = 0u64;
    for _ in 0..n {
        out.clear();
        writer.write(&mut out, std::hint::black_box(&event));
        total += out.len() as u64;
    }
    println!("{total} bytes in {n} lines of {name}");
}

fn names() -> Vec<&'static str> {
    format_shapes().iter().map(|s| s.name).collect()
}
