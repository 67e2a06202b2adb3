//! Fuzz check shared by the `sigv4_header` target and the corpus replay test:
//! any `Authorization` header value is refused with a reason or split into
//! non-empty parts of itself; nothing panics.

use capline_endpoint::fuzzing::parse_authorization;

/// Panics on any violation.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse_authorization(&text) {
        Ok(a) => {
            for part in [
                a.key_id,
                a.date,
                a.region,
                a.service,
                a.signed_headers,
                a.signature,
            ] {
                assert!(!part.is_empty() && text.contains(part));
                assert!(!part.contains(','));
            }
            assert!(text.starts_with("AWS4-HMAC-SHA256 "));
        }
        Err(why) => assert!(!why.is_empty()),
    }
}
