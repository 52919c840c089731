//! sled 0.34.7: one `Tree` per table. sled transactions and batches are atomic but not durable
//! on return, so every write is followed by `Db::flush` (fsync of its log) before the
//! operation counts as committed: its strongest durability. sled retries conflicting
//! transactions internally; the closure's extra invocations are counted as aborts.

use crate::engine::{decode_balance, table_index, Engine, Outcome, Res, RowFn, Transfer};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Batch, Db, Tree};
use std::cell::Cell;
use std::path::Path;

pub struct SledEngine {
    db: Db,
    names: Vec<String>,
    trees: Vec<Tree>,
}

impl SledEngine {
    pub fn open(dir: &Path, tables: &[&str]) -> Res<Self> {
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(crate::CACHE_BYTES as u64)
            .flush_every_ms(None)
            .open()?;
        let mut trees = Vec::new();
        for t in tables {
            trees.push(db.open_tree(t)?);
        }
        Ok(SledEngine {
            db,
            names: tables.iter().map(|s| s.to_string()).collect(),
            trees,
        })
    }

    fn tree(&self, table: &str) -> Res<&Tree> {
        let names: Vec<&str> = self.names.iter().map(|s| s.as_str()).collect();
        Ok(&self.trees[table_index(&names, table)?])
    }
}

thread_local! {
    /// Extra attempts of sled's internal retry loop in the last transfer on this thread.
    static ATTEMPTS: Cell<u64> = const { Cell::new(0) };
}

impl Engine for SledEngine {
    fn put(&self, table: &str, pairs: &[(&[u8], &[u8])]) -> Res<()> {
        let tree = self.tree(table)?;
        if pairs.len() == 1 {
            tree.insert(pairs[0].0, pairs[0].1)?;
        } else {
            let mut batch = Batch::default();
            for (k, v) in pairs {
                batch.insert(*k, *v);
            }
            tree.apply_batch(batch)?;
        }
        self.db.flush()?;
        Ok(())
    }

    fn transfer(&self, t: &Transfer<'_>) -> Res<Outcome> {
        let acc = self.tree("accounts")?;
        let ledger = self.tree("ledger")?;
        ATTEMPTS.with(|a| a.set(0));
        let r: Result<(), TransactionError<String>> = (acc, ledger).transaction(|(acc, ledger)| {
            ATTEMPTS.with(|a| a.set(a.get() + 1));
            let read = |k: &[u8]| -> Result<i64, ConflictableTransactionError<String>> {
                let v = acc.get(k)?.ok_or_else(|| {
                    ConflictableTransactionError::Abort("missing account".to_string())
                })?;
                decode_balance(&v).map_err(|e| ConflictableTransactionError::Abort(e.to_string()))
            };
            let from = read(t.from)?;
            let to = read(t.to)?;
            acc.insert(t.from, &(from - t.amount).to_le_bytes()[..])?;
            acc.insert(t.to, &(to + t.amount).to_le_bytes()[..])?;
            ledger.insert(t.ledger_key, t.ledger_value)?;
            Ok(())
        });
        match r {
            Ok(()) => {}
            Err(TransactionError::Abort(e)) => return Err(e.into()),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        }
        self.db.flush()?;
        Ok(Outcome::Committed)
    }

    fn get(&self, table: &str, key: &[u8]) -> Res<Option<Vec<u8>>> {
        Ok(self.tree(table)?.get(key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, table: &str, start: &[u8], limit: usize) -> Res<usize> {
        let mut n = 0;
        for row in self.tree(table)?.range(start..).take(limit) {
            let (k, v) = row?;
            std::hint::black_box((k, v));
            n += 1;
        }
        Ok(n)
    }

    fn for_each(&self, table: &str, f: &mut RowFn<'_>) -> Res<()> {
        for row in self.tree(table)?.iter() {
            let (k, v) = row?;
            f(&k, &v)?;
        }
        Ok(())
    }

    fn take_internal_retries(&self) -> u64 {
        ATTEMPTS.with(|a| a.replace(0).saturating_sub(1))
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.db.flush()?;
        Ok(())
    }
}
