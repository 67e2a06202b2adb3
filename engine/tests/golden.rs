//! Golden format test: every public SageMaker sample line is re-serialized
//! byte for byte from its parsed parts.

use capline::config::ContentTypes;
use capline::format::check::parse_line;
use capline::format::{EncodingRules, Event, LineWriter};

const SAMPLES: &str = include_str!("data/sagemaker-capture-samples.jsonl");

/// The SageMaker Python SDK's default content-type lists, which these endpoints used.
fn sdk_rules() -> EncodingRules {
    EncodingRules::new(Some(ContentTypes {
        csv: vec!["text/csv".into()],
        json: vec!["application/json".into()],
    }))
}

#[test]
fn samples_reserialize_byte_for_byte() {
    let rules = sdk_rules();
    let mut n = 0;
    for (i, line) in SAMPLES.lines().enumerate() {
        let rec = parse_line(line.as_bytes(), Some(&rules))
            .unwrap_or_else(|e| panic!("sample {}: {e}", i + 1));
        let mut writer = LineWriter::new(rules.clone(), rec.time_has_millis);
        let mut out = Vec::new();
        writer.write(
            &mut out,
            &Event {
                input: rec.input.as_ref().map(|p| p.as_payload()),
                output: rec.output.as_ref().map(|p| p.as_payload()),
                event_id: rec.event_id,
                inference_id: rec.inference_id.as_deref(),
                time: rec.time,
            },
        );
        let expected = format!("{line}\n");
        assert_eq!(
            String::from_utf8_lossy(&out),
            expected,
            "sample {} differs",
            i + 1
        );
        n += 1;
    }
    assert_eq!(n, 4, "all four public samples were checked");
}

#[test]
fn inference_id_sits_between_event_id_and_time() {
    let rules = sdk_rules();
    let mut out = Vec::new();
    let rec = parse_line(SAMPLES.lines().nth(3).unwrap().as_bytes(), Some(&rules)).unwrap();
    LineWriter::new(rules, false).write(
        &mut out,
        &Event {
            input: rec.input.as_ref().map(|p| p.as_payload()),
            output: None,
            event_id: rec.event_id,
            inference_id: Some("7"),
            time: rec.time,
        },
    );
    let line = String::from_utf8(out).unwrap();
    assert!(
        line.contains(r#""eventMetadata":{"eventId":"7ddb2d7c-4d6a-4e67-a68e-23870399829d","inferenceId":"7","inferenceTime":"2024-01-19T19:27:57Z"},"eventVersion":"0"}"#),
        "{line}"
    );
    assert!(
        !line.contains("endpointOutput"),
        "Input mode writes only endpointInput"
    );
}
