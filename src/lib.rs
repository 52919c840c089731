//! vellum: an embedded MVCC key-value table store with multi-table ACID transactions.
//!
//! Open a directory, get named tables, and read and write any number of them in one
//! transaction. Transactions run under snapshot isolation: each reads one consistent version of
//! every table, commits atomically across tables, and the first committer wins on write-write
//! conflicts, which come back as [`Error::Conflict`] with a report naming the table, key and
//! versions. Commits are durable through a write-ahead log whose group commit lets concurrent
//! committers share one `fdatasync`.
//!
//! ```
//! use vellum::{Db, Error};
//!
//! # fn main() -> Result<(), Error> {
//! # let dir = tempfile::tempdir().map_err(|e| Error::Io { path: "tmp".into(), source: e })?;
//! let db = Db::open(dir.path().join("bank"))?;
//! db.create_table("accounts")?;
//! db.create_table("ledger")?;
//!
//! db.transaction(|tx| {
//!     tx.put("accounts", "alice", 100u64.to_le_bytes())?;
//!     tx.put("accounts", "bob", 0u64.to_le_bytes())?;
//!     tx.put("ledger", "0001", "open alice and bob")?;
//!     Ok::<_, Error>(())
//! })?;
//!
//! let tx = db.begin_read()?;
//! assert!(tx.get("accounts", "alice")?.is_some());
//! assert_eq!(tx.scan_all("ledger")?.count(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! Layout of the workspace: `vellum-wal` (write-ahead log), `vellum-storage` (versioned
//! storage), `vellum-fs` (the file-system seam, with a crash simulator), and this crate, which
//! composes them. See `docs/design.md`.

#![warn(missing_docs)]

mod catalog;
mod catalog_cache;
mod commit;
mod db;
mod error;
pub mod export;
mod feed;
mod identity;
mod locks;
pub mod mirror;
mod options;
mod prepared;
mod record;
mod recovery;
mod retention;
mod retry;
mod snapshot;
mod snapshots;
mod tx;
mod workers;

pub use db::{Db, Stats};
pub use error::{ConflictKind, ConflictReport, DeadlockEdge, DeadlockReport, Error, Result};
pub use export::{ExportFormat, ExportOptions, ExportProgress, ExportReport};
pub use feed::{Change, ChangeFeed, CommittedTransaction};
pub use options::{
    Durability, Options, CHANGE_OVERHEAD_BYTES, KEY_SIZE_MAX, TABLE_NAME_MAX,
    TRANSACTION_BYTES_MAX, VALUE_SIZE_MAX,
};
pub use prepared::{PreparedInfo, GLOBAL_ID_MAX};
pub use snapshot::Snapshot;
pub use tx::{Cursor, Isolation, RetryPolicy, Scan, Transaction, TxBuilder, Versioned};
pub use vellum_storage::{StoreStats, VerifyReport, Version};
pub use vellum_wal::WalStats;

/// The file-system seam: [`fs::RealFs`] and the crash-simulating [`fs::SimFs`] used by the
/// crash tests (applications can use it to crash-test their own code on top of vellum).
pub mod fs {
    pub use vellum_fs::{
        write_file_atomic, DirLock, FileSystem, ReadableFile, RealFs, SimFs, SimOptions,
        WritableFile,
    };
}
