//! Streamed answers: the model's answer goes to the client chunk by chunk,
//! as it arrives, and the whole answer is captured once, when the stream
//! ends. Two framings:
//!
//! - [`Framing::EventStream`] (`InvokeEndpointWithResponseStream`): each
//!   chunk becomes one `PayloadPart` event; a model that breaks off gets a
//!   `ModelStreamError` event.
//! - [`Framing::Raw`] (passthrough routes such as `/v1/chat/completions`):
//!   the bytes go on unchanged (server-sent events or not); a model that
//!   breaks off breaks the client's response off too, so the client sees
//!   the same failure it would see without capline.
//!
//! Bounds and outcomes, counted per route kind in `state::StreamCounts`:
//! - a stream over the variant's `MaxRecordBytes` is passed through in full
//!   and not captured (counted as `dropped_too_large`);
//! - the model must send each chunk within `UpstreamTimeoutSeconds`, and the
//!   client must take each within the same time (a client that stops
//!   reading does not hold the model's connection);
//! - a stream the model or the client breaks off is not captured, unless
//!   `CaptureBrokenStreams` is `"Partial"`: then what the model had sent is.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::Response;
use hyper::body::{Body as _, Frame, Incoming};
use tokio::sync::mpsc::error::TrySendError;

use capline::{Capture, Payload};

use crate::eventstream::{model_stream_error, payload_part};
use crate::state::{State, StreamCounts};
use crate::upstream::Pinned;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;

/// How the model's chunks are put on the client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// SageMaker's event-stream framing (`PayloadPart` events).
    EventStream,
    /// Unchanged bytes.
    Raw,
}

/// The error that breaks a [`Framing::Raw`] answer off: the model broke
/// its own off.
#[derive(Debug, thiserror::Error)]
#[error("the model's answer broke off")]
pub(crate) struct Broken;

/// The body of a streamed answer: frames as they are made.
pub(crate) struct Frames(tokio::sync::mpsc::Receiver<Result<Bytes, Broken>>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Broken;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Broken>>> {
        self.0.poll_recv(cx).map(|f| f.map(|r| r.map(Frame::data)))
    }
}

/// What is captured besides the answer's bytes.
pub(crate) struct Record {
    /// The request's Content-Type.
    pub(crate) content_type: String,
    /// The request's body.
    pub(crate) body: Bytes,
    /// `X-Amzn-SageMaker-Inference-Id`.
    pub(crate) inference_id: Option<String>,
    /// The answer's Content-Type.
    pub(crate) out_type: String,
}

/// What the model's stream gives next.
enum Next {
    /// Bytes of the answer (never empty).
    Data(Bytes),
    /// The answer ended whole.
    End,
    /// The answer broke off, and why.
    Broken(String),
}

impl Next {
    /// `frame` as a step of the stream; `None` for a frame that carries no
    /// bytes of the answer (an empty chunk, trailers).
    fn of(frame: Option<Result<Frame<Bytes>, hyper::Error>>) -> Option<Next> {
        match frame {
            None => Some(Next::End),
            Some(Err(e)) => Some(Next::Broken(format!("the model's stream broke off: {e}"))),
            Some(Ok(f)) => f.into_data().ok().filter(|d| !d.is_empty()).map(Next::Data),
        }
    }
}

/// The model's next step, waiting for it.
async fn next(incoming: &mut Incoming) -> Next {
    loop {
        if let Some(n) = Next::of(incoming.frame().await) {
            return n;
        }
    }
}

/// The model's next step if it is there already, without waiting.
fn ready_now(incoming: &mut Incoming) -> Option<Next> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    loop {
        match Pin::new(&mut *incoming).poll_frame(&mut cx) {
            Poll::Pending => return None,
            Poll::Ready(f) => {
                if let Some(n) = Next::of(f) {
                    return Some(n);
                }
            }
        }
    }
}

/// At most this many bytes go to the client as one frame.
const MAX_BATCH: usize = 64 * 1024;

/// `first` and whatever more of the answer has arrived already, as one
/// frame: a model faster than the client is relayed in fewer, larger
/// frames, and no byte waits for another. A step that is not data is left
/// in `held` for the next round.
fn batch(first: Bytes, incoming: &mut Incoming, held: &mut Option<Next>) -> Bytes {
    let mut out: Option<BytesMut> = None;
    while out.as_ref().map_or(first.len(), BytesMut::len) < MAX_BATCH {
        match ready_now(incoming) {
            Some(Next::Data(more)) => {
                out.get_or_insert_with(|| BytesMut::from(&first[..]))
                    .extend_from_slice(&more);
            }
            Some(other) => {
                *held = Some(other);
                break;
            }
            None => break,
        }
    }
    out.map_or(first, BytesMut::freeze)
}

/// How a relayed stream ended.
enum End {
    Completed,
    ModelBroken,
    ClientGone,
}

/// The model's answer, and the connection it comes on with the client
/// connection's pinned connections it goes back to once the answer ends.
pub(crate) type Upstream = (Incoming, Arc<Pinned>, SendRequest<Full<Bytes>>);

