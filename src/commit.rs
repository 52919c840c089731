//! The commit pipeline, and two-phase commit's prepare/resolve.
//!
//! ```text
//! encode record (no lock)
//! ── commit lock ──────────────────────────────────────────────
//!   validate (see `validate`)
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
//!
//! Serializable validation is backward validation: a read-write transaction commits only if
//! nothing it read (keys, scanned ranges, catalog entries) changed between its snapshot and its
//! commit, so its reads equal the state at its commit point and the committed history is
//! equivalent to running transactions one at a time in commit-version order. Read-only
//! transactions read a state of that serial history and are never validated.

use crate::catalog::{self, CATALOG};
use crate::db::{Db, DbInner};
use crate::error::{ConflictKind, ConflictReport, Error, Result};
use crate::prepared::{PreparedTx, GLOBAL_ID_MAX};
use crate::record;
use crate::tx::{Isolation, Transaction, TxState, WriteKey};
use std::ops::Bound;
use std::sync::atomic::Ordering;
use vellum_storage::{Change, TableId, Version};

impl Transaction {
    /// Commits: validates, makes the writes durable (per the database's durability mode) and
    /// visible atomically across every table. Returns the commit version, or the snapshot
    /// version if there was nothing to write. On [`Error::Conflict`] nothing was written.
    pub fn commit(mut self) -> Result<Version> {
        self.check_active()?;
        let has_checks = !self.key_expectations.is_empty()
            || !self.table_expectations.is_empty()
            || !self.checked_reads.is_empty();
        if self.writes.is_empty() && !has_checks {
            self.finish(TxState::Committed);
            return Ok(self.snapshot);
        }
        let result = commit_inner(&self);
        self.conclude(result, TxState::Committed)
    }

    /// Phase one of two-phase commit: validates like a commit, durably logs the whole write
    /// set under `global_id`, and reserves the transaction's keys so that no other commit can
    /// invalidate it. Afterwards [`Db::commit_prepared`] cannot fail on conflicts, and the
    /// prepared transaction survives crashes ([`Db::prepared`] lists it after reopen).
    pub fn prepare(mut self, global_id: &str) -> Result<()> {
        self.check_active()?;
        if self.config.read_only {
            return Err(Error::ReadOnly);
        }
        if global_id.is_empty() || global_id.len() > GLOBAL_ID_MAX {
            return Err(Error::InvalidArgument(format!(
                "a global id must have 1 to {GLOBAL_ID_MAX} bytes"
            )));
        }
        let result = prepare_inner(&self, global_id);
        self.conclude(result, TxState::Prepared)
    }

    /// Ends the transaction after a commit or prepare attempt: in `done` on success, rolled
    /// back otherwise (conflicts counted).
    fn conclude<T>(&mut self, result: Result<T>, done: TxState) -> Result<T> {
        if let Err(Error::Conflict(_)) = &result {
            self.db.conflicts.fetch_add(1, Ordering::Relaxed);
        }
        self.finish(if result.is_ok() {
            done
        } else {
            TxState::RolledBack
        });
        result
    }
}

fn change_list(tx: &Transaction) -> Vec<Change<'_>> {
    tx.writes
        .iter()
        .map(|(k, value)| Change {
            table: k.table,
            key: &k.key,
            value: value.as_deref(),
        })
        .collect()
}

