//! `capline endpoint`: a SageMaker-compatible real-time endpoint in front of
//! model servers that speak the SageMaker container contract
//! (`GET /ping`, `POST /invocations`), with data capture on the way back.
//!
//! - Clients use the SageMaker runtime API: `POST /endpoints/{name}/invocations`
//!   (boto3's `invoke_endpoint`, the SageMaker SDK's `Predictor`).
//! - Requests are spread over `ProductionVariants` by weight, or sent to the
//!   variant named in `X-Amzn-SageMaker-Target-Variant`.
//! - Each variant has its own engine and capture folder
//!   (`{prefix}/{endpoint}/{variant}/...`), as SageMaker does.
//! - Sidecar mode: plain `POST /invocations` and `GET /ping` go to the first
//!   variant's model.
//! - Only successful invocations are captured (request body and Content-Type,
//!   response body and Content-Type, the inference id header); headers such as
//!   Authorization or cookies never are. `capture()` never blocks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use capline::{Capture, Config, Engine, Payload};

use crate::json_string as json;

/// Arguments of `capline endpoint`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The endpoint config (JSON): the engine's config plus
    /// `ProductionVariants` and `Listen`. See docs/OPERATIONS.md.
    #[arg(long)]
    config: PathBuf,
}

const INFERENCE_ID: &str = "x-amzn-sagemaker-inference-id";
const TARGET_VARIANT: &str = "x-amzn-sagemaker-target-variant";
const CUSTOM_ATTRIBUTES: &str = "x-amzn-sagemaker-custom-attributes";
const INVOKED_VARIANT: &str = "x-amzn-invoked-production-variant";
const ERROR_TYPE: &str = "x-amzn-errortype";

/// One production variant: a model server and its capture engine.
pub(crate) struct Variant {
    pub(crate) name: String,
    /// The routing weight, as `f64` bits (changed at run time by the admin API).
    weight: AtomicU64,
    /// The model's `HOST:PORT` from its `ModelUrl` (what connections go to,
    /// and the `Host` header).
    authority: HeaderValue,
    pub(crate) engine: Engine,
    pub(crate) metrics: crate::admin::VariantMetrics,
}

impl Variant {
    pub(crate) fn weight(&self) -> f64 {
        f64::from_bits(self.weight.load(Ordering::Relaxed))
    }

    pub(crate) fn set_weight(&self, w: f64) {
        self.weight.store(w.to_bits(), Ordering::Relaxed);
    }
}

/// The parsed endpoint config.
pub(crate) struct Settings {
    endpoint_name: String,
    listen: SocketAddr,
    admin_listen: SocketAddr,
    admin_token: Option<String>,
    /// (AccessKeyId, SecretAccessKey) pairs; empty: requests are not verified.
    access_keys: Vec<(String, String)>,
    max_payload: usize,
    upstream_timeout: Duration,
    /// (name, weight, url, engine config) per variant.
    variants: Vec<(String, f64, String, Config)>,
}

impl Settings {
    /// Each variant's engine config, in `ProductionVariants` order.
    pub(crate) fn configs(&self) -> impl Iterator<Item = &Config> {
        self.variants.iter().map(|(.., c)| c)
    }
}

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn bad(field: &str, rule: &str) -> BoxError {
    format!("{field}: {rule}").into()
}

