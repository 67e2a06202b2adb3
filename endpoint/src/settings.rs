//! The endpoint's settings: one JSON document, parsed once into typed settings.
//!
//! ```json
//! { "EndpointName": "churn", "Listen": "0.0.0.0:8080",
//!   "ProductionVariants": [{"VariantName": "A", "InitialVariantWeight": 1,
//!                           "ModelUrl": "http://127.0.0.1:9001"}],
//!   "DataCaptureConfig": { ... }, "Engine": {"SpoolDir": "/var/lib/capline"} }
//! ```
//!
//! `EndpointName`, `DataCaptureConfig` and `Engine` are the engine's config
//! ([`Config::from_json_embedded`]); every variant gets a copy with its own
//! `VariantName` and spool `Engine.SpoolDir/{VariantName}`. Every error names
//! its field.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use capline::{Config, ConfigError};
use hyper::header::HeaderValue;
use simd_json::BorrowedValue as Value;
use simd_json::prelude::*;

/// A setting broke a rule; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// One of the endpoint's own settings.
    #[error("{field}: {rule}")]
    Field {
        /// The setting, as a path (`ProductionVariants[1].ModelUrl`).
        field: String,
        /// The rule it broke.
        rule: String,
    },
    /// The engine's part of the document (`DataCaptureConfig`, `Engine`).
    #[error(transparent)]
    Engine(#[from] ConfigError),
}

fn bad(field: &str, rule: impl Into<String>) -> SettingsError {
    SettingsError::Field {
        field: field.to_string(),
        rule: rule.into(),
    }
}

/// The document's root keys.
const KNOWN: [&str; 24] = [
    "EndpointName",
    "AccessKeys",
    "Region",
    "AllowUnsignedSidecar",
    "Listen",
    "AdminListen",
    "AdminToken",
    "MaxPayloadBytes",
    "MaxResponseBytes",
    "UpstreamTimeoutSeconds",
    "BodyTimeoutSeconds",
    "HeaderTimeoutSeconds",
    "IdleTimeoutSeconds",
    "MaxConnections",
    "HttpThreads",
    "PingCacheMillis",
    "ProductionVariants",
    "ShadowProductionVariants",
    "MaxShadowInFlight",
    "PassthroughRoutes",
    "BearerTokens",
    "CaptureBrokenStreams",
    "DataCaptureConfig",
    "Engine",
];

/// Most production variants an endpoint has (SageMaker's own limit).
pub const MAX_VARIANTS: usize = 10;

/// The keys the engine's config reads; the rest are the endpoint's.
const ENGINE_KEYS: [&str; 3] = ["EndpointName", "DataCaptureConfig", "Engine"];

/// SageMaker's real-time payload limit, for requests and responses (6 MB).
const SAGEMAKER_PAYLOAD: u64 = 6 * 1024 * 1024;

/// One production variant: where its model is and how it captures.
#[derive(Debug, Clone)]
pub struct VariantSettings {
    /// `VariantName`.
    pub name: String,
    /// `InitialVariantWeight` (default 1).
    pub weight: f64,
    /// The model's `HOST:PORT`, from `ModelUrl`.
    pub authority: HeaderValue,
    /// The variant's engine config.
    pub config: Config,
}

/// One shadow variant: a model that gets a copy of a share of the requests.
/// Its answers are captured under its own name and never returned.
#[derive(Debug, Clone)]
pub struct ShadowSettings {
    /// `VariantName`.
    pub name: String,
    /// The share of requests mirrored to it, in percent: `SamplingPercentage`
    /// when given, else `100 × InitialVariantWeight / (sum of the production
    /// weights)`, at most 100.
    pub mirror_percentage: f64,
    /// The model's `HOST:PORT`, from `ModelUrl`.
    pub authority: HeaderValue,
    /// The shadow's engine config (its own variant folder and spool).
    pub config: Config,
}

