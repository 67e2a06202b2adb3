//! The runtime API: routing each request to a variant, forwarding it to the
//! model, shaping SageMaker's answers and errors, and capturing successes.
//!
//! - `POST /endpoints/{name}/invocations` (boto3's `invoke_endpoint`, the
//!   SageMaker SDK's `Predictor`): spread over the variants by weight, or
//!   sent to the one named in `X-Amzn-SageMaker-Target-Variant`.
//! - Sidecar mode: plain `POST /invocations` and `GET /ping` go to the first
//!   variant's model.
//! - `POST /endpoints/{name}/invocations-response-stream`: the same, with
//!   the model's answer streamed back as event-stream frames (`stream`).
//! - `POST` on a passthrough route (`PassthroughRoutes`, such as
//!   `/v1/chat/completions`): forwarded unchanged to the same path on a
//!   variant's model, the answer streamed back unchanged; `GET` and `HEAD`
//!   there (`/v1/models`) too, never captured.
//! - Every inference that reaches a production model (runtime, streaming,
//!   sidecar and passthrough routes) is also mirrored to the shadow
//!   variants whose share draws it (`shadow`), without waiting.
//! - Only successful invocations are captured (request body and
//!   Content-Type, response body and Content-Type, the inference id header);
//!   headers such as Authorization or cookies never are. `capture()` never blocks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use capline::{Capture, Payload};

use crate::http::{BodyError, json_string as json, read_body, reply};
use crate::state::State;
use crate::stream::{AnyBody, Framing, Record, boxed, whole};
use crate::upstream::{Answer, BoxError, Pinned, connect, exchange, invocation_head, send};
use hyper::client::conn::http1::SendRequest;

// Header names made once, at compile time: a `&str` name is parsed and
// lower-cased again at every lookup.
pub(crate) const INFERENCE_ID: HeaderName =
    HeaderName::from_static("x-amzn-sagemaker-inference-id");
const TARGET_VARIANT: HeaderName = HeaderName::from_static("x-amzn-sagemaker-target-variant");
const CUSTOM_ATTRIBUTES: HeaderName = HeaderName::from_static("x-amzn-sagemaker-custom-attributes");
const INVOKED_VARIANT: HeaderName = HeaderName::from_static("x-amzn-invoked-production-variant");
const ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");
const STREAM_ACCEPT: HeaderName = HeaderName::from_static("x-amzn-sagemaker-accept");

type Body = Full<Bytes>;

/// A SageMaker runtime error: `x-amzn-errortype` and a JSON body.
pub(crate) fn error(status: StatusCode, kind: &'static str, message: &str) -> Response<Body> {
    error_with(status, kind, format!(r#"{{"message":{}}}"#, json(message)))
}

/// A SageMaker runtime error response: `x-amzn-errortype: kind` and a JSON body.
fn error_with(status: StatusCode, kind: &'static str, body: String) -> Response<Body> {
    let mut r = reply(status, "application/json", body);
    r.headers_mut()
        .insert(ERROR_TYPE, HeaderValue::from_static(kind));
    r
}

/// SageMaker's limit on `message` and `OriginalMessage` (characters).
const MAX_MESSAGE: usize = 2048;

/// `s` cut to at most `max` characters.
fn truncate(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(at, _)| &s[..at])
}

/// SageMaker's ModelError (424): the model answered with an error, or not at
/// all. Both messages are cut to SageMaker's 2048 characters.
fn model_error(variant: &str, status: u16, original: &str) -> Response<Body> {
    let original = truncate(original, MAX_MESSAGE);
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
            json(truncate(&message, MAX_MESSAGE)),
            json(original)
        ),
    )
}

/// The ModelError of a model that did not answer within `UpstreamTimeoutSeconds`.
fn timed_out(state: &State, variant: &str) -> Response<Body> {
    model_error(
        variant,
        0,
        &format!(
            "Your invocation timed out after {:?} while waiting for a response from the model",
            state.upstream_timeout
        ),
    )
}

/// A 400 ValidationError, counted as refused.
fn invalid(state: &State, message: &str) -> Response<Body> {
    state.refused.fetch_add(1, Ordering::Relaxed);
    error(StatusCode::BAD_REQUEST, "ValidationError", message)
}

