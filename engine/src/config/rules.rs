//! SageMaker's character rules for names, media types, KMS keys and buckets.

/// SageMaker's endpoint and variant name rule: `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$`, at most 63 characters.
pub fn is_valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// SageMaker's media-type rule for content-type lists:
/// `[a-zA-Z0-9](-*[a-zA-Z0-9])*\/[a-zA-Z0-9](-*[a-zA-Z0-9.])*`, 1–256 characters.
pub fn is_valid_media_type(s: &str) -> bool {
    fn part(p: &[u8], allow_dot: bool) -> bool {
        let ok = |c: u8| c.is_ascii_alphanumeric() || (allow_dot && c == b'.');
        !p.is_empty()
            && p[0].is_ascii_alphanumeric()
            && ok(p[p.len() - 1])
            && p.iter().all(|&c| ok(c) || c == b'-')
    }
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 256 {
        return false;
    }
    match s.split_once('/') {
        Some((t, sub)) => part(t.as_bytes(), false) && part(sub.as_bytes(), true),
        None => false,
    }
}

pub(super) fn is_valid_kms(s: &str) -> bool {
    s.len() <= 2048
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b':' | b'/' | b'_' | b'-'))
}

/// S3 bucket naming: 3–63 of `[a-z0-9.-]`, starting and ending alphanumeric.
pub(super) fn is_valid_bucket(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-'))
}
