//! Fuzz check shared by the `endpoint_settings` target and the corpus replay
//! test: parsing any endpoint config never panics, and what it accepts obeys
//! the rules.

use capline_endpoint::{Settings, SettingsError};

/// Panics on any violation.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Settings::parse(&text) {
        Ok(s) => {
            assert!(!s.variants.is_empty());
            assert!(
                s.variants
                    .iter()
                    .all(|v| v.weight.is_finite() && v.weight >= 0.0)
            );
            assert!(s.variants.iter().any(|v| v.weight > 0.0));
            assert!(s.variants.iter().all(|v| !v.authority.is_empty()));
            assert!(s.variants.iter().all(|v| v.config.variant_name == v.name));
            assert!(s.max_payload >= 1 && s.max_response >= 1 && s.max_connections >= 1);
            assert!(s.admin_listen.ip().is_loopback() || s.admin_token.is_some());
        }
        Err(SettingsError::Field { field, rule }) => assert!(!field.is_empty() && !rule.is_empty()),
        Err(SettingsError::Engine(e)) => assert!(!e.field.is_empty() && !e.rule.is_empty()),
    }
}
