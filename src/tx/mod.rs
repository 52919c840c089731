//! Transactions: a snapshot version, a write set, and compare-and-swap preconditions.
//!
//! * Reads see the snapshot taken at `begin`, across every table, plus this transaction's own
//!   writes (read-your-own-writes). Nothing is visible to others before commit.
//! * Writes are staged in an ordered write set; [`crate::commit`] validates and applies them.
//! * A finished transaction refuses every operation with [`Error::TransactionClosed`]; dropping
//!   an unfinished one rolls it back.
//!
//! Invariant: while a transaction is active its snapshot is registered with
//! [`crate::snapshots::Snapshots`], so garbage collection keeps every version it can read.

mod scan;

pub use scan::Scan;

use crate::catalog::{self, CATALOG};
use crate::db::DbInner;
use crate::error::{Error, Result};
use crate::options::{CHANGE_OVERHEAD_BYTES, KEY_SIZE_MAX, TRANSACTION_BYTES_MAX, VALUE_SIZE_MAX};
use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use vellum_storage::{TableId, Version};

/// Whether a transaction may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxMode {
    ReadWrite,
    ReadOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxState {
    Active,
    Committed,
    RolledBack,
}

/// A value read together with the version of the commit that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The value.
    pub value: Vec<u8>,
    /// The commit version that wrote it, or `None` if it is this transaction's own uncommitted
    /// write.
    pub version: Option<Version>,
}

/// The staged changes: `(table, key) -> Some(value) | None (delete)`.
pub(crate) type WriteSet = BTreeMap<(TableId, Vec<u8>), Option<Vec<u8>>>;

/// A transaction over every table of a database. See the module documentation.
#[derive(Debug)]
pub struct Transaction {
    pub(crate) db: Arc<DbInner>,
    pub(crate) snapshot: Version,
    pub(crate) mode: TxMode,
    pub(crate) state: TxState,
    pub(crate) writes: WriteSet,
    pub(crate) write_bytes: usize,
    /// Tables written, with the name they were resolved under (for catalog conflict checks).
    pub(crate) tables_written: HashMap<TableId, String>,
    /// `put_if_version` preconditions: (table, table name, key, expected version).
    pub(crate) key_expectations: Vec<(TableId, String, Vec<u8>, Version)>,
    /// `expect_table_version` preconditions: (table, name, expected version).
    pub(crate) table_expectations: Vec<(TableId, String, Version)>,
}

impl Transaction {
    pub(crate) fn new(db: Arc<DbInner>, mode: TxMode) -> Transaction {
        let snapshot = db.snapshots.acquire();
        Transaction {
            db,
            snapshot,
            mode,
            state: TxState::Active,
            writes: WriteSet::new(),
            write_bytes: 0,
            tables_written: HashMap::new(),
            key_expectations: Vec::new(),
            table_expectations: Vec::new(),
        }
    }

    /// The version this transaction reads at.
    pub fn snapshot_version(&self) -> Version {
        self.snapshot
    }

    /// True if the transaction may write.
    pub fn is_read_only(&self) -> bool {
        self.mode == TxMode::ReadOnly
    }

    pub(crate) fn check_active(&self) -> Result<()> {
        match self.state {
            TxState::Active => Ok(()),
            TxState::Committed => Err(Error::TransactionClosed("committed")),
            TxState::RolledBack => Err(Error::TransactionClosed("rolled back")),
        }
    }

