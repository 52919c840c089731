//! Exclusive key locks for pessimistic transactions, with deadlock detection.
//!
//! A pessimistic transaction locks a key before writing it (and on `get_for_update`); locks are
//! held until the transaction ends. A request for a key held by another transaction waits, up
//! to the lock-wait timeout or the transaction's deadline.
//!
//! Deadlocks are found on the wait-for graph at the moment a wait would close a cycle: every
//! waiting transaction waits for exactly one holder (locks are exclusive), so following the
//! chain of holders from the requested key's holder either ends or comes back to the
//! requester. If it comes back, the requester is the victim: it gets [`Error::Deadlock`] naming
//! every transaction and key of the cycle, and waits for nothing. Exactly one transaction per
//! cycle is chosen, because a cycle is closed by exactly one wait.
//!
//! A holder past its transaction deadline is over even if it has not noticed yet: a waiter
//! wakes by the holder's deadline at the latest and releases the expired holder's locks.
//!
//! Invariants: `holders[k] = t` iff `k ∈ held[t]`; `waiting[t] = (h, k)` only while `t` is
//! blocked in [`LockManager::lock`], and then `holders[k] = h`.

use crate::error::{DeadlockEdge, DeadlockReport};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use vellum_storage::TableId;

/// Identifier of a transaction, unique while the database is open.
pub(crate) type TxId = u64;

type LockKey = (TableId, Vec<u8>);

#[derive(Debug, Default)]
struct Table {
    holders: HashMap<LockKey, TxId>,
    held: HashMap<TxId, Vec<LockKey>>,
    waiting: HashMap<TxId, (TxId, LockKey)>,
    /// Who each transaction is, for reports: (label, table names by id).
    labels: HashMap<TxId, Option<String>>,
    /// Deadlines of lock holders that have one: past it, a waiter releases the holder's locks
    /// (the holder finds itself timed out at its next operation).
    deadlines: HashMap<TxId, Instant>,
    names: HashMap<TableId, String>,
}

/// Why a lock request failed before the lock was granted.
#[derive(Debug)]
pub(crate) enum LockFailure {
    /// The wait would close a cycle; this transaction is the victim.
    Deadlock(Box<DeadlockReport>),
    /// The deadline passed while waiting; `by_transaction` says it was the transaction's own
    /// deadline rather than the lock-wait timeout.
    TimedOut { by_transaction: bool },
}

/// The lock table of one database.
#[derive(Debug, Default)]
pub(crate) struct LockManager {
    table: Mutex<Table>,
    released: Condvar,
    /// Number of keys locked, kept equal to `table.holders.len()` under the table lock; read
    /// without it by [`LockManager::is_empty`] so optimistic commits skip the lock table when
    /// no pessimistic transaction holds anything.
    held: AtomicUsize,
}

impl LockManager {
    /// Locks `key` for `tx`, waiting until `lock_deadline` (lock-wait timeout) or `tx_deadline`.
    pub fn lock(
        &self,
        tx: TxId,
        label: Option<&str>,
        table_name: &str,
        key: LockKey,
        lock_deadline: Instant,
        tx_deadline: Option<Instant>,
    ) -> std::result::Result<(), LockFailure> {
        let mut t = self.table.lock();
        t.labels
            .entry(tx)
            .or_insert_with(|| label.map(str::to_string));
        t.names
            .entry(key.0)
            .or_insert_with(|| table_name.to_string());
        if let Some(d) = tx_deadline {
            t.deadlines.entry(tx).or_insert(d);
        }
        let deadline = match tx_deadline {
            Some(d) if d < lock_deadline => d,
            _ => lock_deadline,
        };
        loop {
            let holder = match t.holders.get(&key) {
                None => {
                    t.holders.insert(key.clone(), tx);
                    t.held.entry(tx).or_default().push(key);
                    self.held.store(t.holders.len(), Ordering::Release);
                    return Ok(());
                }
                Some(&h) if h == tx => return Ok(()),
                Some(&h) => h,
            };
            let holder_deadline = t.deadlines.get(&holder).copied();
            if holder_deadline.is_some_and(|d| Instant::now() >= d) {
                // The holder's transaction is past its deadline: it is over, whether or not it
                // has noticed yet.
                release_locked(&mut t, holder);
                self.held.store(t.holders.len(), Ordering::Release);
                self.released.notify_all();
                continue;
            }
            if Instant::now() >= deadline {
                let by_transaction = tx_deadline.is_some_and(|d| d <= lock_deadline);
                return Err(LockFailure::TimedOut { by_transaction });
            }
            if let Some(report) = find_cycle(&t, tx, holder, &key) {
                return Err(LockFailure::Deadlock(Box::new(report)));
            }
            let wake = holder_deadline.map_or(deadline, |d| d.min(deadline));
            t.waiting.insert(tx, (holder, key.clone()));
            self.released.wait_until(&mut t, wake);
            t.waiting.remove(&tx);
        }
    }

    /// True if no key is locked. A commit validating under the commit lock may rely on it:
    /// a lock taken after this read is taken by a transaction that will itself validate
    /// later (pessimistic writers validate their own keys), and an optimistic commit racing a
    /// new lock is ordered before that lock's locking read (which waits for visibility).
    pub fn is_empty(&self) -> bool {
        self.held.load(Ordering::Acquire) == 0
    }

    /// The transaction other than `tx` that holds `key`, if any.
    pub fn locked_by_other(&self, tx: Option<TxId>, key: &LockKey) -> Option<TxId> {
        let t = self.table.lock();
        t.holders.get(key).copied().filter(|&h| Some(h) != tx)
    }

    /// Releases every lock of `tx` and wakes waiters.
    pub fn release_all(&self, tx: TxId) {
        let mut t = self.table.lock();
        t.labels.remove(&tx);
        t.deadlines.remove(&tx);
        if release_locked(&mut t, tx) {
            self.held.store(t.holders.len(), Ordering::Release);
            self.released.notify_all();
        }
    }
}

/// Drops every lock `tx` holds; true if it held any.
fn release_locked(t: &mut Table, tx: TxId) -> bool {
    match t.held.remove(&tx) {
        Some(keys) => {
            for k in keys {
                t.holders.remove(&k);
            }
            true
        }
        None => false,
    }
}

/// Follows the chain of holders from `holder`; if it leads back to `tx`, returns the cycle.
fn find_cycle(t: &Table, tx: TxId, holder: TxId, key: &LockKey) -> Option<DeadlockReport> {
    let mut edges = vec![(tx, key.clone(), holder)];
    let mut seen = HashSet::from([tx]);
    let mut current = holder;
    while let Some((next, k)) = t.waiting.get(&current) {
        edges.push((current, k.clone(), *next));
        if *next == tx {
            return Some(report(t, edges));
        }
        if !seen.insert(current) {
            return None; // a cycle not through `tx`: someone else closed it and is its victim
        }
        current = *next;
    }
    None
}

fn report(t: &Table, edges: Vec<(TxId, LockKey, TxId)>) -> DeadlockReport {
    let label = |id: TxId| t.labels.get(&id).cloned().flatten();
    DeadlockReport {
        cycle: edges
            .into_iter()
            .map(|(waiter, (table, key), holder)| DeadlockEdge {
                waiter,
                waiter_label: label(waiter),
                holder,
                holder_label: label(holder),
                table: t
                    .names
                    .get(&table)
                    .cloned()
                    .unwrap_or_else(|| format!("#{}", table.0)),
                key,
            })
            .collect(),
    }
}
