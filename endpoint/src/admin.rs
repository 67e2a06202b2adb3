//! The endpoint's admin listener: runtime control and metrics.
//!
//! - `GET /metrics`: Prometheus text: requests and latency per variant, and
//!   every engine counter per variant.
//! - `GET /variants`: each variant's weight, sampling and capture state (JSON).
//! - `GET /shadows`: each shadow variant's mirrored share, sampling, capture
//!   state and counts; `POST /shadows/{name}` with `{"mirror_percentage": P,
//!   "sampling_percentage": P, "capture_enabled": B}` (any subset) changes them.
//! - `POST /variants/{name}` with `{"weight": W, "sampling_percentage": P,
//!   "capture_enabled": B}` (any subset): changes them at once, without
//!   dropping a request; answers the new state.
//!
//! With `AdminToken` set, every request needs `Authorization: Bearer TOKEN`;
//! the endpoint refuses to start with a non-loopback `AdminListen` and no token.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};

use crate::http::{json_string, read_body, reply};
use crate::sigv4::constant_time_eq;
use crate::state::{BUCKETS_US, Shadow, State, VariantMetrics};

/// One series' label set: `variant="NAME"`.
type Label<'a> = [(&'static str, &'a str); 1];

/// The Prometheus text for every variant.
pub(crate) fn metrics_text(state: &State) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP capline_endpoint_requests_total Invocations answered, by variant and status class.\n# TYPE capline_endpoint_requests_total counter"
    );
    for v in &state.variants {
        by_class(
            &mut out,
            "capline_endpoint_requests_total",
            "variant",
            &v.name,
            &v.metrics,
        );
    }
    let _ = writeln!(
        out,
        "# HELP capline_endpoint_refused_total Requests refused before reaching a model (413, unknown variant or endpoint).\n# TYPE capline_endpoint_refused_total counter\ncapline_endpoint_refused_total {}",
        state.refused.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP capline_endpoint_request_duration_seconds Time from forwarding to the model to the answer.\n# TYPE capline_endpoint_request_duration_seconds histogram"
    );
    for v in &state.variants {
        histogram(
            &mut out,
            "capline_endpoint_request_duration_seconds",
            "variant",
            &v.name,
            &v.metrics,
        );
    }
    let _ = writeln!(
        out,
        "# HELP capline_endpoint_streams_total Streamed answers, by route (response_stream: invocations-response-stream; passthrough: PassthroughRoutes) and by how they ended.\n# TYPE capline_endpoint_streams_total counter"
    );
    let kinds = [
        ("response_stream", &state.streams),
        ("passthrough", &state.passthrough_streams),
    ];
    for (route, counts) in kinds {
        for (outcome, c) in [
            ("completed", &counts.completed),
            ("model_broken", &counts.model_broken),
            ("client_gone", &counts.client_gone),
        ] {
            let _ = writeln!(
                out,
                "capline_endpoint_streams_total{{route=\"{route}\",outcome=\"{outcome}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP capline_endpoint_streams_captured_partial_total Broken streams captured with what the model had sent (CaptureBrokenStreams: Partial).\n# TYPE capline_endpoint_streams_captured_partial_total counter"
    );
    for (route, counts) in kinds {
        let _ = writeln!(
            out,
            "capline_endpoint_streams_captured_partial_total{{route=\"{route}\"}} {}",
            counts.captured_partial.load(Ordering::Relaxed)
        );
    }
    shadow_metrics(state, &mut out);
    // Every engine stat, one series per variant (shadows included), in the
    // engine's own rendering.
    let engines = state
        .variants
        .iter()
        .map(|v| (v.name.as_str(), &v.engine))
        .chain(state.shadows.iter().map(|s| (s.name.as_str(), &s.engine)));
    let (labels, stats): (Vec<Label>, Vec<capline::Stats>) = engines
        .map(|(name, engine)| ([("variant", name)], engine.stats()))
        .unzip();
    let series: Vec<(&[(&str, &str)], &capline::Stats)> =
        labels.iter().map(|l| &l[..]).zip(stats.iter()).collect();
    out.push_str(&capline::stats::prometheus_text(&series));
    let _ = writeln!(
        out,
        "# HELP capline_variant_weight Routing weight.\n# TYPE capline_variant_weight gauge"
    );
    for v in &state.variants {
        let _ = writeln!(
            out,
            "capline_variant_weight{{variant=\"{}\"}} {}",
            v.name,
            v.weight()
        );
    }
    out
}

/// The shadows' own series: mirrored, skipped and failed requests, answers
/// by status class, latency, in flight, and the mirrored share.
fn shadow_metrics(state: &State, out: &mut String) {
    if state.shadows.is_empty() {
        return;
    }
    let counter = |out: &mut String, name: &str, help: &str, value: &dyn Fn(&Shadow) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for s in &state.shadows {
            let _ = writeln!(out, "{name}{{shadow=\"{}\"}} {}", s.name, value(s));
        }
    };
    counter(
        out,
        "capline_shadow_mirrored_total",
        "Requests mirrored to the shadow variant.",
        &|s| s.mirrored.load(Ordering::Relaxed),
    );
    counter(
        out,
        "capline_shadow_skipped_total",
        "Requests not mirrored because MaxShadowInFlight were in flight.",
        &|s| s.skipped_busy.load(Ordering::Relaxed),
    );
    counter(
        out,
        "capline_shadow_failed_total",
        "Mirrored requests with no whole answer (no connection, timeout, too large).",
        &|s| s.failed.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP capline_shadow_responses_total Shadow answers, by status class.\n# TYPE capline_shadow_responses_total counter"
    );
    for s in &state.shadows {
        by_class(
            out,
            "capline_shadow_responses_total",
            "shadow",
            &s.name,
            &s.metrics,
        );
    }
    let _ = writeln!(
        out,
        "# HELP capline_shadow_response_duration_seconds Time from mirroring a request to the shadow's whole answer.\n# TYPE capline_shadow_response_duration_seconds histogram"
    );
    for s in &state.shadows {
        histogram(
            out,
            "capline_shadow_response_duration_seconds",
            "shadow",
            &s.name,
            &s.metrics,
        );
    }
    let _ = writeln!(
        out,
        "# HELP capline_shadow_in_flight Mirrored requests in flight.\n# TYPE capline_shadow_in_flight gauge"
    );
    for s in &state.shadows {
        let _ = writeln!(
            out,
            "capline_shadow_in_flight{{shadow=\"{}\"}} {}",
            s.name,
            s.in_flight_now()
        );
    }
    let _ = writeln!(
        out,
        "# HELP capline_shadow_mirror_ratio The share of requests mirrored (0-1).\n# TYPE capline_shadow_mirror_ratio gauge"
    );
    for s in &state.shadows {
        let _ = writeln!(
            out,
            "capline_shadow_mirror_ratio{{shadow=\"{}\"}} {}",
            s.name,
            s.share() / 100.0
        );
    }
}

