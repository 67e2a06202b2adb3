//! The `DataCaptureConfig` object, in either shape: the API's (PascalCase,
//! botocore's constraints, as boto3's `create_endpoint_config` takes it) or
//! the SageMaker Python SDK's argument names and defaults.

use std::path::PathBuf;

use simd_json::BorrowedValue as Value;

use super::json::{Object, as_array, as_bool, as_int_in, as_object, as_str, check_keys, err, get};
use super::rules::{is_valid_bucket, is_valid_kms, is_valid_media_type};
use super::{CaptureMode, ConfigError, ContentTypes, Destination};

const API_KEYS: &[&str] = &[
    "EnableCapture",
    "InitialSamplingPercentage",
    "DestinationS3Uri",
    "KmsKeyId",
    "CaptureOptions",
    "CaptureContentTypeHeader",
];
const SDK_KEYS: &[&str] = &[
    "enable_capture",
    "sampling_percentage",
    "destination_s3_uri",
    "kms_key_id",
    "capture_options",
    "csv_content_types",
    "json_content_types",
];
/// The `DataCaptureConfig` part, in either shape.
pub(super) struct Capture {
    pub(super) enable: bool,
    pub(super) sampling: u64,
    pub(super) destination: Destination,
    pub(super) uri: String,
    pub(super) kms: Option<String>,
    pub(super) mode: CaptureMode,
    pub(super) types: Option<ContentTypes>,
}

/// Parses `DataCaptureConfig` in whichever shape its keys show.
pub(super) fn parse(obj: &Object) -> Result<Capture, ConfigError> {
    if obj.keys().any(|k| SDK_KEYS.contains(&k.as_ref())) {
        parse_sdk(obj)
    } else {
        parse_api(obj)
    }
}

fn parse_destination(path: &str, v: &Value) -> Result<(Destination, String), ConfigError> {
    let uri = as_str(path, v)?;
    if uri.is_empty() || uri.len() > 512 {
        return Err(err(path, "must be 1 to 512 characters", Some(v)));
    }
    let dest = if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !is_valid_bucket(bucket) {
            return Err(err(
                path,
                "must be s3://bucket/prefix with a valid bucket name (3-63 of a-z 0-9 . -)",
                Some(v),
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.contains("//") {
            return Err(err(
                path,
                "must not contain an empty path segment (`//` keys are invisible to Model Monitor)",
                Some(v),
            ));
        }
        Destination::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        }
    } else if let Some(rest) = uri.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(err(
                path,
                "a file:// destination must be an absolute path, as in file:///abs/dir",
                Some(v),
            ));
        }
        let trimmed = rest.trim_end_matches('/');
        let dir = if trimmed.is_empty() { "/" } else { trimmed };
        if dir.split('/').any(|c| c == "..") {
            return Err(err(path, "must not contain `..`", Some(v)));
        }
        Destination::Local {
            dir: PathBuf::from(dir),
        }
    } else {
        return Err(err(
            path,
            "must start with s3:// (or file:// for a local directory)",
            Some(v),
        ));
    };
    Ok((dest, uri.to_string()))
}

fn parse_mode(path: &str, v: &Value) -> Result<CaptureMode, ConfigError> {
    match as_str(path, v)? {
        "Input" => Ok(CaptureMode::Input),
        "Output" => Ok(CaptureMode::Output),
        "InputAndOutput" => Ok(CaptureMode::InputAndOutput),
        _ => Err(err(
            path,
            "must be Input, Output or InputAndOutput",
            Some(v),
        )),
    }
}

fn parse_media_types(path: &str, v: &Value) -> Result<Vec<String>, ConfigError> {
    let items = as_array(path, v, 1, 10)?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = format!("{path}[{i}]");
            let s = as_str(&p, item)?;
            if is_valid_media_type(s) {
                Ok(s.to_ascii_lowercase())
            } else {
                Err(err(
                    &p,
                    "must be a media type type/subtype of 1-256 characters matching \
                     [a-zA-Z0-9](-*[a-zA-Z0-9])*/[a-zA-Z0-9](-*[a-zA-Z0-9.])*",
                    Some(item),
                ))
            }
        })
        .collect()
}

fn parse_kms(path: &str, v: Option<&Value>) -> Result<Option<String>, ConfigError> {
    v.map(|v| {
        let s = as_str(path, v)?;
        if is_valid_kms(s) {
            Ok(s.to_string())
        } else {
            Err(err(
                path,
                "must be at most 2048 characters of [a-zA-Z0-9:/_-]",
                Some(v),
            ))
        }
    })
    .transpose()
}

