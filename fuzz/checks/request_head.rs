//! Fuzz check shared by the `request_head` target and the corpus replay
//! test: the endpoint's own reader of plain invocations (`front`) takes a
//! head only when it is what it claims (a whole HTTP/1.1 `POST` head on one
//! of its routes, one Content-Length within the limit, nothing that changes
//! the framing), and whatever it takes hyper's types take too; nothing
//! panics.

use capline_endpoint::fuzzing::read_head;

const MAX: usize = 4096;

/// Panics on any violation.
pub fn check(data: &[u8]) {
    let Some((head_len, body_len, parts)) = read_head(data, MAX) else {
        return;
    };
    assert!(head_len <= data.len() && body_len <= MAX);
    let head = &data[..head_len];
    // The last line is empty: it ends in LF, after the LF of the one before.
    assert!(head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"));
    // Empty lines before the request line are skipped (RFC 9112, 2.2).
    let line = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    assert!(head[line..].starts_with(b"POST /"));
    // httparse refuses nothing hyper's types refuse, for what the front takes.
    let parts = parts.expect("hyper's types take every head the front takes");
    assert_eq!(parts.method.as_str(), "POST");
    assert!(matches!(
        parts.uri.path(),
        "/invocations" | "/endpoints/e/invocations"
    ));
    let lengths: Vec<_> = parts.headers.get_all("content-length").iter().collect();
    assert_eq!(lengths.len(), 1);
    assert_eq!(
        lengths[0].to_str().ok().and_then(|v| v.parse().ok()),
        Some(body_len)
    );
    for name in ["transfer-encoding", "expect", "upgrade"] {
        assert!(!parts.headers.contains_key(name), "{name}");
    }
    if let Some(c) = parts.headers.get("connection") {
        assert!(
            c.as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"keep-alive")
        );
    }
}
