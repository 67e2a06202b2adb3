//! The runtime API's own HTTP/1.1 reader of plain invocations, ahead of
//! hyper on each client connection (an [`http::Front`]).
//!
//! A plain invocation is the request nearly every client sends: `POST
//! /endpoints/{name}/invocations` (or the sidecar's `POST /invocations`) in
//! HTTP/1.1, with one Content-Length within `MaxPayloadBytes`, no
//! Transfer-Encoding, Expect or Upgrade, no Connection header but
//! `keep-alive`, and its head whole within 16 KiB and 64 headers. The front
//! reads it, checks and forwards it exactly as the hyper route does
//! ([`invoke::check`], [`invoke::invoke_admitted`]), and writes the answer
//! itself: head and body in one `writev`. The first request that is
//! anything else (a ping, a stream, a chunked body, `Expect:
//! 100-continue`, HTTP/1.0, a malformed head ...) hands the connection to
//! hyper with the bytes read so far, and hyper serves it from that request
//! on. So hyper stays the server of everything unusual, and the common
//! request skips hyper's per-request work: the body channel and its
//! wake-ups, the buffers, the dispatcher.
//!
//! Bounds: the head and body are read within the connection's header
//! timeout ([`http`]'s check) and `BodyTimeoutSeconds`; the buffer holds at
//! most a 16 KiB head (past that hyper takes over, with its own limits)
//! plus a body within `MaxPayloadBytes`.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use http_body_util::Full;
use hyper::body::Body as _;
use hyper::header::{HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::{ClientConn, Front};
use crate::invoke::{
    Admitted, Entry, INFERENCE_ID, Route, access_log, access_log_on, body_late, check, error,
    invoke_admitted, route,
};
use crate::state::State;
use crate::upstream::Pinned;

/// The longest head the front reads; a longer one goes to hyper.
const MAX_HEAD: usize = 16 * 1024;
/// The most headers the front reads; more go to hyper (whose limit is 100).
const MAX_HEADERS: usize = 64;

/// The front of the runtime API's connections: each gets its own model
/// connections ([`Pinned`]).
pub(crate) fn front(state: Arc<State>) -> Front {
    Arc::new(move |conn| {
        let pinned = Pinned::new(state.variants.len());
        Box::pin(serve(Arc::clone(&state), pinned, conn))
    })
}

/// A plain invocation's head: its length, its body's, and where its path
/// and headers are in it.
struct Plain {
    head_len: usize,
    body_len: usize,
    path: Range<usize>,
    headers: [(Range<usize>, Range<usize>); MAX_HEADERS],
    count: usize,
}

/// What the start of the buffer holds.
enum Parsed {
    /// A plain invocation, read into the caller's [`Plain`].
    Plain,
    /// Not a whole head yet.
    Partial,
    /// Anything else: hyper's to serve.
    Other,
}

/// Reads the head at the start of `buf` (a plain one into `plain`).
fn parse(buf: &[u8], state: &State, plain: &mut Plain) -> Parsed {
    let ours = |path: &str| {
        matches!(
            route(state, &Method::POST, path),
            Route::Sidecar | Route::Runtime(_)
        )
    };
    parse_with(buf, state.max_payload, &ours, plain)
}

/// [`parse`], with the routes the front serves given by `ours`.
fn parse_with(
    buf: &[u8],
    max_payload: usize,
    ours: &dyn Fn(&str) -> bool,
    plain: &mut Plain,
) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some("POST"), Some(1), Some(path)) = (req.method, req.version, req.path) else {
        return Parsed::Other;
    };
    if !ours(path) {
        return Parsed::Other;
    }
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - buf.as_ptr() as usize;
        start..start + s.len()
    };
    plain.head_len = head_len;
    plain.path = at(path.as_bytes());
    plain.count = req.headers.len();
    let mut length = None;
    for (h, slot) in req.headers.iter().zip(plain.headers.iter_mut()) {
        let (name, v) = (h.name, h.value);
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(v)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok());
            match (n, length) {
                (Some(n), None) => length = Some(n),
                _ => return Parsed::Other,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
            || (name.eq_ignore_ascii_case("connection")
                && !v.trim_ascii().eq_ignore_ascii_case(b"keep-alive"))
        {
            return Parsed::Other;
        }
        *slot = (at(name.as_bytes()), at(v));
    }
    match length {
        // Over the limit: hyper's route refuses it before the body is read.
        Some(n) if n <= max_payload => {
            plain.body_len = n;
            Parsed::Plain
        }
        _ => Parsed::Other,
    }
}

impl Plain {
    fn new() -> Plain {
        Plain {
            head_len: 0,
            body_len: 0,
            path: 0..0,
            headers: std::array::from_fn(|_| (0..0, 0..0)),
            count: 0,
        }
    }

