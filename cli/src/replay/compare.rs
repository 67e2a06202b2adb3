//! Whether a replayed answer matches the captured one: byte for byte, or,
//! with a tolerance, number by number in JSON and CSV bodies.

use simd_json::OwnedValue as Value;
use simd_json::prelude::*;

/// How a new answer compares with the captured one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// The same bytes.
    Exact,
    /// Not the same bytes, but the same values: every number within the
    /// tolerance, everything else equal.
    WithinTolerance,
    /// Different: where, and how.
    Mismatch(String),
}

/// Numbers `a` and `b` are equal within `tol` when
/// `|a − b| ≤ tol × max(1, |a|, |b|)`: absolute near zero, relative above one.
pub(crate) fn close(a: f64, b: f64, tol: f64) -> bool {
    if a == b {
        return true;
    }
    (a - b).abs() <= tol * 1f64.max(a.abs()).max(b.abs())
}

/// Compares `new` with `old`, both of `content_type` (the captured output's).
/// Without a tolerance only the bytes count. With one, JSON bodies are
/// compared as values (object keys in any order) and CSV or other text
/// bodies field by field (fields split at commas and line ends).
pub(crate) fn compare(old: &[u8], new: &[u8], content_type: &str, tol: Option<f64>) -> Verdict {
    if old == new {
        return Verdict::Exact;
    }
    let Some(tol) = tol else {
        return Verdict::Mismatch(first_difference(old, new));
    };
    let ct = content_type.to_ascii_lowercase();
    let result = if ct.contains("json") {
        match (parse_json(old), parse_json(new)) {
            (Some(a), Some(b)) => json_equal(&a, &b, tol, &mut String::from("$")),
            (Some(_), None) => Err("the new answer is not JSON".into()),
            (None, _) => text_equal(old, new, tol),
        }
    } else if let (Ok(a), Ok(b)) = (std::str::from_utf8(old), std::str::from_utf8(new)) {
        csv_equal(a, b, tol)
    } else {
        Err(first_difference(old, new))
    };
    match result {
        Ok(()) => Verdict::WithinTolerance,
        Err(why) => Verdict::Mismatch(why),
    }
}

fn parse_json(bytes: &[u8]) -> Option<Value> {
    let mut buf = bytes.to_vec();
    simd_json::to_owned_value(&mut buf).ok()
}

fn text_equal(old: &[u8], new: &[u8], tol: f64) -> Result<(), String> {
    match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(a), Ok(b)) => csv_equal(a, b, tol),
        _ => Err(first_difference(old, new)),
    }
}

/// Where two byte strings first differ, for a report.
fn first_difference(old: &[u8], new: &[u8]) -> String {
    let at = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    if at == old.len().min(new.len()) {
        format!(
            "lengths differ: {} bytes captured, {} now",
            old.len(),
            new.len()
        )
    } else {
        format!("bytes differ from offset {at}")
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_i64().map(|n| n as f64))
        .or_else(|| v.as_u64().map(|n| n as f64))
}

fn json_equal(a: &Value, b: &Value, tol: f64, at: &mut String) -> Result<(), String> {
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return if close(x, y, tol) {
            Ok(())
        } else {
            Err(format!("at {at}: {x} captured, {y} now"))
        };
    }
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!(
                    "at {at}: {} items captured, {} now",
                    x.len(),
                    y.len()
                ));
            }
            for (i, (p, q)) in x.iter().zip(y.iter()).enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                json_equal(p, q, tol, at)?;
                at.truncate(len);
            }
            Ok(())
        }
        (Value::Object(x), Value::Object(y)) => {
            if let Some(k) = x.keys().find(|k| !y.contains_key(*k)) {
                return Err(format!("at {at}: field {k:?} is gone"));
            }
            if let Some(k) = y.keys().find(|k| !x.contains_key(*k)) {
                return Err(format!("at {at}: field {k:?} is new"));
            }
            for (k, p) in x.iter() {
                let len = at.len();
                at.push('.');
                at.push_str(k);
                json_equal(p, &y[k.as_str()], tol, at)?;
                at.truncate(len);
            }
            Ok(())
        }
        _ if a == b => Ok(()),
        _ => Err(format!(
            "at {at}: {} captured, {} now",
            a.encode(),
            b.encode()
        )),
    }
}