    fn check_writable(&self) -> Result<()> {
        self.check_active()?;
        if self.mode == TxMode::ReadOnly {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// Resolves a table name at this transaction's snapshot, seeing its own creates and drops.
    pub(crate) fn table_id(&self, name: &str) -> Result<TableId> {
        let value = match self.writes.get(&(CATALOG, name.as_bytes().to_vec())) {
            Some(staged) => staged.clone(),
            None => self
                .db
                .store
                .get(CATALOG, name.as_bytes(), self.snapshot)?
                .and_then(|f| f.value),
        };
        match value {
            Some(v) => catalog::decode_id(&v).ok_or_else(|| Error::Corruption {
                file: self.db.path.clone(),
                offset: 0,
                reason: format!("catalog entry of table `{name}` is malformed"),
            }),
            None => Err(Error::TableNotFound(name.to_string())),
        }
    }

    fn stage(&mut self, table: TableId, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        if key.len() > KEY_SIZE_MAX {
            return Err(Error::KeyTooLarge {
                size: key.len(),
                max: KEY_SIZE_MAX,
            });
        }
        if let Some(v) = value {
            if v.len() > VALUE_SIZE_MAX {
                return Err(Error::ValueTooLarge {
                    size: v.len(),
                    max: VALUE_SIZE_MAX,
                });
            }
        }
        // The limit counts what the commit record will hold: one entry per key, so an
        // overwrite replaces the size of the value it overwrites.
        let entry = (table, key.to_vec());
        let replaced = match self.writes.get(&entry) {
            Some(old) => change_size(&entry.1, old.as_deref()),
            None => 0,
        };
        let size = self.write_bytes - replaced + change_size(key, value);
        if size > TRANSACTION_BYTES_MAX {
            return Err(Error::TransactionTooLarge {
                size,
                max: TRANSACTION_BYTES_MAX,
            });
        }
        self.write_bytes = size;
        self.writes.insert(entry, value.map(<[u8]>::to_vec));
        Ok(())
    }

    fn stage_row(&mut self, table: &str, key: &[u8], value: Option<&[u8]>) -> Result<TableId> {
        self.check_writable()?;
        let id = self.table_id(table)?;
        self.stage(id, key, value)?;
        self.tables_written
            .entry(id)
            .or_insert_with(|| table.to_string());
        Ok(id)
    }

    /// Reads `key` of `table`.
    pub fn get(&self, table: &str, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        Ok(self.get_versioned(table, key)?.map(|v| v.value))
    }

    /// Reads `key` of `table` with the version of the commit that wrote it.
    pub fn get_versioned(&self, table: &str, key: impl AsRef<[u8]>) -> Result<Option<Versioned>> {
        self.check_active()?;
        let key = key.as_ref();
        let id = self.table_id(table)?;
        if let Some(staged) = self.writes.get(&(id, key.to_vec())) {
            return Ok(staged.clone().map(|value| Versioned {
                value,
                version: None,
            }));
        }
        let found = self.db.store.get(id, key, self.snapshot)?;
        Ok(found.and_then(|f| {
            f.value.map(|value| Versioned {
                value,
                version: Some(f.version),
            })
        }))
    }

    /// Writes `value` under `key` of `table`.
    pub fn put(
        &mut self,
        table: &str,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<()> {
        self.stage_row(table, key.as_ref(), Some(value.as_ref()))
            .map(|_| ())
    }

    /// Deletes `key` of `table` (deleting a missing key is not an error).
    pub fn delete(&mut self, table: &str, key: impl AsRef<[u8]>) -> Result<()> {
        self.stage_row(table, key.as_ref(), None).map(|_| ())
    }

    /// Writes `value` under `key`, and makes the commit fail with a conflict unless the key's
    /// newest committed version at commit time is `expected` ([`Version::ZERO`] = the key must
    /// not exist).
    pub fn put_if_version(
        &mut self,
        table: &str,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        expected: Version,
    ) -> Result<()> {
        let key = key.as_ref();
        let id = self.stage_row(table, key, Some(value.as_ref()))?;
        self.key_expectations
            .push((id, table.to_string(), key.to_vec(), expected));
        Ok(())
    }

    /// Makes the commit fail with a conflict unless `table`'s version at commit time is
    /// `expected`.
    pub fn expect_table_version(&mut self, table: &str, expected: Version) -> Result<()> {
        self.check_active()?;
        let id = self.table_id(table)?;
        self.table_expectations
            .push((id, table.to_string(), expected));
        Ok(())
    }

    /// The version of the newest commit that changed `table` (created it or wrote to it), as
    /// of this transaction's snapshot. Own uncommitted writes do not count.
    pub fn table_version(&self, table: &str) -> Result<Version> {
        self.check_active()?;
        let id = self.table_id(table)?;
        Ok(self
            .db
            .store
            .table_version(id, self.snapshot)?
            .unwrap_or(Version::ZERO))
    }

    /// Rows of `table` with keys in `range`, in key order, as of the snapshot plus own writes.
    pub fn scan<K: AsRef<[u8]>>(
        &self,
        table: &str,
        range: impl RangeBounds<K>,
    ) -> Result<Scan<'_>> {
        let lower = map_bound(range.start_bound());
        let upper = map_bound(range.end_bound());
        self.scan_bounds(table, lower, upper)
    }

    /// Every row of `table`, in key order.
    pub fn scan_all(&self, table: &str) -> Result<Scan<'_>> {
        self.scan_bounds(table, Bound::Unbounded, Bound::Unbounded)
    }

    /// Rows of `table` whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, table: &str, prefix: impl AsRef<[u8]>) -> Result<Scan<'_>> {
        let prefix = prefix.as_ref();
        let upper = match prefix_successor(prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        self.scan_bounds(table, Bound::Included(prefix.to_vec()), upper)
    }

    fn scan_bounds(
        &self,
        table: &str,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
    ) -> Result<Scan<'_>> {
        self.check_active()?;
        let id = self.table_id(table)?;
        Ok(Scan::new(self, id, lower, upper))
    }

