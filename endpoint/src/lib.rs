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
//! let running = capline_endpoint::start(settings)?;
//! println!("listening on http://{}", running.addr);
//! // ... until it is time to stop:
//! for (variant, stats) in running.stop()? {
//!     println!("{variant}: {} written", stats.records_written);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod admin;
mod eventstream;
mod front;
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
    pub use crate::front::read_head;
    pub use crate::sigv4::{Authorization, parse_authorization};
    pub use crate::upstream::{ReadAnswer, read_answer_head};
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
    /// The serving threads could not be started.
    #[error("starting the HTTP threads: {0}")]
    Threads(#[source] std::io::Error),
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
    stop: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Starts each variant's engine, binds both listeners and serves them on
/// `HttpThreads` threads of their own, each an event loop with its own
/// `SO_REUSEPORT` listener on `Listen` (the admin API on the first).
pub fn start(settings: Settings) -> Result<Running, StartError> {
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
        let max_record = s.config.engine.max_record_bytes;
        let engine = Engine::start(s.config)?;
        let shadow = Shadow::new(
            s.name,
            &s.authority,
            s.mirror_percentage,
            engine,
            settings.max_shadow_in_flight,
            max_record,
        )
        .map_err(StartError::Shadow)?;
        shadows.push(Arc::new(shadow));
    }
    let runtimes = (0..settings.http_threads)
        .map(|_| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(StartError::Threads)?;
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
            let _guard = runtimes[0].enter();
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
    // One listener per thread, each registered with its thread's runtime:
    // the first on `Listen` as given, the others on the port it got.
    let shared = runtimes.len() > 1;
    let mut addr = settings.listen;
    // SO_REUSEPORT lets any socket of the same user that sets it share the
    // port. A plain bind first (closed at once) fails when anything listens
    // there already, so a second endpoint started on a port in use gets an
    // error instead of half of the first one's connections.
    if shared && addr.port() != 0 {
        drop(
            std::net::TcpListener::bind(addr)
                .map_err(|source| StartError::Bind { addr, source })?,
        );
    }
    let mut listeners = Vec::new();
    for rt in &runtimes {
        let (bound, listener) = bind(rt, addr, shared)?;
        addr = bound;
        listeners.push(listener);
    }
    // The admin API's task waits in the first runtime until its thread runs it.
    let (admin_addr, admin) = bind(&runtimes[0], settings.admin_listen, false)?;
    runtimes[0].spawn(admin::serve(
        state.clone(),
        settings.admin_token.map(Arc::from),
        admin,
        limits,
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let slots = limits.slots();
    let mut threads = Vec::new();
    for (i, (rt, listener)) in runtimes.into_iter().zip(listeners).enumerate() {
        let state = state.clone();
        let slots = slots.clone();
        let mut stopped = stopped.clone();
        let front = front::front(state.clone());
        let serve = move || {
            let connection = move || {
                let state = state.clone();
                let pinned = Arc::new(Pinned::new(state.variants.len()));
                hyper::service::service_fn(move |req| {
                    invoke::handle(state.clone(), pinned.clone(), req)
                })
            };
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            rt.block_on(http::serve_fronted(
                listener,
                limits,
                slots,
                Some(front),
                connection,
                stop,
            ));
            // Whatever is left (mirrored requests in flight, the admin API) ends here.
            rt.shutdown_timeout(Duration::from_secs(1));
        };
        match std::thread::Builder::new()
            .name(format!("capline-http-{i}"))
            .spawn(serve)
        {
            Ok(t) => threads.push(t),
            Err(e) => {
                let _ = stop.send(true);
                for t in threads {
                    let _ = t.join();
                }
                return Err(StartError::Threads(e));
            }
        }
    }
    Ok(Running {
        addr,
        admin_addr,
        state,
        stop,
        threads,
    })
}

/// A listener on `addr` registered with `rt`, and the address it got.
fn bind(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    reuse_port: bool,
) -> Result<(SocketAddr, tokio::net::TcpListener), StartError> {
    let _guard = rt.enter();
    http::listen(addr, reuse_port)
        .and_then(|l| Ok((l.local_addr()?, l)))
        .map_err(|source| StartError::Bind { addr, source })
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

    /// Stops accepting, lets in-flight requests finish (up to
    /// [`http::GRACE`]), stops the serving threads (and so the admin API and
    /// any mirrored request still in flight), then shuts each variant's
    /// engine down, shadows last, delivering what it can within 30 s.
    /// Returns each variant's final stats.
    pub fn stop(self) -> Result<Vec<(String, Stats)>, StopError> {
        let _ = self.stop.send(true);
        for t in self.threads {
            // A serving thread that panicked has dropped its share of the state too.
            let _ = t.join();
        }
        let state = Arc::try_unwrap(self.state).map_err(|_| StopError::Busy)?;
        let mut out = Vec::new();
        for v in state.variants {
            out.push((v.name, v.engine.shutdown(Duration::from_secs(30))?));
        }
        for s in state.shadows {
            // The serving threads are gone: no task holds a shadow any more.
            let s = Arc::try_unwrap(s).map_err(|_| StopError::Busy)?;
            out.push((s.name, s.engine.shutdown(Duration::from_secs(30))?));
        }
        Ok(out)
    }
}