/// Reads the endpoint config: `EndpointName`, `Listen` (default
/// `127.0.0.1:8080`), `MaxPayloadBytes` (default 6 MiB),
/// `UpstreamTimeoutSeconds` (default 60), `ProductionVariants` (each
/// `VariantName`, `InitialVariantWeight` (default 1), `ModelUrl`),
/// `DataCaptureConfig` and `Engine` (as for the engine; each variant's spool
/// is `Engine.SpoolDir/{VariantName}`).
pub(crate) fn parse(text: &str) -> Result<Settings, BoxError> {
    use simd_json::prelude::*;
    let mut bytes = text.as_bytes().to_vec();
    let doc = simd_json::to_owned_value(&mut bytes)
        .map_err(|e| bad("(document)", &format!("must be valid JSON ({e})")))?;
    let obj = doc
        .as_object()
        .ok_or_else(|| bad("(document)", "must be a JSON object"))?;
    const KNOWN: [&str; 10] = [
        "EndpointName",
        "AccessKeys",
        "Listen",
        "AdminListen",
        "AdminToken",
        "MaxPayloadBytes",
        "UpstreamTimeoutSeconds",
        "ProductionVariants",
        "DataCaptureConfig",
        "Engine",
    ];
    for k in obj.keys() {
        if !KNOWN.contains(&k.as_str()) {
            return Err(bad(
                k,
                &format!("unknown field (known: {})", KNOWN.join(", ")),
            ));
        }
    }
    let endpoint_name = obj
        .get("EndpointName")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("EndpointName", "is required (a string)"))?
        .to_string();
    let listen: SocketAddr = obj
        .get("Listen")
        .map(|v| v.as_str().ok_or_else(|| bad("Listen", "must be a string")))
        .transpose()?
        .unwrap_or("127.0.0.1:8080")
        .parse()
        .map_err(|e| bad("Listen", &format!("must be HOST:PORT ({e})")))?;
    let admin_listen: SocketAddr = obj
        .get("AdminListen")
        .map(|v| {
            v.as_str()
                .ok_or_else(|| bad("AdminListen", "must be a string"))
        })
        .transpose()?
        .unwrap_or("127.0.0.1:8081")
        .parse()
        .map_err(|e| bad("AdminListen", &format!("must be HOST:PORT ({e})")))?;
    let admin_token = obj
        .get("AdminToken")
        .map(|v| {
            v.as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .ok_or_else(|| bad("AdminToken", "must be a non-empty string"))
        })
        .transpose()?;
    if !admin_listen.ip().is_loopback() && admin_token.is_none() {
        return Err(bad(
            "AdminToken",
            "is required when AdminListen is not a loopback address",
        ));
    }
    let mut access_keys = Vec::new();
    if let Some(keys) = obj.get("AccessKeys") {
        let keys = keys
            .as_array()
            .ok_or_else(|| bad("AccessKeys", "must be an array"))?;
        for (i, k) in keys.iter().enumerate() {
            let field = |f: &str| format!("AccessKeys[{i}].{f}");
            let get = |f: &str| {
                k.get(f)
                    .and_then(|v| v.as_str())
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| bad(&field(f), "is required (a non-empty string)"))
            };
            access_keys.push((get("AccessKeyId")?, get("SecretAccessKey")?));
        }
    }
    let max_payload = match obj.get("MaxPayloadBytes") {
        None => 6 * 1024 * 1024,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=1 << 30).contains(n))
            .ok_or_else(|| bad("MaxPayloadBytes", "must be an integer from 1 to 1073741824"))?
            as usize,
    };
    let upstream_timeout = match obj.get("UpstreamTimeoutSeconds") {
        None => Duration::from_secs(60),
        Some(v) => Duration::from_secs(v.as_u64().filter(|n| (1..=3600).contains(n)).ok_or_else(
            || {
                bad(
                    "UpstreamTimeoutSeconds",
                    "must be an integer from 1 to 3600",
                )
            },
        )?),
    };
    let dcc = obj
        .get("DataCaptureConfig")
        .ok_or_else(|| bad("DataCaptureConfig", "is required"))?;
    let engine = obj
        .get("Engine")
        .ok_or_else(|| bad("Engine", "is required"))?;
    let spool = engine
        .get("SpoolDir")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("Engine.SpoolDir", "is required (a string)"))?
        .to_string();
    let list = obj
        .get("ProductionVariants")
        .and_then(|v| v.as_array())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("ProductionVariants", "is required (a non-empty array)"))?;
    let mut variants = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let field = |k: &str| format!("ProductionVariants[{i}].{k}");
        let o = v
            .as_object()
            .ok_or_else(|| bad(&field(""), "must be an object"))?;
        for k in o.keys() {
            if !["VariantName", "InitialVariantWeight", "ModelUrl"].contains(&k.as_str()) {
                return Err(bad(
                    &field(k),
                    "unknown field (known: VariantName, InitialVariantWeight, ModelUrl)",
                ));
            }
        }
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
        if variants
            .iter()
            .any(|(n, ..): &(String, f64, String, Config)| *n == name)
        {
            return Err(bad(&field("VariantName"), &format!("{name} appears twice")));
        }
        let weight = match o.get("InitialVariantWeight") {
            None => 1.0,
            Some(w) => w
                .cast_f64()
                .filter(|w| w.is_finite() && *w >= 0.0)
                .ok_or_else(|| bad(&field("InitialVariantWeight"), "must be a number >= 0"))?,
        };
        let url = o
            .get("ModelUrl")
            .and_then(|v| v.as_str())
            .filter(|u| u.starts_with("http://"))
            .ok_or_else(|| {
                bad(
                    &field("ModelUrl"),
                    "is required: the model server's base URL, http://HOST:PORT",
                )
            })?
            .trim_end_matches('/')
            .to_string();
        let authority = &url["http://".len()..];
        if authority.is_empty()
            || authority.contains('/')
            || HeaderValue::from_str(authority).is_err()
        {
            return Err(bad(
                &field("ModelUrl"),
                "must be http://HOST:PORT (no path: the container contract's paths are /ping and /invocations)",
            ));
        }
        // The variant's engine config: the shared parts, its name, its own spool.
        let mut engine_settings = engine.clone();
        if let Some(e) = engine_settings.as_object_mut() {
            e.insert(
                "SpoolDir".into(),
                simd_json::OwnedValue::from(format!("{}/{name}", spool.trim_end_matches('/'))),
            );
        }
        let mut one = simd_json::owned::Object::new();
        one.insert(
            "EndpointName".into(),
            simd_json::OwnedValue::from(endpoint_name.clone()),
        );
        one.insert(
            "VariantName".into(),
            simd_json::OwnedValue::from(name.clone()),
        );
        one.insert("DataCaptureConfig".into(), dcc.clone());
        one.insert("Engine".into(), engine_settings);
        let config = Config::from_json(&simd_json::OwnedValue::from(one).encode())?;
        variants.push((name, weight, url, config));
    }
    if variants.iter().all(|(_, w, ..)| *w == 0.0) {
        return Err(bad(
            "ProductionVariants",
            "at least one InitialVariantWeight must be > 0",
        ));
    }
    Ok(Settings {
        endpoint_name,
        listen,
        admin_listen,
        admin_token,
        access_keys,
        max_payload,
        upstream_timeout,
        variants,
    })
}

