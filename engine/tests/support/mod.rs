//! Helpers shared by the engine's integration tests (each test file is a
//! crate of its own and uses part of them).
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use capline::{Capture, DropReason, Engine, Outcome};

/// Captures `c`, waiting while the ring is full (the writer behind); any
/// other outcome fails the test.
pub fn keep(engine: &Engine, c: &Capture) {
    loop {
        match engine.capture(c) {
            Outcome::Kept => return,
            Outcome::Dropped(DropReason::RingFull) => std::thread::sleep(Duration::from_millis(1)),
            other => panic!("{other:?}"),
        }
    }
}

/// Files made ahead for a next segment (`.next-*`) in the spool directory
/// `active`.
pub fn made_ahead(active: &Path) -> usize {
    std::fs::read_dir(active)
        .map(|r| {
            r.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".next-"))
                .count()
        })
        .unwrap_or(0)
}