/// A validated endpoint config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `EndpointName`.
    pub endpoint_name: String,
    /// `Listen`: the runtime API (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// `AdminListen`: the admin API (default `127.0.0.1:8081`).
    pub admin_listen: SocketAddr,
    /// `AdminToken`: the admin API's bearer token (required off loopback).
    pub admin_token: Option<String>,
    /// `AccessKeys`: (AccessKeyId, SecretAccessKey) pairs; empty: requests
    /// are not verified.
    pub access_keys: Vec<(String, String)>,
    /// `Region`: with `AccessKeys`, the region a signature must be scoped
    /// to; `None` accepts any.
    pub region: Option<String>,
    /// `AllowUnsignedSidecar` (default false): with `AccessKeys`, let
    /// unsigned requests use the sidecar route (`POST /invocations`).
    pub allow_unsigned_sidecar: bool,
    /// `MaxPayloadBytes` (default 6 MiB, SageMaker's limit).
    pub max_payload: usize,
    /// `MaxResponseBytes`: the largest model answer passed on (default 6 MiB,
    /// SageMaker's limit).
    pub max_response: usize,
    /// `UpstreamTimeoutSeconds` (default 60): the model's time to answer.
    pub upstream_timeout: Duration,
    /// `BodyTimeoutSeconds` (default 60): a client's time to send a request body.
    pub body_timeout: Duration,
    /// `HeaderTimeoutSeconds` (default 10): a client's time to send a
    /// request's headers.
    pub header_timeout: Duration,
    /// `IdleTimeoutSeconds` (default 60): how long a keep-alive connection
    /// may wait for its next request.
    pub idle_timeout: Duration,
    /// `MaxConnections` (default 1024): open client connections at once, on
    /// each listener (the runtime API's `HttpThreads` share one count); more
    /// wait to be accepted.
    pub max_connections: usize,
    /// `HttpThreads` (default 1): threads serving the runtime API, each
    /// with its own event loop and its own `SO_REUSEPORT` listener on
    /// `Listen` (the kernel spreads new connections over them).
    pub http_threads: usize,
    /// `PingCacheMillis` (default 1000): how long a `/ping` answer is reused.
    pub ping_cache: Duration,
    /// `ProductionVariants`, in order.
    pub variants: Vec<VariantSettings>,
    /// `ShadowProductionVariants`, in order (none by default).
    pub shadows: Vec<ShadowSettings>,
    /// `MaxShadowInFlight` (default 64): mirrored requests in flight at once,
    /// per shadow; a request over the bound is not mirrored (counted).
    pub max_shadow_in_flight: usize,
    /// `PassthroughRoutes` (none by default): extra paths (`/v1/chat/completions`)
    /// whose `POST` requests go unchanged to the same path on a production
    /// variant's model, answers streamed back as they come, and are captured;
    /// `GET` and `HEAD` on them (`/v1/models`) go the same way, uncaptured.
    /// A path followed by `/*` (`/v1/*`) names every plain path under it.
    pub passthrough: Vec<String>,
    /// `BearerTokens` (none by default): tokens a passthrough request may
    /// present as `Authorization: Bearer TOKEN` instead of a SigV4 signature.
    pub bearer_tokens: Vec<String>,
    /// `CaptureBrokenStreams`: `"Skip"` (default): a streamed answer the
    /// model or the client breaks off is not captured; `"Partial"`: it is
    /// captured with what the model had sent. Counted either way.
    pub capture_partial_streams: bool,
}

