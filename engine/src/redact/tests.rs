use super::*;
use crate::config::{CaptureMode, ContentTypes, DEFAULT_MARKER, parse_json_path};

fn rules(paths: &[&str], columns: &[usize], patterns: &[&str]) -> Redaction {
    Redaction {
        json_paths: paths.iter().map(|p| parse_json_path(p).unwrap()).collect(),
        csv_columns: columns.to_vec(),
        patterns: patterns.iter().map(|p| p.to_string()).collect(),
        apply: CaptureMode::InputAndOutput,
        on_unparsable: OnUnparsable::Keep,
        marker: DEFAULT_MARKER.into(),
    }
}

fn encodings() -> EncodingRules {
    EncodingRules::new(Some(ContentTypes {
        csv: vec!["text/csv".into()],
        json: vec!["application/json".into()],
    }))
}

/// The input body after redaction, and the verdict.
fn run(r: &Redaction, content_type: &str, body: &[u8]) -> (Vec<u8>, Verdict) {
    let mut red = Redactor::new(r, encodings()).unwrap();
    let v = red.apply(Some(Payload::new(content_type, body)), None);
    let (input, _) = red.view(Some(Payload::new(content_type, body)), None);
    (input.unwrap().data.to_vec(), v)
}

fn text(r: &Redaction, content_type: &str, body: &str) -> (String, Verdict) {
    let (b, v) = run(r, content_type, body.as_bytes());
    (String::from_utf8(b).unwrap(), v)
}

#[test]
fn nested_json_fields_become_the_marker_and_the_rest_stays_byte_for_byte() {
    let r = rules(&["$.customer.email", "$.items[*].card", "$..ssn"], &[], &[]);
    let body = r#"{ "customer": {"email" :"a@b.c", "name":"Ann"},
  "items": [{"card": 4111111111111111, "n": 1.50}, {"card": {"no": "x"}}, {"n": 2e3}],
  "deep": [[{"ssn": "123-45-6789"}]], "ssn": null }"#;
    let (out, v) = text(&r, "application/json", body);
    assert_eq!(v, Verdict::Redacted);
    let want = r#"{ "customer": {"email" :"[REDACTED]", "name":"Ann"},
  "items": [{"card": "[REDACTED]", "n": 1.50}, {"card": "[REDACTED]"}, {"n": 2e3}],
  "deep": [[{"ssn": "[REDACTED]"}]], "ssn": "[REDACTED]" }"#;
    assert_eq!(out, want);
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed["items"][0]["n"], serde_json::json!(1.5));
}

#[test]
fn json_keys_with_escapes_and_indexes_match() {
    let r = rules(&["$[\"e-mail\"]", "$.list[1]", "$.k\u{e9}y"], &[], &[]);
    let body = r#"{"e-mail":"x","list":[1,2,3],"k\u00e9y":true,"e\u002dmail":"y"}"#;
    let (out, _) = text(&r, "application/json", body);
    assert_eq!(
        out,
        r#"{"e-mail":"[REDACTED]","list":[1,"[REDACTED]",3],"k\u00e9y":"[REDACTED]","e\u002dmail":"[REDACTED]"}"#
    );
}

#[test]
fn a_json_body_without_a_match_is_unchanged() {
    let r = rules(&["$.secret"], &[], &[]);
    let body = r#"{"a": [1, 2, {"b": "secret"}]}"#;
    let (out, v) = text(&r, "application/json", body);
    assert_eq!((out.as_str(), v), (body, Verdict::Unchanged));
}

#[test]
fn csv_columns_in_every_row_quoted_or_not() {
    let r = rules(&[], &[0, 2], &[]);
    let body = "ann,34,\"12 Main St, Springfield\",x\r\nbob,,\"say \"\"hi\"\"\",y\n\n,5,,z";
    let (out, v) = text(&r, "text/csv", body);
    assert_eq!(v, Verdict::Redacted);
    assert_eq!(
        out,
        "[REDACTED],34,[REDACTED],x\r\n[REDACTED],,[REDACTED],y\n\n,5,,z"
    );
}

#[test]
fn patterns_inside_json_strings_csv_fields_and_text() {
    let r = rules(&[], &[], &[r"\d{3}-\d{2}-\d{4}", r"[a-z]+@[a-z]+\.com"]);
    let (out, _) = text(
        &r,
        "application/json",
        r#"{"note":"ssn 123-45-6789, mail ann@ex.com","n":123456789,"k\"q":"x\u0022 999-99-9999"}"#,
    );
    assert_eq!(
        out, r#"{"note":"ssn [REDACTED], mail [REDACTED]","n":123456789,"k\"q":"x\" [REDACTED]"}"#,
        "numbers and keys are not text; an escaped string is escaped anew"
    );
    let (out, _) = text(&r, "text/csv", "1,\"ann@ex.com, \"\"x\"\"\",123-45-6789\n");
    assert_eq!(out, "1,\"[REDACTED], \"\"x\"\"\",[REDACTED]\n");
    let (out, _) = text(&r, "text/plain", "call 123-45-6789\n");
    assert_eq!(out, "call [REDACTED]\n");
}

