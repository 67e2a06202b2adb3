//! Shadow variants: a copy of a share of the requests goes to each shadow
//! model, as SageMaker's `ShadowProductionVariants` do. The copy is sent by a
//! task of its own, after the request passed every check and before it is
//! forwarded to production; the client's answer never waits for it, and
//! never sees it. A shadow's 2xx answers are captured, with the request,
//! under the shadow's own variant folder.
//!
//! Every route that reaches a production model mirrors: invocations (the
//! runtime API and the sidecar) to the shadow's `/invocations`, streamed
//! invocations there too, and passthrough `POST`s to the same path on the
//! shadow's model, with the headers production's model gets.
//!
//! Bounded: at most `MaxShadowInFlight` mirrored requests per shadow are in
//! flight; a request over the bound is not mirrored, and is counted. Each
//! mirrored exchange has the production limits: a buffered answer must come
//! whole within `UpstreamTimeoutSeconds` and `MaxResponseBytes`; a streamed
//! one must send its head and each next chunk within
//! `UpstreamTimeoutSeconds`, and is held up to `MaxRecordBytes` (longer is
//! counted as too large, as production's streams are). The request body is
//! shared, not copied.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap};
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

/// Mirrors one invocation (the runtime API's or the sidecar's) to every
/// shadow whose share draws it, as a `POST /invocations` with the request's
/// Content-Type and the container contract's headers. Never waits: each copy
/// is a task of its own, or is skipped and counted.
pub(crate) fn mirror(state: &State, headers: &HeaderMap, content_type: &str, body: &Bytes) {
    let inference_id = headers
        .get("x-amzn-sagemaker-inference-id")
        .and_then(|v| v.to_str().ok());
    let copy = Copy {
        content_type,
        inference_id,
        body,
        streamed: false,
    };
    each_drawn(state, &copy, |shadow| {
        let mut up = Request::post(shadow.uri.clone()).header(CONTENT_TYPE, content_type);
        for name in PASSED_ON {
            if let Some(v) = headers.get(name) {
                up = up.header(name, v.clone());
            }
        }
        up.body(Full::new(body.clone())).ok()
    });
}

/// Mirrors a request whose answer production streams (the streaming runtime
/// API's, or a passthrough route's `POST`): `up` is the request production's
/// model gets, and each drawn shadow's model gets the same method, path,
/// query, headers and body (its own `Host`). The shadow's answer is read as
/// a stream and captured whole.
pub(crate) fn mirror_streamed(
    state: &State,
    up: &Request<Full<Bytes>>,
    content_type: &str,
    inference_id: Option<&str>,
    body: &Bytes,
) {
    let copy = Copy {
        content_type,
        inference_id,
        body,
        streamed: true,
    };
    let path = up
        .uri()
        .path_and_query()
        .map_or("/", hyper::http::uri::PathAndQuery::as_str);
    each_drawn(state, &copy, |shadow| {
        let authority = shadow.uri.authority()?;
        let uri = hyper::Uri::builder()
            .scheme("http")
            .authority(authority.clone())
            .path_and_query(path)
            .build()
            .ok()?;
        let mut copied = Request::builder().method(up.method().clone()).uri(uri);
        for (name, value) in up.headers() {
            if name != HOST {
                copied = copied.header(name, value.clone());
            }
        }
        copied.body(Full::new(body.clone())).ok()
    });
}

/// What every copy of one request shares.
struct Copy<'a> {
    content_type: &'a str,
    inference_id: Option<&'a str>,
    body: &'a Bytes,
    streamed: bool,
}

/// For each shadow whose share draws this request and that has room in
/// flight: builds its copy with `build` and sends it on a task of its own.
fn each_drawn(
    state: &State,
    copy: &Copy<'_>,
    build: impl Fn(&Shadow) -> Option<Request<Full<Bytes>>>,
) {
    for shadow in &state.shadows {
        let share = shadow.share();
        if share <= 0.0 || (share < 100.0 && fastrand::f64() * 100.0 >= share) {
            continue;
        }
        let Ok(permit) = Arc::clone(&shadow.in_flight).try_acquire_owned() else {
            shadow.skipped_busy.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some(up) = build(shadow) else {
            shadow.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        shadow.mirrored.fetch_add(1, Ordering::Relaxed);
        let exchange = Exchange {
            shadow: Arc::clone(shadow),
            client: state.shadow_client.clone(),
            content_type: copy.content_type.to_string(),
            inference_id: copy.inference_id.map(str::to_string),
            body: copy.body.clone(),
            max_response: state.max_response,
            timeout: state.upstream_timeout,
            streamed: copy.streamed,
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
    timeout: Duration,
    /// The answer is read as a stream (see the module's limits).
    streamed: bool,
}

impl Exchange {
    async fn run(self, up: Request<Full<Bytes>>) {
        let started = Instant::now();
        let answer = if self.streamed {
            self.read_streamed(up).await
        } else {
            tokio::time::timeout(self.timeout, async {
                let response: Response<Incoming> = self.client.request(up).await.ok()?;
                let (parts, incoming) = response.into_parts();
                let out = read_body(incoming, self.max_response, self.timeout)
                    .await
                    .ok()?;
                Some((parts, Some(out)))
            })
            .await
            .ok()
            .flatten()
        };
        let Some((parts, out)) = answer else {
            self.shadow.failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.shadow
            .metrics
            .record(parts.status.as_u16(), started.elapsed());
        if !parts.status.is_success() {
            return;
        }
        let Some(out) = out else {
            // Whole, but longer than a record may be.
            self.shadow.engine.count_too_large();
            return;
        };
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

    /// Sends `up` and reads a streamed answer whole: its head, then each
    /// next chunk, within the timeout; `None` for no answer, a broken or
    /// stalled one; `Some((head, None))` for one that ended whole but
    /// longer than `MaxRecordBytes` (read to its end, not held).
    async fn read_streamed(
        &self,
        up: Request<Full<Bytes>>,
    ) -> Option<(hyper::http::response::Parts, Option<Bytes>)> {
        let response = tokio::time::timeout(self.timeout, self.client.request(up))
            .await
            .ok()?
            .ok()?;
        let (parts, mut incoming) = response.into_parts();
        let limit = usize::try_from(self.shadow.max_record).unwrap_or(usize::MAX);
        let mut whole: Option<Vec<u8>> = Some(Vec::new());
        loop {
            let frame = match tokio::time::timeout(self.timeout, incoming.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                Ok(Some(Err(_))) | Err(_) => return None,
            };
            let (Ok(data), Some(held)) = (frame.into_data(), whole.as_mut()) else {
                continue;
            };
            if held.len() + data.len() > limit {
                whole = None;
            } else {
                held.extend_from_slice(&data);
            }
        }
        Some((parts, whole.map(Bytes::from)))
    }
}
