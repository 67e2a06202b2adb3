//! SageMaker's response-stream framing (`application/vnd.amazon.eventstream`)
//! for `InvokeEndpointWithResponseStream`: each chunk of the model's answer
//! becomes one `PayloadPart` event; a failure after the first byte becomes a
//! `ModelStreamError` or `InternalStreamFailure` exception. The frames are
//! written with the AWS SDK's own codec (`aws-smithy-eventstream`).

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;

/// The response's content type.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

fn string(s: &'static str) -> HeaderValue {
    HeaderValue::String(s.into())
}

fn encode(message: &Message) -> Bytes {
    let mut out = Vec::with_capacity(message.payload().len() + 96);
    // Writing to a Vec cannot fail but for a frame over the codec's 16 MiB
    // limit, which the caller's chunk size rules out.
    if write_message_to(message, &mut out).is_err() {
        out.clear();
    }
    Bytes::from(out)
}

/// One `PayloadPart` event carrying `bytes` of the model's answer.
pub(crate) fn payload_part(bytes: Bytes) -> Bytes {
    encode(
        &Message::new(bytes)
            .add_header(Header::new(":event-type", string("PayloadPart")))
            .add_header(Header::new(
                ":content-type",
                string("application/octet-stream"),
            ))
            .add_header(Header::new(":message-type", string("event"))),
    )
}

/// A `ModelStreamError` exception: the model's stream broke off.
pub(crate) fn model_stream_error(message: &str) -> Bytes {
    let body = format!(
        r#"{{"Message":{},"ErrorCode":"ModelStreamError"}}"#,
        crate::http::json_string(message)
    );
    encode(
        &Message::new(Bytes::from(body))
            .add_header(Header::new(":exception-type", string("ModelStreamError")))
            .add_header(Header::new(":content-type", string("application/json")))
            .add_header(Header::new(":message-type", string("exception"))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;

    fn header<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
        m.headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str())
    }

    #[test]
    fn payload_parts_and_errors_read_back_with_the_sdk_codec() {
        let frame = payload_part(Bytes::from_static(b"data: {\"token\":\"hi\"}\n\n"));
        let m = read_message_from(frame.clone()).unwrap();
        assert_eq!(m.payload().as_ref(), b"data: {\"token\":\"hi\"}\n\n");
        assert_eq!(header(&m, ":event-type"), Some("PayloadPart"));
        assert_eq!(header(&m, ":message-type"), Some("event"));
        // Prelude: total length, headers length, CRC; the total is the frame's.
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len()
        );

        let m = read_message_from(model_stream_error("the model went away")).unwrap();
        assert_eq!(header(&m, ":exception-type"), Some("ModelStreamError"));
        assert_eq!(header(&m, ":message-type"), Some("exception"));
        assert!(String::from_utf8_lossy(m.payload()).contains("the model went away"));
    }
}
