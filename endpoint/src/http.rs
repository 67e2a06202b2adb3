//! The HTTP plumbing every server here shares (the runtime API, the admin
//! API, the demo's stand-in model): one accept loop that bounds connections
//! in number and in time, a bounded body reader, and a plain response
//! builder.
//!
//! What one client can hold:
//! - **connections**: at most [`Limits::max_connections`] are served at
//!   once per listener; more wait in the kernel's listen backlog;
//! - **time**: a request's head must arrive within
//!   [`Limits::header_timeout`] of its first byte, and a keep-alive
//!   connection with no request in flight is closed after
//!   [`Limits::idle_timeout`] without a byte read or written. One check per
//!   connection looks every eighth of the shorter of the two (at least
//!   every second, at most every 50 ms), so a connection may stay up to two
//!   looks longer; no timer is set per request;
//! - **memory**: a body is read into one buffer that never grows past its
//!   limit, whatever the chunking ([`read_body`]).
//!
//! An accept that fails (file descriptors exhausted, say) is retried after a
//! pause that doubles up to a second, and logged at most once per 10 s, so
//! the loop never spins.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long in-flight requests may take to finish once a stop is asked for.
pub const GRACE: Duration = Duration::from_secs(10);

/// Bounds on the client connections of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time allowed for a request's headers to arrive.
    pub header_timeout: Duration,
    /// Time a connection with no request in flight may stay silent.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Limits {
    /// The connection slots of one listener: [`Limits::max_connections`] of
    /// them, for [`serve`].
    pub fn slots(&self) -> Arc<tokio::sync::Semaphore> {
        Arc::new(tokio::sync::Semaphore::new(self.max_connections))
    }
}

impl Default for Limits {
    /// 10 s for headers, 60 s idle, 1024 connections.
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// A response with `status`, `Content-Type: content_type` and `body`.
pub fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// `s` as a JSON string literal (quotes included), with capline's escaper.
pub fn json_string(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'"');
    capline::format::escape_into(&mut out, s.as_bytes());
    out.push(b'"');
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// It is larger than the limit (declared, or as it arrived).
    #[error("the body is larger than the {0}-byte limit")]
    TooLarge(usize),
    /// It did not arrive in time.
    #[error("the body did not arrive within {0:?}")]
    Timeout(Duration),
    /// The connection failed while it arrived.
    #[error("reading the body: {0}")]
    Read(#[from] hyper::Error),
}

/// Reads a whole body of at most `limit` bytes within `timeout` into one
/// buffer whose capacity never exceeds `limit`: however the sender chunks
/// it, memory stays bounded by the limit plus one frame.
pub async fn read_body<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge(limit));
    }
    let declared = body.size_hint().exact().map(|n| n as usize);
    let read = async {
        let mut body = body;
        // A body that comes in one frame (the usual case: it fits the
        // connection's read buffer) is passed on as it is, without a copy.
        let mut first: Option<Bytes> = None;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue; // trailers
            };
            if first.is_none() && buf.is_empty() {
                if data.len() > limit {
                    return Err(BodyError::TooLarge(limit));
                }
                first = Some(data);
                continue;
            }
            // A second frame: from here on the body is gathered in `buf`.
            if let Some(f) = first.take() {
                buf.reserve_exact(declared.unwrap_or(0).min(limit).max(f.len()));
                buf.extend_from_slice(&f);
            }
            let need = buf.len() + data.len();
            if need > limit {
                return Err(BodyError::TooLarge(limit));
            }
            if need > buf.capacity() {
                // Double, but never past the limit.
                let want = need.max(buf.capacity() * 2).min(limit);
                buf.reserve_exact(want - buf.len());
            }
            buf.extend_from_slice(&data);
        }
        Ok(first.unwrap_or_else(|| Bytes::from(buf)))
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| BodyError::Timeout(timeout))?
}

