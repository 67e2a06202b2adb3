//! Replays a fuzz target's committed corpus and saved regressions through
//! its check, for the `fuzz_corpus` tests of the crates beside `fuzz/`.

use std::path::PathBuf;

/// Runs `check` on every file in `fuzz/corpus/{target}` and
/// `fuzz/regressions/{target}` (dot files aside); panics if there are none.
pub fn replay(target: &str, check: fn(&[u8])) {
    // Read at run time (cargo sets it for tests): a binary reused from a
    // shared target directory may have been compiled in another checkout.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let fuzz = manifest.join("../fuzz");
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