/// The routes.
pub(crate) enum Route<'a> {
    Ping,
    /// `POST /invocations`: the container contract, to the first variant.
    Sidecar,
    /// `POST /endpoints/{name}/invocations`: the runtime API.
    Runtime(&'a str),
    /// `POST /endpoints/{name}/invocations-response-stream`.
    Stream(&'a str),
    /// `POST`, `GET` or `HEAD` on one of the `PassthroughRoutes`.
    Passthrough,
    Unknown,
}

/// Whether `path` is on the passthrough route `route`: the same path, or,
/// for a route ending in `/*`, a plain path (`settings::plain_path`) under
/// it, at least one segment deeper.
fn passes(route: &str, path: &str) -> bool {
    match route.strip_suffix('*') {
        None => route == path,
        Some(prefix) => {
            path.strip_prefix(prefix)
                .is_some_and(|rest| !rest.is_empty())
                && crate::settings::plain_path(path)
        }
    }
}

/// The methods a passthrough route forwards: `POST` (an inference, captured)
/// and the reads clients make of the same paths, such as OpenAI's
/// `GET /v1/models` (forwarded, never captured).
fn passthrough_method(method: &Method) -> bool {
    *method == Method::POST || *method == Method::GET || *method == Method::HEAD
}

pub(crate) fn route<'a>(state: &State, method: &Method, path: &'a str) -> Route<'a> {
    match (method, path) {
        (&Method::GET, "/ping") => Route::Ping,
        (&Method::POST, "/invocations") => Route::Sidecar,
        (m, p) if passthrough_method(m) && state.passthrough.iter().any(|r| passes(r, p)) => {
            Route::Passthrough
        }
        (&Method::POST, p) => match p.strip_prefix("/endpoints/") {
            None => Route::Unknown,
            Some(r) => {
                if let Some(name) = r.strip_suffix("/invocations") {
                    Route::Runtime(name)
                } else if let Some(name) = r.strip_suffix("/invocations-response-stream") {
                    Route::Stream(name)
                } else {
                    Route::Unknown
                }
            }
        },
        _ => Route::Unknown,
    }
}

pub(crate) async fn handle(
    state: Arc<State>,
    pinned: Arc<Pinned>,
    req: Request<Incoming>,
) -> Result<Response<AnyBody>, hyper::Error> {
    // The access log: one event per request, off unless CAPLINE_LOG enables
    // the `capline::access` target (the bodies are never logged). What it
    // needs of the request is kept only when it is on.
    let log = access_log_on().then(|| {
        (
            Instant::now(),
            req.method().clone(),
            req.headers().get(&INFERENCE_ID).cloned(),
        )
    });
    // A second handle on the path's bytes (no copy): the request goes on.
    let uri = req.uri().clone();
    let response: Response<AnyBody> = match route(&state, req.method(), uri.path()) {
        Route::Ping => ping(&state).await.map(whole),
        Route::Sidecar => invoke(&state, &pinned, req, Entry::Sidecar)
            .await
            .map(whole),
        Route::Runtime(name) => invoke(&state, &pinned, req, Entry::Runtime(name))
            .await
            .map(whole),
        Route::Stream(name) => invoke_stream(&state, &pinned, req, name).await,
        Route::Passthrough => passthrough(&state, &pinned, req).await,
        Route::Unknown => error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "unknown path",
        )
        .map(whole),
    };
    if let Some((started, method, inference_id)) = log {
        access_log(
            started,
            &method,
            uri.path(),
            inference_id.as_ref(),
            &response,
        );
    }
    Ok(response)
}

/// The access log's event for one answered request (the bodies are never
/// logged); `started` is when its head was read.
pub(crate) fn access_log<B>(
    started: Instant,
    method: &Method,
    path: &str,
    inference_id: Option<&HeaderValue>,
    response: &Response<B>,
) {
    let header = |name: &HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    tracing::info!(
        target: "capline::access",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        variant = header(&INVOKED_VARIANT),
        error = header(&ERROR_TYPE),
        inference_id = inference_id.and_then(|v| v.to_str().ok()).unwrap_or(""),
        "request"
    );
}

/// Whether the access log is on (`CAPLINE_LOG` enables the `capline::access` target).
pub(crate) fn access_log_on() -> bool {
    tracing::enabled!(target: "capline::access", tracing::Level::INFO)
}