/// botocore's `DataCaptureConfig`.
fn parse_api(obj: &Object) -> Result<Capture, ConfigError> {
    const P: &str = "DataCaptureConfig";
    check_keys(P, obj, API_KEYS, "")?;
    let field = |k: &str| format!("{P}.{k}");

    let enable = get(obj, "EnableCapture")
        .map(|v| as_bool(&field("EnableCapture"), v))
        .transpose()?
        .unwrap_or(true);
    let sampling = match get(obj, "InitialSamplingPercentage") {
        Some(v) => as_int_in(&field("InitialSamplingPercentage"), v, 0, 100)?,
        None => {
            return Err(err(
                &field("InitialSamplingPercentage"),
                "is required",
                None,
            ));
        }
    };
    let (destination, uri) = match get(obj, "DestinationS3Uri") {
        Some(v) => parse_destination(&field("DestinationS3Uri"), v)?,
        None => return Err(err(&field("DestinationS3Uri"), "is required", None)),
    };
    let kms = parse_kms(&field("KmsKeyId"), get(obj, "KmsKeyId"))?;

    let opts_path = field("CaptureOptions");
    let opts = get(obj, "CaptureOptions").ok_or_else(|| err(&opts_path, "is required", None))?;
    let mut mode: Option<CaptureMode> = None;
    for (i, opt) in as_array(&opts_path, opts, 1, 32)?.iter().enumerate() {
        let p = format!("{opts_path}[{i}]");
        let o = as_object(&p, opt)?;
        check_keys(&p, o, &["CaptureMode"], "")?;
        let mp = format!("{p}.CaptureMode");
        let m = parse_mode(
            &mp,
            get(o, "CaptureMode").ok_or_else(|| err(&mp, "is required", None))?,
        )?;
        mode = Some(mode.map_or(m, |prev| prev.union(m)));
    }

    let types = get(obj, "CaptureContentTypeHeader")
        .map(|v| {
            let hp = field("CaptureContentTypeHeader");
            let h = as_object(&hp, v)?;
            check_keys(&hp, h, &["CsvContentTypes", "JsonContentTypes"], "")?;
            let list = |k: &str| {
                get(h, k)
                    .map(|v| parse_media_types(&format!("{hp}.{k}"), v))
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
            Ok::<_, ConfigError>(ContentTypes {
                csv: list("CsvContentTypes")?,
                json: list("JsonContentTypes")?,
            })
        })
        .transpose()?;

    Ok(Capture {
        enable,
        sampling,
        destination,
        uri,
        kms,
        // as_array guarantees at least one option
        mode: mode.unwrap_or(CaptureMode::InputAndOutput),
        types,
    })
}

/// The SageMaker Python SDK's `DataCaptureConfig(...)` arguments, with its defaults.
fn parse_sdk(obj: &Object) -> Result<Capture, ConfigError> {
    const P: &str = "DataCaptureConfig";
    check_keys(
        P,
        obj,
        SDK_KEYS,
        " (this object uses the SageMaker Python SDK's names; do not mix them with the API's)",
    )?;
    let field = |k: &str| format!("{P}.{k}");

    let enable = match get(obj, "enable_capture") {
        Some(v) => as_bool(&field("enable_capture"), v)?,
        None => return Err(err(&field("enable_capture"), "is required", None)),
    };
    let sampling = get(obj, "sampling_percentage")
        .map(|v| as_int_in(&field("sampling_percentage"), v, 0, 100))
        .transpose()?
        .unwrap_or(20);
    let (destination, uri) = match get(obj, "destination_s3_uri") {
        Some(v) => parse_destination(&field("destination_s3_uri"), v)?,
        None => {
            return Err(err(
                &field("destination_s3_uri"),
                "is required (capline has no default SageMaker session bucket)",
                None,
            ));
        }
    };
    let kms = parse_kms(&field("kms_key_id"), get(obj, "kms_key_id"))?;

    // The SDK fills empty or missing lists with its defaults (`x or default`).
    let non_empty = |k: &str| get(obj, k).filter(|v| !matches!(v, Value::Array(a) if a.is_empty()));
    let mode = match non_empty("capture_options") {
        None => CaptureMode::InputAndOutput,
        Some(v) => {
            let op = field("capture_options");
            let mut mode: Option<CaptureMode> = None;
            for (i, item) in as_array(&op, v, 1, 32)?.iter().enumerate() {
                let p = format!("{op}[{i}]");
                let m = match as_str(&p, item)? {
                    "REQUEST" => CaptureMode::Input,
                    "RESPONSE" => CaptureMode::Output,
                    // The SDK passes unknown values through to the API unchanged.
                    _ => parse_mode(&p, item).map_err(|mut e| {
                        e.rule = "must be REQUEST or RESPONSE (or an API CaptureMode: Input, \
                                  Output, InputAndOutput)"
                            .into();
                        e
                    })?,
                };
                mode = Some(mode.map_or(m, |prev| prev.union(m)));
            }
            mode.unwrap_or(CaptureMode::InputAndOutput)
        }
    };
    let list = |k: &str, default: &str| -> Result<Vec<String>, ConfigError> {
        match non_empty(k) {
            Some(v) => parse_media_types(&field(k), v),
            None => Ok(vec![default.to_string()]),
        }
    };
    let types = ContentTypes {
        csv: list("csv_content_types", "text/csv")?,
        json: list("json_content_types", "application/json")?,
    };
    Ok(Capture {
        enable,
        sampling,
        destination,
        uri,
        kms,
        mode,
        types: Some(types),
    })
}
