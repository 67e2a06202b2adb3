//! Keeps the symbols of the extension's dependencies out of its exports:
//! rustc exports every `#[no_mangle]` function it links, a dependency's C API
//! included (crc-fast's `crc_fast_*`, under the AWS SDK); `--exclude-libs,ALL`
//! makes everything from the linked rlibs local, leaving `PyInit__capline`.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
    println!("cargo:rerun-if-changed=build.rs");
}
