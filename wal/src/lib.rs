//! vellum-wal: the write-ahead log of vellum.
//!
//! What the log guarantees:
//! * Records get contiguous log sequence numbers ([`Lsn`]) in the order they are enqueued, and
//!   are written to disk in that order.
//! * [`Wal::wait`] returns only when the record is durable (`SyncPolicy::Immediate`) or written
//!   to the operating system (`Buffered`, `None`). Concurrent committers share one write and
//!   one `fdatasync` (group commit): whoever finds no write in progress becomes the leader and
//!   writes everything enqueued so far.
//! * Recovery ([`Wal::open`]) returns every record up to the last valid one, truncates a torn
//!   tail, and refuses with [`Error::Corruption`] (file and offset) when damaged bytes are
//!   followed by a record that proves the damaged one had been made durable.
//!
//! Dependency rule: this crate knows nothing of tables, transactions or storage; a record is an
//! opaque byte payload. All file access goes through [`vellum_fs::FileSystem`].
//!
//! The byte layout is documented in `docs/format/wal.md`; the constants live in [`format`].

#![warn(missing_docs)]

mod error;
pub mod format;
mod recovery;
mod segment;
mod writer;

pub use error::{Error, Result};
pub use writer::{Arrival, Record, Ticket, Wal, WalOptions, WalStats};

/// Log sequence number: the position of a record in the log, contiguous from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// When a commit's record counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `fdatasync` before [`Wal::wait`] returns.
    Immediate,
    /// Written to the operating system before `wait` returns; a background thread syncs at
    /// least this often.
    Buffered(std::time::Duration),
    /// Written to the operating system; synced only at segment rotation and close.
    None,
}
