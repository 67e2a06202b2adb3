//! Shadow variants: a copy of a share of the requests goes to each shadow
//! model, as SageMaker's `ShadowProductionVariants` do. The copy is sent by a
//! task of its own, after the request passed every check and before it is
//! forwarded to production; the client's answer never waits for it, and
//! never sees it. A shadow's 2xx answers are captured, with the request,
//! under the shadow's own variant folder.
//!
//! Bounded: at most `MaxShadowInFlight` mirrored requests per shadow are in
//! flight; a request over the bound is not mirrored, and is counted. Each
//! mirrored exchange has the production limits: `UpstreamTimeoutSeconds`
//! and `MaxResponseBytes`. The request body is shared, not copied.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderMap};
use hyper::{Request, Response, body::Incoming};

use capline::{Capture, Payload};

use crate::http::read_body;
use crate::state::{Shadow, ShadowClient, State};

/// Request headers a mirrored request carries, as production's does.
const PASSED_ON: [&str; 3] = [
    "accept",
    "x-amzn-sagemaker-custom-attributes",
    "x-amzn-sagemaker-inference-id",
];

/// A new pool for mirrored requests (keep-alive, no Nagle).
pub(crate) fn client() -> ShadowClient {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector)
}

/// Mirrors one request to every shadow whose share draws it. Never waits:
/// each copy is a task of its own, or is skipped and counted.
pub(crate) fn mirror(state: &State, headers: &HeaderMap, content_type: &str, body: &Bytes) {
    for shadow in &state.shadows {
        let share = shadow.share();
        if share <= 0.0 || (share < 100.0 && fastrand::f64() * 100.0 >= share) {
            continue;
        }
        let Ok(permit) = Arc::clone(&shadow.in_flight).try_acquire_owned() else {
            shadow.skipped_busy.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let mut up = Request::post(shadow.uri.clone()).header(CONTENT_TYPE, content_type);
        for name in PASSED_ON {
            if let Some(v) = headers.get(name) {
                up = up.header(name, v.clone());
            }
        }
        let Ok(up) = up.body(Full::new(body.clone())) else {
            shadow.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        shadow.mirrored.fetch_add(1, Ordering::Relaxed);
        let exchange = Exchange {
            shadow: Arc::clone(shadow),
            client: state.shadow_client.clone(),
            content_type: content_type.to_string(),
            inference_id: headers
                .get("x-amzn-sagemaker-inference-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: body.clone(),
            max_response: state.max_response,
            timeout: state.upstream_timeout,
        };
        tokio::spawn(async move {
            exchange.run(up).await;
            drop(permit);
        });
    }
}

/// One mirrored request and what its capture needs.
struct Exchange {
    shadow: Arc<Shadow>,
    client: ShadowClient,
    content_type: String,
    inference_id: Option<String>,
    body: Bytes,
    max_response: usize,
    timeout: std::time::Duration,
}

impl Exchange {
    async fn run(self, up: Request<Full<Bytes>>) {
        let started = Instant::now();
        let answer = tokio::time::timeout(self.timeout, async {
            let response: Response<Incoming> = self.client.request(up).await.ok()?;
            let (parts, incoming) = response.into_parts();
            let out = read_body(incoming, self.max_response, self.timeout)
                .await
                .ok()?;
            Some((parts, out))
        })
        .await;
        let Ok(Some((parts, out))) = answer else {
            self.shadow.failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.shadow
            .metrics
            .record(parts.status.as_u16(), started.elapsed());
        if !parts.status.is_success() {
            return;
        }
        let out_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream");
        // Never blocks: sampled, copied into the ring, or dropped and counted.
        self.shadow.engine.capture(&Capture {
            request: Payload::new(&self.content_type, &self.body),
            response: Payload::new(out_type, &out),
            inference_id: self.inference_id.as_deref(),
            time: None,
        });
    }
}
