//! Field access helpers over the parsed document. Each returns a
//! [`ConfigError`] naming the full path of the field.

use simd_json::prelude::Writable;
use simd_json::{BorrowedValue as Value, StaticNode};

use super::ConfigError;

pub(super) type Object<'a> = simd_json::value::borrowed::Object<'a>;

pub(super) fn err(field: &str, rule: impl Into<String>, value: Option<&Value>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        rule: rule.into(),
        value: value.map(show),
    }
}

/// JSON text of a value, shortened to keep messages readable.
pub(super) fn show(v: &Value) -> String {
    let s = v.encode();
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// `parent.key`; a key that is empty or has characters outside `[A-Za-z0-9_-]`
/// is shown as a JSON string so the path stays readable.
pub(super) fn join(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    let key = if plain {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

pub(super) fn as_object<'a, 'v>(
    path: &str,
    v: &'a Value<'v>,
) -> Result<&'a Object<'v>, ConfigError> {
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(err(path, "must be a JSON object", Some(v))),
    }
}

/// Rejects keys outside `known`, naming the first unknown one.
pub(super) fn check_keys(
    path: &str,
    obj: &Object,
    known: &[&str],
    hint: &str,
) -> Result<(), ConfigError> {
    for (k, v) in obj.iter() {
        if !known.contains(&k.as_ref()) {
            return Err(err(
                &join(path, k),
                format!("unknown field{hint}; expected one of {}", known.join(", ")),
                Some(v),
            ));
        }
    }
    Ok(())
}

pub(super) fn get<'a, 'v>(obj: &'a Object<'v>, key: &str) -> Option<&'a Value<'v>> {
    obj.get(key)
        .filter(|v| !matches!(v, Value::Static(StaticNode::Null)))
}

pub(super) fn as_str<'a>(path: &str, v: &'a Value) -> Result<&'a str, ConfigError> {
    match v {
        Value::String(s) => Ok(s.as_ref()),
        _ => Err(err(path, "must be a string", Some(v))),
    }
}

pub(super) fn as_bool(path: &str, v: &Value) -> Result<bool, ConfigError> {
    match v {
        Value::Static(StaticNode::Bool(b)) => Ok(*b),
        _ => Err(err(path, "must be true or false", Some(v))),
    }
}

pub(super) fn as_int_in(path: &str, v: &Value, lo: u64, hi: u64) -> Result<u64, ConfigError> {
    let n = match v {
        Value::Static(StaticNode::I64(n)) => u64::try_from(*n).ok(),
        Value::Static(StaticNode::U64(n)) => Some(*n),
        _ => None,
    };
    match n {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(err(
            path,
            format!("must be an integer from {lo} to {hi}"),
            Some(v),
        )),
    }
}

pub(super) fn as_array<'a, 'v>(
    path: &str,
    v: &'a Value<'v>,
    lo: usize,
    hi: usize,
) -> Result<&'a [Value<'v>], ConfigError> {
    match v {
        Value::Array(a) if (lo..=hi).contains(&a.len()) => Ok(a.as_slice()),
        Value::Array(_) => Err(err(
            path,
            format!("must be a list of {lo} to {hi} items"),
            Some(v),
        )),
        _ => Err(err(path, "must be a list", Some(v))),
    }
}