    /// Creates a table, visible to this transaction at once and to others after commit.
    pub fn create_table(&mut self, name: &str) -> Result<()> {
        self.check_writable()?;
        catalog::validate_name(name)?;
        if self.table_id(name).is_ok() {
            return Err(Error::TableExists(name.to_string()));
        }
        let id = self.db.table_id_for_new()?;
        self.stage(CATALOG, name.as_bytes(), Some(&catalog::encode_id(id)))
    }

    /// Drops a table: after commit its name is free and its rows are unreachable.
    pub fn drop_table(&mut self, name: &str) -> Result<()> {
        self.check_writable()?;
        let id = self.table_id(name)?;
        let staged: Vec<(TableId, Vec<u8>)> = self
            .writes
            .range((id, Vec::new())..)
            .take_while(|((t, _), _)| *t == id)
            .map(|(k, _)| k.clone())
            .collect();
        for k in staged {
            if let Some(old) = self.writes.remove(&k) {
                self.write_bytes -= change_size(&k.1, old.as_deref());
            }
        }
        self.tables_written.remove(&id);
        self.key_expectations.retain(|e| e.0 != id);
        self.table_expectations.retain(|e| e.0 != id);
        self.stage(CATALOG, name.as_bytes(), None)
    }

    /// True if `name` exists at this transaction's snapshot (with its own creates and drops).
    pub fn table_exists(&self, name: &str) -> Result<bool> {
        self.check_active()?;
        match self.table_id(name) {
            Ok(_) => Ok(true),
            Err(Error::TableNotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Names of every table, sorted.
    pub fn list_tables(&self) -> Result<Vec<String>> {
        self.check_active()?;
        let mut names = Vec::new();
        for row in Scan::new(self, CATALOG, Bound::Unbounded, Bound::Unbounded) {
            let (key, _) = row?;
            names.push(String::from_utf8_lossy(&key).into_owned());
        }
        Ok(names)
    }

    /// Discards every staged write. Never fails on an active transaction.
    pub fn rollback(mut self) -> Result<()> {
        self.check_active()?;
        self.finish(TxState::RolledBack);
        Ok(())
    }

    pub(crate) fn finish(&mut self, state: TxState) {
        if self.state == TxState::Active {
            self.state = state;
            self.db.snapshots.release(self.snapshot);
            self.writes.clear();
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.finish(TxState::RolledBack);
    }
}

/// Bytes a staged change counts toward [`TRANSACTION_BYTES_MAX`].
fn change_size(key: &[u8], value: Option<&[u8]>) -> usize {
    CHANGE_OVERHEAD_BYTES + key.len() + value.map_or(0, <[u8]>::len)
}

fn map_bound<K: AsRef<[u8]>>(b: Bound<&K>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The smallest key greater than every key starting with `prefix`, if one exists.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn prefix_successor_skips_trailing_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 255, 255]), Some(vec![2]));
        assert_eq!(prefix_successor(&[255]), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
