#![no_main]

#[path = "../checks/admin_update.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