/// One counter line per status class: `NAME{LABEL="VALUE",code="2xx"} N`.
fn by_class(out: &mut String, name: &str, label: &str, value: &str, m: &VariantMetrics) {
    for (class, c) in [
        ("2xx", &m.ok),
        ("4xx", &m.client_error),
        ("5xx", &m.server_error),
    ] {
        let _ = writeln!(
            out,
            "{name}{{{label}=\"{value}\",code=\"{class}\"}} {}",
            c.load(Ordering::Relaxed)
        );
    }
}

/// One histogram's bucket, sum and count lines.
fn histogram(out: &mut String, name: &str, label: &str, value: &str, m: &VariantMetrics) {
    let mut cumulative = 0;
    for (i, b) in BUCKETS_US.iter().enumerate() {
        cumulative += m.buckets[i].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{label}=\"{value}\",le=\"{}\"}} {cumulative}",
            *b as f64 / 1e6
        );
    }
    cumulative += m.buckets[BUCKETS_US.len()].load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {cumulative}\n{name}_sum{{{label}=\"{value}\"}} {}\n{name}_count{{{label}=\"{value}\"}} {cumulative}",
        m.sum_us.load(Ordering::Relaxed) as f64 / 1e6
    );
}

/// Each shadow's share, sampling, capture state and counts (JSON).
fn shadows_json(state: &State) -> String {
    let parts: Vec<String> = state
        .shadows
        .iter()
        .map(|s| {
            let e = s.engine.stats();
            let m = &s.metrics;
            format!(
                r#"{{"name":"{}","mirror_percentage":{},"sampling_percentage":{},"capture_enabled":{},"mirrored":{},"skipped_busy":{},"failed":{},"in_flight":{},"responses":{{"2xx":{},"4xx":{},"5xx":{}}},"latency_seconds_sum":{}}}"#,
                s.name,
                s.share(),
                e.sampling_percentage,
                e.capture_enabled,
                s.mirrored.load(Ordering::Relaxed),
                s.skipped_busy.load(Ordering::Relaxed),
                s.failed.load(Ordering::Relaxed),
                s.in_flight_now(),
                m.ok.load(Ordering::Relaxed),
                m.client_error.load(Ordering::Relaxed),
                m.server_error.load(Ordering::Relaxed),
                m.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            )
        })
        .collect();
    format!("[{}]", parts.join(","))
}

