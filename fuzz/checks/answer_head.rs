//! Fuzz check shared by the `answer_head` target and the corpus replay
//! test: capline's model client reads any bytes as an answer head without
//! panicking; a head it takes is a final one (2xx to 5xx, never 1xx),
//! within the bytes given, and a connection it would reuse has a body that
//! ends by its framing, never at close.

use capline_endpoint::fuzzing::{ReadAnswer, read_answer_head};

/// Panics on any violation.
pub fn check(data: &[u8]) {
    match read_answer_head(data) {
        Ok(None) => {}
        Ok(Some(ReadAnswer {
            status,
            length,
            reusable,
            head_len: n,
        })) => {
            assert!((200..1000).contains(&status), "{status}");
            assert!(n > 0 && n <= data.len());
            let head = &data[..n];
            assert!(head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"));
            if matches!(status, 204 | 304) {
                assert_eq!(length, Some(0));
            }
            // A body without a length that is not chunked ends at close:
            // such a connection is never reused. A chunked one may be.
            if reusable && length.is_none() {
                let lower = head.to_ascii_lowercase();
                assert!(lower.windows(7).any(|w| w == b"chunked"));
            }
        }
        Err(why) => assert!(!why.is_empty()),
    }
}
