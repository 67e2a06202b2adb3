//! Writes N lines of one serializer shape (the `format` bench's shapes) and
//! prints the bytes written: a fixed amount of work for instruction counts,
//! which stay the same from run to run where timings on a shared host do not.
//!
//! `valgrind --tool=callgrind target/release/format-lines csv_1k_pair 2000`,
//! minus the same with 0 lines, divided by 2000: instructions per line.

use capline::config::ContentTypes;
use capline::format::{EncodingRules, Event, LineWriter, Payload, Timestamp};
use capline_benches::format_shapes;

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
    let rules = EncodingRules::new(Some(ContentTypes {
        csv: vec!["text/csv".into()],
        json: vec!["application/json".into()],
    }));
    let writer = LineWriter::new(rules, false);
    let event = Event {
        input: Some(Payload::new(shape.request_type, &shape.request)),
        output: Some(Payload::new(shape.response_type, &shape.response)),
        event_id: [7; 16],
        inference_id: None,
        time: Timestamp::from_unix_millis(1_705_692_477_000).expect("a valid time"),
    };
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