/// Reads `{"mirror_percentage", "sampling_percentage", "capture_enabled"}`
/// (any subset) and applies it to shadow `i`; an error names the field.
fn apply_shadow(state: &State, i: usize, body: &[u8]) -> Result<(), String> {
    use simd_json::prelude::*;
    let mut b = body.to_vec();
    let doc = simd_json::to_borrowed_value(&mut b).map_err(|e| format!("not JSON: {e}"))?;
    let obj = doc.as_object().ok_or("must be a JSON object")?;
    let known = [
        "mirror_percentage",
        "sampling_percentage",
        "capture_enabled",
    ];
    if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_ref())) {
        return Err(format!("{k}: unknown field (known: {})", known.join(", ")));
    }
    let percent = |key: &str| {
        obj.get(key)
            .map(|p| {
                p.cast_f64()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or(format!("{key}: must be a number from 0 to 100"))
            })
            .transpose()
    };
    let mirror = percent("mirror_percentage")?;
    let sampling = percent("sampling_percentage")?;
    let enabled = obj
        .get("capture_enabled")
        .map(|e| e.as_bool().ok_or("capture_enabled: must be true or false"))
        .transpose()?;
    let s = &state.shadows[i];
    if let Some(p) = mirror {
        s.set_share(p);
    }
    if let Some(p) = sampling {
        s.engine
            .set_sampling_percentage(p)
            .map_err(|e| e.to_string())?;
    }
    if let Some(e) = enabled {
        s.engine.set_enabled(e);
    }
    tracing::info!(
        shadow = s.name,
        ?mirror,
        ?sampling,
        ?enabled,
        "shadow updated"
    );
    Ok(())
}

fn variants_json(state: &State) -> String {
    let parts: Vec<String> = state
        .variants
        .iter()
        .map(|v| {
            let s = v.engine.stats();
            format!(
                r#"{{"name":"{}","weight":{},"sampling_percentage":{},"capture_enabled":{}}}"#,
                v.name,
                v.weight(),
                s.sampling_percentage,
                s.capture_enabled
            )
        })
        .collect();
    format!("[{}]", parts.join(","))
}

fn refuse(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        "application/json",
        format!(r#"{{"error":{}}}"#, json_string(message)),
    )
}

/// A change to one variant: any of its weight, sampling and capture switch.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Update {
    /// `weight`: a finite number >= 0.
    pub weight: Option<f64>,
    /// `sampling_percentage`: 0 to 100.
    pub sampling: Option<f64>,
    /// `capture_enabled`.
    pub enabled: Option<bool>,
}

/// Reads `{"weight", "sampling_percentage", "capture_enabled"}` (any subset);
/// an error names the field.
pub fn parse_update(body: &[u8]) -> Result<Update, String> {
    use simd_json::prelude::*;
    let mut b = body.to_vec();
    let doc = simd_json::to_borrowed_value(&mut b).map_err(|e| format!("not JSON: {e}"))?;
    let obj = doc.as_object().ok_or("must be a JSON object")?;
    for k in obj.keys() {
        if !["weight", "sampling_percentage", "capture_enabled"].contains(&k.as_ref()) {
            return Err(format!(
                "{k}: unknown field (known: weight, sampling_percentage, capture_enabled)"
            ));
        }
    }
    let weight = obj
        .get("weight")
        .map(|w| {
            w.cast_f64()
                .filter(|w| w.is_finite() && *w >= 0.0)
                .ok_or("weight: must be a number >= 0")
        })
        .transpose()?;
    let sampling = obj
        .get("sampling_percentage")
        .map(|p| {
            p.cast_f64()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or("sampling_percentage: must be a number from 0 to 100")
        })
        .transpose()?;
    let enabled = obj
        .get("capture_enabled")
        .map(|e| e.as_bool().ok_or("capture_enabled: must be true or false"))
        .transpose()?;
    Ok(Update {
        weight,
        sampling,
        enabled,
    })
}

