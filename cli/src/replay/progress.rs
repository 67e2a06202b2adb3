//! Progress on stderr: a bar redrawn in place on a terminal, a plain line
//! every few seconds otherwise (logs, CI).

use std::io::Write;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counters the reader and the sender bump, and the ticker shows.
pub(crate) struct Progress {
    files_total: usize,
    files_done: AtomicUsize,
    sent: AtomicU64,
    answered: AtomicU64,
    bad: AtomicU64,
    done: AtomicBool,
    terminal: bool,
    started: Instant,
    /// Serializes writes to stderr (bar and notes).
    out: Mutex<()>,
}

const BAR: usize = 30;

impl Progress {
    pub(crate) fn new(files_total: usize, terminal: bool) -> Self {
        Progress {
            files_total,
            files_done: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            done: AtomicBool::new(false),
            terminal,
            started: Instant::now(),
            out: Mutex::new(()),
        }
    }

    pub(crate) fn file_done(&self) {
        self.files_done.fetch_add(1, Relaxed);
    }

    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Relaxed);
    }

    pub(crate) fn answered(&self, good: bool) {
        self.answered.fetch_add(1, Relaxed);
        if !good {
            self.bad.fetch_add(1, Relaxed);
        }
    }

    /// A message of its own line (the bar is redrawn after it).
    pub(crate) fn note(&self, message: &str) {
        let _guard = self.out.lock();
        let mut err = std::io::stderr().lock();
        let clear = if self.terminal { "\r\x1b[2K" } else { "" };
        let _ = writeln!(err, "{clear}{message}");
    }

    fn line(&self) -> String {
        let files = self.files_done.load(Relaxed);
        let sent = self.sent.load(Relaxed);
        let answered = self.answered.load(Relaxed);
        let bad = self.bad.load(Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            answered as f64 / secs
        } else {
            0.0
        };
        format!(
            "files {files}/{} · sent {sent} · answered {answered} · mismatched or failed {bad} · {rate:.1}/s",
            self.files_total
        )
    }

    fn draw(&self, last: bool) {
        let _guard = self.out.lock();
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let total = self.files_total.max(1);
            let filled = (self.files_done.load(Relaxed) * BAR / total).min(BAR);
            let bar = format!("{}{}", "#".repeat(filled), "-".repeat(BAR - filled));
            let _ = write!(err, "\r\x1b[2K[{bar}] {}", self.line());
            if last {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "replay: {}", self.line());
        }
        let _ = err.flush();
    }

    /// Stops the ticker (it draws once more).
    pub(crate) fn finish(&self) {
        self.done.store(true, Relaxed);
    }
}

/// Draws `progress` every 100 ms on a terminal, every 5 s otherwise, and a
/// last time when it is finished.
pub(crate) fn start(progress: Arc<Progress>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let every = if progress.terminal {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        let mut next = Instant::now() + every;
        while !progress.done.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            if Instant::now() >= next {
                progress.draw(false);
                next += every;
            }
        }
        progress.draw(true);
    })
}
