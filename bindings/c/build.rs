//! Gives the shared library a versioned soname: `libcapline.so.MAJOR.MINOR`
//! (while the version is 0.x, every minor release may change the ABI).

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcapline.so.{major}.{minor}");
    println!("cargo:rerun-if-changed=build.rs");
}
