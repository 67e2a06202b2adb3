//! Config: one JSON document per engine.
//!
//! ```json
//! { "EndpointName": "churn", "VariantName": "AllTraffic",
//!   "DataCaptureConfig": { ...CreateEndpointConfig's field, as boto3 takes it... },
//!   "Engine": { "SpoolDir": "/var/lib/capline/churn", ... } }
//! ```
//!
//! `DataCaptureConfig` is accepted in the API shape (PascalCase, botocore's
//! constraints) or with the SageMaker Python SDK's argument names and defaults.
//! Every rule violation is a [`ConfigError`] naming the field, the rule and the
//! offending value.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use simd_json::prelude::Writable;
use simd_json::{BorrowedValue as Value, StaticNode};

/// A config rule violation: which field, which rule, and the value that broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field, e.g. `DataCaptureConfig.CaptureOptions[1].CaptureMode`.
    pub field: String,
    /// The rule that was broken, in words.
    pub rule: String,
    /// The offending value as JSON text (shortened), when there is one.
    pub value: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)?;
        if let Some(v) = &self.value {
            write!(f, ", got {v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Which payloads are written (SageMaker's `CaptureMode`, folded over all options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMode {
    /// Only `endpointInput`.
    Input,
    /// Only `endpointOutput`.
    Output,
    /// Both.
    InputAndOutput,
}

impl CaptureMode {
    /// Whether `endpointInput` is written.
    pub fn input(self) -> bool {
        matches!(self, CaptureMode::Input | CaptureMode::InputAndOutput)
    }
    /// Whether `endpointOutput` is written.
    pub fn output(self) -> bool {
        matches!(self, CaptureMode::Output | CaptureMode::InputAndOutput)
    }
    fn union(self, other: CaptureMode) -> CaptureMode {
        if self == other {
            self
        } else {
            CaptureMode::InputAndOutput
        }
    }
}

/// How sampling decides (`Engine.SamplingMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplingMode {
    /// `Random` (default): an independent random draw per call.
    Random,
    /// `Deterministic`: a stable hash of the inference id, so every replica
    /// keeps the same requests; calls without an id fall back to a random draw.
    Deterministic,
}

/// How segments are written (`Engine.Io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// `auto` (default): io_uring, or `pwrite` when io_uring cannot be set up.
    Auto,
    /// `uring`: io_uring only; the engine does not start without it.
    Uring,
    /// `pwrite`: `pwrite` calls only.
    Pwrite,
}

/// Where sealed segments go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `s3://bucket/prefix`; `prefix` has no leading or trailing `/`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix, possibly empty.
        prefix: String,
    },
    /// `file:///abs/dir` (capline's extension): segments are moved into this directory.
    Local {
        /// Absolute directory, without a trailing `/`.
        dir: PathBuf,
    },
}

/// The CSV and JSON media-type lists of `CaptureContentTypeHeader`, lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentTypes {
    /// Media types written with `"encoding":"CSV"`.
    pub csv: Vec<String>,
    /// Media types written with `"encoding":"JSON"`.
    pub json: Vec<String>,
}

/// capline's own settings (the `Engine` object).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// `SpoolDir`: where segments are written before delivery. Required.
    pub spool_dir: PathBuf,
    /// `SegmentMaxBytes`: a segment is sealed before it would grow past this. Default 64 MiB.
    pub segment_max_bytes: u64,
    /// `SegmentMaxAgeSeconds`: a segment is sealed this long after its first record. Default 60.
    pub segment_max_age: Duration,
    /// `FlushIntervalMillis`: how often buffered records are made durable. Default 1000.
    pub flush_interval: Duration,
    /// `RingBytes`: memory for records waiting for the writer. Default 64 MiB.
    pub ring_bytes: u64,
    /// `MaxRecordBytes`: larger records are dropped as `too_large`. Default
    /// 16 MiB, or half of `RingBytes` if that is smaller; at most half of `RingBytes`.
    pub max_record_bytes: u64,
    /// `InferenceTimeMillis`: write `inferenceTime` with milliseconds. Default false.
    pub inference_time_millis: bool,
    /// `SamplingMode`: `Random` (default) or `Deterministic`.
    pub sampling_mode: SamplingMode,
    /// `Io`: `auto` (default), `uring` or `pwrite`.
    pub io: IoMode,
    /// `DiskWatermarkPercent`: capture stops at this spool-disk usage. Default 75.
    pub disk_watermark_percent: f64,
    /// `DiskHysteresisPercent`: capture resumes below watermark minus this. Default 5.
    pub disk_hysteresis_percent: f64,
    /// `DiskSoftWatermarkPercent`: from here to the watermark, the effective
    /// sampling rate falls linearly to 0. Off by default.
    pub disk_soft_watermark_percent: Option<f64>,
    /// `SpoolMaxBytes`: capture stops while undelivered segments take this much. Off by default.
    pub spool_max_bytes: Option<u64>,
    /// `DiskCheckIntervalMillis`: how often the disk is checked. Default 250.
    pub disk_check_interval: Duration,
    /// S3 client settings (used for `s3://` destinations).
    pub s3: S3Settings,
}

