//! The endpoint's admin listener: runtime control and metrics.
//!
//! - `GET /metrics`: Prometheus text: requests and latency per variant, and
//!   every engine counter per variant.
//! - `GET /variants`: each variant's weight, sampling and capture state (JSON).
//! - `POST /variants/{name}` with `{"weight": W, "sampling_percentage": P,
//!   "capture_enabled": B}` (any subset): changes them at once, without
//!   dropping a request; answers the new state.
//!
//! With `AdminToken` set, every request needs `Authorization: Bearer TOKEN`;
//! the endpoint refuses to start with a non-loopback `AdminListen` and no token.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, StatusCode};

use crate::http::{json_string, reply};
use crate::state::{BUCKETS_US, State, Variant};

/// The Prometheus text for every variant.
pub(crate) fn metrics_text(state: &State) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP capline_endpoint_requests_total Invocations answered, by variant and status class.\n# TYPE capline_endpoint_requests_total counter"
    );
    for v in &state.variants {
        let m = &v.metrics;
        for (class, c) in [
            ("2xx", &m.ok),
            ("4xx", &m.client_error),
            ("5xx", &m.server_error),
        ] {
            let _ = writeln!(
                out,
                "capline_endpoint_requests_total{{variant=\"{}\",code=\"{class}\"}} {}",
                v.name,
                c.load(Ordering::Relaxed)
            );
        }
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
        let m = &v.metrics;
        let mut cumulative = 0;
        for (i, b) in BUCKETS_US.iter().enumerate() {
            cumulative += m.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "capline_endpoint_request_duration_seconds_bucket{{variant=\"{}\",le=\"{}\"}} {cumulative}",
                v.name,
                *b as f64 / 1e6
            );
        }
        cumulative += m.buckets[BUCKETS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "capline_endpoint_request_duration_seconds_bucket{{variant=\"{}\",le=\"+Inf\"}} {cumulative}\ncapline_endpoint_request_duration_seconds_sum{{variant=\"{}\"}} {}\ncapline_endpoint_request_duration_seconds_count{{variant=\"{}\"}} {cumulative}",
            v.name,
            v.name,
            m.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            v.name
        );
    }
    // One snapshot per variant: its stats and their (name, value) list.
    let stats: Vec<_> = state
        .variants
        .iter()
        .map(|v| {
            let s = v.engine.stats();
            let counters = s.counters();
            (v, s, counters)
        })
        .collect();
    if let Some((_, _, first)) = stats.first() {
        for (i, (name, _)) in first.iter().enumerate() {
            let kind = if matches!(
                *name,
                "segments_pending"
                    | "segments_unsealed"
                    | "spool_sealed_bytes"
                    | "spool_active_bytes"
                    | "disk_usage_basis_points"
                    | "oldest_pending_sealed_unix_ms"
                    | "delivery_lag_millis"
            ) {
                "gauge"
            } else {
                "counter"
            };
            let _ = writeln!(
                out,
                "# HELP capline_{name} capline engine stat {name} (docs/OPERATIONS.md, Stats).\n# TYPE capline_{name} {kind}"
            );
            for (v, _, counters) in &stats {
                let _ = writeln!(
                    out,
                    "capline_{name}{{variant=\"{}\"}} {}",
                    v.name, counters[i].1
                );
            }
        }
    }
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
    let _ = writeln!(
        out,
        "# HELP capline_sampling_percentage Sampling percentage in force.\n# TYPE capline_sampling_percentage gauge"
    );
    for (v, s, _) in &stats {
        let _ = writeln!(
            out,
            "capline_sampling_percentage{{variant=\"{}\"}} {}",
            v.name, s.sampling_percentage
        );
    }
    out
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

/// Applies `{"weight", "sampling_percentage", "capture_enabled"}` to one variant.
fn update(v: &Variant, body: &[u8]) -> Result<(), String> {
    use simd_json::prelude::*;
    let mut b = body.to_vec();
    let doc = simd_json::to_owned_value(&mut b).map_err(|e| format!("not JSON: {e}"))?;
    let obj = doc.as_object().ok_or("must be a JSON object")?;
    for k in obj.keys() {
        if !["weight", "sampling_percentage", "capture_enabled"].contains(&k.as_str()) {
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
    // Everything checked: apply.
    if let Some(w) = weight {
        v.set_weight(w);
    }
    if let Some(p) = sampling {
        v.engine
            .set_sampling_percentage(p)
            .map_err(|e| e.to_string())?;
    }
    if let Some(e) = enabled {
        v.engine.set_enabled(e);
    }
    tracing::info!(
        variant = v.name,
        ?weight,
        ?sampling,
        ?enabled,
        "variant updated"
    );
    Ok(())
}

async fn handle(
    state: Arc<State>,
    token: Option<Arc<str>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if let Some(t) = &token {
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(&**t) {
            return Ok(refuse(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required",
            ));
        }
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
        (Method::POST, p) if p.starts_with("/variants/") => {
            let name = &p["/variants/".len()..];
            let Some(v) = state.variants.iter().find(|v| v.name == name) else {
                return Ok(refuse(StatusCode::NOT_FOUND, &format!("no variant {name}")));
            };
            let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return Ok(refuse(StatusCode::BAD_REQUEST, &e.to_string())),
            };
            match update(v, &body) {
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
) {
    let connection = move || {
        let (state, token) = (state.clone(), token.clone());
        hyper::service::service_fn(move |req| handle(state.clone(), token.clone(), req))
    };
    crate::http::serve(listener, connection, std::future::pending()).await;
}