/// What the request handlers share.
pub(crate) struct State {
    pub(crate) endpoint_name: String,
    max_payload: usize,
    upstream_timeout: Duration,
    pub(crate) variants: Vec<Variant>,
    /// Verifies SigV4 on runtime API requests when access keys are configured.
    verifier: Option<crate::sigv4::Verifier>,
    /// Requests refused before reaching a model (413, unknown variant or endpoint).
    pub(crate) refused: AtomicU64,
}

impl State {
    /// The index of a variant by weight (the target variant header, when
    /// given, wins).
    fn pick(&self, target: Option<&str>) -> Result<usize, String> {
        if let Some(t) = target {
            return self
                .variants
                .iter()
                .position(|v| v.name == t)
                .ok_or_else(|| {
                    format!(
                        "Target variant {t} not found for endpoint {}",
                        self.endpoint_name
                    )
                });
        }
        // One snapshot of the weights (they may change concurrently).
        let weights: Vec<f64> = self.variants.iter().map(Variant::weight).collect();
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return Err("every variant has weight 0".to_string());
        }
        let mut x = fastrand::f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return Ok(i);
            }
            x -= w;
        }
        // Rounding left x at the top end: the last variant with weight > 0.
        weights
            .iter()
            .rposition(|w| *w > 0.0)
            .ok_or_else(|| "every variant has weight 0".to_string())
    }
}

type Body = Full<Bytes>;

