//! The commit pipeline.
//!
//! ```text
//! encode record (no lock)
//! ── commit lock ──────────────────────────────────────────────
//!   validate: write-write conflicts (first committer wins), catalog changes of written
//!             tables, put_if_version and expect_table_version preconditions
//!   assign version = next_version++
//!   enqueue the commit record in the WAL (memory only)
//!   apply the changes to storage at that version (invisible to readers until published)
//! ─────────────────────────────────────────────────────────────
//! wait for the WAL (group commit: one write + one fdatasync for all waiting committers)
//! publish: visible = max(visible, version)
//! ```
//!
//! Why this is correct: validation sees every earlier commit because earlier commits applied
//! their cells to storage under the same lock (whether or not they are visible yet). The WAL
//! completes records in lsn order and lsn order equals version order, so when a commit's wait
//! returns, every lower version is done too and publishing `max` never exposes a gap.
//! If the WAL fails, it refuses all later records (fail-stop) and nothing above the failed
//! version is ever published; the failed commit's outcome is unknown to the caller (it may be
//! durable), as with any database whose fsync fails.

use crate::catalog::CATALOG;
use crate::db::DbInner;
use crate::error::{ConflictKind, ConflictReport, Error, Result};
use crate::record;
use crate::tx::{Transaction, TxState};
use std::sync::atomic::Ordering;
use vellum_storage::{Change, TableId, Version};

impl Transaction {
    /// Commits: validates, makes the writes durable (per the database's durability mode) and
    /// visible atomically across every table. Returns the commit version, or the snapshot
    /// version if there was nothing to write. On [`Error::Conflict`] nothing was written.
    pub fn commit(mut self) -> Result<Version> {
        self.check_active()?;
        let has_checks = !self.key_expectations.is_empty() || !self.table_expectations.is_empty();
        if self.writes.is_empty() && !has_checks {
            self.finish(TxState::Committed);
            return Ok(self.snapshot);
        }
        let result = commit_inner(&self);
        if let Err(Error::Conflict(_)) = &result {
            self.db.conflicts.fetch_add(1, Ordering::Relaxed);
        }
        self.finish(if result.is_ok() {
            TxState::Committed
        } else {
            TxState::RolledBack
        });
        result
    }
}

fn commit_inner(tx: &Transaction) -> Result<Version> {
    let db = &tx.db;
    let changes: Vec<Change<'_>> = tx
        .writes
        .iter()
        .map(|((table, key), value)| Change {
            table: *table,
            key,
            value: value.as_deref(),
        })
        .collect();
    let touched = record::touched_tables(&changes);
    let mut rec = record::encode(
        changes.iter().map(|c| (c.table, c.key, c.value)),
        tx.write_bytes,
    );
    let arrival = db.wal.announce();
    let (version, ticket) = {
        let mut commit = db.commit.lock();
        // After a log failure, cells of the failed commit sit in storage unpublished; checking
        // health first reports the failure instead of a retryable conflict against them.
        db.wal.check_healthy()?;
        validate(tx)?;
        if changes.is_empty() {
            // Preconditions only: they held at this instant; nothing to log.
            return Ok(tx.snapshot);
        }
        let version = commit.next_version;
        record::set_version(&mut rec, version);
        let ticket = db.wal.enqueue(&rec)?;
        drop(arrival);
        commit.next_version = Version(version.0 + 1);
        db.store.apply(version, &changes, &touched);
        (version, ticket)
    };
    drop(rec);
    db.wal.wait(ticket)?;
    db.snapshots.publish(version, ticket.lsn());
    db.commits.fetch_add(1, Ordering::Relaxed);
    if crate::workers::checkpoint_due(db) {
        db.worker.nudge();
    }
    Ok(version)
}

fn conflict(
    tx: &Transaction,
    kind: ConflictKind,
    table: &str,
    key: Option<&[u8]>,
    winner: Version,
) -> Error {
    Error::Conflict(Box::new(ConflictReport {
        kind,
        table: table.to_string(),
        key: key.map(<[u8]>::to_vec),
        snapshot: tx.snapshot,
        winner,
    }))
}

/// The newest committed version of a live key, or zero if absent or deleted.
fn key_version(db: &DbInner, table: TableId, key: &[u8]) -> Result<Version> {
    Ok(db
        .store
        .get(table, key, Version::MAX)?
        .filter(|f| f.value.is_some())
        .map_or(Version::ZERO, |f| f.version))
}

/// Runs under the commit lock.
fn validate(tx: &Transaction) -> Result<()> {
    let db = &tx.db;
    for (table, key) in tx.writes.keys() {
        if let Some(v) = db.store.latest_version(*table, key)? {
            if v > tx.snapshot {
                let name = table_name(tx, *table, key);
                let key = (*table != CATALOG).then_some(key.as_slice());
                let kind = if *table == CATALOG {
                    ConflictKind::TableChanged
                } else {
                    ConflictKind::WriteWrite
                };
                return Err(conflict(tx, kind, &name, key, v));
            }
        }
    }
    for (table, name) in &tx.tables_written {
        if tx.writes.contains_key(&(CATALOG, name.as_bytes().to_vec())) {
            continue; // created in this transaction: covered by the catalog key itself
        }
        if let Some(v) = db.store.latest_version(CATALOG, name.as_bytes())? {
            if v > tx.snapshot {
                return Err(conflict(tx, ConflictKind::TableChanged, name, None, v));
            }
        }
        debug_assert!(*table != CATALOG);
    }
    for (table, name, key, expected) in &tx.key_expectations {
        let actual = key_version(db, *table, key)?;
        if actual != *expected {
            let kind = ConflictKind::KeyVersion {
                expected: *expected,
            };
            return Err(conflict(tx, kind, name, Some(key), actual));
        }
    }
    for (table, name, expected) in &tx.table_expectations {
        let actual = db
            .store
            .table_version(*table, Version::MAX)?
            .unwrap_or(Version::ZERO);
        if actual != *expected {
            let kind = ConflictKind::TableVersion {
                expected: *expected,
            };
            return Err(conflict(tx, kind, name, None, actual));
        }
    }
    Ok(())
}

/// The name to report for a conflicting write: the table's name, or for a catalog key the
/// table name it holds.
fn table_name(tx: &Transaction, table: TableId, key: &[u8]) -> String {
    if table == CATALOG {
        return String::from_utf8_lossy(key).into_owned();
    }
    tx.tables_written
        .get(&table)
        .cloned()
        .unwrap_or_else(|| format!("#{}", table.0))
}
