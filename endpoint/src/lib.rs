//! `capline endpoint` as a library: a SageMaker-compatible real-time
//! endpoint in front of model servers that speak the SageMaker container
//! contract (`GET /ping`, `POST /invocations`), with data capture on the way back.
//!
//! The modules, in the order they depend on each other:
//!
//! | module | what |
//! |---|---|
//! | `settings` | the endpoint's JSON config, parsed into typed [`Settings`] |
//! | `sigv4` | SigV4 verification of runtime API requests |
//! | [`http`] | the one accept loop, bounding connections in number and time; bounded body reads; plain replies |
//! | `state` | the variants (model, weight, engine, metrics) the handlers share |
//! | `upstream` | connections to the models, pinned per client connection |
//! | `eventstream` | SageMaker's response-stream framing (PayloadPart, ModelStreamError) |
//! | `shadow` | mirroring a share of the requests to shadow variants, off the request's path |
//! | `stream` | relaying a model's streamed answer chunk by chunk, captured whole at its end |
//! | `invoke` | the runtime API: routing, forwarding, SageMaker's errors, capture |
//! | `admin` | the admin API: weights and sampling at run time, Prometheus metrics |
//!
//! ```no_run
//! let settings = capline_endpoint::Settings::from_path("endpoint.json".as_ref())?;
//! let rt = capline_endpoint::runtime()?;
//! let running = capline_endpoint::start(&rt, settings)?;
//! println!("listening on http://{}", running.addr);
//! // ... until it is time to stop:
//! for (variant, stats) in running.stop(rt)? {
//!     println!("{variant}: {} written", stats.records_written);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod admin;
mod eventstream;
pub mod http;
mod invoke;
mod settings;
mod shadow;
pub mod sigv4;
mod state;
mod stream;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use capline::{Engine, Stats};

pub use settings::{Settings, SettingsError, ShadowSettings, VariantSettings};

/// The parsers that read client input, for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::admin::{Update, parse_update};
    pub use crate::sigv4::{Authorization, parse_authorization};
}

use sigv4::Verifier;
use state::{Shadow, State, Variant};
use upstream::Pinned;

