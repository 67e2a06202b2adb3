//! `Engine.Redaction`: what the writer replaces before a record reaches disk.

use simd_json::BorrowedValue as Value;

use super::json::{as_array, as_int_in, as_object, as_str, check_keys, err, get};
use super::{CaptureMode, ConfigError};

/// The marker a redacted value is replaced by, unless `Marker` says otherwise.
pub const DEFAULT_MARKER: &str = "[REDACTED]";

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    /// `.name` or `["name"]`: the member of an object.
    Key(String),
    /// `[N]`: the item of an array.
    Index(u64),
    /// `.*` or `[*]`: any member or item.
    Any,
    /// `..`: zero or more levels (followed by a key, `*` or an index).
    Descend,
}

/// A JSON path such as `$.customer.email`, `$.instances[*][2]` or `$..ssn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    /// The path as written.
    pub text: String,
    /// Its steps after `$`.
    pub steps: Vec<PathStep>,
}

/// What to do with a body that does not parse as its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnparsable {
    /// `Keep` (default): write the body whole; patterns still apply to text.
    Keep,
    /// `Drop`: drop the record (counted as `dropped_unparsable`).
    Drop,
}

/// `Engine.Redaction`.
#[derive(Debug, Clone, PartialEq)]
pub struct Redaction {
    /// `JsonPaths`: values replaced in JSON bodies.
    pub json_paths: Vec<JsonPath>,
    /// `CsvColumns`: 0-based columns replaced in every row of CSV bodies.
    pub csv_columns: Vec<usize>,
    /// `Patterns`: regular expressions (Rust `regex` syntax) whose matches
    /// are replaced in text bodies: inside JSON string values, inside CSV
    /// fields, anywhere in other `text/*` bodies.
    pub patterns: Vec<String>,
    /// `Apply`: which payloads (`Input`, `Output`, `InputAndOutput`, the default).
    pub apply: CaptureMode,
    /// `OnUnparsable`.
    pub on_unparsable: OnUnparsable,
    /// `Marker`: the replacement text (default `[REDACTED]`). In JSON a
    /// replaced value becomes the marker as a JSON string.
    pub marker: String,
}

const KEYS: &[&str] = &[
    "JsonPaths",
    "CsvColumns",
    "Patterns",
    "Apply",
    "OnUnparsable",
    "Marker",
];

/// Parses `$`-rooted JSON path text.
pub fn parse_json_path(text: &str) -> Result<JsonPath, String> {
    let b = text.as_bytes();
    if b.first() != Some(&b'$') {
        return Err("must start with $".into());
    }
    let mut steps = Vec::new();
    let mut i = 1;
    let name_end = |from: usize| {
        b[from..]
            .iter()
            .position(|&c| c == b'.' || c == b'[')
            .map_or(b.len(), |n| from + n)
    };
    while i < b.len() {
        match b[i] {
            b'.' if b.get(i + 1) == Some(&b'.') => {
                steps.push(PathStep::Descend);
                i += 2;
                if i >= b.len() {
                    return Err("`..` must be followed by a name, * or [...]".into());
                }
                if b[i] != b'[' {
                    let end = name_end(i);
                    steps.push(name_step(&text[i..end])?);
                    i = end;
                }
            }
            b'.' => {
                let end = name_end(i + 1);
                steps.push(name_step(&text[i + 1..end])?);
                i = end;
            }
            b'[' => {
                let close = b[i..]
                    .iter()
                    .position(|&c| c == b']')
                    .ok_or("a [ is not closed")?;
                let inner = &text[i + 1..i + close];
                steps.push(bracket_step(inner)?);
                i += close + 1;
            }
            _ => return Err(format!("unexpected {:?} at offset {i}", b[i] as char)),
        }
    }
    if steps.is_empty() {
        return Err("`$` alone would redact the whole body; name a field".into());
    }
    if steps.last() == Some(&PathStep::Descend) {
        return Err("must not end with `..`".into());
    }
    Ok(JsonPath {
        text: text.to_string(),
        steps,
    })
}

fn name_step(name: &str) -> Result<PathStep, String> {
    match name {
        "" => Err("an empty name (use [\"\"] for an empty key)".into()),
        "*" => Ok(PathStep::Any),
        _ => Ok(PathStep::Key(name.to_string())),
    }
}

fn bracket_step(inner: &str) -> Result<PathStep, String> {
    if inner == "*" {
        return Ok(PathStep::Any);
    }
    if let Some(quoted) = inner
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
    {
        return Ok(PathStep::Key(quoted.to_string()));
    }
    inner
        .parse::<u64>()
        .map(PathStep::Index)
        .map_err(|_| format!("[{inner}] must be [N], [*] or [\"name\"]"))
}

