//! Connections to the models. Each downstream (client) connection keeps its
//! own connection to each variant's model, reused request after request; no
//! pool is shared between client connections.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::state::Variant;

/// An error on the way to or from a model.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    fn put(&self, i: usize, sender: SendRequest<Full<Bytes>>) {
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
/// downstream connection (opening one if needed), and reads the whole answer.
/// A request that a reused connection refused before sending it (the model
/// closed the idle connection) goes once more on a new connection; a request
/// that was sent is never sent twice.
pub(crate) async fn exchange(
    variant: &Variant,
    i: usize,
    pinned: &Pinned,
    mut req: Request<Full<Bytes>>,
) -> Result<(hyper::http::response::Parts, Bytes), BoxError> {
    let mut reused = pinned.take(i);
    loop {
        let retry_allowed = reused.is_some();
        let mut sender = match reused.take() {
            Some(s) => s,
            None => connect(variant).await?,
        };
        if let Err(e) = sender.ready().await {
            if retry_allowed {
                continue;
            }
            return Err(e.into());
        }
        match sender.try_send_request(req).await {
            Ok(answer) => {
                let (parts, body) = answer.into_parts();
                let body = body.collect().await?.to_bytes();
                pinned.put(i, sender);
                return Ok((parts, body));
            }
            Err(mut e) => match e.take_message() {
                // Not sent: hyper hands the request back.
                Some(unsent) if retry_allowed => req = unsent,
                _ => return Err(e.into_error().into()),
            },
        }
    }
}