    /// The request's head as hyper would give it, its values sharing
    /// `head`'s bytes; `None` if a name, value or the path is not one
    /// hyper's types take.
    fn parts(&self, head: &Bytes) -> Option<Parts> {
        let mut map = HeaderMap::with_capacity(self.count);
        for (name, value) in &self.headers[..self.count] {
            let name = HeaderName::from_bytes(&head[name.clone()]).ok()?;
            let value = HeaderValue::from_maybe_shared(head.slice(value.clone())).ok()?;
            map.append(name, value);
        }
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = Method::POST;
        parts.uri = Uri::from_maybe_shared(head.slice(self.path.clone())).ok()?;
        parts.version = Version::HTTP_11;
        parts.headers = map;
        Some(parts)
    }
}

/// Serves plain invocations on `c` until the client closes it, the server
/// stops, or a request is not plain (handed back, unread).
async fn serve(state: Arc<State>, pinned: Pinned, mut c: ClientConn) -> Option<ClientConn> {
    let mut out = Vec::with_capacity(512);
    let mut plain = Plain::new();
    loop {
        loop {
            match parse(&c.buf, &state, &mut plain) {
                Parsed::Plain => break,
                Parsed::Partial if c.buf.len() < MAX_HEAD => {}
                Parsed::Partial | Parsed::Other => return Some(c),
            }
            if c.buf.capacity() - c.buf.len() < 1024 {
                c.buf.reserve(8 * 1024);
            }
            match c.stream.read_buf(&mut c.buf).await {
                Ok(n) if n > 0 => c.activity.read(),
                // Closed (or failed) before a whole head: nothing to answer.
                _ => return None,
            }
        }
        let _in_flight = c.activity.head_read();
        let started = access_log_on().then(Instant::now);
        let total = plain.head_len + plain.body_len;
        if c.buf.len() < total {
            c.buf.reserve(total - c.buf.len());
            match tokio::time::timeout(state.body_timeout, read_to(&mut c, total)).await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(_) => {
                    let _ = respond(&mut c, &mut out, body_late(&state), true).await;
                    return None;
                }
            }
        }
        let head = c.buf.split_to(plain.head_len).freeze();
        let body = c.buf.split_to(plain.body_len).freeze();
        let Some(parts) = plain.parts(&head) else {
            let r = error(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                "invalid request head",
            );
            let _ = respond(&mut c, &mut out, r, true).await;
            return None;
        };
        let log = started.map(|t| {
            (
                t,
                parts.uri.clone(),
                parts.headers.get(&INFERENCE_ID).cloned(),
            )
        });
        let entry = match route(&state, &Method::POST, parts.uri.path()) {
            Route::Runtime(name) => Entry::Runtime(name),
            _ => Entry::Sidecar,
        };
        let response = match check(&state, &parts, &body, entry) {
            Ok(i) => invoke_admitted(&state, &pinned, Admitted { parts, body, i }).await,
            Err(refused) => *refused,
        };
        if let Some((started, uri, id)) = log {
            access_log(started, &Method::POST, uri.path(), id.as_ref(), &response);
        }
        let close = *c.closing.borrow();
        if respond(&mut c, &mut out, response, close).await.is_err() || close {
            return None;
        }
    }
}

/// Reads until `buf` holds `total` bytes; `false` if the client closed the
/// connection first (or it failed).
async fn read_to(c: &mut ClientConn, total: usize) -> bool {
    while c.buf.len() < total {
        match c.stream.read_buf(&mut c.buf).await {
            Ok(n) if n > 0 => c.activity.read(),
            _ => return false,
        }
    }
    true
}

/// Writes `r` to the client: its head (with Content-Length, Date, and
/// `Connection: close` when `close`) and body in one `writev`.
async fn respond(
    c: &mut ClientConn,
    out: &mut Vec<u8>,
    r: Response<Full<Bytes>>,
    close: bool,
) -> std::io::Result<()> {
    let (parts, body) = r.into_parts();
    let body = whole(body);
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection" | "date"
        ) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    date(out);
    if close {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
    c.stream
        .write_all_buf(&mut Buf::chain(&out[..], body))
        .await?;
    c.activity.touch();
    Ok(())
}

/// The bytes of a whole body (it is ready at once).
fn whole(mut body: Full<Bytes>) -> Bytes {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match Pin::new(&mut body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

/// Appends the Date header's value (IMF-fixdate), formatted once a second
/// per thread.
fn date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

/// The front's reading of `buf` as a plain invocation's head, for the fuzz
/// target (`fuzz/checks/request_head.rs`), with the runtime and sidecar
/// routes of an endpoint named `e`: `None` when it is not one (or not whole
/// yet), else the head's length, the body's, and the head as hyper's
/// `Parts` (`None` if hyper's types refuse a part of it).
pub fn read_head(buf: &[u8], max_payload: usize) -> Option<(usize, usize, Option<Parts>)> {
    let ours = |p: &str| p == "/invocations" || p == "/endpoints/e/invocations";
    let mut plain = Plain::new();
    match parse_with(buf, max_payload, &ours, &mut plain) {
        Parsed::Plain => {
            let head = Bytes::copy_from_slice(&buf[..plain.head_len]);
            Some((plain.head_len, plain.body_len, plain.parts(&head)))
        }
        Parsed::Partial | Parsed::Other => None,
    }
}
