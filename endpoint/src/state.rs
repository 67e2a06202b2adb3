//! What the request handlers share: the variants (each a model server and its
//! capture engine), their weights and request metrics, the shadow variants,
//! and the signature verifier.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use capline::Engine;
use hyper::header::HeaderValue;

use crate::sigv4::Verifier;

/// The pooled HTTP/1 client mirrored requests go through.
pub(crate) type ShadowClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// Upper bounds of the latency histogram buckets, in microseconds.
pub(crate) const BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000, 30_000_000,
];

/// Per-variant request counters and a latency histogram (lock-free).
#[derive(Debug, Default)]
pub(crate) struct VariantMetrics {
    /// Answers by class: 2xx, 4xx (incl. ModelError 424), 5xx.
    pub(crate) ok: AtomicU64,
    pub(crate) client_error: AtomicU64,
    pub(crate) server_error: AtomicU64,
    /// Histogram counts, one per bucket plus +Inf (cumulated when read).
    pub(crate) buckets: [AtomicU64; BUCKETS_US.len() + 1],
    pub(crate) sum_us: AtomicU64,
}

impl VariantMetrics {
    /// Records one invocation's status and time (from the model call's start).
    pub(crate) fn record(&self, status: u16, took: Duration) {
        let class = match status {
            200..=299 => &self.ok,
            400..=499 => &self.client_error,
            _ => &self.server_error,
        };
        class.fetch_add(1, Ordering::Relaxed);
        let us = took.as_micros() as u64;
        let i = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// One production variant: a model server and its capture engine.
#[derive(Debug)]
pub(crate) struct Variant {
    pub(crate) name: String,
    /// The name as a header value (`X-Amzn-Invoked-Production-Variant`);
    /// names are checked to be letters, digits and hyphens, so it is there.
    pub(crate) name_header: Option<HeaderValue>,
    /// The routing weight, as `f64` bits (changed at run time by the admin API).
    weight: AtomicU64,
    /// The model's `HOST:PORT` (what connections go to, and the `Host` header).
    pub(crate) authority: HeaderValue,
    pub(crate) engine: Engine,
    /// The engine's `MaxRecordBytes`: a streamed answer is collected for
    /// capture up to this size.
    pub(crate) max_record: u64,
    pub(crate) metrics: VariantMetrics,
}

impl Variant {
    pub(crate) fn new(
        name: String,
        weight: f64,
        authority: HeaderValue,
        engine: Engine,
        max_record: u64,
    ) -> Self {
        Variant {
            name_header: HeaderValue::from_str(&name).ok(),
            name,
            weight: AtomicU64::new(weight.to_bits()),
            authority,
            engine,
            max_record,
            metrics: VariantMetrics::default(),
        }
    }

    pub(crate) fn weight(&self) -> f64 {
        f64::from_bits(self.weight.load(Ordering::Relaxed))
    }

    pub(crate) fn set_weight(&self, w: f64) {
        self.weight.store(w.to_bits(), Ordering::Relaxed);
    }
}

/// One shadow variant: a model that gets a copy of a share of the requests,
/// off the request's path. Its answers are captured, never returned.
#[derive(Debug)]
pub(crate) struct Shadow {
    pub(crate) name: String,
    /// `http://HOST:PORT/invocations`.
    pub(crate) uri: hyper::Uri,
    pub(crate) engine: Engine,
    /// The mirrored share in percent, as `f64` bits (changed by the admin API).
    share: AtomicU64,
    /// Answers by status class, and their latency.
    pub(crate) metrics: VariantMetrics,
    /// Requests mirrored (sent or being sent).
    pub(crate) mirrored: AtomicU64,
    /// Requests not mirrored because `MaxShadowInFlight` were in flight.
    pub(crate) skipped_busy: AtomicU64,
    /// Mirrored requests that got no whole answer: no connection, a broken
    /// exchange, a timeout or an answer over `MaxResponseBytes`.
    pub(crate) failed: AtomicU64,
    /// Permits for mirrored requests in flight (`MaxShadowInFlight`).
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    pub(crate) max_in_flight: usize,
    /// `MaxRecordBytes` of its engine: how much of a streamed answer is held.
    pub(crate) max_record: u64,
}

impl Shadow {
    pub(crate) fn new(
        name: String,
        authority: &HeaderValue,
        share: f64,
        engine: Engine,
        max_in_flight: usize,
        max_record: u64,
    ) -> Result<Self, String> {
        let uri = format!("http://{}/invocations", authority.to_str().unwrap_or(""))
            .parse()
            .map_err(|e| format!("shadow {name}: {e}"))?;
        Ok(Shadow {
            name,
            uri,
            engine,
            share: AtomicU64::new(share.to_bits()),
            metrics: VariantMetrics::default(),
            mirrored: AtomicU64::new(0),
            skipped_busy: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            in_flight: Arc::new(tokio::sync::Semaphore::new(max_in_flight)),
            max_in_flight,
            max_record,
        })
    }

    /// The mirrored share, in percent.
    pub(crate) fn share(&self) -> f64 {
        f64::from_bits(self.share.load(Ordering::Relaxed))
    }

    pub(crate) fn set_share(&self, p: f64) {
        self.share.store(p.to_bits(), Ordering::Relaxed);
    }

    /// Mirrored requests in flight now.
    pub(crate) fn in_flight_now(&self) -> usize {
        self.max_in_flight - self.in_flight.available_permits()
    }
}

/// How streamed answers ended, on one kind of route.
#[derive(Debug, Default)]
pub(crate) struct StreamCounts {
    /// Streams relayed to their end.
    pub(crate) completed: AtomicU64,
    /// Streams the model broke off or let stall.
    pub(crate) model_broken: AtomicU64,
    /// Streams the client went away from (or stopped reading).
    pub(crate) client_gone: AtomicU64,
    /// Broken streams captured with what the model had sent
    /// (`CaptureBrokenStreams: "Partial"`).
    pub(crate) captured_partial: AtomicU64,
}

/// What the request handlers share.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) endpoint_name: String,
    pub(crate) max_payload: usize,
    pub(crate) max_response: usize,
    pub(crate) upstream_timeout: Duration,
    pub(crate) body_timeout: Duration,
    /// With `AccessKeys`: the sidecar route may be used unsigned.
    pub(crate) allow_unsigned_sidecar: bool,
    /// The last health check: when, and whether every model was healthy.
    pub(crate) ping: tokio::sync::Mutex<Option<(Instant, bool)>>,
    pub(crate) ping_cache: Duration,
    pub(crate) variants: Vec<Variant>,
    /// `ShadowProductionVariants`.
    pub(crate) shadows: Vec<Arc<Shadow>>,
    /// The connection pool mirrored requests go through.
    pub(crate) shadow_client: ShadowClient,
    /// Verifies SigV4 on runtime API requests when access keys are configured.
    pub(crate) verifier: Option<Verifier>,
    /// How streamed answers (`invocations-response-stream`) ended.
    pub(crate) streams: StreamCounts,
    /// How answers on the passthrough routes ended.
    pub(crate) passthrough_streams: StreamCounts,
    /// `PassthroughRoutes`.
    pub(crate) passthrough: Vec<String>,
    /// `BearerTokens`: accepted on the passthrough routes.
    pub(crate) bearer_tokens: Vec<String>,
    /// `CaptureBrokenStreams: "Partial"`.
    pub(crate) capture_partial_streams: bool,
    /// Requests refused before reaching a model (413, unknown variant or endpoint).
    pub(crate) refused: AtomicU64,
    /// Held while the admin API changes a variant.
    pub(crate) admin_updates: std::sync::Mutex<()>,
}

impl State {
    /// Whether `Authorization` carries one of the `BearerTokens` (compared
    /// in constant time for a token's length).
    pub(crate) fn bearer_ok(&self, authorization: &[u8]) -> bool {
        let Some(given) = authorization.strip_prefix(b"Bearer ") else {
            return false;
        };
        self.bearer_tokens.iter().any(|t| {
            t.len() == given.len()
                && t.bytes().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        })
    }

    /// The index of a variant by weight (the target variant header, when
    /// given, wins).
    pub(crate) fn pick(&self, target: Option<&str>) -> Result<usize, String> {
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
        // One snapshot of the weights (they may change concurrently), on the
        // stack: the settings allow at most MAX_VARIANTS (any past it would
        // get no traffic, never a panic).
        let mut snapshot = [0.0; crate::settings::MAX_VARIANTS];
        let n = self.variants.len().min(snapshot.len());
        let weights = &mut snapshot[..n];
        for (w, v) in weights.iter_mut().zip(&self.variants) {
            *w = v.weight();
        }
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