/// `Engine.S3`: how segments reach S3 or an S3-compatible store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// `EndpointUrl`: a custom endpoint (MinIO, Garage, moto). Default: AWS.
    pub endpoint_url: Option<String>,
    /// `Region`. Default: the AWS default chain (`AWS_REGION`, profile), else `us-east-1`.
    pub region: Option<String>,
    /// `ForcePathStyle`: path-style addressing. Default false.
    pub force_path_style: bool,
    /// `ChecksumMode`: `when_supported` (default) or `when_required`.
    pub checksum_when_required: bool,
    /// `PartSizeBytes`: multipart part size, 5 MiB – 5 GiB. Default 8 MiB.
    pub part_size: u64,
    /// `Concurrency`: parts uploaded at once, 1 – 64. Default 4.
    pub concurrency: usize,
    /// `AttemptTimeoutSeconds`: the limit on one attempt of one request
    /// (one part, one PutObject), 1 – 3600. Default 60.
    pub attempt_timeout: Duration,
    /// `ConnectTimeoutSeconds`: the limit on opening a connection, 1 – 300. Default 5.
    pub connect_timeout: Duration,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint_url: None,
            region: None,
            force_path_style: false,
            checksum_when_required: false,
            part_size: 8 * MIB,
            concurrency: 4,
            attempt_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A validated engine config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `EndpointName`.
    pub endpoint_name: String,
    /// `VariantName` (default `AllTraffic`).
    pub variant_name: String,
    /// `EnableCapture` (default true).
    pub enable_capture: bool,
    /// `InitialSamplingPercentage`, 0–100.
    pub sampling_percentage: f64,
    /// `DestinationS3Uri`, parsed.
    pub destination: Destination,
    /// `DestinationS3Uri` exactly as given.
    pub destination_uri: String,
    /// `KmsKeyId`.
    pub kms_key_id: Option<String>,
    /// `CaptureOptions`, folded.
    pub capture_mode: CaptureMode,
    /// `CaptureContentTypeHeader`; `None` means everything is BASE64.
    pub content_types: Option<ContentTypes>,
    /// capline's own settings.
    pub engine: EngineSettings,
}

const MIB: u64 = 1024 * 1024;

impl Config {
    /// Parses and validates a config document.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let mut bytes = text.as_bytes().to_vec();
        let doc = simd_json::to_borrowed_value(&mut bytes).map_err(|e| ConfigError {
            field: "(document)".into(),
            rule: format!("must be valid JSON ({e})"),
            value: None,
        })?;
        parse_root(&doc)
    }

    /// Reads, parses and validates a config file.
    pub fn from_path(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            field: "(file)".into(),
            rule: format!("must be a readable UTF-8 file ({e})"),
            value: Some(path.display().to_string()),
        })?;
        Config::from_json(&text)
    }
}

// ---------------------------------------------------------------------------
// Field access helpers. Each returns a ConfigError naming the full path.

type Object<'a> = simd_json::value::borrowed::Object<'a>;

fn err(field: &str, rule: impl Into<String>, value: Option<&Value>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        rule: rule.into(),
        value: value.map(show),
    }
}