/// Applies an update to variant `i`. A weight is refused when it would make
/// the weights' sum zero or not finite (the config file's rule), so traffic
/// always has somewhere to go.
fn apply(state: &State, i: usize, u: Update) -> Result<(), String> {
    // One update at a time: the sum is checked and the weight set together.
    let _one = state
        .admin_updates
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let v = &state.variants[i];
    if let Some(w) = u.weight {
        let sum: f64 = state
            .variants
            .iter()
            .enumerate()
            .map(|(k, o)| if k == i { w } else { o.weight() })
            .sum();
        if !(sum.is_finite() && sum > 0.0) {
            return Err(format!(
                "weight: the weights would sum to {sum}; their sum must be finite and > 0"
            ));
        }
    }
    // Everything checked: apply.
    if let Some(w) = u.weight {
        v.set_weight(w);
    }
    if let Some(p) = u.sampling {
        v.engine
            .set_sampling_percentage(p)
            .map_err(|e| e.to_string())?;
    }
    if let Some(e) = u.enabled {
        v.engine.set_enabled(e);
    }
    tracing::info!(variant = v.name, update = ?u, "variant updated");
    Ok(())
}

/// Why a request cannot be taken as the operator's: no valid token, a
/// browser's cross-origin request, or a state change that is not JSON.
fn forbidden(token: Option<&str>, req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(t) = token {
        let given = header(AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), t.as_bytes())) {
            return Some(refuse(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required",
            ));
        }
    }
    // A browser sends Origin on cross-origin requests; the admin API has no
    // pages of its own, so any Origin but its own is a foreign one.
    if let Some(origin) = req.headers().get(ORIGIN) {
        let own = header(HOST).map(|h| format!("http://{h}"));
        if origin.to_str().ok() != own.as_deref() {
            return Some(refuse(
                StatusCode::FORBIDDEN,
                "cross-origin requests are refused",
            ));
        }
    }
    if req.method() == Method::POST {
        let json = header(CONTENT_TYPE)
            .and_then(|t| t.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Some(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "state changes must be sent as Content-Type: application/json",
            ));
        }
    }
    None
}

async fn handle(
    state: Arc<State>,
    token: Option<Arc<str>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if let Some(no) = forbidden(token.as_deref(), &req) {
        return Ok(no);
    }
    let path = req.uri().path().to_string();
    let response = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics_text(&state),
        ),
        (Method::GET, "/variants") => {
            reply(StatusCode::OK, "application/json", variants_json(&state))
        }
        (Method::GET, "/shadows") => {
            reply(StatusCode::OK, "application/json", shadows_json(&state))
        }
        (Method::POST, p) if p.starts_with("/shadows/") => {
            let name = &p["/shadows/".len()..];
            let Some(i) = state.shadows.iter().position(|s| s.name == name) else {
                return Ok(refuse(
                    StatusCode::NOT_FOUND,
                    &format!("no shadow variant {name}"),
                ));
            };
            let body = match read_body(req.into_body(), 64 * 1024, Duration::from_secs(10)).await {
                Ok(b) => b,
                Err(e) => return Ok(refuse(StatusCode::BAD_REQUEST, &e.to_string())),
            };
            match apply_shadow(&state, i, &body) {
                Ok(()) => reply(StatusCode::OK, "application/json", shadows_json(&state)),
                Err(e) => refuse(StatusCode::BAD_REQUEST, &e),
            }
        }
        (Method::POST, p) if p.starts_with("/variants/") => {
            let name = &p["/variants/".len()..];
            let Some(i) = state.variants.iter().position(|v| v.name == name) else {
                return Ok(refuse(StatusCode::NOT_FOUND, &format!("no variant {name}")));
            };
            let body = match read_body(req.into_body(), 64 * 1024, Duration::from_secs(10)).await {
                Ok(b) => b,
                Err(e) => return Ok(refuse(StatusCode::BAD_REQUEST, &e.to_string())),
            };
            match parse_update(&body).and_then(|u| apply(&state, i, u)) {
                Ok(()) => reply(StatusCode::OK, "application/json", variants_json(&state)),
                Err(e) => refuse(StatusCode::BAD_REQUEST, &e),
            }
        }
        _ => refuse(StatusCode::NOT_FOUND, "unknown path"),
    };
    Ok(response)
}

/// Serves the admin API until the runtime stops.
pub(crate) async fn serve(
    state: Arc<State>,
    token: Option<Arc<str>>,
    listener: tokio::net::TcpListener,
    limits: crate::http::Limits,
) {
    let connection = move || {
        let (state, token) = (state.clone(), token.clone());
        hyper::service::service_fn(move |req| handle(state.clone(), token.clone(), req))
    };
    let slots = limits.slots();
    crate::http::serve(listener, limits, slots, connection, std::future::pending()).await;
}
