//! Fuzz check shared by the `admin_update` target and the corpus replay test:
//! any admin API request body is refused with a reason or read into values
//! within their rules; nothing panics.

use capline_endpoint::fuzzing::parse_update;

/// Panics on any violation.
pub fn check(data: &[u8]) {
    match parse_update(data) {
        Ok(u) => {
            assert!(u.weight.is_none_or(|w| w.is_finite() && w >= 0.0));
            assert!(u.sampling.is_none_or(|p| (0.0..=100.0).contains(&p)));
        }
        Err(why) => assert!(!why.is_empty()),
    }
}