/// A SageMaker runtime error: `x-amzn-errortype` and a JSON body.
fn error(status: StatusCode, kind: &'static str, message: &str) -> Response<Body> {
    error_with(status, kind, format!(r#"{{"message":{}}}"#, json(message)))
}

/// A SageMaker runtime error response: `x-amzn-errortype: kind` and a JSON body.
fn error_with(status: StatusCode, kind: &'static str, body: String) -> Response<Body> {
    let mut r = crate::http::reply(status, "application/json", body);
    r.headers_mut()
        .insert(ERROR_TYPE, HeaderValue::from_static(kind));
    r
}

/// SageMaker's ModelError (424): the model answered with an error, or not at all.
fn model_error(variant: &str, status: u16, original: &str) -> Response<Body> {
    let message = if status == 0 {
        format!("Received server error (0) from {variant} with message \"{original}\".")
    } else {
        format!("Received error ({status}) from {variant} with message \"{original}\".")
    };
    error_with(
        StatusCode::FAILED_DEPENDENCY,
        "ModelError",
        format!(
            r#"{{"message":{},"OriginalStatusCode":{status},"OriginalMessage":{},"LogStreamArn":""}}"#,
            json(&message),
            json(original)
        ),
    )
}

async fn handle(
    state: Arc<State>,
    pinned: Arc<Pinned>,
    req: Request<Incoming>,
) -> Result<Response<Body>, hyper::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let inference_id = req.headers().get(INFERENCE_ID).cloned();
    let path = req.uri().path().to_string();
    let response = match (req.method(), path.as_str()) {
        (&Method::GET, "/ping") => ping(&state).await,
        (&Method::POST, "/invocations") => invoke(&state, &pinned, req, true).await,
        (&Method::POST, p) => match p
            .strip_prefix("/endpoints/")
            .and_then(|r| r.strip_suffix("/invocations"))
        {
            Some(name) if name == state.endpoint_name => invoke(&state, &pinned, req, false).await,
            Some(name) => error(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                &format!("Endpoint {name} not found."),
            ),
            None => error(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                "unknown path",
            ),
        },
        _ => error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "unknown path",
        ),
    };
    // The access log: one event per request (off unless CAPLINE_LOG enables
    // the `capline::access` target; the bodies are never logged).
    tracing::info!(
        target: "capline::access",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        variant = response
            .headers()
            .get(INVOKED_VARIANT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        error = response
            .headers()
            .get(ERROR_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        inference_id = inference_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        "request"
    );
    Ok(response)
}

/// Health of every variant's model (`GET /ping` on a new connection, 2 s
/// limit): 200 when all answer 200, else 503; the body says which.
async fn ping(state: &State) -> Response<Body> {
    let mut all = true;
    let mut parts = Vec::new();
    for v in &state.variants {
        let ask = async {
            let mut sender = connect(v).await?;
            let req = Request::get(hyper::Uri::from_static("/ping"))
                .header(HOST, v.authority.clone())
                .body(Full::new(Bytes::new()))?;
            Ok::<_, BoxError>(sender.send_request(req).await?.status())
        };
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(2), ask).await,
            Ok(Ok(StatusCode::OK))
        );
        all &= ok;
        parts.push(format!(
            r#"{}:{}"#,
            json(&v.name),
            if ok { "\"healthy\"" } else { "\"unhealthy\"" }
        ));
    }
    let status = if all {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    crate::http::reply(
        status,
        "application/json",
        format!("{{{}}}", parts.join(",")),
    )
}

/// Forwards one invocation to a variant's model and captures it on success.
/// `sidecar`: the plain container-contract form, always to the first variant.
async fn invoke(
    state: &State,
    pinned: &Pinned,
    req: Request<Incoming>,
    sidecar: bool,
) -> Response<Body> {
    let (parts, incoming) = req.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let picked = if sidecar {
        Ok(0)
    } else {
        state.pick(header(TARGET_VARIANT))
    };
    let (i, variant) = match picked {
        Ok(i) => (i, &state.variants[i]),
        Err(msg) => {
            state.refused.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::BAD_REQUEST, "ValidationError", &msg);
        }
    };
    let content_type = header(CONTENT_TYPE.as_str()).unwrap_or("application/octet-stream");
    let inference_id = header(INFERENCE_ID);
    let body = match Limited::new(incoming, state.max_payload).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            state.refused.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "ValidationError",
                &format!(
                    "Request body is larger than the {} byte limit.",
                    state.max_payload
                ),
            );
        }
        // The client went away mid-request: nothing to answer, nothing captured.
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                &format!("reading the body: {e}"),
            );
        }
    };

    if let Some(v) = state.verifier.as_ref().filter(|_| !sidecar) {
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        if let Err(why) = v.verify(
            parts.method.as_str(),
            path_and_query,
            &parts.headers,
            &body,
            std::time::SystemTime::now(),
        ) {
            // Refused and not captured.
            state.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                reason = why,
                "refused a request with a bad or missing signature"
            );
            return error(StatusCode::FORBIDDEN, "InvalidSignatureException", &why);
        }
    }
    // The request to the model: the body and the headers the container
    // contract passes on.
    let mut up = Request::post(hyper::Uri::from_static("/invocations"))
        .header(HOST, variant.authority.clone())
        .header(CONTENT_TYPE, content_type);
    for name in [ACCEPT.as_str(), CUSTOM_ATTRIBUTES, INFERENCE_ID] {
        if let Some(v) = parts.headers.get(name) {
            up = up.header(name, v.clone());
        }
    }
    let Ok(up) = up.body(Full::new(body.clone())) else {
        return error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "invalid request headers",
        );
    };
    let started = Instant::now();
    let input = Input {
        content_type,
        body: &body,
        inference_id,
    };
    let response = forward(state, i, pinned, up, input).await;
    variant
        .metrics
        .record(response.status().as_u16(), started.elapsed());
    response
}

