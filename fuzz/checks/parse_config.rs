//! Fuzz check shared by the `parse_config` target and the corpus replay test:
//! parsing any input never panics, and what it accepts obeys the rules.

use capline::Config;
use capline::config::is_valid_name;

/// Panics on any violation.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Config::from_json(&text) {
        Ok(c) => {
            assert!(is_valid_name(&c.endpoint_name));
            assert!(is_valid_name(&c.variant_name));
            assert!((0.0..=100.0).contains(&c.sampling_percentage));
            assert!(c.destination_uri.len() <= 512);
            assert!(c.engine.max_record_bytes <= c.engine.ring_bytes);
        }
        Err(e) => assert!(!e.field.is_empty() && !e.rule.is_empty()),
    }
}