/// Whether every variant's model is healthy (`GET /ping` on a new
/// connection, 2 s limit each). The answer is reused for `PingCacheMillis`,
/// and one check at a time runs: a storm of pings reaches each model at
/// most once per period.
async fn healthy(state: &State) -> bool {
    let mut cached = state.ping.lock().await;
    if let Some((at, ok)) = *cached
        && at.elapsed() < state.ping_cache
    {
        return ok;
    }
    let mut all = true;
    for v in &state.variants {
        let ask = async {
            let mut sender = connect(v).await?;
            let req = Request::get(hyper::Uri::from_static("/ping"))
                .header(HOST, v.authority.clone())
                .body(Full::new(Bytes::new()))?;
            Ok::<_, BoxError>(sender.send_request(req).await?.status())
        };
        all &= matches!(
            tokio::time::timeout(Duration::from_secs(2), ask).await,
            Ok(Ok(StatusCode::OK))
        );
    }
    *cached = Some((Instant::now(), all));
    all
}

/// `GET /ping`: 200 when every model is healthy, else 503; it names no variant.
async fn ping(state: &State) -> Response<Body> {
    if healthy(state).await {
        reply(
            StatusCode::OK,
            "application/json",
            r#"{"status":"Healthy"}"#,
        )
    } else {
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            r#"{"status":"Unhealthy"}"#,
        )
    }
}

/// SageMaker's InvokeEndpoint header constraints; the first one broken, as
/// SageMaker words it.
fn check_headers(headers: &hyper::HeaderMap) -> Result<(), String> {
    let constraint = |field: &str, rule: &str| {
        format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: {rule}"
        )
    };
    let ascii = |name: &HeaderName, field: &str| -> Result<(), String> {
        match headers.get(name) {
            Some(v) if v.len() > 1024 => Err(constraint(
                field,
                "Member must have length less than or equal to 1024",
            )),
            Some(v) if !v.as_bytes().is_ascii() => Err(constraint(
                field,
                r"Member must satisfy regular expression pattern: \p{ASCII}*",
            )),
            _ => Ok(()),
        }
    };
    ascii(&CONTENT_TYPE, "contentType")?;
    ascii(&ACCEPT, "accept")?;
    ascii(&CUSTOM_ATTRIBUTES, "customAttributes")?;
    if let Some(v) = headers.get(&INFERENCE_ID) {
        let ok = v.to_str().is_ok_and(capline::format::is_valid_inference_id);
        if !ok {
            return Err(constraint(
                "inferenceId",
                r"Member must have length between 1 and 64 and satisfy regular expression pattern: \A\S[\p{Print}]*\z",
            ));
        }
    }
    if let Some(v) = headers.get(&TARGET_VARIANT) {
        let ok = v.to_str().is_ok_and(capline::config::is_valid_name);
        if !ok {
            return Err(constraint(
                "targetVariant",
                "Member must have length less than or equal to 63 and satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*",
            ));
        }
    }
    Ok(())
}

/// A request that passed every check: its head, its body, and the index of
/// the variant it goes to.
pub(crate) struct Admitted {
    pub(crate) parts: hyper::http::request::Parts,
    pub(crate) body: Bytes,
    pub(crate) i: usize,
}

/// Which way a request came in.
#[derive(Clone, Copy)]
pub(crate) enum Entry<'a> {
    /// The runtime API, with the endpoint name in its path.
    Runtime(&'a str),
    /// The container contract's `POST /invocations`: to the first variant.
    Sidecar,
    /// One of the `PassthroughRoutes`.
    Passthrough,
}

/// The 413 of a body over `MaxPayloadBytes`, counted as refused.
fn too_large(state: &State) -> Response<Body> {
    state.refused.fetch_add(1, Ordering::Relaxed);
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "ValidationError",
        &format!(
            "Request body is larger than the {} byte limit.",
            state.max_payload
        ),
    )
}

/// The 408 of a body that did not arrive within `BodyTimeoutSeconds`,
/// counted as refused.
pub(crate) fn body_late(state: &State) -> Response<Body> {
    state.refused.fetch_add(1, Ordering::Relaxed);
    error(
        StatusCode::REQUEST_TIMEOUT,
        "ValidationError",
        &format!(
            "The request body did not arrive within {:?}.",
            state.body_timeout
        ),
    )
}