impl Settings {
    /// Reads and validates an endpoint config file.
    pub fn from_path(path: &std::path::Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("(file)", format!("{}: {e}", path.display())))?;
        Settings::parse(&text)
    }

    /// Parses and validates an endpoint config document.
    pub fn parse(text: &str) -> Result<Settings, SettingsError> {
        let mut bytes = text.as_bytes().to_vec();
        let doc = simd_json::to_borrowed_value(&mut bytes)
            .map_err(|e| bad("(document)", format!("must be valid JSON ({e})")))?;
        let obj = doc
            .as_object()
            .ok_or_else(|| bad("(document)", "must be a JSON object"))?;
        for k in obj.keys() {
            if !KNOWN.contains(&k.as_ref()) {
                return Err(bad(
                    &key_name(k),
                    format!("unknown field (known: {})", KNOWN.join(", ")),
                ));
            }
        }
        let text_of = |key: &str| {
            obj.get(key)
                .map(|v| v.as_str().ok_or_else(|| bad(key, "must be a string")))
                .transpose()
        };
        let address = |key: &str, default: &str| -> Result<SocketAddr, SettingsError> {
            text_of(key)?
                .unwrap_or(default)
                .parse()
                .map_err(|e| bad(key, format!("must be HOST:PORT ({e})")))
        };
        let listen = address("Listen", "127.0.0.1:8080")?;
        let admin_listen = address("AdminListen", "127.0.0.1:8081")?;
        let admin_token = match obj.get("AdminToken") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| bad("AdminToken", "must be a non-empty string"))?,
            ),
        };
        if !admin_listen.ip().is_loopback() && admin_token.is_none() {
            return Err(bad(
                "AdminToken",
                "is required when AdminListen is not a loopback address",
            ));
        }
        let access_keys = match obj.get("AccessKeys") {
            None => Vec::new(),
            Some(keys) => access_keys(keys)?,
        };
        let int = |key: &str, lo: u64, hi: u64, default: u64| -> Result<u64, SettingsError> {
            match obj.get(key) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .filter(|n| (lo..=hi).contains(n))
                    .ok_or_else(|| bad(key, format!("must be an integer from {lo} to {hi}"))),
            }
        };
        let seconds =
            |key: &str, hi: u64, default: u64| int(key, 1, hi, default).map(Duration::from_secs);
        let allow_unsigned_sidecar = match obj.get("AllowUnsignedSidecar") {
            None => false,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| bad("AllowUnsignedSidecar", "must be true or false"))?,
        };
        let region = match obj.get("Region") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .filter(|r| {
                        !r.is_empty() && r.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                    })
                    .ok_or_else(|| bad("Region", "must be a region name such as us-east-1"))?
                    .to_string(),
            ),
        };
        // The engine's part, checked by the engine (it names its own fields).
        let endpoint_part: Vec<&str> = KNOWN
            .iter()
            .copied()
            .filter(|k| !ENGINE_KEYS.contains(k))
            .collect();
        let base = Config::from_json_embedded(text, &endpoint_part)?;
        let list = obj
            .get("ProductionVariants")
            .and_then(|v| v.as_array())
            .filter(|a| (1..=MAX_VARIANTS).contains(&a.len()))
            .ok_or_else(|| {
                bad(
                    "ProductionVariants",
                    "is required (an array of 1 to 10 variants)",
                )
            })?;
        let mut variants: Vec<VariantSettings> = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let one = variant("ProductionVariants", i, v, &base, &[])?.0;
            if variants.iter().any(|o| o.name == one.name) {
                return Err(bad(
                    &format!("ProductionVariants[{i}].VariantName"),
                    format!("{} appears twice", one.name),
                ));
            }
            variants.push(one);
        }
        if variants.iter().all(|v| v.weight == 0.0) {
            return Err(bad(
                "ProductionVariants",
                "at least one InitialVariantWeight must be > 0",
            ));
        }
        let production_weight: f64 = variants.iter().map(|v| v.weight).sum();
        let mut shadows: Vec<ShadowSettings> = Vec::new();
        let shadow_list = match obj.get("ShadowProductionVariants") {
            None => &[][..],
            Some(v) => v
                .as_array()
                .filter(|a| a.len() <= 10)
                .map(Vec::as_slice)
                .ok_or_else(|| {
                    bad(
                        "ShadowProductionVariants",
                        "must be an array of at most 10 variants",
                    )
                })?,
        };
        for (i, v) in shadow_list.iter().enumerate() {
            let field = format!("ShadowProductionVariants[{i}]");
            let (one, share) = variant(
                "ShadowProductionVariants",
                i,
                v,
                &base,
                &["SamplingPercentage"],
            )?;
            let taken = variants.iter().any(|o| o.name == one.name)
                || shadows.iter().any(|o| o.name == one.name);
            if taken {
                return Err(bad(
                    &format!("{field}.VariantName"),
                    format!(
                        "{} appears twice (variant names are folders: they must differ)",
                        one.name
                    ),
                ));
            }
            let mirror_percentage = match share {
                Some(p) => p,
                None => (100.0 * one.weight / production_weight).min(100.0),
            };
            shadows.push(ShadowSettings {
                name: one.name,
                mirror_percentage,
                authority: one.authority,
                config: one.config,
            });
        }
        Ok(Settings {
            endpoint_name: base.endpoint_name,
            listen,
            admin_listen,
            admin_token,
            access_keys,
            region,
            allow_unsigned_sidecar,
            max_payload: int("MaxPayloadBytes", 1, 1 << 30, SAGEMAKER_PAYLOAD)? as usize,
            max_response: int("MaxResponseBytes", 1, 1 << 30, SAGEMAKER_PAYLOAD)? as usize,
            upstream_timeout: seconds("UpstreamTimeoutSeconds", 3600, 60)?,
            body_timeout: seconds("BodyTimeoutSeconds", 3600, 60)?,
            header_timeout: seconds("HeaderTimeoutSeconds", 300, 10)?,
            idle_timeout: seconds("IdleTimeoutSeconds", 3600, 60)?,
            max_connections: int("MaxConnections", 1, 65_536, 1024)? as usize,
            http_threads: int("HttpThreads", 1, 256, 1)? as usize,
            ping_cache: Duration::from_millis(int("PingCacheMillis", 0, 60_000, 1000)?),
            variants,
            shadows,
            max_shadow_in_flight: int("MaxShadowInFlight", 1, 65_536, 64)? as usize,
            passthrough: passthrough_routes(obj.get("PassthroughRoutes"))?,
            bearer_tokens: bearer_tokens(obj.get("BearerTokens"))?,
            capture_partial_streams: match obj.get("CaptureBrokenStreams").map(|v| v.as_str()) {
                None | Some(Some("Skip")) => false,
                Some(Some("Partial")) => true,
                Some(_) => {
                    return Err(bad(
                        "CaptureBrokenStreams",
                        r#"must be "Skip" or "Partial""#,
                    ));
                }
            },
        })
    }
}