/// What a connection is doing: whether a byte went in or out since the
/// idle check last looked, its requests in flight, and whether a request
/// head is on its way. Noting a byte is a load or two (and a store the
/// first time): no clock is read and no timer set per request; the check
/// ([`serve_one`]) keeps the time.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    touched: AtomicBool,
    in_flight: AtomicUsize,
    /// A byte arrived while no request was in flight: a head is on its way.
    reading_head: AtomicBool,
    /// Request heads read so far. Only the connection's own task writes it.
    heads: AtomicU64,
}

impl Activity {
    /// Bytes went out.
    pub(crate) fn touch(&self) {
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
    }

    /// Bytes came in.
    pub(crate) fn read(&self) {
        self.touch();
        if self.in_flight.load(Ordering::Relaxed) == 0 && !self.reading_head.load(Ordering::Relaxed)
        {
            self.reading_head.store(true, Ordering::Relaxed);
        }
    }

    /// A whole request head was read: the request is in flight until the
    /// returned guard is dropped.
    pub(crate) fn head_read(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let n = self.heads.load(Ordering::Relaxed);
        self.heads.store(n + 1, Ordering::Relaxed);
        self.reading_head.store(false, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Whether the connection was busy since the last call: a byte went in
    /// or out, or a request is in flight.
    fn busy_since_last_look(&self) -> bool {
        let touched = self.touched.swap(false, Ordering::Relaxed);
        touched || self.in_flight.load(Ordering::Relaxed) > 0
    }

    /// The number of the head on its way, if one is: bytes arrived since the
    /// last request and it is not whole yet.
    fn head_on_its_way(&self) -> Option<u64> {
        let waiting = self.in_flight.load(Ordering::Relaxed) == 0
            && self.reading_head.load(Ordering::Relaxed);
        waiting.then(|| self.heads.load(Ordering::Relaxed))
    }
}

/// A stream that notes every byte read or written in its [`Activity`].
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A service that counts its requests in flight in an [`Activity`].
struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
}

/// Ends one request's count when dropped (answered, or abandoned).
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Counted<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    B: hyper::body::Body,
{
    type Response = Response<Guarded<B>>;
    type Error = S::Error;
    type Future = CountedCall<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let guard = self.activity.head_read();
        CountedCall {
            fut: self.inner.call(req),
            guard: Some(guard),
        }
    }
}

pin_project_lite::pin_project! {
    /// A counted request being answered: the service's own future, then its
    /// response with the request's [`InFlight`] moved into the body. The
    /// request stays in flight until its body is sent or dropped: a
    /// streamed answer that pauses is not an idle connection.
    pub struct CountedCall<F> {
        #[pin]
        fut: F,
        guard: Option<InFlight>,
    }
}

impl<F, B, E> Future for CountedCall<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Guarded<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let r = std::task::ready!(this.fut.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(r.map(|r| {
            r.map(|inner| Guarded {
                inner,
                _guard: guard,
            })
        }))
    }
}

/// A response body that keeps its request counted in flight until it ends.
pub struct Guarded<B> {
    inner: B,
    _guard: Option<InFlight>,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A listener on `addr` with a backlog of 1024, registered with the
/// current runtime. With `reuse_port`, `SO_REUSEPORT` is set so that
/// several threads can each listen on the same address (Linux lets only
/// the same user share it).
pub fn listen(
    addr: std::net::SocketAddr,
    reuse_port: bool,
) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Failed accepts: a pause that doubles up to a second, and one log line
/// per 10 s at most.
#[derive(Debug)]
struct AcceptErrors {
    pause: Duration,
    failed: u64,
    logged: Option<Instant>,
}

impl AcceptErrors {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(10);

    fn new() -> Self {
        AcceptErrors {
            pause: Self::FIRST,
            failed: 0,
            logged: None,
        }
    }

    async fn pause(&mut self, e: std::io::Error) {
        self.failed += 1;
        if self.logged.is_none_or(|t| t.elapsed() >= Self::LOG_EVERY) {
            tracing::warn!(error = %e, failed = self.failed, "accepting connections fails; pausing");
            self.logged = Some(Instant::now());
            self.failed = 0;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Self::MAX);
    }