/// Relays the model's answer in `framing` on a task of its own, and
/// captures it as `record` when it ends (`None`: never captured, e.g. an
/// error answer on a passthrough route). Returns the body the client reads.
pub(crate) fn relay(
    state: Arc<State>,
    i: usize,
    upstream: Upstream,
    framing: Framing,
    record: Option<Record>,
) -> Frames {
    let (incoming, pinned, sender) = upstream;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Broken>>(16);
    tokio::spawn(async move {
        let variant = &state.variants[i];
        let counts: &StreamCounts = match framing {
            Framing::EventStream => &state.streams,
            Framing::Raw => &state.passthrough_streams,
        };
        let limit = usize::try_from(variant.max_record).unwrap_or(usize::MAX);
        // What MaxRecordBytes counts besides the answer's body.
        let fixed = record.as_ref().map_or(0, |r| {
            r.body.len()
                + r.content_type.len()
                + r.out_type.len()
                + r.inference_id.as_ref().map_or(0, String::len)
        });
        let budget = limit.saturating_sub(fixed);
        // A client that stops reading holds the model's connection: each
        // frame must be taken within the model's own timeout.
        let wait = state.upstream_timeout;
        let send = |frame: Result<Bytes, Broken>| {
            let tx = &tx;
            async move {
                match tx.try_send(frame) {
                    Ok(()) => true,
                    Err(TrySendError::Closed(_)) => false,
                    Err(TrySendError::Full(frame)) => {
                        matches!(tokio::time::timeout(wait, tx.send(frame)).await, Ok(Ok(())))
                    }
                }
            }
        };
        let mut whole: Vec<u8> = Vec::new();
        let mut too_large = false;
        let mut incoming = incoming;
        // What the model's stream gave while a batch was being put together.
        let mut held: Option<Next> = None;
        let end = loop {
            let first = match held.take().or_else(|| ready_now(&mut incoming)) {
                Some(n) => n,
                None => match tokio::time::timeout(wait, next(&mut incoming)).await {
                    Ok(n) => n,
                    Err(_) => Next::Broken(format!("the model sent nothing for {wait:?}")),
                },
            };
            let data = match first {
                Next::Data(d) => batch(d, &mut incoming, &mut held),
                Next::End => break End::Completed,
                Next::Broken(why) => {
                    tracing::debug!(variant = %variant.name, "{why}");
                    let last = match framing {
                        Framing::EventStream => Ok(model_stream_error(&why)),
                        Framing::Raw => Err(Broken),
                    };
                    send(last).await;
                    break End::ModelBroken;
                }
            };
            // Held only for a record (not for an answer never captured).
            if record.is_some() && !too_large {
                if whole.len() + data.len() > budget {
                    too_large = true;
                    whole = Vec::new();
                } else {
                    whole.extend_from_slice(&data);
                }
            }
            let out = match framing {
                Framing::EventStream => payload_part(data),
                Framing::Raw => data,
            };
            if !send(Ok(out)).await {
                break End::ClientGone;
            }
        };
        let capture = match end {
            End::Completed => {
                counts.completed.fetch_add(1, Ordering::Relaxed);
                // Read to its end: the connection can carry the next request.
                pinned.keep(i, sender);
                true
            }
            End::ModelBroken | End::ClientGone => {
                let c = match end {
                    End::ModelBroken => &counts.model_broken,
                    _ => &counts.client_gone,
                };
                c.fetch_add(1, Ordering::Relaxed);
                // Partial: what the model had sent, when it had sent anything.
                let partial =
                    state.capture_partial_streams && record.is_some() && !whole.is_empty();
                if partial && !too_large {
                    counts.captured_partial.fetch_add(1, Ordering::Relaxed);
                }
                partial
            }
        };
        let Some(record) = record.filter(|_| capture) else {
            return;
        };
        if too_large {
            variant.engine.count_too_large();
            return;
        }
        // Never blocks: sampled, copied into the ring, or dropped and counted.
        variant.engine.capture(&Capture {
            request: Payload::new(&record.content_type, &record.body),
            response: Payload::new(&record.out_type, &whole),
            inference_id: record.inference_id.as_deref(),
            time: None,
        });
    });
    Frames(rx)
}

/// A streamed `InvokeEndpointWithResponseStream` response's head.
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

/// The body type every route answers with: a whole body as it is (no
/// allocation for it), any other boxed.
pub(crate) type AnyBody = http_body_util::Either<
    http_body_util::Full<Bytes>,
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>,
>;

/// A whole `body`, as [`AnyBody`].
pub(crate) fn whole(body: http_body_util::Full<Bytes>) -> AnyBody {
    http_body_util::Either::Left(body)
}

/// `body`, boxed as [`AnyBody`].
pub(crate) fn boxed<B>(body: B) -> AnyBody
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    http_body_util::Either::Right(body.map_err(Into::into).boxed())
}