/// A key as an error names it: as it is when it is a plain word, else as a
/// JSON string (so an empty or odd key stays visible).
fn key_name(k: &str) -> String {
    let plain = !k.is_empty()
        && k.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    if plain {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// At most this many passthrough routes, and as many bearer tokens.
const MAX_LIST: usize = 64;

/// An optional array of at most [`MAX_LIST`] items (none when absent).
fn short_list<'v, 'a>(
    v: Option<&'v Value<'a>>,
    field: &str,
    items: &str,
) -> Result<&'v [Value<'a>], SettingsError> {
    match v {
        None => Ok(&[]),
        Some(v) => v
            .as_array()
            .filter(|a| a.len() <= MAX_LIST)
            .map(Vec::as_slice)
            .ok_or_else(|| {
                bad(
                    field,
                    format!("must be an array of at most {MAX_LIST} {items}"),
                )
            }),
    }
}

/// `PassthroughRoutes`: distinct absolute paths of at most 256 characters
/// (letters, digits and `/._~-:@+,`; no empty, `.` or `..` segment), each
/// either a path or a path followed by `/*` (every path under it), none of
/// them one of the runtime API's (`/ping`, `/invocations`, `/endpoints/...`).
fn passthrough_routes(v: Option<&Value>) -> Result<Vec<String>, SettingsError> {
    let list = short_list(v, "PassthroughRoutes", "paths")?;
    let mut out: Vec<String> = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let field = format!("PassthroughRoutes[{i}]");
        let p = p.as_str().ok_or_else(|| bad(&field, "must be a string"))?;
        let path = p.strip_suffix("/*").unwrap_or(p);
        if p.len() > 256 || !plain_path(path) {
            return Err(bad(
                &field,
                "must be an absolute path such as /v1/chat/completions, or one followed by /* for every path under it such as /v1/* (at most 256 characters: letters, digits and /._~-:@+,; no empty, . or .. segment; no query)",
            ));
        }
        if path == "/ping"
            || path == "/invocations"
            || path == "/endpoints"
            || path.starts_with("/endpoints/")
        {
            return Err(bad(
                &field,
                format!("{p} is a route of the runtime API; it cannot be a passthrough route"),
            ));
        }
        if out.iter().any(|o| o == p) {
            return Err(bad(&field, format!("{p} appears twice")));
        }
        out.push(p.to_string());
    }
    Ok(out)
}