fn commit_inner(tx: &Transaction) -> Result<Version> {
    let db = &tx.db;
    let changes = change_list(tx);
    let touched = record::touched_tables(&changes);
    let mut rec = record::encode(
        changes.iter().map(|c| (c.table, c.key, c.value)),
        tx.write_bytes,
    );
    db.make_room();
    let arrival = db.wal.announce();
    let (version, ticket, waited) = {
        let mut commit = db.commit.lock();
        // After a log failure, cells of the failed commit sit in storage unpublished; checking
        // health first reports the failure instead of a retryable conflict against them.
        db.wal.check_healthy()?;
        validate(tx)?;
        if changes.is_empty() {
            // Preconditions only: they held at this instant; nothing to log. What was read
            // must be durable before the commit reports success.
            drop(commit);
            db.wait_visible(tx.depends_on, None)?;
            return Ok(tx.snapshot);
        }
        let version = commit.next_version;
        record::set_version(&mut rec, version);
        let ticket = db.wal.enqueue(&rec)?;
        drop(arrival);
        commit.next_version = Version(version.0 + 1);
        let waited = if rec.len() >= OVERLAP_RECORD_BYTES {
            // A large record: write and sync it on another thread while this one applies it,
            // instead of one after the other. The order of events is unchanged (logged before
            // applied; published only after both).
            std::thread::scope(|scope| {
                let writer = scope.spawn(|| db.wal.wait(ticket));
                db.store.apply(version, &changes, &touched);
                Some(writer.join().unwrap_or_else(|_| {
                    Err(vellum_wal::Error::Poisoned(
                        "the thread writing a large commit record panicked".into(),
                    ))
                }))
            })
        } else {
            db.store.apply(version, &changes, &touched);
            None
        };
        db.note_catalog_change(version, &touched);
        db.remember_label(version, tx.config.label.as_deref());
        (version, ticket, waited)
    };
    drop(rec);
    if tx.config.pessimistic {
        // Early lock release: the commit is applied and queued in the log, so a waiter may
        // read it now; anything it commits is logged after this record (see
        // `Transaction::get_for_update`).
        db.locks.release_all(tx.id);
    }
    match waited {
        Some(result) => result?,
        None => db.wal.wait(ticket)?,
    }
    db.published(version, ticket.lsn());
    Ok(version)
}

fn prepare_inner(tx: &Transaction, gid: &str) -> Result<()> {
    let db = &tx.db;
    let mut keys: Vec<(TableId, Vec<u8>)> = tx
        .tables_written
        .values()
        .map(|name| (CATALOG, name.as_bytes().to_vec()))
        .collect();
    keys.extend(tx.checked_reads.keys().cloned());
    let mut ranges = Vec::new();
    if tx.config.isolation == Isolation::Serializable {
        let reads = tx.reads.borrow();
        keys.extend(reads.keys.iter().cloned());
        ranges.extend(reads.ranges.iter().cloned());
        // A table whose version was read: no other commit may write to it at all.
        ranges.extend(
            reads
                .table_versions
                .iter()
                .map(|t| (*t, Bound::Unbounded, Bound::Unbounded)),
        );
    }
    let prepared = PreparedTx {
        gid: gid.to_string(),
        label: tx.config.label.clone(),
        changes: tx
            .writes
            .iter()
            .map(|(k, v)| (k.table, k.key.clone(), v.clone()))
            .collect(),
        keys,
        ranges,
    };
    let rec = prepared.encode_record();
    let arrival = db.wal.announce();
    let ticket = {
        let _commit = db.commit.lock();
        db.wal.check_healthy()?;
        if db.two_phase.lock().contains(gid) {
            return Err(Error::DuplicateGlobalId(gid.to_string()));
        }
        validate(tx)?;
        let ticket = db.wal.enqueue(&rec)?;
        drop(arrival);
        db.two_phase.lock().insert(prepared);
        ticket
    };
    db.wal.wait(ticket)?;
    Ok(())
}

impl Db {
    /// Phase two: commits the prepared transaction `global_id`, atomically across its tables.
    /// Cannot fail on conflicts (its keys were reserved); fails only on I/O errors or an
    /// unknown id.
    pub fn commit_prepared(&self, global_id: &str) -> Result<Version> {
        let db = &self.inner;
        let arrival = db.wal.announce();
        let (version, ticket) = {
            let mut commit = db.commit.lock();
            db.wal.check_healthy()?;
            let Some(prepared) = db.two_phase.lock().remove(global_id) else {
                return Err(Error::PreparedNotFound(global_id.to_string()));
            };
            let changes: Vec<Change<'_>> = prepared.change_refs().collect();
            let touched = record::touched_tables(&changes);
            let version = commit.next_version;
            let mut rec = record::encode_commit_prepared(
                global_id,
                changes.iter().map(|c| (c.table, c.key, c.value)),
            );
            record::set_version(&mut rec, version);
            let ticket = match db.wal.enqueue(&rec) {
                Ok(t) => t,
                Err(e) => {
                    db.two_phase.lock().insert(prepared.clone());
                    return Err(e.into());
                }
            };
            drop(arrival);
            commit.next_version = Version(version.0 + 1);
            db.store.apply(version, &changes, &touched);
            db.note_catalog_change(version, &touched);
            db.remember_label(version, prepared.label.as_deref());
            (version, ticket)
        };
        db.wal.wait(ticket)?;
        db.published(version, ticket.lsn());
        Ok(version)
    }

