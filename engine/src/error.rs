//! The crate's error type.

use std::path::PathBuf;

use crate::config::ConfigError;

/// Everything that can go wrong outside the capture hot path.
///
/// `capture()` itself never fails: it returns an [`crate::Outcome`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration broke a rule; the message names the field.
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    /// A filesystem operation on the spool or the destination failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. "create spool directory".
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another engine holds the spool directory.
    #[error("spool directory {0} is in use by another capline engine (lock held)")]
    SpoolLocked(PathBuf),
    /// An `s3://` destination, in a build without the `s3` feature.
    #[error(
        "DataCaptureConfig.DestinationS3Uri: this build of capline has no S3 support (cargo feature `s3`)"
    )]
    S3NotBuilt,
    /// `flush` or `shutdown` did not finish before its deadline.
    #[error("timed out after {0:?} waiting for the writer")]
    Timeout(std::time::Duration),
    /// The writer or uploader thread is gone (it panicked or already stopped).
    #[error("the {0} thread has stopped")]
    ThreadGone(&'static str),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
