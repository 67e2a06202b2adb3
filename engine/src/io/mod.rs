//! I/O: how segment bytes reach the disk.
//!
//! - [`buf`]: the aligned buffer lines are serialized into.
//! - [`output`]: the segment file being written, in large aligned `O_DIRECT`
//!   batches through io_uring or `pwrite`, with per-line accounting.
//! - [`fs`]: the file-system interface every spool operation goes through,
//!   which tests implement to inject faults.
//! - [`irq`]: which CPUs take the spool disk's interrupts (a start-up log
//!   line).

mod backend;
mod buf;
pub mod fs;
pub(crate) mod irq;
mod output;

pub use backend::IoPath;
pub use fs::{Fs, RealFs};
pub use output::{Closed, Output, Progress};
