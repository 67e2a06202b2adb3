//! Replays a fuzz target's committed corpus and saved regressions through
//! its check, for the `fuzz_corpus` tests of the crates beside `fuzz/`.

use std::path::Path;

/// Runs `check` on every file in `fuzz/corpus/{target}` and
/// `fuzz/regressions/{target}` (dot files aside); panics if there are none.
pub fn replay(target: &str, check: fn(&[u8])) {
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