    /// Rolls back the prepared transaction `global_id` and releases its reservations.
    pub fn rollback_prepared(&self, global_id: &str) -> Result<()> {
        let db = &self.inner;
        let ticket = {
            let _commit = db.commit.lock();
            db.wal.check_healthy()?;
            let Some(prepared) = db.two_phase.lock().remove(global_id) else {
                return Err(Error::PreparedNotFound(global_id.to_string()));
            };
            match db.wal.enqueue(&record::encode_rollback_prepared(global_id)) {
                Ok(t) => t,
                Err(e) => {
                    db.two_phase.lock().insert(prepared);
                    return Err(e.into());
                }
            }
        };
        db.wal.wait(ticket)?;
        Ok(())
    }
}

impl DbInner {
    /// Before taking the commit lock: asks for a flush once the memtable is full, and waits
    /// (a counted write stall) while storage is over its limits.
    pub(crate) fn make_room(&self) {
        if self.store.needs_flush() {
            self.worker.nudge();
        }
        self.store.wait_for_room(WRITE_STALL_MAX);
    }

    /// After applying a commit (before it is published): invalidates cached table names if it
    /// changed the catalog.
    pub(crate) fn note_catalog_change(&self, version: Version, touched: &[TableId]) {
        if touched.contains(&crate::catalog::CATALOG) {
            self.catalog_cache.changed(version);
        }
    }

    /// Publishes a durable commit and counts it.
    fn published(&self, version: Version, lsn: vellum_wal::Lsn) {
        self.snapshots.publish(version, lsn);
        self.retention.record(version);
        self.commits.fetch_add(1, Ordering::Relaxed);
        if crate::workers::checkpoint_due(self) {
            self.worker.nudge();
        }
    }
}

/// Commit records at least this large are written and synced while they are applied.
const OVERLAP_RECORD_BYTES: usize = 1 << 20;

/// The longest a commit waits for storage to make room; past it the commit proceeds (memory
/// grows) rather than failing.
const WRITE_STALL_MAX: std::time::Duration = std::time::Duration::from_secs(10);

struct Reporter<'a> {
    tx: &'a Transaction,
}

impl Reporter<'_> {
    fn conflict(
        &self,
        kind: ConflictKind,
        table: &str,
        key: Option<&[u8]>,
        winner: Version,
    ) -> Error {
        Error::Conflict(Box::new(ConflictReport {
            kind,
            table: table.to_string(),
            key: key.map(<[u8]>::to_vec),
            snapshot: self.tx.snapshot,
            winner,
            label: self.tx.config.label.clone(),
            winner_label: self.tx.db.label_of(winner),
        }))
    }

    /// The name to report for a table id.
    fn name(&self, table: TableId, key: &[u8]) -> String {
        if table == CATALOG {
            return String::from_utf8_lossy(key).into_owned();
        }
        if let Some(n) = self.tx.tables_written.get(&table) {
            return n.clone();
        }
        if let Some(n) = self.tx.reads.borrow().names.get(&table) {
            return n.clone();
        }
        if let Some((_, (n, _))) = self.tx.checked_reads.range((table, Vec::new())..).next() {
            return n.clone();
        }
        format!("#{}", table.0)
    }

    /// A conflict on a key: catalog keys are reported as the table they name.
    fn on_key(&self, kind: ConflictKind, table: TableId, key: &[u8], winner: Version) -> Error {
        let name = self.name(table, key);
        if table == CATALOG {
            let kind = if matches!(kind, ConflictKind::WriteWrite) {
                ConflictKind::TableChanged
            } else {
                kind
            };
            return self.conflict(kind, &name, None, winner);
        }
        self.conflict(kind, &name, Some(key), winner)
    }
}

/// The newest committed version of a live key, or zero if absent or deleted.
fn key_version(db: &DbInner, table: TableId, key: &[u8]) -> Result<Version> {
    Ok(db
        .store
        .get(table, key, Version::MAX)?
        .filter(|f| f.value.is_some())
        .map_or(Version::ZERO, |f| f.version))
}

fn newest(db: &DbInner, table: TableId, key: &[u8]) -> Result<Version> {
    Ok(db
        .store
        .latest_version(table, key)?
        .unwrap_or(Version::ZERO))
}

