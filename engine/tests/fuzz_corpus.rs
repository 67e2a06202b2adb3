//! Replays the committed fuzz corpus and every saved regression through the
//! same checks the fuzz targets run, on stable and without libFuzzer.

#[path = "../../fuzz/checks/escape.rs"]
mod escape;
#[path = "../../fuzz/checks/parse_config.rs"]
mod parse_config;
#[path = "../../fuzz/checks/redact.rs"]
mod redact;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;
#[path = "../../fuzz/checks/serialize_record.rs"]
mod serialize_record;

use replay::replay;

#[test]
fn serialize_record_corpus() {
    replay("serialize_record", serialize_record::check);
}

#[test]
fn parse_config_corpus() {
    replay("parse_config", parse_config::check);
}

#[test]
fn escape_corpus() {
    replay("escape", escape::check);
}

#[test]
fn redact_corpus() {
    replay("redact", redact::check);
}
