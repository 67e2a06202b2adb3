//! Replays the endpoint's committed fuzz corpora and saved regressions
//! through the same checks the fuzz targets run, on stable and without
//! libFuzzer.

#[path = "../../fuzz/checks/admin_update.rs"]
mod admin_update;
#[path = "../../fuzz/checks/answer_head.rs"]
mod answer_head;
#[path = "../../fuzz/checks/endpoint_settings.rs"]
mod endpoint_settings;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;
#[path = "../../fuzz/checks/request_head.rs"]
mod request_head;
#[path = "../../fuzz/checks/sigv4_header.rs"]
mod sigv4_header;

use replay::replay;

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

#[test]
fn request_head_corpus() {
    replay("request_head", request_head::check);
}

#[test]
fn answer_head_corpus() {
    replay("answer_head", answer_head::check);
}
