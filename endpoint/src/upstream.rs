//! Connections to the models. Each downstream (client) connection keeps its
//! own connection to each variant's model, reused request after request; no
//! pool is shared between client connections.
//!
//! Two kinds of connection:
//! - [`Conn`], for the buffered invocation (the runtime and sidecar routes,
//!   nearly every request): an HTTP/1.1 client written here and driven by
//!   the request's own task. It writes the request with one `writev`, reads
//!   the answer into one buffer, and hands its body on without a copy when
//!   it has a length. There is no connection task and no channel between
//!   the request and its connection.
//! - hyper's client connection ([`send`]), for the streamed routes, whose
//!   answers are relayed frame by frame, and for the health check.

use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::Full;
use hyper::Request;
use hyper::StatusCode;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::state::Variant;

pub(crate) use crate::http::BoxError;

/// Why an exchange with a model failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Exchange {
    /// No connection could be made.
    #[error("could not reach the model: {0}")]
    Unreachable(BoxError),
    /// The request or the answer failed on the way.
    #[error("the exchange with the model failed: {0}")]
    Failed(BoxError),
    /// The answer's body is over the limit.
    #[error("the model's answer is larger than the {0}-byte limit (MaxResponseBytes)")]
    TooLarge(usize),
}

/// A model's answer that breaks HTTP/1.1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Malformed(&'static str);

fn failed(why: &'static str) -> Exchange {
    Exchange::Failed(Box::new(Malformed(why)))
}

/// One connection per variant, each taken out while a request uses it.
#[derive(Debug)]
struct Slots<T>(std::sync::Mutex<Vec<Option<T>>>);

impl<T> Slots<T> {
    fn new(variants: usize) -> Self {
        Slots(std::sync::Mutex::new((0..variants).map(|_| None).collect()))
    }

    /// Variant `i`'s connection, if one is kept (the slot is left empty).
    fn take(&self, i: usize) -> Option<T> {
        // Poisoned or not: a slot holds no invariant a panic could break.
        let mut slots = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.get_mut(i).and_then(Option::take)
    }

    /// Keeps `conn` as variant `i`'s connection for the next request.
    fn keep(&self, i: usize, conn: T) {
        let mut slots = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = slots.get_mut(i) {
            *slot = Some(conn);
        }
    }
}

/// One downstream connection's connections to the models, one of each kind
/// per variant, reused request after request. HTTP/1 carries one request at
/// a time on a connection, so a downstream connection never needs more than
/// one upstream connection per variant, and no pool is shared between
/// connections.
#[derive(Debug)]
pub(crate) struct Pinned {
    senders: Slots<SendRequest<Full<Bytes>>>,
    conns: Slots<Conn>,
}

impl Pinned {
    pub(crate) fn new(variants: usize) -> Self {
        Pinned {
            senders: Slots::new(variants),
            conns: Slots::new(variants),
        }
    }

    /// The open hyper connection to variant `i`, if there is one (taken out while in use).
    fn take(&self, i: usize) -> Option<SendRequest<Full<Bytes>>> {
        self.senders.take(i).filter(|s| !s.is_closed())
    }

    /// Keeps the hyper connection to variant `i` for the next request.
    pub(crate) fn keep(&self, i: usize, sender: SendRequest<Full<Bytes>>) {
        self.senders.keep(i, sender);
    }

    /// The open [`Conn`] to variant `i`, if there is one and the model has
    /// not closed it (taken out while in use).
    fn take_conn(&self, i: usize) -> Option<Conn> {
        self.conns.take(i).filter(Conn::alive)
    }
}

/// The most an answer's head may take (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// The most headers an answer may have.
const MAX_HEADERS: usize = 100;
/// The most a chunk-size line or a trailer line may take.
const MAX_LINE: usize = 4096;
/// The most a chunked answer's trailers may take in all.
const MAX_TRAILERS: usize = 64 * 1024;

/// The error of an answer cut off by the model closing its connection.
const MID_ANSWER: &str = "the model closed the connection mid-answer";

/// A model's answer to a buffered invocation: what the runtime API passes
/// on and captures of it.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<HeaderValue>,
    pub(crate) custom_attributes: Option<HeaderValue>,
    pub(crate) body: Bytes,
}

/// How an answer's body ends (RFC 9112, section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// Until the model closes the connection.
    Close,
}

