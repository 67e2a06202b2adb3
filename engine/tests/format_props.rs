//! Property tests: arbitrary bytes and content types serialize to a line that
//! an independent parser (serde_json) accepts, with no raw control characters,
//! and whose `data` decodes back to the exact bytes.

use capline::config::ContentTypes;
use capline::format::check::parse_line;
use capline::format::{EncodingRules, Event, LineWriter, Payload, Timestamp};
use proptest::prelude::*;

fn rules() -> EncodingRules {
    EncodingRules::new(Some(ContentTypes {
        csv: vec!["text/csv".into()],
        json: vec!["application/json".into()],
    }))
}

// The independent decoder the fuzz check uses.
#[path = "../../fuzz/checks/serialize_record.rs"]
#[allow(dead_code)]
mod fuzz_check;
use fuzz_check::decoded;

fn content_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("text/csv".to_string()),
        Just("text/CSV; charset=utf-8".to_string()),
        Just("application/json".to_string()),
        Just("application/x-npy".to_string()),
        any::<String>(),
        "[ -~]{0,40}",
    ]
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        any::<String>().prop_map(String::into_bytes),
        "[\\x00-\\x7f]{0,64}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn lines_parse_and_round_trip(
        in_ct in content_type(),
        in_data in data(),
        out_ct in content_type(),
        out_data in data(),
        id in proptest::option::of("[!-~][ -~]{0,63}"),
        event_id in any::<[u8; 16]>(),
        millis in 0u64..253_402_300_800_000,
        with_millis in any::<bool>(),
    ) {
        let time = Timestamp::from_unix_millis(millis).unwrap();
        let mut line = Vec::new();
        LineWriter::new(rules(), with_millis).write(&mut line, &Event {
            input: Some(Payload::new(&in_ct, &in_data)),
            output: Some(Payload::new(&out_ct, &out_data)),
            event_id,
            inference_id: id.as_deref(),
            time,
        });
        prop_assert_eq!(line.last(), Some(&b'\n'));
        let body = &line[..line.len() - 1];
        prop_assert!(body.iter().all(|&b| b >= 0x20), "raw control character in line");
        let v: serde_json::Value = serde_json::from_slice(body).expect("serde_json parses the line");
        let cd = &v["captureData"];
        prop_assert_eq!(decoded(&cd["endpointInput"]), in_data.clone());
        prop_assert_eq!(decoded(&cd["endpointOutput"]), out_data.clone());
        prop_assert_eq!(cd["endpointInput"]["observedContentType"].as_str(), Some(in_ct.as_str()));
        prop_assert_eq!(v["eventMetadata"]["inferenceId"].as_str(), id.as_deref());
        // The engine's own reader agrees, including the encoding rule.
        let rec = parse_line(body, Some(&rules())).map_err(TestCaseError::fail)?;
        prop_assert_eq!(rec.input.unwrap().data, in_data);
        let expected_time = if with_millis { time } else { Timestamp { millis: 0, ..time } };
        prop_assert_eq!(rec.time, expected_time);
        prop_assert_eq!(rec.time_has_millis, with_millis);
    }

    #[test]
    fn encoding_follows_the_rule(ct in content_type(), data in data()) {
        let enc = rules().encoding(&Payload::new(&ct, &data));
        let media = ct.split(';').next().unwrap().trim().to_ascii_lowercase();
        let listed = media == "text/csv" || media == "application/json";
        let text = std::str::from_utf8(&data).is_ok();
        prop_assert_eq!(enc.as_str() == "BASE64", !(listed && text));
    }
}

