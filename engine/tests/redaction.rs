//! Redaction end to end through a real engine on the real filesystem: what
//! reaches the destination has the configured values replaced and every
//! other byte as captured; unparsable bodies are kept or dropped and
//! counted; bad rules are config errors naming their field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use capline::format::check::{ParsedRecord, parse_line};
use capline::{Capture, Config, Engine, Outcome, Payload};

fn config(dir: &Path, redaction: &str) -> Result<Config, capline::ConfigError> {
    Config::from_json(&format!(
        r#"{{"EndpointName":"e","DataCaptureConfig":{{
            "InitialSamplingPercentage":100,"DestinationS3Uri":"file://{}/dest",
            "CaptureOptions":[{{"CaptureMode":"Input"}},{{"CaptureMode":"Output"}}],
            "CaptureContentTypeHeader":{{"CsvContentTypes":["text/csv"],"JsonContentTypes":["application/json"]}}}},
          "Engine":{{"SpoolDir":"{}/spool","Redaction":{redaction}}}}}"#,
        dir.display(),
        dir.display()
    ))
}

fn records(dir: &Path) -> Vec<ParsedRecord> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut files = Vec::new();
    walk(&dir.join("dest"), &mut files);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read(&f).unwrap();
        for line in text.strip_suffix(b"\n").unwrap().split(|&b| b == b'\n') {
            out.push(parse_line(line, None).unwrap());
        }
    }
    out.sort_by(|a, b| a.inference_id.cmp(&b.inference_id));
    out
}

fn capture(engine: &Engine, id: &str, ct: &str, req: &[u8], resp: &[u8]) {
    let c = Capture {
        request: Payload::new(ct, req),
        response: Payload::new(ct, resp),
        inference_id: Some(id),
        time: None,
    };
    assert_eq!(engine.capture(&c), Outcome::Kept);
}

#[test]
fn json_fields_csv_columns_and_patterns_are_replaced_before_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        r#"{"JsonPaths":["$.customer.email","$..ssn"],"CsvColumns":[1],
            "Patterns":["\\b\\d{4}-\\d{4}-\\d{4}-\\d{4}\\b"]}"#,
    )
    .unwrap();
    let engine = Engine::start(cfg).unwrap();
    let json_in = br#"{"customer":{"email":"ann@example.com","id":7},"rows":[{"ssn":"123-45-6789","x":1.0}],"note":"card 1234-5678-9012-3456"}"#;
    let json_out = br#"{"score":0.25,"ssn":null}"#;
    capture(&engine, "1-json", "application/json", json_in, json_out);
    capture(
        &engine,
        "2-csv",
        "text/csv",
        b"7,ann@example.com,3.5\n8,\"Bob, Jr.\",1\n",
        b"0.9\n",
    );
    capture(
        &engine,
        "3-text",
        "text/plain",
        b"pay 1234-5678-9012-3456 now",
        b"ok",
    );
    let bin = [0u8, 1, 2, 0xff, b'1', b'2'];
    capture(&engine, "4-bin", "application/x-npy", &bin, &bin);
    // Not JSON under a JSON type: kept whole (the default), patterns applied.
    capture(
        &engine,
        "5-bad",
        "application/json",
        b"{\"ssn\": 1234-5678-9012-3456",
        b"[]",
    );
    let stats = engine.shutdown(Duration::from_secs(30)).unwrap();
    assert_eq!(stats.records_written, 5);
    assert_eq!(stats.records_redacted, 4, "{stats:?}");
    assert_eq!(stats.redaction_unparsable, 1, "{stats:?}");

    let recs = records(tmp.path());
    let body = |i: usize, input: bool| {
        let p = if input {
            &recs[i].input
        } else {
            &recs[i].output
        };
        String::from_utf8(p.as_ref().unwrap().data.clone()).unwrap()
    };
    assert_eq!(
        body(0, true),
        r#"{"customer":{"email":"[REDACTED]","id":7},"rows":[{"ssn":"[REDACTED]","x":1.0}],"note":"card [REDACTED]"}"#
    );
    assert_eq!(body(0, false), r#"{"score":0.25,"ssn":"[REDACTED]"}"#);
    assert_eq!(body(1, true), "7,[REDACTED],3.5\n8,[REDACTED],1\n");
    assert_eq!(
        body(1, false),
        "0.9\n",
        "column 1 of a one-column body: nothing"
    );
    assert_eq!(body(2, true), "pay [REDACTED] now");
    assert_eq!(recs[3].input.as_ref().unwrap().data, bin);
    assert_eq!(body(4, true), "{\"ssn\": [REDACTED]");
    // The lines stay valid SageMaker records; JSON bodies stay JSON.
    let json: serde_json::Value = serde_json::from_str(&body(0, true)).unwrap();
    assert_eq!(json["rows"][0]["x"], serde_json::json!(1.0));
}

