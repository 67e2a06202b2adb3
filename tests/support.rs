//! Helpers for the end-to-end tests: find and run the `capline` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `capline` binary: `$CAPLINE_BIN`, or the one cargo built next to this test.
pub fn capline_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAPLINE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/capline
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("capline");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p capline-cli` (or `cargo test --workspace`) first",
        bin.display()
    );
    bin
}

/// Runs `capline ARGS` in `cwd` and returns its output.
pub fn capline(cwd: &Path, args: &[&str]) -> Output {
    Command::new(capline_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run capline")
}

/// Stdout and stderr as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Every `.jsonl` file under `dir`, skipping hidden directories, sorted.
pub fn jsonl_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            out.extend(jsonl_files(&p));
        } else if p.extension().is_some_and(|x| x == "jsonl") {
            out.push(p);
        }
    }
    out.sort();
    out
}