fn csv_equal(a: &str, b: &str, tol: f64) -> Result<(), String> {
    let rows_a: Vec<&str> = a.trim_end().lines().collect();
    let rows_b: Vec<&str> = b.trim_end().lines().collect();
    if rows_a.len() != rows_b.len() {
        return Err(format!(
            "{} rows captured, {} now",
            rows_a.len(),
            rows_b.len()
        ));
    }
    for (r, (x, y)) in rows_a.iter().zip(&rows_b).enumerate() {
        let fx: Vec<&str> = x.split(',').map(str::trim).collect();
        let fy: Vec<&str> = y.split(',').map(str::trim).collect();
        if fx.len() != fy.len() {
            return Err(format!(
                "row {}: {} fields captured, {} now",
                r + 1,
                fx.len(),
                fy.len()
            ));
        }
        for (c, (p, q)) in fx.iter().zip(&fy).enumerate() {
            let same = match (p.parse::<f64>(), q.parse::<f64>()) {
                (Ok(m), Ok(n)) => close(m, n, tol),
                _ => p == q,
            };
            if !same {
                return Err(format!(
                    "row {} field {}: {p} captured, {q} now",
                    r + 1,
                    c + 1
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_needs_the_same_bytes() {
        assert_eq!(compare(b"1,2", b"1,2", "text/csv", None), Verdict::Exact);
        assert!(matches!(
            compare(b"0.5", b"0.50", "text/csv", None),
            Verdict::Mismatch(_)
        ));
        assert_eq!(
            compare(b"0.5", b"0.50", "text/csv", Some(0.0)),
            Verdict::WithinTolerance,
            "the same number written differently"
        );
    }

    #[test]
    fn csv_numbers_within_the_tolerance() {
        let t = Some(1e-3);
        assert_eq!(
            compare(b"0.5000,a\n2\n", b"0.5004,a\n2\n", "text/csv", t),
            Verdict::WithinTolerance
        );
        assert!(
            matches!(compare(b"0.5,a", b"0.51,a", "text/csv", t), Verdict::Mismatch(m) if m.contains("row 1 field 1"))
        );
        assert!(
            matches!(compare(b"0.5,a", b"0.5,b", "text/csv", t), Verdict::Mismatch(m) if m.contains("field 2"))
        );
        assert!(
            matches!(compare(b"1\n2\n", b"1\n", "text/csv", t), Verdict::Mismatch(m) if m.contains("rows"))
        );
        // Relative above one, absolute below.
        assert!(close(1000.0, 1000.9, 1e-3));
        assert!(!close(1000.0, 1002.0, 1e-3));
        assert!(close(0.0, 0.0009, 1e-3));
        assert!(!close(0.0, 0.002, 1e-3));
    }

    #[test]
    fn json_values_within_the_tolerance() {
        let t = Some(1e-3);
        let ct = "application/json";
        assert_eq!(
            compare(
                br#"{"a":[1,2.0001],"b":"x"}"#,
                br#"{"b":"x","a":[1.0,2]}"#,
                ct,
                t
            ),
            Verdict::WithinTolerance
        );
        let m = compare(
            br#"{"p":[{"s":0.1},{"s":0.2}]}"#,
            br#"{"p":[{"s":0.1},{"s":0.3}]}"#,
            ct,
            t,
        );
        assert!(
            matches!(&m, Verdict::Mismatch(w) if w.contains("$.p[1].s")),
            "{m:?}"
        );
        assert!(
            matches!(compare(br#"{"a":1}"#, br#"{"a":1,"b":2}"#, ct, t), Verdict::Mismatch(w) if w.contains("new"))
        );
        assert!(matches!(
            compare(br#"{"a":"x"}"#, br#"{"a":"y"}"#, ct, t),
            Verdict::Mismatch(_)
        ));
        assert!(
            matches!(compare(br#"[1]"#, b"oops", ct, t), Verdict::Mismatch(w) if w.contains("not JSON"))
        );
    }

    #[test]
    fn binary_bodies_compare_by_bytes() {
        let m = compare(&[0xff, 1, 2], &[0xff, 1, 3], "application/x-npy", Some(0.1));
        assert!(matches!(m, Verdict::Mismatch(w) if w.contains("offset 2")));
    }
}