#[test]
fn unparsable_bodies_can_drop_their_records_with_exact_accounting() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        r#"{"JsonPaths":["$.a"],"OnUnparsable":"Drop","Apply":"Input","Marker":"***"}"#,
    )
    .unwrap();
    let engine = Engine::start(cfg).unwrap();
    for i in 0..100 {
        let req: &[u8] = if i % 4 == 0 {
            b"{\"a\":"
        } else {
            b"{\"a\":\"x\"}"
        };
        // Output is not redacted (Apply: Input): a broken output is fine.
        capture(
            &engine,
            &format!("{i:03}"),
            "application/json",
            req,
            b"{broken",
        );
    }
    let stats = engine.shutdown(Duration::from_secs(30)).unwrap();
    assert_eq!(stats.kept, 100);
    assert_eq!(stats.dropped_unparsable, 25);
    assert_eq!(stats.redaction_unparsable, 25);
    assert_eq!(stats.records_written, 75);
    assert_eq!(stats.records_redacted, 75);
    assert_eq!(
        stats.kept,
        stats.records_written + stats.dropped_unparsable + stats.dropped_io_error
    );
    let recs = records(tmp.path());
    assert_eq!(recs.len(), 75);
    for r in &recs {
        assert_eq!(r.input.as_ref().unwrap().data, br#"{"a":"***"}"#);
        assert_eq!(r.output.as_ref().unwrap().data, b"{broken");
    }
    let text = capline::stats::prometheus_text(&[(&[], &stats)]);
    assert!(
        text.contains("capline_dropped_total{reason=\"unparsable\"} 25"),
        "{text}"
    );
    assert!(text.contains("capline_records_redacted_total 75"), "{text}");
}

#[test]
fn bad_rules_are_config_errors_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    for (rules, field) in [
        (r#"{"JsonPaths":["a.b"]}"#, "Engine.Redaction.JsonPaths[0]"),
        (
            r#"{"JsonPaths":["$.a","$.b["]}"#,
            "Engine.Redaction.JsonPaths[1]",
        ),
        (r#"{"CsvColumns":[-1]}"#, "Engine.Redaction.CsvColumns[0]"),
        (
            r#"{"Patterns":["(unclosed"]}"#,
            "Engine.Redaction.Patterns[0]",
        ),
        (r#"{"Patterns":["x*"]}"#, "Engine.Redaction.Patterns[0]"),
        (
            r#"{"Patterns":["x"],"Marker":"a,b"}"#,
            "Engine.Redaction.Marker",
        ),
        (
            r#"{"Patterns":["x"],"OnUnparsable":"Maybe"}"#,
            "Engine.Redaction.OnUnparsable",
        ),
        (
            r#"{"Patterns":["x"],"Apply":"Both"}"#,
            "Engine.Redaction.Apply",
        ),
        (
            r#"{"Patterns":["x"],"Colums":[1]}"#,
            "Engine.Redaction.Colums",
        ),
        (r#"{}"#, "Engine.Redaction"),
        (r#"[]"#, "Engine.Redaction"),
    ] {
        let e = config(tmp.path(), rules).unwrap_err();
        assert_eq!(e.field, field, "{rules}: {e}");
    }
}