/// What [`Conn::answer`] takes from an answer's head.
struct Head {
    status: StatusCode,
    framing: Framing,
    keep_alive: bool,
    content_type: Option<HeaderValue>,
    custom_attributes: Option<HeaderValue>,
}

/// A keep-alive HTTP/1.1 connection to a model, driven by the task of the
/// request that uses it.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: tokio::net::TcpStream,
    /// What was read and not yet taken; empty between answers.
    buf: BytesMut,
    /// The request head being sent; reused from request to request.
    head: Vec<u8>,
    /// The last answer's Content-Type: a model answers most requests with
    /// the same one, and a clone of it allocates nothing.
    last_type: Option<HeaderValue>,
}

impl Conn {
    async fn open(authority: &HeaderValue) -> Result<Conn, BoxError> {
        let stream = tokio::net::TcpStream::connect(authority.to_str()?).await?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::new(),
            head: Vec::with_capacity(256),
            last_type: None,
        })
    }

    /// Whether the model has left the idle connection open: nothing to read
    /// (the model closing it would make it readable). Makes no system call
    /// unless the runtime saw the socket readable since the last read.
    fn alive(&self) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads more of the answer into `buf`, room for at least `want` more
    /// bytes made first; `false` when the model closed the connection.
    async fn fill(&mut self, want: usize) -> Result<bool, Exchange> {
        self.buf.reserve(want.max(8 * 1024));
        match self.stream.read_buf(&mut self.buf).await {
            Ok(n) => Ok(n > 0),
            Err(e) => Err(Exchange::Failed(e.into())),
        }
    }

    /// [`Conn::fill`], where the model closing the connection is the error
    /// `closed`.
    async fn more(&mut self, want: usize, closed: &'static str) -> Result<(), Exchange> {
        match self.fill(want).await? {
            true => Ok(()),
            false => Err(failed(closed)),
        }
    }

    /// Reads one answer whose body is at most `max_body` bytes; `true` with
    /// it when the connection can carry another request.
    async fn answer(&mut self, max_body: usize) -> Result<(Answer, bool), Exchange> {
        let head = loop {
            if let Some(head) = self.head()? {
                break head;
            }
            if self.buf.len() >= MAX_HEAD {
                return Err(failed("the model's answer head is over 64 KiB"));
            }
            self.more(0, "the model closed the connection before answering")
                .await?;
        };
        let body = match head.framing {
            Framing::Length(n) => self.exact(n, max_body).await?,
            Framing::Chunked => self.chunked(max_body).await?,
            Framing::Close => self.until_close(max_body).await?,
        };
        let reusable = head.keep_alive && head.framing != Framing::Close && self.buf.is_empty();
        let answer = Answer {
            status: head.status,
            content_type: head.content_type,
            custom_attributes: head.custom_attributes,
            body,
        };
        Ok((answer, reusable))
    }

    /// Parses the final answer head at the start of `buf` and takes it out,
    /// skipping interim (1xx) answers; `None` until a whole head is there.
    fn head(&mut self) -> Result<Option<Head>, Exchange> {
        match answer_head(&self.buf, &mut self.last_type)? {
            AnswerHead::Whole(head, n) => {
                self.buf.advance(n);
                Ok(Some(head))
            }
            AnswerHead::Partial(interim) => {
                self.buf.advance(interim);
                Ok(None)
            }
        }
    }

    /// A body of `n` bytes: handed on as the buffer's own bytes, no copy.
    async fn exact(&mut self, n: u64, max_body: usize) -> Result<Bytes, Exchange> {
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= max_body)
            .ok_or(Exchange::TooLarge(max_body))?;
        while self.buf.len() < n {
            self.more(n - self.buf.len(), MID_ANSWER).await?;
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// A body read until the model closes the connection.
    async fn until_close(&mut self, max_body: usize) -> Result<Bytes, Exchange> {
        loop {
            if self.buf.len() > max_body {
                return Err(Exchange::TooLarge(max_body));
            }
            if !self.fill(0).await? {
                return Ok(std::mem::take(&mut self.buf).freeze());
            }
        }
    }

    /// One line (up to and without its `\r\n`, or a bare `\n`) taken out of
    /// `buf`, read as needed; at most [`MAX_LINE`] bytes.
    async fn line(&mut self) -> Result<BytesMut, Exchange> {
        loop {
            if let Some(at) = memchr::memchr(b'\n', &self.buf) {
                let mut line = self.buf.split_to(at + 1);
                line.truncate(at);
                if line.last() == Some(&b'\r') {
                    line.truncate(at - 1);
                }
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE {
                return Err(failed(
                    "a chunk-size or trailer line of the model's answer is too long",
                ));
            }
            self.more(0, MID_ANSWER).await?;
        }
    }

    /// A chunked body, its chunks joined; trailers are read and dropped.
    async fn chunked(&mut self, max_body: usize) -> Result<Bytes, Exchange> {
        let mut body = BytesMut::new();
        loop {
            let line = self.line().await?;
            let size = line[..]
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            let size = std::str::from_utf8(size)
                .ok()
                .filter(|s| !s.is_empty() && s.len() <= 16)
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| failed("the model's answer has an invalid chunk size"))?;
            if size == 0 {
                break;
            }
            let size = usize::try_from(size)
                .ok()
                .filter(|&s| s <= max_body - body.len())
                .ok_or(Exchange::TooLarge(max_body))?;
            while self.buf.len() < size + 2 {
                self.more(size + 2 - self.buf.len(), MID_ANSWER).await?;
            }
            if body.is_empty() {
                body = self.buf.split_to(size);
            } else {
                body.extend_from_slice(&self.buf[..size]);
                self.buf.advance(size);
            }
            if !self.buf.starts_with(b"\r\n") {
                return Err(failed(
                    "a chunk of the model's answer does not end with CRLF",
                ));
            }
            self.buf.advance(2);
        }
        let mut trailers = 0;
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                return Ok(body.freeze());
            }
            trailers += line.len();
            if trailers > MAX_TRAILERS {
                return Err(failed("the model's answer has too many trailers"));
            }
        }
    }
}