/// Takes a request in, for every route that reaches a model.
///
/// In order: a declared length over the limit is refused before the body is
/// read (and before any `100 Continue`); the body is read within its limit
/// and time; then [`check`]. `Err` is the answer that refuses it.
async fn admit(
    state: &State,
    req: Request<Incoming>,
    entry: Entry<'_>,
) -> Result<Admitted, Response<Body>> {
    let (parts, incoming) = req.into_parts();
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_payload as u64) {
        return Err(too_large(state));
    }
    let body = match read_body(incoming, state.max_payload, state.body_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(_)) => return Err(too_large(state)),
        Err(BodyError::Timeout(_)) => return Err(body_late(state)),
        // The client went away mid-request: nothing to answer, nothing captured.
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                &e.to_string(),
            ));
        }
    };
    let i = check(state, &parts, &body, entry).map_err(|r| *r)?;
    Ok(Admitted { parts, body, i })
}

/// Checks a request whose body has arrived: it is authenticated
/// (`authenticate`); only then are the endpoint name, the headers and the
/// target variant looked at. `Ok` is the variant it goes to, `Err` the
/// answer that refuses it (boxed: refusals are the rare way out).
pub(crate) fn check(
    state: &State,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    entry: Entry<'_>,
) -> Result<usize, Box<Response<Body>>> {
    // Refused, counted, logged, and not captured.
    if let Err(Refused(status, kind, why)) = authenticate(state, parts, body, entry) {
        state.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(reason = why, "refused a request that failed authentication");
        let mut r = error(status, kind, &why);
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        return Err(Box::new(r));
    }
    if let Entry::Runtime(name) = entry
        && name != state.endpoint_name
    {
        return Err(Box::new(invalid(
            state,
            &format!("Endpoint {name} not found."),
        )));
    }
    if let Err(why) = check_headers(&parts.headers) {
        return Err(Box::new(invalid(state, &why)));
    }
    let target = parts
        .headers
        .get(&TARGET_VARIANT)
        .and_then(|v| v.to_str().ok());
    let picked = match entry {
        Entry::Sidecar => Ok(0),
        Entry::Runtime(_) | Entry::Passthrough => state.pick(target),
    };
    picked.map_err(|msg| Box::new(invalid(state, &msg)))
}

/// Whether capline checks who is calling on this route.
fn authenticates(state: &State, entry: Entry<'_>) -> bool {
    match entry {
        Entry::Runtime(_) => state.verifier.is_some(),
        Entry::Sidecar => state.verifier.is_some() && !state.allow_unsigned_sidecar,
        Entry::Passthrough => state.verifier.is_some() || !state.bearer_tokens.is_empty(),
    }
}

