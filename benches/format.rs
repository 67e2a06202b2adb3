//! Serializer throughput: capline's `LineWriter` beside serde_json writing the
//! same SageMaker record (same bytes out), in the same criterion group.
//!
//! `cargo bench -p capline-benches --bench format`

use base64::Engine as _;
use capline::format::{Encoding, EncodingRules, LineWriter, Payload};
use capline_benches::{Shape, format_rules, format_shapes};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::Serialize;
use std::hint::black_box;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    capture_data: CaptureData<'a>,
    event_metadata: Metadata<'a>,
    event_version: &'a str,
}
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CaptureData<'a> {
    endpoint_input: Side<'a>,
    endpoint_output: Side<'a>,
}
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Side<'a> {
    observed_content_type: &'a str,
    mode: &'a str,
    data: std::borrow::Cow<'a, str>,
    encoding: &'a str,
}
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    event_id: &'a str,
    inference_time: &'a str,
}

fn side<'a>(rules: &EncodingRules, ct: &'a str, mode: &'a str, data: &'a [u8]) -> Side<'a> {
    let enc = rules.encoding(&Payload::new(ct, data));
    let text = match enc {
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .encode(data)
            .into(),
        _ => std::borrow::Cow::Borrowed(std::str::from_utf8(data).unwrap_or_default()),
    };
    Side {
        observed_content_type: ct,
        mode,
        data: text,
        encoding: enc.as_str(),
    }
}

/// The straightforward serde_json version: same rule, same bytes.
fn serde_line(out: &mut Vec<u8>, rules: &EncodingRules, s: &Shape) {
    let line = Line {
        capture_data: CaptureData {
            endpoint_input: side(rules, s.request_type, "INPUT", &s.request),
            endpoint_output: side(rules, s.response_type, "OUTPUT", &s.response),
        },
        event_metadata: Metadata {
            event_id: "7ddb2d7c-4d6a-4e67-a68e-23870399829d",
            inference_time: "2024-01-19T19:27:57Z",
        },
        event_version: "0",
    };
    serde_json::to_writer(&mut *out, &line).expect("serialize");
    out.push(b'\n');
}

fn bench(c: &mut Criterion) {
    let rules = format_rules();
    let mut writer = LineWriter::new(rules.clone(), false);
    let mut group = c.benchmark_group("format");
    for shape in format_shapes() {
        let event =
            shape.event(*b"\x7d\xdb\x2d\x7c\x4d\x6a\x4e\x67\xa6\x8e\x23\x87\x03\x99\x82\x9d");
        // Both produce the same line.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        writer.write(&mut a, &event);
        serde_line(&mut b, &rules, &shape);
        assert_eq!(a, b, "{}: capline and serde_json lines differ", shape.name);

        group.throughput(Throughput::Bytes(shape.bytes()));
        let mut out = Vec::with_capacity(64 * 1024);
        group.bench_function(format!("{}/capline", shape.name), |bch| {
            bch.iter(|| {
                out.clear();
                writer.write(&mut out, black_box(&event));
                black_box(out.len())
            })
        });
        group.bench_function(format!("{}/serde_json", shape.name), |bch| {
            bch.iter(|| {
                out.clear();
                serde_line(&mut out, &rules, black_box(&shape));
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