    fn reset(&mut self) {
        self.pause = Self::FIRST;
    }
}

/// An error as hyper takes it from a service or a body, and on the way to
/// or from a model.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connection's service as [`serve`] takes it: a hyper service whose
/// answers have bodies of type `B`.
pub trait ConnService<B>:
    hyper::service::Service<
        Request<Incoming>,
        Response = Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Send
    + 'static
{
}

impl<S, B> ConnService<B> for S where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<B>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Send
        + 'static
{
}

/// An answer's body as [`serve`] takes it.
pub trait ResponseBody:
    hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{
}

impl<B> ResponseBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{
}

/// Serves HTTP/1.1 on the connections `listener` accepts, within `limits`,
/// one task per connection, with the service `connection()` makes for it
/// (so a service can keep per-connection state). A connection is served
/// only while it holds one of `slots` ([`Limits::slots`]); accept loops
/// given the same slots (one per thread on `SO_REUSEPORT` listeners of one
/// address) share that bound. When `stop` resolves it stops accepting, lets
/// in-flight requests finish (up to [`GRACE`]) and closes idle keep-alive
/// connections.
pub async fn serve<C, S, B>(
    listener: tokio::net::TcpListener,
    limits: Limits,
    slots: Arc<tokio::sync::Semaphore>,
    connection: C,
    stop: impl Future<Output = ()>,
) where
    C: Fn() -> S,
    S: ConnService<B>,
    B: ResponseBody,
{
    serve_fronted(listener, limits, slots, None, connection, stop).await;
}

/// A connection's own reader ahead of hyper: it serves the requests it
/// can, and at the first one it does not it hands the connection back
/// (`Some`, with that request's bytes unread in [`ClientConn::buf`]) for
/// hyper to serve from there on; `None` when the connection is done.
pub(crate) type Front = Arc<
    dyn Fn(ClientConn) -> Pin<Box<dyn Future<Output = Option<ClientConn>> + Send>> + Send + Sync,
>;

/// A client connection while a [`Front`] serves it.
pub(crate) struct ClientConn {
    pub(crate) stream: tokio::net::TcpStream,
    /// Read and not yet served.
    pub(crate) buf: bytes::BytesMut,
    /// What the connection's check looks at: the front notes its reads
    /// ([`Activity::read`]), writes ([`Activity::touch`]) and heads
    /// ([`Activity::head_read`]).
    pub(crate) activity: Arc<Activity>,
    /// True once the server stops: the front ends the connection after the
    /// request in flight.
    pub(crate) closing: tokio::sync::watch::Receiver<bool>,
}

/// [`serve`], with each connection first served by `front` when there is one.
pub(crate) async fn serve_fronted<C, S, B>(
    listener: tokio::net::TcpListener,
    limits: Limits,
    slots: Arc<tokio::sync::Semaphore>,
    front: Option<Front>,
    connection: C,
    stop: impl Future<Output = ()>,
) where
    C: Fn() -> S,
    S: ConnService<B>,
    B: ResponseBody,
{
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut errors = AcceptErrors::new();
    tokio::pin!(stop);
    loop {
        // A free slot first: past the limit, clients wait in the backlog.
        let permit = tokio::select! {
            () = &mut stop => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    errors.pause(e).await;
                    continue;
                }
            },
        };
        errors.reset();
        let _ = stream.set_nodelay(true);
        let service = connection();
        let closing = closing_rx.clone();
        let front = front.clone();
        tasks.spawn(async move {
            serve_one(stream, front, service, limits, closing).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(GRACE, drained).await.is_err() {
        tracing::warn!(
            "in-flight requests did not finish within {GRACE:?} of the stop; they are cut"
        );
        tasks.abort_all();
    }
}

/// What the connection's check found.
enum Look {
    /// Nothing to do.
    Fine,
    /// Silent for the idle timeout with nothing in flight; `true` when a
    /// head had begun to arrive.
    Idle(bool),
    /// A head took longer than the header timeout (nothing is in flight).
    HeadLate,
}

/// The connection's check: one timer per connection, not per request. It
/// looks every eighth of the shorter timeout (at least every second, at
/// most every 50 ms), so a connection may stay up to two looks longer.
struct Watch {
    every: Duration,
    /// Silent with nothing in flight since then (as of the last look).
    quiet_since: Instant,
    /// The head on its way, and since when (as of the look that first saw it).
    head_since: Option<(u64, Instant)>,
}

impl Watch {
    fn new(limits: &Limits) -> Watch {
        Watch {
            every: (limits.idle_timeout.min(limits.header_timeout) / 8)
                .clamp(Duration::from_millis(50), Duration::from_secs(1)),
            quiet_since: Instant::now(),
            head_since: None,
        }
    }

    fn look(&mut self, activity: &Activity, limits: &Limits) -> Look {
        let now = Instant::now();
        let head = activity.head_on_its_way();
        self.head_since = match (head, self.head_since) {
            (None, _) => None,
            (Some(n), Some((m, since))) if n == m => {
                if now - since >= limits.header_timeout {
                    return Look::HeadLate;
                }
                Some((m, since))
            }
            (Some(n), _) => Some((n, now)),
        };
        if activity.busy_since_last_look() {
            self.quiet_since = now;
        } else if now - self.quiet_since >= limits.idle_timeout {
            return Look::Idle(head.is_some());
        }
        Look::Fine
    }
}

/// One connection: served until the client closes it, it goes idle for
/// too long, a head takes too long, or the server stops. With nothing in
/// flight, ending it loses no answer.
async fn serve_one<S, B>(
    stream: tokio::net::TcpStream,
    front: Option<Front>,
    service: S,
    limits: Limits,
    mut closing: tokio::sync::watch::Receiver<bool>,
) where
    S: ConnService<B>,
    B: ResponseBody,
{
    let activity = Arc::new(Activity::default());
    let mut watch = Watch::new(&limits);
    let (stream, read) = match front {
        None => (stream, Bytes::new()),
        Some(front) => {
            let mut served = front(ClientConn {
                stream,
                buf: bytes::BytesMut::new(),
                activity: activity.clone(),
                closing: closing.clone(),
            });
            let mut stopping = false;
            loop {
                tokio::select! {
                    handed = served.as_mut() => match handed {
                        Some(c) => break (c.stream, c.buf.freeze()),
                        None => return,
                    },
                    _ = closing.wait_for(|c| *c), if !stopping => {
                        // The front ends the connection after the request
                        // in flight; with none, it ends now.
                        if activity.in_flight.load(Ordering::Relaxed) == 0 {
                            return;
                        }
                        stopping = true;
                    }
                    () = tokio::time::sleep(watch.every) => {
                        if !matches!(watch.look(&activity, &limits), Look::Fine) {
                            return;
                        }
                    }
                }
            }
        }
    };
    // What the front read and did not serve is read again first.
    let (reader, writer) = stream.into_split();
    let io = TokioIo::new(Tracked {
        inner: tokio::io::join(std::io::Cursor::new(read).chain(reader), writer),
        activity: activity.clone(),
    });
    let service = Counted {
        inner: service,
        activity: activity.clone(),
    };
    // hyper's own header timeout would set a timer per request; the watch
    // bounds a head's time instead.
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    let mut shutting = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = closing.wait_for(|c| *c), if !shutting => {
                conn.as_mut().graceful_shutdown();
                shutting = true;
            }
            () = tokio::time::sleep(watch.every) => match watch.look(&activity, &limits) {
                Look::Fine => {}
                // Silent halfway through a head: hyper's graceful close
                // would wait for the rest.
                Look::HeadLate | Look::Idle(true) => return,
                Look::Idle(false) => {
                    if !shutting {
                        conn.as_mut().graceful_shutdown();
                        shutting = true;
                    }
                }
            },
        }
    }
}