/// Why an endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A variant's capture engine did not start.
    #[error(transparent)]
    Engine(#[from] capline::Error),
    /// A shadow variant's model address is not a URL.
    #[error("{0}")]
    Shadow(String),
    /// A listener could not be bound.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why an endpoint did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// Request handlers still held the engines after the grace period.
    #[error("request handlers still hold the engines")]
    Busy,
    /// A variant's engine did not shut down.
    #[error(transparent)]
    Engine(#[from] capline::Error),
}

/// A started endpoint: its listeners' addresses and what stops it.
pub struct Running {
    /// The runtime API listener (`POST /endpoints/{name}/invocations`).
    pub addr: SocketAddr,
    /// The admin API listener.
    pub admin_addr: SocketAddr,
    state: Arc<State>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

/// Starts each variant's engine, binds both listeners and serves on `rt`.
pub fn start(rt: &tokio::runtime::Runtime, settings: Settings) -> Result<Running, StartError> {
    let mut variants = Vec::new();
    for v in settings.variants {
        let max_record = v.config.engine.max_record_bytes;
        let engine = Engine::start(v.config)?;
        variants.push(Variant::new(
            v.name,
            v.weight,
            v.authority,
            engine,
            max_record,
        ));
    }
    let mut shadows = Vec::new();
    for s in settings.shadows {
        let engine = Engine::start(s.config)?;
        let shadow = Shadow::new(
            s.name,
            &s.authority,
            s.mirror_percentage,
            engine,
            settings.max_shadow_in_flight,
        )
        .map_err(StartError::Shadow)?;
        shadows.push(Arc::new(shadow));
    }
    let state = Arc::new(State {
        endpoint_name: settings.endpoint_name,
        max_payload: settings.max_payload,
        max_response: settings.max_response,
        upstream_timeout: settings.upstream_timeout,
        body_timeout: settings.body_timeout,
        allow_unsigned_sidecar: settings.allow_unsigned_sidecar,
        ping: tokio::sync::Mutex::new(None),
        ping_cache: settings.ping_cache,
        variants,
        shadows,
        shadow_client: {
            let _guard = rt.enter();
            shadow::client()
        },
        streams: state::StreamCounts::default(),
        passthrough_streams: state::StreamCounts::default(),
        passthrough: settings.passthrough,
        bearer_tokens: settings.bearer_tokens,
        capture_partial_streams: settings.capture_partial_streams,
        refused: AtomicU64::new(0),
        admin_updates: std::sync::Mutex::new(()),
        verifier: (!settings.access_keys.is_empty())
            .then(|| Verifier::new(settings.access_keys, settings.region)),
    });
    let limits = http::Limits {
        header_timeout: settings.header_timeout,
        idle_timeout: settings.idle_timeout,
        max_connections: settings.max_connections,
    };
    let bind = |addr: SocketAddr| {
        rt.block_on(tokio::net::TcpListener::bind(addr))
            .and_then(|l| Ok((l.local_addr()?, l)))
            .map_err(|source| StartError::Bind { addr, source })
    };
    let (addr, listener) = bind(settings.listen)?;
    let (admin_addr, admin) = bind(settings.admin_listen)?;
    rt.spawn(admin::serve(
        state.clone(),
        settings.admin_token.map(Arc::from),
        admin,
        limits,
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let connection = {
        let state = state.clone();
        move || {
            let state = state.clone();
            let pinned = Arc::new(Pinned::new(state.variants.len()));
            hyper::service::service_fn(move |req| {
                invoke::handle(state.clone(), pinned.clone(), req)
            })
        }
    };
    let server = rt.spawn(http::serve(listener, limits, connection, async move {
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
    pub fn endpoint_name(&self) -> &str {
        &self.state.endpoint_name
    }

    /// `(name, weight, model HOST:PORT)` of each variant.
    pub fn variants(&self) -> impl Iterator<Item = (&str, f64, &str)> {
        self.state.variants.iter().map(|v| {
            (
                v.name.as_str(),
                v.weight(),
                v.authority.to_str().unwrap_or(""),
            )
        })
    }

    /// `(name, mirrored percentage, model HOST:PORT/invocations)` of each shadow variant.
    pub fn shadows(&self) -> impl Iterator<Item = (&str, f64, String)> {
        self.state.shadows.iter().map(|s| {
            (
                s.name.as_str(),
                s.share(),
                format!(
                    "{}{}",
                    s.uri.authority().map_or("", |a| a.as_str()),
                    s.uri.path()
                ),
            )
        })
    }

    /// The `PassthroughRoutes`.
    pub fn passthrough_routes(&self) -> impl Iterator<Item = &str> {
        self.state.passthrough.iter().map(String::as_str)
    }

    /// Stops accepting, lets in-flight requests finish, stops `rt` (and so the
    /// admin API and any mirrored request still in flight), then shuts each
    /// variant's engine down, shadows last, delivering what it can within
    /// 30 s. Returns each variant's final stats.
    pub fn stop(self, rt: tokio::runtime::Runtime) -> Result<Vec<(String, Stats)>, StopError> {
        let _ = self.stop.send(());
        let _ = rt.block_on(self.server);
        rt.shutdown_timeout(Duration::from_secs(1));
        let state = Arc::try_unwrap(self.state).map_err(|_| StopError::Busy)?;
        let mut out = Vec::new();
        for v in state.variants {
            out.push((v.name, v.engine.shutdown(Duration::from_secs(30))?));
        }
        for s in state.shadows {
            // The runtime is down: no task holds a shadow any more.
            let s = Arc::try_unwrap(s).map_err(|_| StopError::Busy)?;
            out.push((s.name, s.engine.shutdown(Duration::from_secs(30))?));
        }
        Ok(out)
    }
}

/// A runtime for the endpoint: two worker threads.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("capline-http")
        .enable_all()
        .build()
}
