//! Gives the shared library a versioned soname: `libcapline.so.MAJOR.MINOR`
//! (while the version is 0.x, every minor release may change the ABI), and
//! keeps the symbols of its dependencies out of its exports: rustc exports
//! every `#[no_mangle]` function it links, a dependency's C API included
//! (crc-fast's `crc_fast_*`, under the AWS SDK); `--exclude-libs,ALL` makes
//! everything from the linked rlibs local, leaving only this crate's
//! `capline_*` functions.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcapline.so.{major}.{minor}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
}
