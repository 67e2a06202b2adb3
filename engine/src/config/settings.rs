//! capline's own settings: the `Engine` object and its `S3` part.

use std::path::PathBuf;
use std::time::Duration;

use simd_json::BorrowedValue as Value;

use super::json::{as_bool, as_int_in, as_object, as_str, check_keys, err, get};
use super::redaction::{Redaction, parse_redaction};
use super::{ConfigError, IoMode, SamplingMode};

const MIB: u64 = 1024 * 1024;

/// capline's own settings (the `Engine` object).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// `SpoolDir`: where segments are written before delivery. Required.
    pub spool_dir: PathBuf,
    /// `SegmentMaxBytes`: a segment is sealed before it would grow past this. Default 256 MiB.
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
    /// `Redaction`: values replaced by the writer before records reach disk. Off by default.
    pub redaction: Option<Redaction>,
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
    "Redaction",
];

pub(super) fn parse_engine(v: &Value) -> Result<EngineSettings, ConfigError> {
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
    // The open segment counts against SpoolMaxBytes, and while the gate is
    // closed no record comes in to seal it by size: a segment that alone
    // could fill the cap would hold capture off until its age sealed it. So
    // a segment is at most half of the cap, and by default a quarter (a
    // sealed one can wait for delivery beside a filling one).
    let segment_max_bytes = int(
        "SegmentMaxBytes",
        64 * 1024,
        5 * 1024 * MIB,
        spool_max_bytes.map_or(256 * MIB, |cap| (cap / 4).clamp(64 * 1024, 256 * MIB)),
    )?;
    if let Some(cap) = spool_max_bytes
        && segment_max_bytes > cap / 2
    {
        return Err(err(
            &field("SegmentMaxBytes"),
            format!(
                "must be at most half of Engine.SpoolMaxBytes ({cap}): the open segment counts against that cap"
            ),
            get(obj, "SegmentMaxBytes"),
        ));
    }
    let s3 = match get(obj, "S3") {
        None => S3Settings::default(),
        Some(v) => parse_s3(v)?,
    };
    let redaction = get(obj, "Redaction").map(parse_redaction).transpose()?;
    Ok(EngineSettings {
        s3,
        redaction,
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
        segment_max_bytes,
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
