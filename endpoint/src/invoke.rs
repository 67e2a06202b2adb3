//! The runtime API: routing each request to a variant, forwarding it to the
//! model, shaping SageMaker's answers and errors, and capturing successes.
//!
//! - `POST /endpoints/{name}/invocations` (boto3's `invoke_endpoint`, the
//!   SageMaker SDK's `Predictor`): spread over the variants by weight, or
//!   sent to the one named in `X-Amzn-SageMaker-Target-Variant`.
//! - Sidecar mode: plain `POST /invocations` and `GET /ping` go to the first
//!   variant's model.
//! - Only successful invocations are captured (request body and
//!   Content-Type, response body and Content-Type, the inference id header);
//!   headers such as Authorization or cookies never are. `capture()` never blocks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use capline::{Capture, Payload};

use crate::http::{json_string as json, reply};
use crate::state::State;
use crate::upstream::{BoxError, Pinned, connect, exchange};

const INFERENCE_ID: &str = "x-amzn-sagemaker-inference-id";
const TARGET_VARIANT: &str = "x-amzn-sagemaker-target-variant";
const CUSTOM_ATTRIBUTES: &str = "x-amzn-sagemaker-custom-attributes";
const INVOKED_VARIANT: &str = "x-amzn-invoked-production-variant";
const ERROR_TYPE: &str = "x-amzn-errortype";

type Body = Full<Bytes>;

/// A SageMaker runtime error: `x-amzn-errortype` and a JSON body.
fn error(status: StatusCode, kind: &'static str, message: &str) -> Response<Body> {
    error_with(status, kind, format!(r#"{{"message":{}}}"#, json(message)))
}

/// A SageMaker runtime error response: `x-amzn-errortype: kind` and a JSON body.
fn error_with(status: StatusCode, kind: &'static str, body: String) -> Response<Body> {
    let mut r = reply(status, "application/json", body);
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

pub(crate) async fn handle(
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
    reply(
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
