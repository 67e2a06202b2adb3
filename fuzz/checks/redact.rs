//! Fuzz check shared by the `redact` target and the corpus replay test:
//! redaction never panics on any body; a body it leaves alone comes back
//! byte for byte; a JSON body that serde_json (an independent parser) reads
//! is still JSON after redaction, with as many top-level members or items;
//! a CSV body keeps its rows and columns.

use capline::config::{ContentTypes, DEFAULT_MARKER, OnUnparsable, Redaction, parse_json_path};

fn rules() -> Redaction {
    Redaction {
        json_paths: ["$.a", "$..b", "$[*][0]", "$.c.*"]
            .iter()
            .map(|p| parse_json_path(p).expect("path"))
            .collect(),
        csv_columns: vec![0, 2],
        patterns: vec!["[0-9]{3}".into(), "x+y".into(), "\"".into()],
        apply: capline::CaptureMode::InputAndOutput,
        on_unparsable: OnUnparsable::Keep,
        marker: DEFAULT_MARKER.into(),
    }
}

/// Rows and their field counts of an RFC 4180 body (`None` if it does not parse).
fn csv_shape(body: &[u8]) -> Option<Vec<usize>> {
    let mut rows = Vec::new();
    let mut fields = 1;
    let mut i = 0;
    let mut in_row = false;
    while i < body.len() {
        in_row = true;
        if body[i] == b'"' {
            i += 1;
            loop {
                match body.get(i)? {
                    b'"' if body.get(i + 1) == Some(&b'"') => i += 2,
                    b'"' => {
                        i += 1;
                        break;
                    }
                    _ => i += 1,
                }
            }
            if !matches!(body.get(i), None | Some(b',' | b'\n' | b'\r')) {
                return None;
            }
        } else {
            while !matches!(body.get(i), None | Some(b',' | b'\n' | b'\r')) {
                i += 1;
            }
        }
        match body.get(i) {
            Some(b',') => {
                fields += 1;
                i += 1;
            }
            Some(b'\r' | b'\n') => {
                i += if body[i] == b'\r' && body.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rows.push(fields);
                fields = 1;
                in_row = false;
            }
            _ => {}
        }
    }
    if in_row {
        rows.push(fields);
    }
    Some(rows)
}

/// Panics on any violation.
pub fn check(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let content_type = [
        "application/json",
        "text/csv",
        "text/plain",
        "application/x-npy",
    ][usize::from(kind % 4)];
    let types = Some(ContentTypes {
        csv: vec!["text/csv".into()],
        json: vec!["application/json".into()],
    });
    let (out, parsed) =
        capline::fuzzing::redact(&rules(), types, content_type, body).expect("rules compile");
    let utf8 = std::str::from_utf8(body).is_ok();
    if content_type == "application/x-npy" || !utf8 {
        assert_eq!(out, body, "binary and non-UTF-8 bodies are never changed");
        return;
    }
    if content_type == "application/json" {
        // (The scanner also takes what serde_json refuses for its own
        // limits, e.g. lone surrogate escapes; those must not break it.)
        if let Ok(before) = serde_json::from_slice::<serde_json::Value>(body) {
            assert!(parsed, "what serde_json reads, redaction reads");
            let after: serde_json::Value = serde_json::from_slice(&out).expect("still JSON");
            if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
                assert_eq!(b.len(), a.len(), "members kept");
            }
            if let (Some(b), Some(a)) = (before.as_array(), after.as_array()) {
                assert_eq!(b.len(), a.len(), "items kept");
            }
        }
    }
    if content_type == "text/csv"
        && let Some(before) = csv_shape(body)
    {
        assert!(parsed, "a body csv_shape reads parses");
        assert_eq!(csv_shape(&out), Some(before), "rows and columns kept");
    }
    // Plain text: only the patterns apply; with nothing they match, the
    // body comes back as it was.
    if content_type == "text/plain"
        && !body
            .iter()
            .any(|c| c.is_ascii_digit() || b"y\"".contains(c))
    {
        assert_eq!(out, body);
    }
}