/// A `Patterns` entry compiled as redaction runs it: bytes, with a 1 MiB
/// limit on the compiled program.
pub fn compile_pattern(text: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(text)
        .size_limit(1 << 20)
        .build()
}

pub(super) fn parse_redaction(v: &Value) -> Result<Redaction, ConfigError> {
    const P: &str = "Engine.Redaction";
    let obj = as_object(P, v)?;
    check_keys(P, obj, KEYS, "")?;
    let field = |k: &str| format!("{P}.{k}");
    let list = |k: &str| -> Result<&[Value], ConfigError> {
        get(obj, k).map_or(Ok(&[][..]), |v| as_array(&field(k), v, 0, 256))
    };
    let mut json_paths = Vec::new();
    for (i, item) in list("JsonPaths")?.iter().enumerate() {
        let path = format!("{}[{i}]", field("JsonPaths"));
        let text = as_str(&path, item)?;
        json_paths.push(parse_json_path(text).map_err(|rule| err(&path, rule, Some(item)))?);
    }
    let mut csv_columns = Vec::new();
    for (i, item) in list("CsvColumns")?.iter().enumerate() {
        let path = format!("{}[{i}]", field("CsvColumns"));
        csv_columns.push(as_int_in(&path, item, 0, 65_535)? as usize);
    }
    csv_columns.sort_unstable();
    csv_columns.dedup();
    let mut patterns = Vec::new();
    for (i, item) in list("Patterns")?.iter().enumerate() {
        let path = format!("{}[{i}]", field("Patterns"));
        let text = as_str(&path, item)?;
        if text.is_empty() {
            return Err(err(&path, "must not be empty", Some(item)));
        }
        // Compiled here to report a bad pattern with its field; the writer
        // compiles it again with the same function.
        let re = compile_pattern(text).map_err(|e| {
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            err(
                &path,
                format!("is not a valid regular expression: {first}"),
                Some(item),
            )
        })?;
        if re.is_match(b"") {
            return Err(err(&path, "must not match the empty string", Some(item)));
        }
        patterns.push(text.to_string());
    }
    let apply = match get(obj, "Apply") {
        None => CaptureMode::InputAndOutput,
        Some(v) => match as_str(&field("Apply"), v)? {
            "Input" => CaptureMode::Input,
            "Output" => CaptureMode::Output,
            "InputAndOutput" => CaptureMode::InputAndOutput,
            _ => {
                return Err(err(
                    &field("Apply"),
                    "must be Input, Output or InputAndOutput",
                    Some(v),
                ));
            }
        },
    };
    let on_unparsable = match get(obj, "OnUnparsable") {
        None => OnUnparsable::Keep,
        Some(v) => match as_str(&field("OnUnparsable"), v)? {
            "Keep" => OnUnparsable::Keep,
            "Drop" => OnUnparsable::Drop,
            _ => return Err(err(&field("OnUnparsable"), "must be Keep or Drop", Some(v))),
        },
    };
    let marker = match get(obj, "Marker") {
        None => DEFAULT_MARKER.to_string(),
        Some(v) => {
            let m = as_str(&field("Marker"), v)?;
            let bad = |c: char| c.is_control() || matches!(c, '"' | '\\' | ',');
            if m.is_empty() || m.len() > 64 || m.chars().any(bad) {
                return Err(err(
                    &field("Marker"),
                    "must be 1 to 64 bytes without quotes, backslashes, commas or control characters",
                    Some(v),
                ));
            }
            m.to_string()
        }
    };
    if json_paths.is_empty() && csv_columns.is_empty() && patterns.is_empty() {
        return Err(err(
            P,
            "names nothing to redact: give JsonPaths, CsvColumns or Patterns",
            Some(v),
        ));
    }
    Ok(Redaction {
        json_paths,
        csv_columns,
        patterns,
        apply,
        on_unparsable,
        marker,
    })
}

#[cfg(test)]
mod tests {
    use super::PathStep::*;
    use super::*;

    #[test]
    fn json_paths_parse() {
        let p = |t: &str| parse_json_path(t).map(|p| p.steps);
        assert_eq!(p("$.a.b"), Ok(vec![Key("a".into()), Key("b".into())]));
        assert_eq!(p("$.a[*][2]"), Ok(vec![Key("a".into()), Any, Index(2)]));
        assert_eq!(p("$..ssn"), Ok(vec![Descend, Key("ssn".into())]));
        assert_eq!(p("$..[0]"), Ok(vec![Descend, Index(0)]));
        assert_eq!(p("$[\"a.b\"].*"), Ok(vec![Key("a.b".into()), Any]));
        for bad in ["a.b", "$", "$.", "$..", "$.a[", "$.a[x]", "$a"] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }
}
