#![no_main]

#[path = "../checks/sigv4_header.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
