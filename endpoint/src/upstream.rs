//! Connections to the models. Each downstream (client) connection keeps its
//! own connection to each variant's model, reused request after request; no
//! pool is shared between client connections.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::http::{BodyError, read_body};
use crate::state::Variant;

/// An error on the way to or from a model.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

/// One downstream connection's connections to the models, one per variant,
/// reused request after request. HTTP/1 carries one request at a time on a
/// connection, so a downstream connection never needs more than one upstream
/// connection per variant, and no pool is shared between connections.
#[derive(Debug)]
pub(crate) struct Pinned(std::sync::Mutex<Vec<Option<SendRequest<Full<Bytes>>>>>);

impl Pinned {
    pub(crate) fn new(variants: usize) -> Self {
        Pinned(std::sync::Mutex::new((0..variants).map(|_| None).collect()))
    }

    /// The open connection to variant `i`, if there is one (taken out while in use).
    fn take(&self, i: usize) -> Option<SendRequest<Full<Bytes>>> {
        let mut slots = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots
            .get_mut(i)
            .and_then(Option::take)
            .filter(|s| !s.is_closed())
    }

    /// Keeps the connection to variant `i` for the next request.
    pub(crate) fn keep(&self, i: usize, sender: SendRequest<Full<Bytes>>) {
        let mut slots = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = slots.get_mut(i) {
            *slot = Some(sender);
        }
    }
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

/// [`send`], then reads the whole answer. The answer's body is read up to
/// `max_body` bytes; a larger one is [`Exchange::TooLarge`] (its connection
/// is dropped, not reused).
pub(crate) async fn exchange(
    variant: &Variant,
    i: usize,
    pinned: &Pinned,
    req: Request<Full<Bytes>>,
    max_body: usize,
) -> Result<(hyper::http::response::Parts, Bytes), Exchange> {
    let (answer, sender) = send(variant, i, pinned, req).await?;
    let (parts, body) = answer.into_parts();
    // The caller's timeout bounds the time; this bounds the size.
    let body = match read_body(body, max_body, Duration::MAX).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(n)) => return Err(Exchange::TooLarge(n)),
        Err(e) => return Err(Exchange::Failed(e.into())),
    };
    pinned.keep(i, sender);
    Ok((parts, body))
}