/// What is captured of the request.
struct Input<'a> {
    content_type: &'a str,
    body: &'a Bytes,
    inference_id: Option<&'a str>,
}

/// One downstream connection's connections to the models, one per variant,
/// reused request after request. HTTP/1 carries one request at a time on a
/// connection, so a downstream connection never needs more than one upstream
/// connection per variant, and no pool is shared between connections.
pub(crate) struct Pinned(std::sync::Mutex<Vec<Option<SendRequest<Full<Bytes>>>>>);

impl Pinned {
    fn new(variants: usize) -> Self {
        Pinned(std::sync::Mutex::new((0..variants).map(|_| None).collect()))
    }

    /// The open connection to variant `i`, if there is one (taken out while in use).
    fn take(&self, i: usize) -> Option<SendRequest<Full<Bytes>>> {
        let mut slots = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots
            .get_mut(i)
            .and_then(Option::take)
            .filter(|s| !s.is_closed())
    }

    /// Keeps the connection to variant `i` for the next request.
    fn put(&self, i: usize, sender: SendRequest<Full<Bytes>>) {
        let mut slots = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = slots.get_mut(i) {
            *slot = Some(sender);
        }
    }
}

/// Opens a connection to a variant's model; its I/O runs on a task of its own.
async fn connect(variant: &Variant) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let addr = variant.authority.to_str()?;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request to variant `i`'s model on the connection pinned to this
/// downstream connection (opening one if needed), and reads the whole answer.
/// A request that a reused connection refused before sending it (the model
/// closed the idle connection) goes once more on a new connection; a request
/// that was sent is never sent twice.
async fn exchange(
    variant: &Variant,
    i: usize,
    pinned: &Pinned,
    mut req: Request<Full<Bytes>>,
) -> Result<(hyper::http::response::Parts, Bytes), BoxError> {
    let mut reused = pinned.take(i);
    loop {
        let retry_allowed = reused.is_some();
        let mut sender = match reused.take() {
            Some(s) => s,
            None => connect(variant).await?,
        };
        if let Err(e) = sender.ready().await {
            if retry_allowed {
                continue;
            }
            return Err(e.into());
        }
        match sender.try_send_request(req).await {
            Ok(answer) => {
                let (parts, body) = answer.into_parts();
                let body = body.collect().await?.to_bytes();
                pinned.put(i, sender);
                return Ok((parts, body));
            }
            Err(mut e) => match e.take_message() {
                // Not sent: hyper hands the request back.
                Some(unsent) if retry_allowed => req = unsent,
                _ => return Err(e.into_error().into()),
            },
        }
    }
}