/// Why a request was not let in: its status, error type and message.
struct Refused(StatusCode, &'static str, String);

/// The configured authentication, on every route that reaches a model:
/// - with `AccessKeys`, a valid SigV4 signature (the sidecar route may be
///   opened by `AllowUnsignedSidecar`);
/// - on a passthrough route, a `BearerTokens` token does as well, and with
///   `BearerTokens` but no `AccessKeys` it is required.
fn authenticate(
    state: &State,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    entry: Entry<'_>,
) -> Result<(), Refused> {
    if !authenticates(state, entry) {
        return Ok(());
    }
    let authorization = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let unauthorized = |why: &str| {
        Refused(
            StatusCode::UNAUTHORIZED,
            "UnauthorizedException",
            why.to_string(),
        )
    };
    if matches!(entry, Entry::Passthrough) && !state.bearer_tokens.is_empty() {
        if let Some(a) = authorization.filter(|a| a.starts_with(b"Bearer ")) {
            return match state.bearer_ok(a) {
                true => Ok(()),
                false => Err(unauthorized(
                    "The bearer token is not one of this endpoint's.",
                )),
            };
        }
        if state.verifier.is_none() {
            return Err(unauthorized(
                "This route needs Authorization: Bearer TOKEN.",
            ));
        }
    }
    let Some(v) = state.verifier.as_ref() else {
        return Ok(());
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    v.verify(
        parts.method.as_str(),
        path_and_query,
        &parts.headers,
        body,
        std::time::SystemTime::now(),
    )
    .map_err(|why| Refused(StatusCode::FORBIDDEN, "InvalidSignatureException", why))
}

/// Forwards one invocation to a variant's model and captures it on success.
async fn invoke(
    state: &State,
    pinned: &Pinned,
    req: Request<Incoming>,
    entry: Entry<'_>,
) -> Response<Body> {
    match admit(state, req, entry).await {
        Ok(a) => invoke_admitted(state, pinned, a).await,
        Err(refused) => refused,
    }
}

/// Forwards an admitted invocation to its variant's model and captures it
/// on success.
pub(crate) async fn invoke_admitted(
    state: &State,
    pinned: &Pinned,
    Admitted { parts, body, i }: Admitted,
) -> Response<Body> {
    let variant = &state.variants[i];
    let in_type = content_type(&parts.headers);
    let inference_id = parts
        .headers
        .get(&INFERENCE_ID)
        .and_then(|v| v.to_str().ok());
    let headers = container_headers(&parts.headers, &ACCEPT);
    let head = |out: &mut Vec<u8>| {
        invocation_head(
            out,
            &variant.authority,
            in_type.as_bytes(),
            body.len(),
            &headers,
        );
    };
    // Checked, signed and valid: copies go to the shadows, off this path.
    crate::shadow::mirror(state, &parts.headers, in_type, &body);
    let started = Instant::now();
    let input = Input {
        content_type: in_type,
        body: &body,
        inference_id,
    };
    let response = forward(state, i, pinned, head, input).await;
    variant
        .metrics
        .record(response.status().as_u16(), started.elapsed());
    response
}

/// The Content-Type of a message without one (or with one that is not text).
const OCTET_STREAM: &str = "application/octet-stream";

/// A message's Content-Type, [`OCTET_STREAM`] when it has none (or one that
/// is not text).
fn content_type(headers: &hyper::HeaderMap) -> &str {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(OCTET_STREAM)
}

/// The headers the container contract passes on to the model, with their
/// values in the client's request: Accept (taken from the client's `accept`
/// header), the custom attributes and the inference id.
fn container_headers<'a>(
    headers: &'a hyper::HeaderMap,
    accept: &HeaderName,
) -> [(HeaderName, Option<&'a HeaderValue>); 3] {
    [
        (ACCEPT, headers.get(accept)),
        (CUSTOM_ATTRIBUTES, headers.get(&CUSTOM_ATTRIBUTES)),
        (INFERENCE_ID, headers.get(&INFERENCE_ID)),
    ]
}

/// The container contract's `POST /invocations` to `variant`'s model: the
/// body, its Content-Type, and the [`container_headers`].
fn to_container(
    variant: &crate::state::Variant,
    headers: &hyper::HeaderMap,
    accept: &HeaderName,
    body: &Bytes,
) -> hyper::http::Result<Request<Full<Bytes>>> {
    let mut up = Request::post(hyper::Uri::from_static("/invocations"))
        .header(HOST, variant.authority.clone())
        .header(CONTENT_TYPE, content_type(headers));
    for (name, value) in container_headers(headers, accept) {
        if let Some(v) = value {
            up = up.header(name, v.clone());
        }
    }
    up.body(Full::new(body.clone()))
}

/// What is captured of the request.
struct Input<'a> {
    content_type: &'a str,
    body: &'a Bytes,
    inference_id: Option<&'a str>,
}

/// Sends the request (the head `head` writes, then the input's body) to
/// the model and shapes its answer; captures a success.
async fn forward(
    state: &State,
    i: usize,
    pinned: &Pinned,
    head: impl FnOnce(&mut Vec<u8>),
    input: Input<'_>,
) -> Response<Body> {
    let variant = &state.variants[i];
    let answer = match tokio::time::timeout(
        state.upstream_timeout,
        exchange(
            &variant.authority,
            i,
            pinned,
            head,
            input.body,
            state.max_response,
        ),
    )
    .await
    {
        Err(_) => {
            return timed_out(state, &variant.name);
        }
        Ok(Err(e)) => return model_error(&variant.name, 0, &e.to_string()),
        Ok(Ok(r)) => r,
    };
    let Answer {
        status,
        content_type,
        custom_attributes,
        body: out,
    } = answer;
    if !status.is_success() {
        // Failures are not captured as successes: not captured at all.
        return model_error(
            &variant.name,
            status.as_u16(),
            &String::from_utf8_lossy(&out),
        );
    }
    let content_type = content_type
        .filter(|v| v.to_str().is_ok())
        .unwrap_or(HeaderValue::from_static(OCTET_STREAM));
    let out_type = content_type.to_str().unwrap_or(OCTET_STREAM);

    // Never blocks: sampled, copied into the ring, or dropped and counted.
    variant.engine.capture(&Capture {
        request: Payload::new(input.content_type, input.body),
        response: Payload::new(out_type, &out),
        inference_id: input.inference_id,
        time: None,
    });

    let mut r = Response::new(Full::new(out));
    r.headers_mut().insert(CONTENT_TYPE, content_type);
    if let Some(v) = &variant.name_header {
        r.headers_mut().insert(INVOKED_VARIANT, v.clone());
    }
    if let Some(c) = custom_attributes {
        r.headers_mut().insert(CUSTOM_ATTRIBUTES, c);
    }
    r
}

/// `InvokeEndpointWithResponseStream`: admitted as an invocation is, sent
/// to the model on a connection of its own, and answered with the model's
/// streamed answer as event-stream frames, chunk by chunk (`stream`). An
/// error before the first byte is the usual ModelError.
async fn invoke_stream(
    state: &Arc<State>,
    pinned: &Arc<Pinned>,
    req: Request<Incoming>,
    name: &str,
) -> Response<AnyBody> {
    let Admitted { parts, body, i } = match admit(state, req, Entry::Runtime(name)).await {
        Ok(a) => a,
        Err(refused) => return refused.map(whole),
    };
    let variant = &state.variants[i];
    let header = |name: &HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    // The streaming API carries Accept as X-Amzn-SageMaker-Accept.
    let Ok(up) = to_container(variant, &parts.headers, &STREAM_ACCEPT, &body) else {
        return invalid(state, "invalid request headers").map(whole);
    };
    // Checked, signed and valid: copies go to the shadows, off this path.
    crate::shadow::mirror_streamed(
        state,
        &up,
        content_type(&parts.headers),
        header(&INFERENCE_ID),
        &body,
    );
    let (answer, sender) = match open(state, i, pinned, up).await {
        Ok(a) => a,
        Err(e) => {
            let failed = match e {
                Open::TimedOut => timed_out(state, &variant.name),
                Open::Failed(e) => model_error(&variant.name, 0, &e.to_string()),
            };
            return failed.map(whole);
        }
    };
    let (head, incoming) = answer.into_parts();
    if !head.status.is_success() {
        let text = read_body(incoming, state.max_response, state.upstream_timeout)
            .await
            .unwrap_or_default();
        return model_error(
            &variant.name,
            head.status.as_u16(),
            &String::from_utf8_lossy(&text),
        )
        .map(whole);
    }
    let out_type = content_type(&head.headers).to_string();
    let record = Record {
        content_type: content_type(&parts.headers).to_string(),
        body,
        inference_id: header(&INFERENCE_ID).map(str::to_string),
        out_type: out_type.clone(),
    };
    let frames = crate::stream::relay(
        Arc::clone(state),
        i,
        (incoming, Arc::clone(pinned), sender),
        Framing::EventStream,
        Some(record),
    );
    crate::stream::head(frames, &out_type, &variant.name).map(boxed)
}

/// Why a streamed exchange got no answer head.
enum Open {
    TimedOut,
    Failed(crate::upstream::Exchange),
}

/// Sends `up` to variant `i`'s model on this client connection's connection
/// to it (`upstream::send`), and waits, within `UpstreamTimeoutSeconds`,
/// for the answer's head; records its status and time. The connection goes
/// back to `pinned` when the streamed answer has been read to its end.
async fn open(
    state: &State,
    i: usize,
    pinned: &Pinned,
    up: Request<Full<Bytes>>,
) -> Result<(Response<Incoming>, SendRequest<Full<Bytes>>), Open> {
    let variant = &state.variants[i];
    let started = Instant::now();
    match tokio::time::timeout(state.upstream_timeout, send(variant, i, pinned, up)).await {
        Err(_) => Err(Open::TimedOut),
        Ok(Err(e)) => Err(Open::Failed(e)),
        Ok(Ok((r, sender))) => {
            variant
                .metrics
                .record(r.status().as_u16(), started.elapsed());
            Ok((r, sender))
        }
    }
}

/// Hop-by-hop headers: they belong to one connection and are never passed on.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A passthrough route (`PassthroughRoutes`): the request, admitted as an
/// invocation is, goes unchanged to the same path and query on a production
/// variant's model (chosen by weight, or by
/// `X-Amzn-SageMaker-Target-Variant`), on a connection of its own. Its
/// headers go too, but for hop-by-hop ones, `Host`, the target variant, and
/// the credentials capline checked itself (`Authorization` and SigV4's
/// `X-Amz-*` when it authenticates the route; else `Authorization` is the
/// model's and is passed on).
///
/// The model's answer, its status and headers included, streams back
/// unchanged, server-sent events or not; a 2xx answer to a `POST` is
/// captured once it ends (`GET` and `HEAD` are forwarded the same way, but
/// ask for no inference and are not captured). A model that cannot be
/// reached or does not answer within `UpstreamTimeoutSeconds` gets 502 or
/// 504. A `POST` is mirrored to the shadows (`shadow::mirror_streamed`).
async fn passthrough(
    state: &Arc<State>,
    pinned: &Arc<Pinned>,
    req: Request<Incoming>,
) -> Response<AnyBody> {
    let Admitted { parts, body, i } = match admit(state, req, Entry::Passthrough).await {
        Ok(a) => a,
        Err(refused) => return refused.map(whole),
    };
    let variant = &state.variants[i];
    let checked = authenticates(state, Entry::Passthrough);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", hyper::http::uri::PathAndQuery::as_str);
    let mut up = Request::builder()
        .method(parts.method.clone())
        .uri(path_and_query);
    for (name, value) in &parts.headers {
        let n = name.as_str();
        let capline_s = *name == TARGET_VARIANT
            || (checked && (name == hyper::header::AUTHORIZATION || n.starts_with("x-amz-")));
        if HOP_BY_HOP.contains(&n)
            || name == HOST
            || name == hyper::header::CONTENT_LENGTH
            || name == hyper::header::EXPECT
            || capline_s
        {
            continue;
        }
        up = up.header(name, value);
    }
    let Ok(up) = up
        .header(HOST, variant.authority.clone())
        .body(Full::new(body.clone()))
    else {
        return invalid(state, "invalid request headers").map(whole);
    };
    let inference = parts.method == Method::POST;
    let inference_id = parts
        .headers
        .get(&INFERENCE_ID)
        .and_then(|v| v.to_str().ok());
    if inference {
        // An inference, checked and valid: copies go to the shadows.
        crate::shadow::mirror_streamed(
            state,
            &up,
            content_type(&parts.headers),
            inference_id,
            &body,
        );
    }
    let (answer, sender) = match open(state, i, pinned, up).await {
        Ok(a) => a,
        Err(e) => {
            let (status, why) = match e {
                Open::TimedOut => (
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "the model did not answer within {:?}",
                        state.upstream_timeout
                    ),
                ),
                Open::Failed(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
            };
            return error(status, "ModelError", &why).map(whole);
        }
    };
    let (head, incoming) = answer.into_parts();
    let record = (inference && head.status.is_success()).then(|| Record {
        content_type: content_type(&parts.headers).to_string(),
        body,
        inference_id: inference_id.map(str::to_string),
        out_type: content_type(&head.headers).to_string(),
    });
    let frames = crate::stream::relay(
        Arc::clone(state),
        i,
        (incoming, Arc::clone(pinned), sender),
        Framing::Raw,
        record,
    );
    let mut r = Response::new(boxed(frames));
    *r.status_mut() = head.status;
    for (name, value) in &head.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            r.headers_mut().append(name, value.clone());
        }
    }
    if let Some(v) = &variant.name_header {
        r.headers_mut().insert(INVOKED_VARIANT, v.clone());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::passes;

    /// A route is its path; a `/*` route is every plain path under it, at
    /// least one segment deeper, and nothing a model server could resolve
    /// to somewhere else.
    #[test]
    fn passthrough_routes_match_their_paths() {
        assert!(passes("/v1/models", "/v1/models"));
        assert!(!passes("/v1/models", "/v1/models/llama"));
        assert!(!passes("/v1/models", "/v1/model"));
        for under in [
            "/v1/models/llama",
            "/v1/models/meta-llama/Llama-3.1-8B",
            "/v1/models/m:x",
        ] {
            assert!(passes("/v1/models/*", under), "{under}");
        }
        for not_under in [
            "/v1/models",
            "/v1/models/",
            "/v1/modelsx/a",
            "/v1/models//a",
            "/v1/models/a/",
            "/v1/models/../admin",
            "/v1/models/./a",
            "/v1/models/%2e%2e/admin",
            "/v1/models/a b",
            "/v2/models/a",
        ] {
            assert!(!passes("/v1/models/*", not_under), "{not_under}");
        }
    }
}
