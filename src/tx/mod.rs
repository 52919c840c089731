//! Transactions: a snapshot, a write set, a read set, preconditions, savepoints and locks.
//!
//! * Reads see the transaction's read version across every table, plus its own writes
//!   (read-your-own-writes): the snapshot taken at `begin` under `Snapshot` and
//!   `Serializable`, the newest committed version at each read under `ReadCommitted`.
//! * Writes are staged in an ordered write set; [`crate::commit`] validates and applies them.
//!   Nothing is visible to others before commit.
//! * Under `Serializable`, every key read and every range scanned is recorded (the read set);
//!   the commit fails if a later commit changed any of it.
//! * In pessimistic mode, writes and `get_for_update` take exclusive key locks
//!   ([`crate::locks`]), released when the transaction ends.
//! * Savepoints are marks in an undo log of the write set.
//! * A finished transaction refuses every operation ([`Error::TransactionClosed`]); past its
//!   deadline every operation fails with [`Error::Timeout`]; dropping an unfinished one rolls
//!   it back.
//!
//! Invariant: while a transaction is active its snapshot is registered with
//! [`crate::snapshots::Snapshots`], so garbage collection keeps every version it can read; when
//! it ends (in any way) the snapshot and its locks are released exactly once.

mod builder;
mod config;
mod cursor;
mod savepoint;
mod scan;
mod write_set;

pub use builder::TxBuilder;
pub(crate) use config::TxConfig;
pub use config::{Isolation, RetryPolicy};
pub use cursor::Cursor;
pub use scan::Scan;
pub(crate) use write_set::{WriteKey, WriteSet};