/// Sends the request to the model and shapes its answer; captures a success.
async fn forward(
    state: &State,
    i: usize,
    pinned: &Pinned,
    up: Request<Full<Bytes>>,
    input: Input<'_>,
) -> Response<Body> {
    let variant = &state.variants[i];
    let (answer, out) = match tokio::time::timeout(
        state.upstream_timeout,
        exchange(variant, i, pinned, up),
    )
    .await
    {
        Err(_) => {
            return model_error(
                &variant.name,
                0,
                &format!(
                    "Your invocation timed out after {:?} while waiting for a response from the model",
                    state.upstream_timeout
                ),
            );
        }
        Ok(Err(e)) => {
            return model_error(&variant.name, 0, &format!("could not reach the model: {e}"));
        }
        Ok(Ok(r)) => r,
    };
    let status = answer.status;
    let out_type = answer
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let out_custom = answer.headers.get(CUSTOM_ATTRIBUTES).cloned();
    if !status.is_success() {
        // Failures are not captured as successes: not captured at all.
        return model_error(
            &variant.name,
            status.as_u16(),
            &String::from_utf8_lossy(&out),
        );
    }

    // Never blocks: sampled, copied into the ring, or dropped and counted.
    variant.engine.capture(&Capture {
        request: Payload::new(input.content_type, input.body),
        response: Payload::new(&out_type, &out),
        inference_id: input.inference_id,
        time: None,
    });

    let mut r = Response::new(Full::new(out));
    if let Ok(v) = HeaderValue::from_str(&out_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&variant.name) {
        r.headers_mut().insert(INVOKED_VARIANT, v);
    }
    if let Some(c) = out_custom {
        r.headers_mut().insert(CUSTOM_ATTRIBUTES, c);
    }
    r
}

/// Waits for Ctrl-C or SIGTERM.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// How long in-flight requests may take to finish once a stop is asked for.
const GRACE: Duration = Duration::from_secs(10);

/// Accepts connections until `stop` resolves, then lets in-flight requests
/// finish (up to [`GRACE`]) and closes idle keep-alive connections.
async fn serve(
    state: Arc<State>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let pinned = Arc::new(Pinned::new(state.variants.len()));
                let service = hyper::service::service_fn(move |req| {
                    handle(state.clone(), pinned.clone(), req)
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "in-flight requests did not finish within {GRACE:?} of the stop; they are cut"
        );
    }
}