/// JSON text of a value, shortened to keep messages readable.
fn show(v: &Value) -> String {
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
fn join(parent: &str, key: &str) -> String {
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

fn as_object<'a, 'v>(path: &str, v: &'a Value<'v>) -> Result<&'a Object<'v>, ConfigError> {
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(err(path, "must be a JSON object", Some(v))),
    }
}

/// Rejects keys outside `known`, naming the first unknown one.
fn check_keys(path: &str, obj: &Object, known: &[&str], hint: &str) -> Result<(), ConfigError> {
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

fn get<'a, 'v>(obj: &'a Object<'v>, key: &str) -> Option<&'a Value<'v>> {
    obj.get(key)
        .filter(|v| !matches!(v, Value::Static(StaticNode::Null)))
}

fn as_str<'a>(path: &str, v: &'a Value) -> Result<&'a str, ConfigError> {
    match v {
        Value::String(s) => Ok(s.as_ref()),
        _ => Err(err(path, "must be a string", Some(v))),
    }
}

fn as_bool(path: &str, v: &Value) -> Result<bool, ConfigError> {
    match v {
        Value::Static(StaticNode::Bool(b)) => Ok(*b),
        _ => Err(err(path, "must be true or false", Some(v))),
    }
}

fn as_int_in(path: &str, v: &Value, lo: u64, hi: u64) -> Result<u64, ConfigError> {
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

fn as_array<'a, 'v>(
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

// ---------------------------------------------------------------------------
// Character rules.

/// SageMaker's endpoint and variant name rule: `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$`, at most 63 characters.
pub fn is_valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// SageMaker's media-type rule for content-type lists:
/// `[a-zA-Z0-9](-*[a-zA-Z0-9])*\/[a-zA-Z0-9](-*[a-zA-Z0-9.])*`, 1–256 characters.
pub fn is_valid_media_type(s: &str) -> bool {
    fn part(p: &[u8], allow_dot: bool) -> bool {
        let ok = |c: u8| c.is_ascii_alphanumeric() || (allow_dot && c == b'.');
        !p.is_empty()
            && p[0].is_ascii_alphanumeric()
            && ok(p[p.len() - 1])
            && p.iter().all(|&c| ok(c) || c == b'-')
    }
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 256 {
        return false;
    }
    match s.split_once('/') {
        Some((t, sub)) => part(t.as_bytes(), false) && part(sub.as_bytes(), true),
        None => false,
    }
}

fn is_valid_kms(s: &str) -> bool {
    s.len() <= 2048
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b':' | b'/' | b'_' | b'-'))
}

