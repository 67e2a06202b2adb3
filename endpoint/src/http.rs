//! The HTTP plumbing every server here shares (the runtime API, the admin
//! API, the demo's stand-in model): one accept loop with graceful shutdown,
//! and a plain response builder.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// How long in-flight requests may take to finish once a stop is asked for.
pub const GRACE: Duration = Duration::from_secs(10);

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

/// Serves HTTP/1.1 on every connection `listener` accepts, one task per
/// connection, with the service `connection()` makes for it (so a service
/// can keep per-connection state). When `stop` resolves it stops accepting,
/// lets in-flight requests finish (up to [`GRACE`]) and closes idle
/// keep-alive connections.
pub async fn serve<C, S>(
    listener: tokio::net::TcpListener,
    connection: C,
    stop: impl Future<Output = ()>,
) where
    C: Fn() -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<Full<Bytes>>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), connection());
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "in-flight requests did not finish within {GRACE:?} of the stop; they are cut"
        );
    }
}

/// `s` as a JSON string literal (quotes included), with capline's escaper.
pub fn json_string(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'"');
    capline::format::escape_into(&mut out, s.as_bytes());
    out.push(b'"');
    String::from_utf8_lossy(&out).into_owned()
}
