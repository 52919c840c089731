//! Errors of the write-ahead log.

use std::io;
use std::path::PathBuf;

/// Result of WAL operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the write-ahead log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The log holds damaged bytes that are not a torn tail.
    #[error("corrupted write-ahead log {} at offset {offset}: {reason}", file.display())]
    Corruption {
        /// The damaged segment file.
        file: PathBuf,
        /// Byte offset of the damage within the file.
        offset: u64,
        /// What was found.
        reason: String,
    },
    /// A segment was written by an incompatible format version.
    #[error("write-ahead log segment {} has format version {found}; this build reads {supported}", file.display())]
    UnsupportedVersion {
        /// The segment file.
        file: PathBuf,
        /// Version found in its header.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// An earlier write or sync failed; the log refuses further writes (fail-stop).
    #[error("write-ahead log is unusable after an earlier failure: {0}")]
    Poisoned(String),
    /// A record exceeds [`crate::format::RECORD_SIZE_MAX`].
    #[error("record of {size} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