use crate::catalog::{self, CATALOG};
use crate::db::DbInner;
use crate::error::{Error, Result};
use crate::locks::{LockFailure, TxId};
use crate::options::{CHANGE_OVERHEAD_BYTES, KEY_SIZE_MAX, TRANSACTION_BYTES_MAX, VALUE_SIZE_MAX};
use crate::prepared::KeyRange;
use crate::snapshots::Pin;
use savepoint::{Savepoint, Undo};
use std::cell::{Cell, RefCell};
use std::collections::{btree_map, BTreeMap, BTreeSet, HashMap};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::time::Instant;
use vellum_storage::{TableId, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxState {
    Active,
    Committed,
    RolledBack,
    Prepared,
    TimedOut,
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

/// What a serializable transaction read.
#[derive(Debug, Default)]
pub(crate) struct ReadSet {
    pub keys: BTreeSet<(TableId, Vec<u8>)>,
    /// Tables whose version was read: any commit to them after the snapshot conflicts.
    pub table_versions: BTreeSet<TableId>,
    pub ranges: Vec<KeyRange>,
    /// Table names, for reports.
    pub names: HashMap<TableId, String>,
}

/// A transaction over every table of a database. See the module documentation.
#[derive(Debug)]
pub struct Transaction {
    pub(crate) db: Arc<DbInner>,
    pub(crate) id: TxId,
    pub(crate) snapshot: Version,
    /// The registration of `snapshot`, released when the transaction ends.
    pin: Pin,
    pub(crate) config: TxConfig,
    pub(crate) deadline: Option<Instant>,
    pub(crate) state: Cell<TxState>,
    pub(crate) writes: WriteSet,
    pub(crate) write_bytes: usize,
    /// Tables written, with the name they were resolved under (for catalog conflict checks).
    pub(crate) tables_written: HashMap<TableId, String>,
    /// `put_if_version` preconditions: (table, table name, key, expected version).
    pub(crate) key_expectations: Vec<(TableId, String, Vec<u8>, Version)>,
    /// `expect_table_version` preconditions: (table, name, expected version).
    pub(crate) table_expectations: Vec<(TableId, String, Version)>,
    /// Keys read with `get_for_update`, and the version they were read at: the commit fails if
    /// a later commit changed them, at every isolation level.
    pub(crate) checked_reads: BTreeMap<(TableId, Vec<u8>), (String, Version)>,
    pub(crate) reads: RefCell<ReadSet>,
    undo: Vec<Undo>,
    savepoints: Vec<Savepoint>,
    /// The newest commit this transaction read before it was durable (a locking read of a key
    /// whose last committer released its locks early): committing must not return before it
    /// is durable. `Version::ZERO` if none.
    pub(crate) depends_on: Version,
}

impl Transaction {
    pub(crate) fn new(db: Arc<DbInner>, config: TxConfig) -> Transaction {
        let pin = db.snapshots.acquire();
        Self::with_snapshot(db, config, pin)
    }

    /// A transaction reading at an older `version`, if its history is still retained.
    pub(crate) fn new_at(
        db: Arc<DbInner>,
        config: TxConfig,
        version: Version,
    ) -> Result<Transaction> {
        db.snapshots
            .acquire_history(version)
            .map_err(|oldest| Error::NotRetained {
                requested: version,
                oldest,
            })?;
        Ok(Self::with_snapshot(db, config, Pin::history(version)))
    }

    fn with_snapshot(db: Arc<DbInner>, config: TxConfig, pin: Pin) -> Transaction {
        let id = db.next_tx_id();
        let deadline = config.timeout.map(|t| Instant::now() + t);
        Transaction {
            db,
            id,
            snapshot: pin.version,
            pin,
            config,
            deadline,
            state: Cell::new(TxState::Active),
            writes: WriteSet::new(),
            write_bytes: 0,
            tables_written: HashMap::new(),
            key_expectations: Vec::new(),
            table_expectations: Vec::new(),
            checked_reads: BTreeMap::new(),
            reads: RefCell::new(ReadSet::default()),
            undo: Vec::new(),
            savepoints: Vec::new(),
            depends_on: Version::ZERO,
        }
    }

    /// The version this transaction's snapshot was taken at.
    pub fn snapshot_version(&self) -> Version {
        self.snapshot
    }

    /// True if the transaction may not write.
    pub fn is_read_only(&self) -> bool {
        self.config.read_only
    }

    /// The isolation level.
    pub fn isolation(&self) -> Isolation {
        self.config.isolation
    }

    /// The label given with [`TxBuilder::label`].
    pub fn label(&self) -> Option<&str> {
        self.config.label.as_deref()
    }

    /// An id unique among the transactions of this database while it is open (used in
    /// deadlock reports).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The version reads see now: the snapshot, or under `ReadCommitted` the newest.
    pub(crate) fn read_version(&self) -> Version {
        match self.config.isolation {
            Isolation::ReadCommitted => self.db.snapshots.visible(),
            _ => self.snapshot,
        }
    }

    fn serializable(&self) -> bool {
        self.config.isolation == Isolation::Serializable
    }

    pub(crate) fn check_active(&self) -> Result<()> {
        match self.state.get() {
            TxState::Active => {
                if self.deadline.is_some_and(|d| Instant::now() >= d) {
                    self.end(TxState::TimedOut);
                    return Err(self.timeout_error());
                }
                Ok(())
            }
            TxState::TimedOut => Err(self.timeout_error()),
            TxState::Committed => Err(Error::TransactionClosed("committed")),
            TxState::RolledBack => Err(Error::TransactionClosed("rolled back")),
            TxState::Prepared => Err(Error::TransactionClosed("prepared")),
        }
    }

    pub(crate) fn timeout_error(&self) -> Error {
        Error::Timeout {
            label: self.config.label.clone(),
        }
    }

    fn check_writable(&self) -> Result<()> {
        self.check_active()?;
        if self.config.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// Ends the transaction (once): releases its snapshot and its locks.
    pub(crate) fn end(&self, state: TxState) {
        if self.state.get() == TxState::Active {
            self.state.set(state);
            self.db.snapshots.release_pin(self.pin);
            if self.config.pessimistic {
                self.db.locks.release_all(self.id);
            }
        }
    }

    pub(crate) fn finish(&mut self, state: TxState) {
        self.end(state);
        self.writes.clear();
        self.undo.clear();
    }

    /// Resolves a table name at the read version, seeing its own creates and drops. Under
    /// `Serializable` the catalog entry joins the read set.
    pub(crate) fn table_id(&self, name: &str) -> Result<TableId> {
        let staged = if self.writes.is_empty() {
            None
        } else {
            self.writes
                .get(&WriteKey::new(CATALOG, name.as_bytes().to_vec()))
        };
        let read_at = self.read_version();
        let value = match staged {
            Some(staged) => staged.clone(),
            None => {
                if self.serializable() {
                    self.reads
                        .borrow_mut()
                        .keys
                        .insert((CATALOG, name.as_bytes().to_vec()));
                }
                match self.db.catalog_cache.get(name, read_at) {
                    Some(id) => Some(catalog::encode_id(id).to_vec()),
                    None => {
                        let v = self
                            .db
                            .store
                            .get(CATALOG, name.as_bytes(), read_at)?
                            .and_then(|f| f.value);
                        if let Some(id) = v.as_deref().and_then(catalog::decode_id) {
                            self.db.catalog_cache.put(name, id, read_at);
                        }
                        v
                    }
                }
            }
        };
        match value {
            Some(v) => {
                let id = catalog::decode_id(&v).ok_or_else(|| Error::Corruption {
                    file: self.db.path.clone(),
                    offset: 0,
                    reason: format!("catalog entry of table `{name}` is malformed"),
                })?;
                if self.serializable() {
                    self.reads
                        .borrow_mut()
                        .names
                        .entry(id)
                        .or_insert_with(|| name.to_string());
                }
                Ok(id)
            }
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
        let keep_undo = !self.savepoints.is_empty();
        match self.writes.entry(WriteKey::new(table, key.to_vec())) {
            btree_map::Entry::Occupied(mut slot) => {
                let size = self.write_bytes - change_size(key, slot.get().as_deref())
                    + change_size(key, value);
                check_transaction_size(size)?;
                self.write_bytes = size;
                let previous = slot.insert(value.map(<[u8]>::to_vec));
                if keep_undo {
                    let key = slot.key().clone();
                    self.undo.push(Undo::Write {
                        key,
                        previous: Some(previous),
                    });
                }
            }
            btree_map::Entry::Vacant(slot) => {
                let size = self.write_bytes + change_size(key, value);
                check_transaction_size(size)?;
                self.write_bytes = size;
                // Undo entries matter only to a savepoint taken before them.
                if keep_undo {
                    self.undo.push(Undo::Write {
                        key: slot.key().clone(),
                        previous: None,
                    });
                }
                slot.insert(value.map(<[u8]>::to_vec));
            }
        }
        Ok(())
    }

    /// Removes a staged write (recorded in the undo log).
    fn unstage(&mut self, entry: &WriteKey) {
        if let Some(old) = self.writes.remove(entry) {
            self.write_bytes -= change_size(&entry.key, old.as_deref());
            self.undo.push(Undo::Write {
                key: entry.clone(),
                previous: Some(old),
            });
        }
    }

    fn stage_row(&mut self, table: &str, key: &[u8], value: Option<&[u8]>) -> Result<TableId> {
        self.check_writable()?;
        let id = self.table_id(table)?;
        if self.config.pessimistic {
            self.lock(id, table, key)?;
        }
        self.stage(id, key, value)?;
        if let std::collections::hash_map::Entry::Vacant(slot) = self.tables_written.entry(id) {
            slot.insert(table.to_string());
            if !self.savepoints.is_empty() {
                self.undo.push(Undo::TableWritten(id));
            }
        }
        Ok(id)
    }

    /// Takes the exclusive lock on a key (pessimistic mode).
    fn lock(&self, id: TableId, table: &str, key: &[u8]) -> Result<()> {
        let wait = self
            .config
            .lock_timeout
            .unwrap_or(self.db.opts.lock_wait_timeout);
        let result = self.db.locks.lock(
            self.id,
            self.config.label.as_deref(),
            table,
            (id, key.to_vec()),
            Instant::now() + wait,
            self.deadline,
        );
        match result {
            Ok(()) => Ok(()),
            Err(LockFailure::Deadlock(report)) => {
                self.end(TxState::RolledBack);
                Err(Error::Deadlock(report))
            }
            Err(LockFailure::TimedOut {
                by_transaction: true,
            }) => {
                self.end(TxState::TimedOut);
                Err(self.timeout_error())
            }
            Err(LockFailure::TimedOut {
                by_transaction: false,
            }) => Err(Error::LockTimeout {
                label: self.config.label.clone(),
            }),
        }
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
        let staged = if self.writes.is_empty() {
            None
        } else {
            self.writes.get(&WriteKey::new(id, key.to_vec()))
        };
        if let Some(staged) = staged {
            return Ok(staged.clone().map(|value| Versioned {
                value,
                version: None,
            }));
        }
        if self.serializable() {
            self.reads.borrow_mut().keys.insert((id, key.to_vec()));
        }
        let found = self.db.store.get(id, key, self.read_version())?;
        Ok(found.and_then(|f| {
            f.value.map(|value| Versioned {
                value,
                version: Some(f.version),
            })
        }))
    }

    /// Reads `key` for a later update. The commit fails with a conflict if another commit
    /// changes the key after this read, at every isolation level.
    ///
    /// In pessimistic mode the key is locked first and its newest commit is returned (a locking
    /// read). A pessimistic committer releases its locks once its commit is applied and queued
    /// in the log, before the log is synced, so the next transaction waiting for the lock
    /// proceeds while the sync runs (controlled lock violation). Such a read may therefore see
    /// a commit that is not durable yet; this transaction's own commit then does not return
    /// before that one is durable (its log record comes later, and a commit without changes
    /// waits for it), and if that commit fails, so does this one.
    pub fn get_for_update(
        &mut self,
        table: &str,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<Vec<u8>>> {
        self.check_writable()?;
        let key = key.as_ref();
        let id = self.table_id(table)?;
        let read_at = if self.config.pessimistic {
            self.lock(id, table, key)?;
            self.locked_read_version(id, key)?
        } else {
            self.read_version()
        };
        let entry = (id, key.to_vec());
        let baseline = self
            .checked_reads
            .get(&entry)
            .map_or(read_at, |(_, v)| (*v).min(read_at));
        self.checked_reads
            .insert(entry.clone(), (table.to_string(), baseline));
        if let Some(staged) = self.writes.get(&WriteKey::new(id, entry.1)) {
            return Ok(staged.clone());
        }
        Ok(self.db.store.get(id, key, read_at)?.and_then(|f| f.value))
    }

    /// With the key locked: the version to read it at, which covers its newest commit. That
    /// commit is applied (commits apply in version order under the commit lock, taken here so
    /// one that validated before the lock was taken has finished applying) but may not be
    /// durable yet; if so the transaction records that it depends on it.
    fn locked_read_version(&mut self, id: TableId, key: &[u8]) -> Result<Version> {
        let newest = {
            let _commits_quiesced = self.db.commit.lock();
            self.db
                .store
                .latest_version(id, key)?
                .unwrap_or(Version::ZERO)
        };
        let visible = self.db.snapshots.visible();
        if newest > visible {
            self.depends_on = self.depends_on.max(newest);
        }
        Ok(newest.max(visible).max(self.snapshot))
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
    /// `expected`. Refused in read-only transactions (they never abort).
    pub fn expect_table_version(&mut self, table: &str, expected: Version) -> Result<()> {
        self.check_writable()?;
        let id = self.table_id(table)?;
        self.table_expectations
            .push((id, table.to_string(), expected));
        Ok(())
    }

    /// The version of the newest commit that changed `table` (created it or wrote to it), as
    /// of the read version. Own uncommitted writes do not count.
    pub fn table_version(&self, table: &str) -> Result<Version> {
        self.check_active()?;
        let id = self.table_id(table)?;
        if self.serializable() {
            self.reads.borrow_mut().table_versions.insert(id);
        }
        Ok(self
            .db
            .store
            .table_version(id, self.read_version())?
            .unwrap_or(Version::ZERO))
    }

    /// Rows of `table` with keys in `range`, in key order, as of the read version plus own
    /// writes.
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

    /// A cursor over the rows of `table` within `range`, in key order, with this
    /// transaction's own staged writes: like [`Transaction::scan`], but each row borrows the
    /// cursor instead of being copied into new vectors, which makes long scans cheaper.
    pub fn cursor<K: AsRef<[u8]>>(
        &self,
        table: &str,
        range: impl RangeBounds<K>,
    ) -> Result<Cursor<'_>> {
        let lower = map_bound(range.start_bound());
        let upper = map_bound(range.end_bound());
        let id = self.range_read(table, &lower, &upper)?;
        Ok(Cursor::new(self, id, lower, upper))
    }

    fn scan_bounds(
        &self,
        table: &str,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
    ) -> Result<Scan<'_>> {
        let id = self.range_read(table, &lower, &upper)?;
        Ok(Scan::new(self, id, lower, upper))
    }

    /// Checks the transaction, resolves `table` and records the range as read (under
    /// `Serializable`).
    fn range_read(
        &self,
        table: &str,
        lower: &Bound<Vec<u8>>,
        upper: &Bound<Vec<u8>>,
    ) -> Result<TableId> {
        self.check_active()?;
        let id = self.table_id(table)?;
        if self.serializable() {
            self.reads
                .borrow_mut()
                .ranges
                .push((id, lower.clone(), upper.clone()));
        }
        Ok(id)
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
        let staged: Vec<WriteKey> = self
            .writes
            .range(WriteKey::first(id)..)
            .take_while(|(k, _)| k.table == id)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &staged {
            self.unstage(k);
        }
        self.stage(CATALOG, name.as_bytes(), None)
    }

    /// True if `name` exists at the read version (with its own creates and drops).
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
        if self.serializable() {
            self.reads
                .borrow_mut()
                .ranges
                .push((CATALOG, Bound::Unbounded, Bound::Unbounded));
        }
        let mut names = Vec::new();
        for row in Scan::new(self, CATALOG, Bound::Unbounded, Bound::Unbounded) {
            let (key, _) = row?;
            names.push(String::from_utf8_lossy(&key).into_owned());
        }
        Ok(names)
    }

    /// Discards every staged write and releases the transaction's locks.
    pub fn rollback(mut self) -> Result<()> {
        self.check_active()?;
        self.finish(TxState::RolledBack);
        Ok(())
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.end(TxState::RolledBack);
    }
}

/// Fails if a transaction of `size` staged bytes exceeds [`TRANSACTION_BYTES_MAX`].
fn check_transaction_size(size: usize) -> Result<()> {
    if size > TRANSACTION_BYTES_MAX {
        return Err(Error::TransactionTooLarge {
            size,
            max: TRANSACTION_BYTES_MAX,
        });
    }
    Ok(())
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
