//! Replays the endpoint's committed fuzz corpora and saved regressions
//! through the same checks the fuzz targets run, on stable and without
//! libFuzzer.

use std::path::Path;

#[path = "../../fuzz/checks/admin_update.rs"]
mod admin_update;
#[path = "../../fuzz/checks/endpoint_settings.rs"]
mod endpoint_settings;
#[path = "../../fuzz/checks/sigv4_header.rs"]
mod sigv4_header;

fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            check(&std::fs::read(e.path()).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "no corpus for {target}");
}

#[test]
fn endpoint_settings_corpus() {
    replay("endpoint_settings", endpoint_settings::check);
}

#[test]
fn admin_update_corpus() {
    replay("admin_update", admin_update::check);
}

#[test]
fn sigv4_header_corpus() {
    replay("sigv4_header", sigv4_header::check);
}
