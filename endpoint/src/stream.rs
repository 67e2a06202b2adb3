//! `InvokeEndpointWithResponseStream`: the model's streamed answer goes to
//! the client chunk by chunk, each chunk one `PayloadPart` event as it
//! arrives; the whole answer is captured once, when the stream ends.
//!
//! - A stream over the variant's `MaxRecordBytes` is passed through in full
//!   and not captured (counted as `dropped_too_large`).
//! - A stream the model breaks off (or that stalls past
//!   `UpstreamTimeoutSeconds` between chunks) ends with a `ModelStreamError`
//!   event and is not captured; one the client breaks off is not captured
//!   either, nor is one that takes no frame for `UpstreamTimeoutSeconds`
//!   (it stopped reading). All are counted in `state::StreamCounts`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Response;
use hyper::body::{Frame, Incoming};

use capline::{Capture, Payload};

use crate::eventstream::{model_stream_error, payload_part};
use crate::state::State;

/// The body of a streamed answer: event-stream frames as they are made.
pub(crate) struct Frames(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(|b| Ok(Frame::data(b))))
    }
}

/// What is captured of the request.
pub(crate) struct Request {
    pub(crate) content_type: String,
    pub(crate) body: Bytes,
    pub(crate) inference_id: Option<String>,
}

/// Relays the model's streamed answer (`incoming`, already known to be a
/// success) as event-stream frames, on a task of its own, and captures it
/// when it ends whole. Returns the body the client reads.
pub(crate) fn relay(
    state: Arc<State>,
    i: usize,
    incoming: Incoming,
    out_type: String,
    request: Request,
) -> Frames {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let variant = &state.variants[i];
        let limit = usize::try_from(variant.max_record).unwrap_or(usize::MAX);
        // What MaxRecordBytes counts besides the answer's body.
        let fixed = request.body.len()
            + request.content_type.len()
            + out_type.len()
            + request.inference_id.as_ref().map_or(0, String::len);
        let budget = limit.saturating_sub(fixed);
        // A client that stops reading holds the model's connection: each
        // frame must be taken within the model's own timeout.
        let wait = state.upstream_timeout;
        let send = |frame: Bytes| {
            let tx = &tx;
            async move { matches!(tokio::time::timeout(wait, tx.send(frame)).await, Ok(Ok(()))) }
        };
        let mut whole: Vec<u8> = Vec::new();
        let mut too_large = false;
        let mut incoming = incoming;
        loop {
            let next = tokio::time::timeout(state.upstream_timeout, incoming.frame()).await;
            let frame = match next {
                Ok(None) => break,
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(e))) => {
                    state.streams.model_broken.fetch_add(1, Ordering::Relaxed);
                    send(model_stream_error(&format!(
                        "the model's stream broke off: {e}"
                    )))
                    .await;
                    return;
                }
                Err(_) => {
                    state.streams.model_broken.fetch_add(1, Ordering::Relaxed);
                    send(model_stream_error(&format!(
                        "the model sent nothing for {:?}",
                        state.upstream_timeout
                    )))
                    .await;
                    return;
                }
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            if !too_large {
                if whole.len() + data.len() > budget {
                    too_large = true;
                    whole = Vec::new();
                } else {
                    whole.extend_from_slice(&data);
                }
            }
            if !send(payload_part(data)).await {
                state.streams.client_gone.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        state.streams.completed.fetch_add(1, Ordering::Relaxed);
        if too_large {
            variant.engine.count_too_large();
            return;
        }
        // Never blocks: sampled, copied into the ring, or dropped and counted.
        variant.engine.capture(&Capture {
            request: Payload::new(&request.content_type, &request.body),
            response: Payload::new(&out_type, &whole),
            inference_id: request.inference_id.as_deref(),
            time: None,
        });
    });
    Frames(rx)
}

/// A streamed response's head.
pub(crate) fn head(body: Frames, out_type: &str, variant: &str) -> Response<Frames> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(crate::eventstream::CONTENT_TYPE),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(out_type) {
        h.insert("x-amzn-sagemaker-content-type", v);
    }
    if let Ok(v) = hyper::header::HeaderValue::from_str(variant) {
        h.insert("x-amzn-invoked-production-variant", v);
    }
    r
}
