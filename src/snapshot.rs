//! [`Snapshot`]: a consistent view of every table at one version, pinned until dropped.
//!
//! A snapshot is a read-only transaction that never times out: garbage collection keeps every
//! version it can read, and it never blocks or aborts. It is what exports read from.

use crate::db::Db;
use crate::error::Result;
use crate::export::{ExportOptions, ExportReport};
use crate::tx::{Cursor, Scan, Transaction, Versioned};
use std::ops::Bound;
use std::path::Path;
use vellum_storage::Version;

/// A pinned, consistent view of every table at [`Snapshot::version`].
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) tx: Transaction,
}

impl Db {
    /// Pins the newest committed version of every table until the snapshot is dropped.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            tx: self.begin_read()?,
        })
    }

    /// Exports a snapshot of the newest version; see [`Snapshot::export`].
    pub fn export(&self, target: impl AsRef<Path>, options: ExportOptions) -> Result<ExportReport> {
        self.snapshot()?.export(target, options)
    }
}

impl Snapshot {
    /// The version every read of this snapshot sees.
    pub fn version(&self) -> Version {
        self.tx.snapshot_version()
    }

    /// Reads `key` of `table`.
    pub fn get(&self, table: &str, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.tx.get(table, key)
    }

    /// Reads `key` of `table` with the version of the commit that wrote it.
    pub fn get_versioned(&self, table: &str, key: impl AsRef<[u8]>) -> Result<Option<Versioned>> {
        self.tx.get_versioned(table, key)
    }

    /// Every row of `table`, in key order.
    pub fn scan_all(&self, table: &str) -> Result<Scan<'_>> {
        self.tx.scan_all(table)
    }

    /// A cursor over the rows of `table` within `range`, in key order; each row borrows the
    /// cursor (see [`Transaction::cursor`](crate::Transaction::cursor)).
    pub fn cursor<K: AsRef<[u8]>>(
        &self,
        table: &str,
        range: impl std::ops::RangeBounds<K>,
    ) -> Result<Cursor<'_>> {
        self.tx.cursor(table, range)
    }

    /// Rows of `table` whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, table: &str, prefix: impl AsRef<[u8]>) -> Result<Scan<'_>> {
        self.tx.scan_prefix(table, prefix)
    }

    /// Names of every table at this version, sorted.
    pub fn list_tables(&self) -> Result<Vec<String>> {
        self.tx.list_tables()
    }

    /// Every row of `table` with the version of the commit that wrote it:
    /// `(key, version, value)` in key order.
    pub(crate) fn versioned_rows(&self, table: &str) -> Result<vellum_storage::Scan<'_>> {
        let id = self.tx.table_id(table)?;
        Ok(self
            .tx
            .db
            .store
            .scan(id, Bound::Unbounded, Bound::Unbounded, self.version()))
    }

    /// The version of the newest commit at or below this snapshot that changed `table`.
    pub fn table_version(&self, table: &str) -> Result<Version> {
        self.tx.table_version(table)
    }
}