/// A started endpoint: its listeners' addresses and what stops it.
pub(crate) struct Running {
    /// The runtime API listener (`POST /endpoints/{name}/invocations`).
    pub(crate) addr: SocketAddr,
    /// The admin API listener.
    pub(crate) admin_addr: SocketAddr,
    state: Arc<State>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

/// Starts each variant's engine, binds both listeners and serves on `rt`.
pub(crate) fn start(
    rt: &tokio::runtime::Runtime,
    settings: Settings,
) -> Result<Running, Box<dyn std::error::Error>> {
    let mut variants = Vec::new();
    for (name, weight, url, config) in settings.variants {
        let engine = Engine::start(config)?;
        let authority = HeaderValue::from_str(&url["http://".len()..])?;
        variants.push(Variant {
            name,
            weight: AtomicU64::new(weight.to_bits()),
            authority,
            engine,
            metrics: Default::default(),
        });
    }
    let state = Arc::new(State {
        endpoint_name: settings.endpoint_name,
        max_payload: settings.max_payload,
        upstream_timeout: settings.upstream_timeout,
        variants,
        refused: AtomicU64::new(0),
        verifier: (!settings.access_keys.is_empty())
            .then(|| crate::sigv4::Verifier::new(settings.access_keys)),
    });
    let listener = rt.block_on(tokio::net::TcpListener::bind(settings.listen))?;
    let addr = listener.local_addr()?;
    let admin = rt.block_on(tokio::net::TcpListener::bind(settings.admin_listen))?;
    let admin_addr = admin.local_addr()?;
    rt.spawn(crate::admin::serve(
        state.clone(),
        settings.admin_token.map(Arc::from),
        admin,
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(serve(state.clone(), listener, async move {
        let _ = stopped.await;
    }));
    Ok(Running {
        addr,
        admin_addr,
        state,
        stop,
        server,
    })
}

impl Running {
    /// The endpoint's name.
    pub(crate) fn endpoint_name(&self) -> &str {
        &self.state.endpoint_name
    }

    /// `(name, weight, model HOST:PORT)` of each variant.
    pub(crate) fn variants(&self) -> impl Iterator<Item = (&str, f64, &str)> {
        self.state.variants.iter().map(|v| {
            (
                v.name.as_str(),
                v.weight(),
                v.authority.to_str().unwrap_or(""),
            )
        })
    }

    /// Stops accepting, lets in-flight requests finish, stops `rt` (and so the
    /// admin API), then shuts each variant's engine down, delivering what it
    /// can within 30 s. Returns each variant's final stats.
    pub(crate) fn stop(
        self,
        rt: tokio::runtime::Runtime,
    ) -> Result<Vec<(String, capline::Stats)>, Box<dyn std::error::Error>> {
        let _ = self.stop.send(());
        let _ = rt.block_on(self.server);
        rt.shutdown_timeout(Duration::from_secs(1));
        let state =
            Arc::try_unwrap(self.state).map_err(|_| "request handlers still hold the engines")?;
        let mut out = Vec::new();
        for v in state.variants {
            out.push((v.name, v.engine.shutdown(Duration::from_secs(30))?));
        }
        Ok(out)
    }
}

/// A runtime for the endpoint: two worker threads.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("capline-http")
        .enable_all()
        .build()
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| format!("{}: {e}", args.config.display()))?;
    let settings = parse(&text).map_err(|e| format!("{}: {e}", args.config.display()))?;
    let rt = runtime()?;
    let running = start(&rt, settings)?;
    // Printing must not fail the server (stdout may be a closed pipe).
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "capline endpoint {} listening on http://{}",
        running.endpoint_name(),
        running.addr
    );
    for (name, weight, model) in running.variants() {
        let _ = writeln!(out, "  variant {name} (weight {weight}) -> http://{model}");
    }
    let _ = writeln!(
        out,
        "admin API on http://{} (GET /metrics, GET /variants, POST /variants/NAME)",
        running.admin_addr
    );
    let _ = out.flush();
    rt.block_on(stop_signal());
    for (name, stats) in running.stop(rt)? {
        let _ = writeln!(
            out,
            "variant {name}: kept {}, written {}, delivered {} segment(s), pending {}",
            stats.kept, stats.records_written, stats.segments_delivered, stats.segments_pending
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse;

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
        match parse(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_valid_config_parses_with_its_defaults() {
        let s = parse(&config("")).expect("valid");
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.admin_listen.to_string(), "127.0.0.1:8081");
        assert_eq!(s.max_payload, 6 * 1024 * 1024);
        assert_eq!(s.upstream_timeout.as_secs(), 60);
        assert_eq!(s.variants.len(), 1);
        let (name, weight, url, engine) = &s.variants[0];
        assert_eq!(
            (name.as_str(), *weight, url.as_str()),
            ("A", 1.0, "http://127.0.0.1:9001")
        );
        assert_eq!(engine.variant_name, "A");
    }

    #[test]
    fn each_bad_setting_is_named_in_its_error() {
        // simd-json keeps the first of two equal keys, so these (placed first) replace the base's.
        let variants = |v: &str| config(&format!(r#""ProductionVariants": [{v}]"#));
        let cases: Vec<(String, &str)> = vec![
            ("{".to_string(), "(document)"),
            (config(r#""Colour": 1"#), "Colour: unknown field"),
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
                variants(r#"{"VariantName": "A", "ModelUrl": "http://h:1", "Image": "x"}"#),
                "ProductionVariants[0].Image: unknown field",
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