/// Runs under the commit lock. Checks, in order: reservations of prepared transactions and
/// locks of pessimistic ones on every written key; write-write conflicts (not under
/// `ReadCommitted`); the catalog entries of written tables; keys read for update; the read set
/// (`Serializable`); compare-and-swap preconditions.
fn validate(tx: &Transaction) -> Result<()> {
    let db = &tx.db;
    let r = Reporter { tx };
    {
        let two = db.two_phase.lock();
        for WriteKey { table, key, .. } in tx.writes.keys() {
            if let Some(gid) = two.reserved_by(*table, key) {
                let kind = ConflictKind::Reserved {
                    global_id: gid.to_string(),
                };
                return Err(r.on_key(kind, *table, key, newest(db, *table, key)?));
            }
        }
    }
    if !tx.config.pessimistic && !db.locks.is_empty() {
        for WriteKey { table, key, .. } in tx.writes.keys() {
            let entry = (*table, key.clone());
            if db.locks.locked_by_other(Some(tx.id), &entry).is_some() {
                return Err(r.on_key(ConflictKind::Locked, *table, key, newest(db, *table, key)?));
            }
        }
    }
    if tx.config.isolation != Isolation::ReadCommitted {
        for WriteKey { table, key, .. } in tx.writes.keys() {
            let checked = if tx.checked_reads.is_empty() {
                None
            } else {
                tx.checked_reads.get(&(*table, key.clone()))
            };
            let baseline = checked.map_or(tx.snapshot, |(_, v)| (*v).max(tx.snapshot));
            let v = newest(db, *table, key)?;
            if v > baseline {
                return Err(r.on_key(ConflictKind::WriteWrite, *table, key, v));
            }
        }
    }
    for (table, name) in &tx.tables_written {
        if tx
            .writes
            .contains_key(&WriteKey::new(CATALOG, name.as_bytes().to_vec()))
        {
            continue; // created or dropped here: covered by the catalog key itself
        }
        let current = db.store.get(CATALOG, name.as_bytes(), Version::MAX)?;
        let same_table = current
            .as_ref()
            .and_then(|f| f.value.as_deref())
            .and_then(catalog::decode_id)
            == Some(*table);
        let changed = match tx.config.isolation {
            Isolation::ReadCommitted => !same_table,
            _ => !same_table || current.as_ref().is_some_and(|f| f.version > tx.snapshot),
        };
        if changed {
            let v = current.map_or(Version::ZERO, |f| f.version);
            return Err(r.conflict(ConflictKind::TableChanged, name, None, v));
        }
    }
    for ((table, key), (_, baseline)) in &tx.checked_reads {
        let v = newest(db, *table, key)?;
        if v > *baseline {
            return Err(r.on_key(ConflictKind::ReadWrite, *table, key, v));
        }
    }
    if tx.config.isolation == Isolation::Serializable {
        let reads = tx.reads.borrow();
        for (table, key) in &reads.keys {
            let v = newest(db, *table, key)?;
            if v > tx.snapshot {
                return Err(r.on_key(ConflictKind::ReadWrite, *table, key, v));
            }
        }
        for table in &reads.table_versions {
            let v = db
                .store
                .table_version(*table, Version::MAX)?
                .unwrap_or(Version::ZERO);
            if v > tx.snapshot {
                let name = r.name(*table, &[]);
                return Err(r.conflict(ConflictKind::ReadWrite, &name, None, v));
            }
        }
        for (table, lower, upper) in &reads.ranges {
            let changed = db.store.change_in_range(
                *table,
                lower.as_ref().map(Vec::as_slice),
                upper.as_ref().map(Vec::as_slice),
                tx.snapshot,
            )?;
            if let Some((key, v)) = changed {
                if *table == CATALOG {
                    return Err(r.on_key(ConflictKind::Phantom, *table, &key, v));
                }
                let name = r.name(*table, &key);
                return Err(r.conflict(ConflictKind::Phantom, &name, Some(&key), v));
            }
        }
    }
    for (table, name, key, expected) in &tx.key_expectations {
        let actual = key_version(db, *table, key)?;
        if actual != *expected {
            let kind = ConflictKind::KeyVersion {
                expected: *expected,
            };
            return Err(r.conflict(kind, name, Some(key), actual));
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
            return Err(r.conflict(kind, name, None, actual));
        }
    }
    Ok(())
}
