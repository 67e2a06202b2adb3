//! Replays the committed fuzz corpus and every saved regression through the
//! same checks the fuzz targets run, on stable and without libFuzzer.

use std::path::Path;

#[path = "../../fuzz/checks/parse_config.rs"]
mod parse_config;
#[path = "../../fuzz/checks/serialize_record.rs"]
mod serialize_record;

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
fn serialize_record_corpus() {
    replay("serialize_record", serialize_record::check);
}

#[test]
fn parse_config_corpus() {
    replay("parse_config", parse_config::check);
}