/// What the start of a model connection's buffer holds.
enum AnswerHead {
    /// The final answer's head, and the bytes it takes (with any interim
    /// answers before it).
    Whole(Head, usize),
    /// No whole final head yet; the bytes of the interim answers before it.
    Partial(usize),
}

/// Parses the final answer head at the start of `buf`, skipping interim
/// (1xx) answers. `last_type` is the last answer's Content-Type: reused
/// when this one's bytes are the same, and replaced by this one's.
fn answer_head(buf: &[u8], last_type: &mut Option<HeaderValue>) -> Result<AnswerHead, Exchange> {
    let mut at = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut headers);
        let n = match r.parse(&buf[at..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(AnswerHead::Partial(at)),
            Err(_) => return Err(failed("the model's answer is not HTTP/1.1")),
        };
        let code = r.code.unwrap_or(0);
        let status = StatusCode::from_u16(code)
            .map_err(|_| failed("the model's answer has an invalid status"))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(failed("the model switched protocols"));
        }
        if status.is_informational() {
            at += n;
            continue;
        }
        let http10 = r.version == Some(0);
        let (mut length, mut chunked, mut encoded) = (None::<u64>, false, false);
        let (mut close, mut keep_alive) = (false, false);
        let (mut content_type, mut custom_attributes) = (None, None);
        for h in r.headers.iter() {
            let (name, v) = (h.name, h.value);
            if name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(v)
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| failed("the model's Content-Length is invalid"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(failed("the model sent two Content-Lengths"));
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                encoded = true;
                // Chunked only if it is the last coding.
                chunked = v
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                let tokens = || v.split(|&b| b == b',').map(<[u8]>::trim_ascii);
                close |= tokens().any(|t| t.eq_ignore_ascii_case(b"close"));
                keep_alive |= tokens().any(|t| t.eq_ignore_ascii_case(b"keep-alive"));
            } else if name.eq_ignore_ascii_case("content-type") {
                content_type = match &*last_type {
                    Some(last) if last.as_bytes() == v => Some(last.clone()),
                    _ => HeaderValue::from_bytes(v).ok(),
                };
                last_type.clone_from(&content_type);
            } else if name.eq_ignore_ascii_case("x-amzn-sagemaker-custom-attributes") {
                custom_attributes = HeaderValue::from_bytes(v).ok();
            }
        }
        let framing = match (code, encoded, chunked) {
            (204 | 304, _, _) => Framing::Length(0),
            (_, true, true) => Framing::Chunked,
            (_, true, false) => Framing::Close,
            (_, false, _) => length.map_or(Framing::Close, Framing::Length),
        };
        // HTTP/1.1 keeps the connection unless told to close it,
        // HTTP/1.0 only when asked to; with both Content-Length and
        // Transfer-Encoding (the latter wins), it is not reused (RFC
        // 9112, sections 6.3 and 9.3).
        let closes = close || (http10 && !keep_alive);
        let ambiguous = encoded && length.is_some();
        let head = Head {
            status,
            framing,
            keep_alive: !(closes || ambiguous),
            content_type,
            custom_attributes,
        };
        return Ok(AnswerHead::Whole(head, at + n));
    }
}