#[test]
fn non_utf8_csv_is_base64() {
    let mut line = Vec::new();
    LineWriter::new(rules(), false).write(
        &mut line,
        &Event {
            input: Some(Payload::new("text/csv", b"1,2,\xff\n")),
            output: Some(Payload::new("application/json", b"{\"a\":1}")),
            event_id: [0; 16],
            inference_id: None,
            time: Timestamp::from_unix_millis(0).unwrap(),
        },
    );
    let text = String::from_utf8(line).unwrap();
    assert!(text.contains(r#""observedContentType":"text/csv","mode":"INPUT","data":"MSwyLP8K","encoding":"BASE64""#), "{text}");
    assert!(
        text.contains(r#""data":"{\"a\":1}","encoding":"JSON""#),
        "{text}"
    );
    assert!(
        text.contains(r#""inferenceTime":"1970-01-01T00:00:00Z""#),
        "{text}"
    );
}

#[test]
fn no_content_type_header_means_base64() {
    let mut line = Vec::new();
    LineWriter::new(EncodingRules::new(None), true).write(
        &mut line,
        &Event {
            input: Some(Payload::new("text/csv", b"a")),
            output: None,
            event_id: [0xab; 16],
            inference_id: None,
            time: Timestamp::from_unix_millis(1_705_692_477_062).unwrap(),
        },
    );
    let text = String::from_utf8(line).unwrap();
    assert_eq!(
        text,
        "{\"captureData\":{\"endpointInput\":{\"observedContentType\":\"text/csv\",\"mode\":\"INPUT\",\"data\":\"YQ==\",\"encoding\":\"BASE64\"}},\"eventMetadata\":{\"eventId\":\"abababab-abab-abab-abab-abababababab\",\"inferenceTime\":\"2024-01-19T19:27:57.062Z\"},\"eventVersion\":\"0\"}\n"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// The escaper writes exactly what serde_json writes for the same string.
    #[test]
    fn escaper_matches_serde_json(s in prop_oneof![any::<String>(), "[\\x00-\\x7f]{0,40}", "[\"\\\\a\\x1f]{0,20}"]) {
        let mut ours = Vec::new();
        capline::format::escape_into(&mut ours, s.as_bytes());
        let theirs = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(String::from_utf8(ours).unwrap(), &theirs[1..theirs.len() - 1]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// `line_len` is the exact length `write` produces, and `max_line_len`
    /// bounds it, for every shape of event (either payload absent, with or
    /// without an inference id, BASE64 or text): segments roll on it.
    #[test]
    fn line_lengths_are_exact_and_bounded(
        in_ct in content_type(),
        in_data in data(),
        out_ct in content_type(),
        out_data in data(),
        has_input in any::<bool>(),
        has_output in any::<bool>(),
        id in proptest::option::of("[!-~][ -~]{0,63}"),
        millis in 0u64..253_402_300_800_000,
        with_millis in any::<bool>(),
        no_types in any::<bool>(),
    ) {
        let rules = if no_types { EncodingRules::new(None) } else { rules() };
        let mut lines = LineWriter::new(rules, with_millis);
        let ev = Event {
            input: has_input.then(|| Payload::new(&in_ct, &in_data)),
            output: has_output.then(|| Payload::new(&out_ct, &out_data)),
            event_id: [7; 16],
            inference_id: id.as_deref(),
            time: Timestamp::from_unix_millis(millis).unwrap(),
        };
        let mut line = Vec::new();
        lines.write(&mut line, &ev);
        prop_assert_eq!(lines.line_len(&ev), line.len());
        prop_assert!(lines.max_line_len(&ev) >= line.len());
    }
}

#[test]
fn the_utf8_check_agrees_with_std_at_every_offset() {
    // Valid and invalid sequences (overlong, surrogate, above U+10FFFF,
    // truncated, stray continuation), each after 0 to 130 ASCII bytes so
    // they cross the SIMD check's block boundaries.
    let tricky: &[&[u8]] = &[
        "é".as_bytes(),
        "€".as_bytes(),
        "😀".as_bytes(),
        b"\xc0\xaf",
        b"\xe0\x80\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
        b"\xf0\x9f\x98",
        b"\x80",
        b"\xff",
    ];
    for pad in 0..130 {
        for seq in tricky {
            for tail in [&b""[..], b"a,b\n", "ü".as_bytes()] {
                let mut data = vec![b'x'; pad];
                data.extend_from_slice(seq);
                data.extend_from_slice(tail);
                assert_eq!(
                    capline::format::is_utf8(&data),
                    std::str::from_utf8(&data).is_ok(),
                    "{data:?}"
                );
            }
        }
    }
}

/// The writer settles UTF-8 while escaping (it validates only a body in
/// which the escaper saw a byte outside ASCII, and escapes bodies over 64 KiB
/// in steps after validating them first): at sizes around the SIMD blocks
/// and that step, valid text stays text and one bad byte anywhere makes the
/// body BASE64, with the line still whole after an earlier line.
#[test]
fn text_or_base64_at_every_size_and_bad_byte_position() {
    let rules = rules();
    // Base64 is encoded 1536 bytes at a time: sizes on each side of one
    // piece and of two.
    for len in [
        0usize, 1, 31, 32, 33, 95, 96, 97, 1535, 1536, 1537, 3071, 3072, 3073, 65_535, 65_536,
        65_537, 200_001,
    ] {
        for case in ["ascii", "utf8", "bad start", "bad middle", "bad end"] {
            let mut data: Vec<u8> = (0..len).map(|i| b"a,\"q\n"[i % 5]).collect();
            if len > 0 {
                let at = match case {
                    "bad start" => 0,
                    "bad end" => len - 1,
                    _ => len / 2,
                };
                match case {
                    "ascii" => {}
                    "utf8" if len >= 2 => data[at - 1..=at].copy_from_slice("é".as_bytes()),
                    "utf8" => continue,
                    _ => data[at] = 0xff,
                }
            }
            let text = std::str::from_utf8(&data).is_ok();
            let mut out = b"earlier line\n".to_vec();
            LineWriter::new(rules.clone(), false).write(
                &mut out,
                &Event {
                    input: Some(Payload::new("text/csv", &data)),
                    output: Some(Payload::new("application/json", &data)),
                    event_id: [7; 16],
                    inference_id: None,
                    time: Timestamp::from_unix_millis(0).unwrap(),
                },
            );
            let line = out.strip_prefix(b"earlier line\n".as_slice()).unwrap();
            let body = &line[..line.len() - 1];
            let rec =
                parse_line(body, Some(&rules)).unwrap_or_else(|e| panic!("{len} {case}: {e}"));
            assert_eq!(rec.input.unwrap().data, data, "{len} {case}");
            assert_eq!(rec.output.unwrap().data, data, "{len} {case}");
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            let enc = v["captureData"]["endpointInput"]["encoding"].as_str();
            assert_eq!(
                enc,
                Some(if text { "CSV" } else { "BASE64" }),
                "{len} {case}"
            );
        }
    }
}

/// Headers built around listed media types: any ASCII case, whitespace of
/// every kind `str::trim` removes (ASCII, the vertical tab, and Unicode
/// such as U+00A0 and U+3000) or does not, and parameters after `;`.
fn header_near_listed() -> impl Strategy<Value = String> {
    let space = prop_oneof![
        Just(""),
        Just(" "),
        Just("\t"),
        Just("\u{0b}"),
        Just("\u{0c}"),
        Just("\r\n"),
        Just("\u{a0}"),
        Just("\u{3000}"),
        Just("\u{200b}"),
    ];
    (
        prop_oneof![
            Just("text/csv"),
            Just("application/json"),
            Just("application/jsonlines"),
            Just("text/cs"),
        ],
        proptest::collection::vec(any::<bool>(), 24),
        space.clone(),
        space,
        prop_oneof![Just(""), Just(";"), Just("; charset=UTF-8"), Just(";q=1;x")],
    )
        .prop_map(|(base, upper, before, after, params)| {
            let base: String = base
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c })
                .collect();
            format!("{before}{base}{after}{params}")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// `encoding_for_type` matches ASCII headers in place; it must pick what
    /// SageMaker's rule, written out (the lower-cased media type compared
    /// with each listed one), picks.
    #[test]
    fn encoding_for_type_is_the_media_type_rule(
        ct in prop_oneof![header_near_listed(), content_type()],
    ) {
        use capline::format::{Encoding, media_type};
        let mt = media_type(&ct);
        let expected = if mt == "text/csv" {
            Encoding::Csv
        } else if mt == "application/json" {
            Encoding::Json
        } else {
            Encoding::Base64
        };
        prop_assert_eq!(rules().encoding_for_type(&ct), expected, "{:?}", ct);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// A writer remembers each side's last content type and the last
    /// second it wrote: over a stream of lines whose content types and
    /// times repeat, change and come back (one of them longer than a writer
    /// remembers), every line is the one a new writer makes for that event.
    #[test]
    fn one_writer_for_many_lines_writes_what_a_new_one_would(
        events in proptest::collection::vec(
            (0usize..6, 0usize..6, data(), 0u64..4, 0u64..1000, any::<bool>(), any::<bool>()),
            1..40,
        ),
        with_millis in any::<bool>(),
        no_types in any::<bool>(),
    ) {
        let long = format!("text/csv; note={}", "x".repeat(1100));
        // "text/csw" is as long as "text/csv", and BASE64.
        let types = ["text/csv", "TEXT/CSV ; charset=utf-8", "application/json", "text/csw", "", long.as_str()];
        let rules = if no_types { EncodingRules::new(None) } else { rules() };
        let mut kept = LineWriter::new(rules.clone(), with_millis);
        for (in_ct, out_ct, data, second, millis, has_input, has_output) in events {
            let ev = Event {
                input: has_input.then(|| Payload::new(types[in_ct], &data)),
                output: has_output.then(|| Payload::new(types[out_ct], &data)),
                event_id: [7; 16],
                inference_id: None,
                time: Timestamp::from_unix_millis(1_705_692_477_000 + second * 1000 + millis).unwrap(),
            };
            let mut ours = b"earlier".to_vec();
            kept.write(&mut ours, &ev);
            let mut fresh = b"earlier".to_vec();
            LineWriter::new(rules.clone(), with_millis).write(&mut fresh, &ev);
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&fresh));
        }
    }
}
