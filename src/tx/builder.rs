//! [`TxBuilder`]: `db.tx().isolation(..).pessimistic().timeout(..).label(..).begin()` or
//! `.run(|tx| ..)`.

use super::config::{Isolation, RetryPolicy, TxConfig};
use super::Transaction;
use crate::db::Db;
use crate::error::Result;
use std::time::Duration;

/// Configures and starts a transaction. Made by [`Db::tx`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `begin` or `run`"]
pub struct TxBuilder<'db> {
    db: &'db Db,
    config: TxConfig,
    retry: RetryPolicy,
}

impl<'db> TxBuilder<'db> {
    pub(crate) fn new(db: &'db Db) -> Self {
        TxBuilder {
            db,
            config: TxConfig {
                lock_timeout: Some(db.inner.opts.lock_wait_timeout),
                ..TxConfig::default()
            },
            retry: db.inner.opts.retry,
        }
    }

    /// Sets the isolation level (default [`Isolation::Snapshot`]).
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.config.isolation = isolation;
        self
    }

    /// Pessimistic mode: writes and [`Transaction::get_for_update`] take exclusive key locks,
    /// held until the transaction ends; waits are bounded by the lock-wait timeout and deadlocks
    /// are detected.
    pub fn pessimistic(mut self) -> Self {
        self.config.pessimistic = true;
        self
    }

    /// A deadline for the transaction: past it every operation and the commit fail with
    /// [`crate::Error::Timeout`] and its locks are released.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// How long a pessimistic lock request may wait (default
    /// [`crate::Options::lock_wait_timeout`]).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.config.lock_timeout = Some(timeout);
        self
    }

    /// Read-only: writes are refused; the transaction never blocks and never aborts.
    pub fn read_only(mut self) -> Self {
        self.config.read_only = true;
        self
    }

    /// A label that appears in conflict reports and errors.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.config.label = Some(label.into());
        self
    }

    /// Most attempts of [`TxBuilder::run`] (the first included).
    pub fn max_retries(mut self, attempts: u32) -> Self {
        self.retry.max_attempts = attempts.max(1);
        self
    }

    /// Longest total time of [`TxBuilder::run`] before it stops retrying.
    pub fn max_retry_time(mut self, limit: Duration) -> Self {
        self.retry.max_elapsed = limit;
        self
    }

    /// The settings chosen so far.
    pub(crate) fn config(&self) -> TxConfig {
        self.config.clone()
    }

    /// Starts the transaction.
    pub fn begin(&self) -> Result<Transaction> {
        Ok(Transaction::new(self.db.inner.clone(), self.config.clone()))
    }

    /// Runs `f` in a transaction and commits, retrying the whole transaction on retryable
    /// errors (conflict, deadlock, lock-wait timeout) as the retry policy allows. Returns `f`'s
    /// value; when retries run out, [`crate::Error::RetriesExhausted`] with the attempt count.
    pub fn run<T>(&self, f: impl FnMut(&mut Transaction) -> Result<T>) -> Result<T> {
        crate::retry::run(self.db, &self.retry, || self.begin(), f)
    }
}