/// An absolute path of letters, digits and `/._~-:@+,` with no empty, `.`
/// or `..` segment: what a passthrough route names, and what a path under a
/// `/*` route must be to match it (so that the path the model server
/// resolves is the one capline matched: no dot segments, no
/// percent-encoding).
pub(crate) fn plain_path(p: &str) -> bool {
    let allowed = |c: u8| c.is_ascii_alphanumeric() || b"/._~-:@+,".contains(&c);
    p.bytes().all(allowed)
        && p.strip_prefix('/').is_some_and(|rest| {
            rest.split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
        })
}

/// `BearerTokens`: at most 64 distinct tokens of 16 to 1024 visible ASCII
/// characters.
fn bearer_tokens(v: Option<&Value>) -> Result<Vec<String>, SettingsError> {
    let list = short_list(v, "BearerTokens", "tokens")?;
    let mut out: Vec<String> = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let t = t
            .as_str()
            .filter(|t| (16..=1024).contains(&t.len()) && t.bytes().all(|c| c.is_ascii_graphic()))
            .ok_or_else(|| {
                bad(
                    &format!("BearerTokens[{i}]"),
                    "must be a string of 16 to 1024 visible ASCII characters",
                )
            })?;
        if out.iter().any(|o| o == t) {
            return Err(bad(&format!("BearerTokens[{i}]"), "appears twice"));
        }
        out.push(t.to_string());
    }
    Ok(out)
}

/// `AccessKeys`: `[{"AccessKeyId", "SecretAccessKey"}, ...]`.
fn access_keys(keys: &Value) -> Result<Vec<(String, String)>, SettingsError> {
    let keys = keys
        .as_array()
        .ok_or_else(|| bad("AccessKeys", "must be an array"))?;
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let get = |f: &str| {
            k.get(f)
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| {
                    bad(
                        &format!("AccessKeys[{i}].{f}"),
                        "is required (a non-empty string)",
                    )
                })
        };
        out.push((get("AccessKeyId")?, get("SecretAccessKey")?));
    }
    Ok(out)
}

/// `{list}[i]`, with its engine config derived from `base`, and its
/// `SamplingPercentage` when `extra` allows that key (shadow variants).
fn variant(
    list: &str,
    i: usize,
    v: &Value,
    base: &Config,
    extra: &[&str],
) -> Result<(VariantSettings, Option<f64>), SettingsError> {
    let field = |k: &str| format!("{list}[{i}].{k}");
    let o = v
        .as_object()
        .ok_or_else(|| bad(&format!("{list}[{i}]"), "must be an object"))?;
    let mut known = vec!["VariantName", "InitialVariantWeight", "ModelUrl"];
    known.extend_from_slice(extra);
    for k in o.keys() {
        if !known.contains(&k.as_ref()) {
            return Err(bad(
                &field(&key_name(k)),
                format!("unknown field (known: {})", known.join(", ")),
            ));
        }
    }
    let share = o
        .get("SamplingPercentage")
        .map(|p| {
            p.cast_f64()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or_else(|| {
                    bad(
                        &field("SamplingPercentage"),
                        "must be a number from 0 to 100",
                    )
                })
        })
        .transpose()?;
    let name = o
        .get("VariantName")
        .and_then(|v| v.as_str())
        .filter(|n| capline::config::is_valid_name(n))
        .ok_or_else(|| {
            bad(
                &field("VariantName"),
                "is required: 1-63 letters, digits and hyphens",
            )
        })?
        .to_string();
    let weight = match o.get("InitialVariantWeight") {
        None => 1.0,
        Some(w) => w
            .cast_f64()
            .filter(|w| w.is_finite() && *w >= 0.0)
            .ok_or_else(|| bad(&field("InitialVariantWeight"), "must be a number >= 0"))?,
    };
    let authority = o
        .get("ModelUrl")
        .and_then(|v| v.as_str())
        .and_then(|u| u.strip_prefix("http://"))
        .ok_or_else(|| {
            bad(
                &field("ModelUrl"),
                "is required: the model server's base URL, http://HOST:PORT",
            )
        })?
        .trim_end_matches('/');
    let authority = HeaderValue::from_str(authority)
        .ok()
        .filter(|_| !authority.is_empty() && !authority.contains('/'))
        .ok_or_else(|| {
            bad(
                &field("ModelUrl"),
                "must be http://HOST:PORT (no path: the container contract's paths are /ping and /invocations)",
            )
        })?;
    // The variant's engine config: the shared parts, its name, its own spool.
    let mut config = base.clone();
    config.variant_name.clone_from(&name);
    config.engine.spool_dir = PathBuf::from(&config.engine.spool_dir).join(&name);
    Ok((
        VariantSettings {
            name,
            weight,
            authority,
            config,
        },
        share,
    ))
}

