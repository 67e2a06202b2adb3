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

mod capture;
mod json;
mod redaction;
mod rules;
mod settings;

use std::fmt;
use std::path::{Path, PathBuf};

use simd_json::BorrowedValue as Value;

pub use redaction::{
    DEFAULT_MARKER, JsonPath, OnUnparsable, PathStep, Redaction, compile_pattern, parse_json_path,
};
pub use rules::{is_valid_media_type, is_valid_name};
pub use settings::{EngineSettings, S3Settings};

use json::{as_object, as_str, check_keys, err, get};

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

impl Config {
    /// Parses and validates a config document.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        Config::from_json_embedded(text, &[])
    }

    /// Parses and validates a config embedded in a larger JSON document
    /// (`capline endpoint`'s): the root keys in `other_keys` belong to the
    /// caller and are neither read nor refused here.
    pub fn from_json_embedded(text: &str, other_keys: &[&str]) -> Result<Config, ConfigError> {
        let mut bytes = text.as_bytes().to_vec();
        let doc = simd_json::to_borrowed_value(&mut bytes).map_err(|e| ConfigError {
            field: "(document)".into(),
            rule: format!("must be valid JSON ({e})"),
            value: None,
        })?;
        parse_root(&doc, other_keys)
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
// The document.

const ROOT_KEYS: &[&str] = &["EndpointName", "VariantName", "DataCaptureConfig", "Engine"];
fn parse_root(doc: &Value, other_keys: &[&str]) -> Result<Config, ConfigError> {
    let root = as_object("(document)", doc)?;
    let known: Vec<&str> = ROOT_KEYS.iter().chain(other_keys).copied().collect();
    check_keys("", root, &known, "")?;

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
    let capture = capture::parse(dcc_obj)?;

    let engine = settings::parse_engine(get(root, "Engine").ok_or_else(|| {
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