#[test]
fn binary_bodies_are_never_touched() {
    let r = rules(&["$.a"], &[0], &["x"]);
    let body = b"x\xff{\"a\":1}";
    let (out, v) = run(&r, "application/octet-stream", body);
    assert_eq!((out.as_slice(), v), (&body[..], Verdict::Unchanged));
}

#[test]
fn unparsable_bodies_are_kept_whole_or_dropped() {
    let mut r = rules(&["$.a"], &[1], &["secret"]);
    for (ct, body) in [
        ("application/json", &b"{\"a\": 1,"[..]),
        ("application/json", b"{\"a\": \"\xff\"}"),
        ("text/csv", b"1,\"open"),
        ("text/csv", b"1,\"q\"x,2"),
    ] {
        let (out, v) = run(&r, ct, body);
        assert_eq!(
            (out.as_slice(), v),
            (body, Verdict::KeptUnparsable(false)),
            "{ct} {body:?}"
        );
    }
    let (out, v) = text(&r, "application/json", "{\"a\": secret");
    assert_eq!(
        (out.as_str(), v),
        ("{\"a\": [REDACTED]", Verdict::KeptUnparsable(true)),
        "kept bodies still get the patterns as text"
    );
    r.on_unparsable = OnUnparsable::Drop;
    assert_eq!(run(&r, "application/json", b"[1,]").1, Verdict::Drop);
    assert_eq!(
        run(&r, "application/json", b"{\"a\":2}").1,
        Verdict::Redacted
    );
}

#[test]
fn apply_selects_the_payloads() {
    let mut r = rules(&["$.a"], &[], &[]);
    r.apply = CaptureMode::Output;
    let mut red = Redactor::new(&r, encodings()).unwrap();
    let input = Payload::new("application/json", br#"{"a":1}"#);
    let output = Payload::new("application/json", br#"{"a":2}"#);
    assert_eq!(red.apply(Some(input), Some(output)), Verdict::Redacted);
    let (i, o) = red.view(Some(input), Some(output));
    assert_eq!(i.unwrap().data, br#"{"a":1}"#);
    assert_eq!(o.unwrap().data, br#"{"a":"[REDACTED]"}"#);
}

#[test]
fn json_scanner_agrees_with_a_json_parser() {
    let r = rules(&["$.zz"], &[], &[]);
    for body in [
        "1",
        "-0.5e+3",
        "\"x\"",
        "[]",
        "{}",
        " [1, {\"a\": [true, false, null]}] ",
        "01",
        "1.",
        "-",
        "[1 2]",
        "{\"a\" 1}",
        "{\"a\":1,}",
        "\"\\x\"",
        "\"a\nb\"",
        "[",
        "nul",
        "\"\\ud83d\\ude00\"",
        "1 2",
        "",
    ] {
        let ok = serde_json::from_str::<serde_json::Value>(body).is_ok();
        let (_, v) = text(&r, "application/json", body);
        assert_eq!(v == Verdict::Unchanged, ok, "{body:?}");
    }
    let deep = "[".repeat(200) + &"]".repeat(200);
    assert_eq!(
        text(&r, "application/json", &deep).1,
        Verdict::KeptUnparsable(false)
    );
}

#[test]
fn anchored_patterns_apply_to_each_field_and_string() {
    let r = rules(&[], &[], &[r"^\d{9}$", r"\bx\b"]);
    let (out, _) = text(&r, "text/csv", "123456789,1234567890,x y,\"x\"\n");
    assert_eq!(out, "[REDACTED],1234567890,[REDACTED] y,\"[REDACTED]\"\n");
    let (out, _) = text(
        &r,
        "application/json",
        r#"{"a":"123456789","b":"0123456789","c":"x"}"#,
    );
    assert_eq!(
        out,
        r#"{"a":"[REDACTED]","b":"0123456789","c":"[REDACTED]"}"#
    );
    // A pattern ruled out by one search of the body leaves it alone.
    let r = rules(&[], &[0], &["secret"]);
    let (out, v) = text(&r, "text/csv", "a,b\nc,d\n");
    assert_eq!(
        (out.as_str(), v),
        ("[REDACTED],b\n[REDACTED],d\n", Verdict::Redacted)
    );
}