#[cfg(test)]
mod tests {
    use super::Settings;

    /// A valid endpoint config with `extra` members added (or replaced).
    fn config(extra: &str) -> String {
        let base = r#""EndpointName": "churn",
            "ProductionVariants": [{"VariantName": "A", "ModelUrl": "http://127.0.0.1:9001"}],
            "DataCaptureConfig": {"InitialSamplingPercentage": 100, "DestinationS3Uri": "file:///tmp/x",
              "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]},
            "Engine": {"SpoolDir": "/tmp/spool"}"#;
        if extra.is_empty() {
            format!("{{{base}}}")
        } else {
            format!("{{{extra}, {base}}}")
        }
    }

    /// The error parsing `text` gives; panics if it parses.
    fn error(text: &str) -> String {
        match Settings::parse(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_valid_config_parses_with_its_defaults() {
        let s = Settings::parse(&config("")).expect("valid");
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.admin_listen.to_string(), "127.0.0.1:8081");
        assert_eq!(s.max_payload, 6 * 1024 * 1024);
        assert_eq!(s.upstream_timeout.as_secs(), 60);
        assert_eq!(s.variants.len(), 1);
        let v = &s.variants[0];
        assert_eq!(
            (v.name.as_str(), v.weight, v.authority.to_str().unwrap()),
            ("A", 1.0, "127.0.0.1:9001")
        );
        assert_eq!(v.config.variant_name, "A");
        assert_eq!(v.config.endpoint_name, "churn");
        assert_eq!(v.config.engine.spool_dir.to_str(), Some("/tmp/spool/A"));
    }

    #[test]
    fn http_threads_default_to_one_and_are_bounded() {
        assert_eq!(Settings::parse(&config("")).unwrap().http_threads, 1);
        let s = Settings::parse(&config(r#""HttpThreads": 4"#)).expect("valid");
        assert_eq!(s.http_threads, 4);
        for bad in ["0", "257", "1.5", "\"2\""] {
            let e = error(&config(&format!(r#""HttpThreads": {bad}"#)));
            assert!(e.contains("HttpThreads"), "{bad}: {e}");
        }
    }

    #[test]
    fn shadow_variants_get_a_share_and_a_folder_of_their_own() {
        let s = Settings::parse(&config(
            r#""ShadowProductionVariants": [
                {"VariantName": "Shadow-01", "InitialVariantWeight": 0.25, "ModelUrl": "http://127.0.0.1:9002"},
                {"VariantName": "Shadow-02", "SamplingPercentage": 5, "ModelUrl": "http://127.0.0.1:9003"},
                {"VariantName": "Shadow-03", "InitialVariantWeight": 3, "ModelUrl": "http://127.0.0.1:9004"}],
              "MaxShadowInFlight": 8"#,
        ))
        .expect("valid");
        let shares: Vec<(&str, f64)> = s
            .shadows
            .iter()
            .map(|v| (v.name.as_str(), v.mirror_percentage))
            .collect();
        assert_eq!(
            shares,
            [
                ("Shadow-01", 25.0),
                ("Shadow-02", 5.0),
                ("Shadow-03", 100.0)
            ]
        );
        assert_eq!(s.shadows[0].config.variant_name, "Shadow-01");
        assert_eq!(
            s.shadows[0].config.engine.spool_dir.to_str(),
            Some("/tmp/spool/Shadow-01")
        );
        assert_eq!(s.max_shadow_in_flight, 8);
        assert!(Settings::parse(&config("")).unwrap().shadows.is_empty());
    }

    #[test]
    fn passthrough_routes_and_their_settings_parse() {
        let s = Settings::parse(&config(
            r#""PassthroughRoutes": ["/v1/chat/completions", "/v1/completions", "/v1/models/m:predict", "/v1/models/*"],
              "BearerTokens": ["sk-0123456789abcdef"], "CaptureBrokenStreams": "Partial""#,
        ))
        .expect("valid");
        assert_eq!(
            s.passthrough,
            [
                "/v1/chat/completions",
                "/v1/completions",
                "/v1/models/m:predict",
                "/v1/models/*"
            ]
        );
        assert_eq!(s.bearer_tokens, ["sk-0123456789abcdef"]);
        assert!(s.capture_partial_streams);
        let d = Settings::parse(&config("")).expect("valid");
        assert!(d.passthrough.is_empty() && d.bearer_tokens.is_empty());
        assert!(!d.capture_partial_streams);
    }

    #[test]
    fn each_bad_setting_is_named_in_its_error() {
        // simd-json keeps the first of two equal keys, so these (placed first) replace the base's.
        let variants = |v: &str| config(&format!(r#""ProductionVariants": [{v}]"#));
        let cases: Vec<(String, &str)> = vec![
            ("{".to_string(), "(document)"),
            (config(r#""Colour": 1"#), "Colour: unknown field"),
            (config(r#""": 1"#), "\"\": unknown field"),
            (
                config(r#""Listen": "nowhere""#),
                "Listen: must be HOST:PORT",
            ),
            (
                config(r#""AdminListen": "0.0.0.0:8081""#),
                "AdminToken: is required when AdminListen",
            ),
            (
                config(r#""MaxPayloadBytes": 0"#),
                "MaxPayloadBytes: must be",
            ),
            (
                config(r#""UpstreamTimeoutSeconds": 0"#),
                "UpstreamTimeoutSeconds: must be",
            ),
            (
                config(r#""AccessKeys": [{"AccessKeyId": "AKID"}]"#),
                "AccessKeys[0].SecretAccessKey: is required",
            ),
            (
                config(r#""Engine": {"SpoolDir": "/tmp/s", "RingBytes": 1}"#),
                "Engine.RingBytes: must be",
            ),
            (variants(""), "ProductionVariants: is required"),
            (
                variants(r#"{"VariantName": "A B", "ModelUrl": "http://h:1"}"#),
                "ProductionVariants[0].VariantName",
            ),
            (
                variants(r#"{"VariantName": "A", "ModelUrl": "https://h:1"}"#),
                "ProductionVariants[0].ModelUrl: is required",
            ),
            (
                variants(r#"{"VariantName": "A", "ModelUrl": "http://h:1/models/churn"}"#),
                "ProductionVariants[0].ModelUrl: must be http://HOST:PORT",
            ),
            // No host at all (the fuzz target `endpoint_settings` found
            // that this once panicked instead).
            (
                variants(r#"{"VariantName": "A", "ModelUrl": "http://"}"#),
                "ProductionVariants[0].ModelUrl: must be http://HOST:PORT",
            ),
            (
                variants(r#"{"VariantName": "A", "ModelUrl": "http:///"}"#),
                "ProductionVariants[0].ModelUrl: must be http://HOST:PORT",
            ),
            (
                variants(
                    r#"{"VariantName": "A", "ModelUrl": "http://h:1"}, {"VariantName": "A", "ModelUrl": "http://h:2"}"#,
                ),
                "ProductionVariants[1].VariantName: A appears twice",
            ),
            (
                variants(
                    r#"{"VariantName": "A", "InitialVariantWeight": -1, "ModelUrl": "http://h:1"}"#,
                ),
                "ProductionVariants[0].InitialVariantWeight: must be a number >= 0",
            ),
            (
                variants(
                    r#"{"VariantName": "A", "InitialVariantWeight": 0, "ModelUrl": "http://h:1"}"#,
                ),
                "ProductionVariants: at least one InitialVariantWeight must be > 0",
            ),
            (
                variants(
                    &(0..11)
                        .map(|i| format!(r#"{{"VariantName": "V{i}", "ModelUrl": "http://h:1"}}"#))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                "ProductionVariants: is required (an array of 1 to 10 variants)",
            ),
            (
                variants(r#"{"VariantName": "A", "ModelUrl": "http://h:1", "Image": "x"}"#),
                "ProductionVariants[0].Image: unknown field",
            ),
            (
                variants(
                    r#"{"VariantName": "A", "ModelUrl": "http://h:1", "SamplingPercentage": 5}"#,
                ),
                "ProductionVariants[0].SamplingPercentage: unknown field",
            ),
            (
                config(r#""ShadowProductionVariants": {}"#),
                "ShadowProductionVariants: must be an array",
            ),
            (
                config(
                    r#""ShadowProductionVariants": [{"VariantName": "A", "ModelUrl": "http://h:2"}]"#,
                ),
                "ShadowProductionVariants[0].VariantName: A appears twice",
            ),
            (
                config(
                    r#""ShadowProductionVariants": [{"VariantName": "S", "ModelUrl": "http://h:2", "SamplingPercentage": 101}]"#,
                ),
                "ShadowProductionVariants[0].SamplingPercentage: must be a number from 0 to 100",
            ),
            (
                config(r#""ShadowProductionVariants": [{"VariantName": "S"}]"#),
                "ShadowProductionVariants[0].ModelUrl: is required",
            ),
            (
                config(r#""MaxShadowInFlight": 0"#),
                "MaxShadowInFlight: must be",
            ),
            (
                config(r#""PassthroughRoutes": "/v1/completions""#),
                "PassthroughRoutes: must be an array",
            ),
            (
                config(r#""PassthroughRoutes": ["/v1/completions", "v1/chat"]"#),
                "PassthroughRoutes[1]: must be an absolute path",
            ),
            (
                config(r#""PassthroughRoutes": ["/v1/../admin"]"#),
                "PassthroughRoutes[0]: must be an absolute path",
            ),
            (
                config(r#""PassthroughRoutes": ["/v1/x?y=1"]"#),
                "PassthroughRoutes[0]: must be an absolute path",
            ),
            (
                config(r#""PassthroughRoutes": ["/invocations"]"#),
                "PassthroughRoutes[0]: /invocations is a route of the runtime API",
            ),
            (
                config(r#""PassthroughRoutes": ["/endpoints/x/invocations"]"#),
                "PassthroughRoutes[0]: /endpoints/x/invocations is a route",
            ),
            (
                config(r#""PassthroughRoutes": ["/v1/*", "/endpoints/*"]"#),
                "PassthroughRoutes[1]: /endpoints/* is a route of the runtime API",
            ),
            (
                config(r#""PassthroughRoutes": ["/*"]"#),
                "PassthroughRoutes[0]: must be an absolute path",
            ),
            (
                config(r#""PassthroughRoutes": ["/v1/*/completions"]"#),
                "PassthroughRoutes[0]: must be an absolute path",
            ),
            (
                config(r#""PassthroughRoutes": ["/v1/models*"]"#),
                "PassthroughRoutes[0]: must be an absolute path",
            ),
            (
                config(r#""PassthroughRoutes": ["/v1/completions", "/v1/completions"]"#),
                "PassthroughRoutes[1]: /v1/completions appears twice",
            ),
            (
                config(r#""BearerTokens": ["short"]"#),
                "BearerTokens[0]: must be a string of 16",
            ),
            (
                config(r#""BearerTokens": ["0123456789abcdef 0123"]"#),
                "BearerTokens[0]: must be a string of 16",
            ),
            (
                config(r#""CaptureBrokenStreams": "partial""#),
                r#"CaptureBrokenStreams: must be "Skip" or "Partial""#,
            ),
        ];
        for (text, want) in cases {
            let got = error(&text);
            assert!(
                got.starts_with(want),
                "{want:?} expected, got {got:?} for {text}"
            );
        }
    }
}