/// A model answer's head as capline's client read it (for the fuzz target).
#[derive(Debug, Clone, Copy)]
pub struct ReadAnswer {
    /// The final status (interim answers skipped).
    pub status: u16,
    /// The body's length, if the head gives one (`None`: chunked, or until close).
    pub length: Option<u64>,
    /// Whether the connection can carry another request after the body.
    pub reusable: bool,
    /// The bytes the head takes, interim answers included.
    pub head_len: usize,
}

/// A model answer's head as capline's client reads it, for the fuzz
/// target (`fuzz/checks/answer_head.rs`): `Ok(None)` until a whole final
/// head is there; `Err` says why the answer is refused.
pub fn read_answer_head(buf: &[u8]) -> Result<Option<ReadAnswer>, String> {
    match answer_head(buf, &mut None).map_err(|e| e.to_string())? {
        AnswerHead::Partial(_) => Ok(None),
        AnswerHead::Whole(head, n) => Ok(Some(ReadAnswer {
            status: head.status.as_u16(),
            length: match head.framing {
                Framing::Length(n) => Some(n),
                Framing::Chunked | Framing::Close => None,
            },
            reusable: head.keep_alive && head.framing != Framing::Close,
            head_len: n,
        })),
    }
}

/// Writes the container contract's `POST /invocations` head into `out`:
/// `Host`, `Content-Type`, `Content-Length` and the given headers, whose
/// values are checked header values (no CR, LF or NUL in them).
pub(crate) fn invocation_head(
    out: &mut Vec<u8>,
    authority: &HeaderValue,
    content_type: &[u8],
    body_len: usize,
    headers: &[(HeaderName, Option<&HeaderValue>)],
) {
    out.extend_from_slice(b"POST /invocations HTTP/1.1\r\nhost: ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(content_type);
    out.extend_from_slice(b"\r\ncontent-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if let Some(v) = value {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Sends one buffered invocation (`head`, then `body`) to variant `i`'s
/// model (at `authority`) on the [`Conn`] pinned to this downstream connection, opening one
/// if there is none or the model closed it while idle, and reads the whole
/// answer, its body up to `max_body` bytes (a larger one is
/// [`Exchange::TooLarge`]). A request is never sent twice. The caller's
/// timeout bounds the time; a connection left mid-answer is dropped.
/// `head` writes the request's head (into the connection's reused buffer).
pub(crate) async fn exchange(
    authority: &HeaderValue,
    i: usize,
    pinned: &Pinned,
    head: impl FnOnce(&mut Vec<u8>),
    body: &[u8],
    max_body: usize,
) -> Result<Answer, Exchange> {
    let mut conn = match pinned.take_conn(i) {
        Some(c) => c,
        None => Conn::open(authority).await.map_err(Exchange::Unreachable)?,
    };
    let mut out = std::mem::take(&mut conn.head);
    out.clear();
    head(&mut out);
    // One `writev` of head and body when the socket takes them.
    let sent = conn
        .stream
        .write_all_buf(&mut Buf::chain(&out[..], body))
        .await;
    conn.head = out;
    sent.map_err(|e| Exchange::Failed(e.into()))?;
    let (answer, reusable) = conn.answer(max_body).await?;
    if reusable {
        pinned.conns.keep(i, conn);
    }
    Ok(answer)
}

/// Opens a connection to a variant's model; its I/O runs on a task of its own.
pub(crate) async fn connect(variant: &Variant) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let addr = variant.authority.to_str()?;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request to variant `i`'s model on the connection pinned to this
/// downstream connection (opening one if needed) and waits for the answer's
/// head. A request that a reused connection refused before sending it (the
/// model closed the idle connection) goes once more on a new connection; a
/// request that was sent is never sent twice. Returns the answer and the
/// connection, for the caller to [`Pinned::keep`] once the answer's body
/// has been read to its end.
pub(crate) async fn send(
    variant: &Variant,
    i: usize,
    pinned: &Pinned,
    mut req: Request<Full<Bytes>>,
) -> Result<
    (
        hyper::Response<hyper::body::Incoming>,
        SendRequest<Full<Bytes>>,
    ),
    Exchange,
> {
    let mut reused = pinned.take(i);
    loop {
        let retry_allowed = reused.is_some();
        let mut sender = match reused.take() {
            Some(s) => s,
            None => connect(variant).await.map_err(Exchange::Unreachable)?,
        };
        if let Err(e) = sender.ready().await {
            if retry_allowed {
                continue;
            }
            return Err(Exchange::Unreachable(e.into()));
        }
        match sender.try_send_request(req).await {
            Ok(answer) => return Ok((answer, sender)),
            Err(mut e) => match e.take_message() {
                // Not sent: hyper hands the request back.
                Some(unsent) if retry_allowed => req = unsent,
                _ => return Err(Exchange::Failed(e.into_error().into())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    /// What a scripted model does on one connection, request after request.
    enum Step {
        /// Reads one request, then writes these pieces, pausing between them
        /// so that they arrive as separate reads.
        Answer(Vec<&'static [u8]>),
        /// Closes the connection.
        Close,
    }

    /// Reads one whole request (head and Content-Length body) from `s`.
    fn read_request(s: &mut std::net::TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&got) {
                let len: usize = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                    .unwrap_or(0);
                if got.len() >= n + len {
                    return got;
                }
            }
            let k = s.read(&mut chunk).unwrap();
            assert!(k > 0, "the client closed mid-request");
            got.extend_from_slice(&chunk[..k]);
        }
    }

    /// A model on a real socket that plays `script` on its one connection,
    /// and hands back the requests it read.
    fn model(script: Vec<Step>) -> (HeaderValue, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_nodelay(true).unwrap();
            let mut requests = Vec::new();
            for step in script {
                match step {
                    Step::Answer(pieces) => {
                        requests.push(read_request(&mut s));
                        for p in pieces {
                            s.write_all(p).unwrap();
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    Step::Close => return requests,
                }
            }
            requests
        });
        (HeaderValue::from_str(&addr).unwrap(), t)
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn head(authority: &HeaderValue, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let attrs = HeaderValue::from_static("a=1");
        invocation_head(
            &mut out,
            authority,
            b"text/csv",
            body.len(),
            &[
                (hyper::header::ACCEPT, None),
                (
                    HeaderName::from_static("x-amzn-sagemaker-custom-attributes"),
                    Some(&attrs),
                ),
            ],
        );
        out
    }

    /// One exchange with variant 0's model: `body` with the test's head.
    async fn ask(
        a: &HeaderValue,
        pinned: &Pinned,
        body: &[u8],
        max_body: usize,
    ) -> Result<Answer, Exchange> {
        let head = |out: &mut Vec<u8>| out.extend(self::head(a, body));
        exchange(a, 0, pinned, head, body, max_body).await
    }

    #[test]
    fn request_head_is_what_the_container_contract_expects() {
        let a = HeaderValue::from_static("model:8080");
        let got = head(&a, &[0u8; 1234]);
        assert_eq!(
            std::str::from_utf8(&got).unwrap(),
            "POST /invocations HTTP/1.1\r\nhost: model:8080\r\ncontent-type: text/csv\r\n\
             content-length: 1234\r\nx-amzn-sagemaker-custom-attributes: a=1\r\n\r\n"
        );
    }

    #[test]
    fn length_and_chunked_answers_in_pieces_on_one_reused_connection() {
        let (a, t) = model(vec![
            Step::Answer(vec![
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Ty",
                b"pe: application/json\r\nX-Amzn-SageMaker-Custom-Attributes: c=2\r\nContent-Length: 11\r\n\r\n{\"a\":",
                b"\"xyz\"}",
            ]),
            Step::Answer(vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel",
                b"lo\r\n6\r\n",
                b" world\r\n0\r\nX-Trailer: t\r\n\r\n",
            ]),
            Step::Answer(vec![b"HTTP/1.1 204 No Content\r\n\r\n"]),
        ]);
        let pinned = Pinned::new(1);
        let bodies = run(async {
            let mut got = Vec::new();
            for body in [&b"1,2,3"[..], &[7u8; 100_000][..], b""] {
                let r = ask(&a, &pinned, body, 1 << 20).await.unwrap();
                got.push((
                    r.status.as_u16(),
                    r.content_type,
                    r.custom_attributes,
                    r.body,
                ));
            }
            got
        });
        assert_eq!(bodies[0].0, 200);
        assert_eq!(bodies[0].1.as_ref().unwrap(), "application/json");
        assert_eq!(bodies[0].2.as_ref().unwrap(), "c=2");
        assert_eq!(&bodies[0].3[..], br#"{"a":"xyz"}"#);
        assert_eq!(&bodies[1].3[..], b"hello world");
        assert!(bodies[1].1.is_none());
        assert_eq!((bodies[2].0, bodies[2].3.len()), (204, 0));
        // All three on one connection (the model accepts only one), each
        // request whole: its body after the head.
        let requests = t.join().unwrap();
        assert_eq!(requests.len(), 3);
        assert!(requests[1].ends_with(&[7u8; 100_000]));
        assert!(requests[0].ends_with(b"\r\n\r\n1,2,3"));
    }

    #[test]
    fn an_answer_without_length_ends_at_close_and_its_connection_is_not_kept() {
        let (a, t) = model(vec![
            Step::Answer(vec![b"HTTP/1.0 200 OK\r\n\r\nuntil ", b"close"]),
            Step::Close,
        ]);
        let pinned = Pinned::new(1);
        run(async {
            let r = ask(&a, &pinned, b"x", 100).await.unwrap();
            assert_eq!(&r.body[..], b"until close");
        });
        assert!(pinned.conns.take(0).is_none());
        t.join().unwrap();
    }

    #[test]
    fn answers_over_the_limit_are_refused_however_they_are_framed() {
        let z = "z".repeat(64);
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{z}\r\n40\r\n{z}\r\n0\r\n\r\n"
        );
        let chunked: &'static [u8] = Box::leak(chunked.into_bytes().into_boxed_slice());
        for answer in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n"[..],
            chunked,
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
        ] {
            // The whole answer, or its head and then 200 bytes.
            let big: &'static [u8] = if answer == chunked { b"" } else { &[b'z'; 200] };
            let (a, t) = model(vec![Step::Answer(vec![answer, big]), Step::Close]);
            let pinned = Pinned::new(1);
            let r = run(ask(&a, &pinned, b"", 100));
            assert!(
                matches!(r, Err(Exchange::TooLarge(100))),
                "{answer:?}: {r:?}"
            );
            t.join().unwrap();
        }
    }

    #[test]
    fn malformed_answers_are_errors_not_guesses() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            let (a, t) = model(vec![Step::Answer(vec![answer]), Step::Close]);
            let pinned = Pinned::new(1);
            let r = run(ask(&a, &pinned, b"", 100));
            assert!(matches!(r, Err(Exchange::Failed(_))), "{answer:?}: {r:?}");
            t.join().unwrap();
        }
    }

    #[test]
    fn both_framings_mean_chunked_and_no_reuse() {
        let (a, t) = model(vec![
            Step::Answer(vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            ]),
            Step::Close,
        ]);
        let pinned = Pinned::new(1);
        let r = run(ask(&a, &pinned, b"", 1000)).unwrap();
        assert_eq!(&r.body[..], b"ok");
        assert!(pinned.conns.take(0).is_none());
        t.join().unwrap();
    }

    #[test]
    fn a_connection_the_model_closed_while_idle_is_not_reused() {
        let (a, t) = model(vec![
            Step::Answer(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]),
            Step::Close,
        ]);
        let pinned = Pinned::new(1);
        run(async {
            ask(&a, &pinned, b"", 100).await.unwrap();
            let kept = pinned.conns.take(0).expect("kept after a whole answer");
            pinned.conns.keep(0, kept);
            // The model closes it; the runtime notices while this task waits.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                pinned.take_conn(0).is_none(),
                "a closed connection was handed out"
            );
        });
        t.join().unwrap();
    }
}