/// S3 bucket naming: 3–63 of `[a-z0-9.-]`, starting and ending alphanumeric.
fn is_valid_bucket(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-'))
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

// ---------------------------------------------------------------------------
// The document.

const ROOT_KEYS: &[&str] = &["EndpointName", "VariantName", "DataCaptureConfig", "Engine"];
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
const ENGINE_KEYS: &[&str] = &[
    "SpoolDir",
    "SegmentMaxBytes",
    "SegmentMaxAgeSeconds",
    "FlushIntervalMillis",
    "RingBytes",
    "MaxRecordBytes",
    "InferenceTimeMillis",
    "SamplingMode",
    "Io",
    "DiskWatermarkPercent",
    "DiskHysteresisPercent",
    "DiskSoftWatermarkPercent",
    "SpoolMaxBytes",
    "DiskCheckIntervalMillis",
    "S3",
];

/// The `DataCaptureConfig` part, in either shape.
struct Capture {
    enable: bool,
    sampling: u64,
    destination: Destination,
    uri: String,
    kms: Option<String>,
    mode: CaptureMode,
    types: Option<ContentTypes>,
}

fn parse_root(doc: &Value) -> Result<Config, ConfigError> {
    let root = as_object("(document)", doc)?;
    check_keys("", root, ROOT_KEYS, "")?;

    let name = |key: &str, default: Option<&str>| -> Result<String, ConfigError> {
        let s = match (get(root, key), default) {
            (Some(v), _) => {
                let s = as_str(key, v)?;
                if !is_valid_name(s) {
                    return Err(err(
                        key,
                        "must match ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$ (1-63 letters, digits, hyphens)",
                        Some(v),
                    ));
                }
                s
            }
            (None, Some(d)) => d,
            (None, None) => return Err(err(key, "is required", None)),
        };
        Ok(s.to_string())
    };
    let endpoint_name = name("EndpointName", None)?;
    let variant_name = name("VariantName", Some("AllTraffic"))?;

    let dcc = get(root, "DataCaptureConfig")
        .ok_or_else(|| err("DataCaptureConfig", "is required", None))?;
    let dcc_obj = as_object("DataCaptureConfig", dcc)?;
    let sdk_shape = dcc_obj.keys().any(|k| SDK_KEYS.contains(&k.as_ref()));
    let capture = if sdk_shape {
        parse_sdk(dcc_obj)?
    } else {
        parse_api(dcc_obj)?
    };

    let engine = parse_engine(get(root, "Engine").ok_or_else(|| {
        err(
            "Engine",
            "is required (capline's own settings; at least SpoolDir)",
            None,
        )
    })?)?;

    Ok(Config {
        endpoint_name,
        variant_name,
        enable_capture: capture.enable,
        sampling_percentage: capture.sampling as f64,
        destination: capture.destination,
        destination_uri: capture.uri,
        kms_key_id: capture.kms,
        capture_mode: capture.mode,
        content_types: capture.types,
        engine,
    })
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

fn parse_engine(v: &Value) -> Result<EngineSettings, ConfigError> {
    const P: &str = "Engine";
    let obj = as_object(P, v)?;
    check_keys(P, obj, ENGINE_KEYS, "")?;
    let field = |k: &str| format!("{P}.{k}");
    let int = |k: &str, lo: u64, hi: u64, default: u64| -> Result<u64, ConfigError> {
        get(obj, k)
            .map(|v| as_int_in(&field(k), v, lo, hi))
            .transpose()
            .map(|o| o.unwrap_or(default))
    };

    let spool_path = field("SpoolDir");
    let spool = get(obj, "SpoolDir").ok_or_else(|| err(&spool_path, "is required", None))?;
    let spool_str = as_str(&spool_path, spool)?;
    if spool_str.is_empty() {
        return Err(err(&spool_path, "must not be empty", Some(spool)));
    }

    let ring_bytes = int("RingBytes", MIB, 64 * 1024 * MIB, 64 * MIB)?;
    let max_record_bytes = int(
        "MaxRecordBytes",
        1024,
        1024 * MIB,
        (16 * MIB).min(ring_bytes / 2),
    )?;
    if max_record_bytes > ring_bytes / 2 {
        return Err(err(
            &field("MaxRecordBytes"),
            format!("must not exceed half of RingBytes ({})", ring_bytes / 2),
            get(obj, "MaxRecordBytes"),
        ));
    }
    let mode_path = field("SamplingMode");
    let sampling_mode = match get(obj, "SamplingMode") {
        None => SamplingMode::Random,
        Some(v) => match as_str(&mode_path, v)? {
            "Random" => SamplingMode::Random,
            "Deterministic" => SamplingMode::Deterministic,
            _ => return Err(err(&mode_path, "must be Random or Deterministic", Some(v))),
        },
    };
    let io_path = field("Io");
    let io = match get(obj, "Io") {
        None => IoMode::Auto,
        Some(v) => match as_str(&io_path, v)? {
            "auto" => IoMode::Auto,
            "uring" => IoMode::Uring,
            "pwrite" => IoMode::Pwrite,
            _ => return Err(err(&io_path, "must be auto, uring or pwrite", Some(v))),
        },
    };
    let watermark = int("DiskWatermarkPercent", 1, 100, 75)?;
    let hysteresis = int("DiskHysteresisPercent", 0, 50, 5)?;
    if hysteresis >= watermark {
        return Err(err(
            &field("DiskHysteresisPercent"),
            format!("must be below DiskWatermarkPercent ({watermark})"),
            get(obj, "DiskHysteresisPercent"),
        ));
    }
    let soft = get(obj, "DiskSoftWatermarkPercent")
        .map(|v| {
            let p = field("DiskSoftWatermarkPercent");
            let n = as_int_in(&p, v, 0, 99)?;
            if n >= watermark {
                return Err(err(
                    &p,
                    format!("must be below DiskWatermarkPercent ({watermark})"),
                    Some(v),
                ));
            }
            Ok(n as f64)
        })
        .transpose()?;
    let spool_max_bytes = get(obj, "SpoolMaxBytes")
        .map(|v| as_int_in(&field("SpoolMaxBytes"), v, MIB, u64::MAX >> 1))
        .transpose()?;
    let s3 = match get(obj, "S3") {
        None => S3Settings::default(),
        Some(v) => parse_s3(v)?,
    };
    Ok(EngineSettings {
        s3,
        disk_watermark_percent: watermark as f64,
        disk_hysteresis_percent: hysteresis as f64,
        disk_soft_watermark_percent: soft,
        spool_max_bytes,
        disk_check_interval: Duration::from_millis(int(
            "DiskCheckIntervalMillis",
            10,
            60_000,
            250,
        )?),
        spool_dir: PathBuf::from(spool_str),
        segment_max_bytes: int("SegmentMaxBytes", 64 * 1024, 5 * 1024 * MIB, 64 * MIB)?,
        segment_max_age: Duration::from_secs(int("SegmentMaxAgeSeconds", 1, 3600, 60)?),
        flush_interval: Duration::from_millis(int("FlushIntervalMillis", 10, 60_000, 1000)?),
        ring_bytes,
        max_record_bytes,
        inference_time_millis: get(obj, "InferenceTimeMillis")
            .map(|v| as_bool(&field("InferenceTimeMillis"), v))
            .transpose()?
            .unwrap_or(false),
        sampling_mode,
        io,
    })
}

fn parse_s3(v: &Value) -> Result<S3Settings, ConfigError> {
    const P: &str = "Engine.S3";
    let d = S3Settings::default();
    let obj = as_object(P, v)?;
    check_keys(
        P,
        obj,
        &[
            "EndpointUrl",
            "Region",
            "ForcePathStyle",
            "ChecksumMode",
            "PartSizeBytes",
            "Concurrency",
            "AttemptTimeoutSeconds",
            "ConnectTimeoutSeconds",
        ],
        "",
    )?;
    let field = |k: &str| format!("{P}.{k}");
    let text = |k: &str| -> Result<Option<String>, ConfigError> {
        get(obj, k)
            .map(|v| as_str(&field(k), v).map(str::to_string))
            .transpose()
    };
    let endpoint_url = text("EndpointUrl")?;
    if let Some(u) = &endpoint_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(err(
            &field("EndpointUrl"),
            "must start with http:// or https://",
            get(obj, "EndpointUrl"),
        ));
    }
    let checksum_when_required = match text("ChecksumMode")?.as_deref() {
        None | Some("when_supported") => false,
        Some("when_required") => true,
        Some(_) => {
            return Err(err(
                &field("ChecksumMode"),
                "must be when_supported or when_required",
                get(obj, "ChecksumMode"),
            ));
        }
    };
    Ok(S3Settings {
        endpoint_url,
        region: text("Region")?,
        force_path_style: get(obj, "ForcePathStyle")
            .map(|v| as_bool(&field("ForcePathStyle"), v))
            .transpose()?
            .unwrap_or(false),
        checksum_when_required,
        part_size: get(obj, "PartSizeBytes")
            .map(|v| as_int_in(&field("PartSizeBytes"), v, 5 * MIB, 5 * 1024 * MIB))
            .transpose()?
            .unwrap_or(d.part_size),
        concurrency: get(obj, "Concurrency")
            .map(|v| as_int_in(&field("Concurrency"), v, 1, 64))
            .transpose()?
            .unwrap_or(d.concurrency as u64) as usize,
        attempt_timeout: get(obj, "AttemptTimeoutSeconds")
            .map(|v| as_int_in(&field("AttemptTimeoutSeconds"), v, 1, 3600))
            .transpose()?
            .map_or(d.attempt_timeout, Duration::from_secs),
        connect_timeout: get(obj, "ConnectTimeoutSeconds")
            .map(|v| as_int_in(&field("ConnectTimeoutSeconds"), v, 1, 300))
            .transpose()?
            .map_or(d.connect_timeout, Duration::from_secs),
    })
}
