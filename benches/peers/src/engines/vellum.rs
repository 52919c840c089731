//! vellum, `Durability::Immediate` (commit returns after `fdatasync`; group commit), snapshot
//! isolation. Two engines: `vellum` runs transfers as optimistic transactions (first committer
//! wins, the loser aborts); `vellum-lock` runs them as pessimistic ones (`get_for_update` takes
//! key locks in key order, so they wait instead of aborting and cannot deadlock).

use crate::engine::{decode_balance, Engine, Outcome, Res, RowFn, Transfer};
use std::path::Path;
use vellum::{Db, Durability, Error, Options};

pub struct VellumEngine {
    db: Db,
    pessimistic: bool,
}

impl VellumEngine {
    pub fn open(dir: &Path, tables: &[&str], pessimistic: bool) -> Res<Self> {
        let db = Db::open_with(
            dir.join("db"),
            Options::default().durability(Durability::Immediate),
        )?;
        let existing = db.list_tables()?;
        for t in tables {
            if !existing.iter().any(|e| e == t) {
                db.create_table(t)?;
            }
        }
        Ok(VellumEngine { db, pessimistic })
    }
}

impl Engine for VellumEngine {
    fn put(&self, table: &str, pairs: &[(&[u8], &[u8])]) -> Res<()> {
        let mut tx = self.db.begin()?;
        for (k, v) in pairs {
            tx.put(table, k, v)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn transfer(&self, t: &Transfer<'_>) -> Res<Outcome> {
        let balance = |v: Option<Vec<u8>>| decode_balance(&v.ok_or("missing account")?);
        let (mut tx, from, to) = if self.pessimistic {
            let mut tx = self.db.tx().pessimistic().begin()?;
            // Locks in key order: two transfers never wait for each other in a cycle.
            let in_order = t.from <= t.to;
            let (first, second) = if in_order {
                (t.from, t.to)
            } else {
                (t.to, t.from)
            };
            let mut lock = |k: &[u8]| match tx.get_for_update("accounts", k) {
                Ok(v) => Ok(Some(v)),
                Err(Error::Deadlock(_) | Error::LockTimeout { .. }) => Ok(None),
                Err(e) => Err(e),
            };
            let (Some(a), Some(b)) = (lock(first)?, lock(second)?) else {
                return Ok(Outcome::Conflict);
            };
            let (a, b) = (balance(a)?, balance(b)?);
            let (from, to) = if in_order { (a, b) } else { (b, a) };
            (tx, from, to)
        } else {
            let tx = self.db.begin()?;
            let from = balance(tx.get("accounts", t.from)?)?;
            let to = balance(tx.get("accounts", t.to)?)?;
            (tx, from, to)
        };
        tx.put("accounts", t.from, (from - t.amount).to_le_bytes())?;
        tx.put("accounts", t.to, (to + t.amount).to_le_bytes())?;
        tx.put("ledger", t.ledger_key, t.ledger_value)?;
        match tx.commit() {
            Ok(_) => Ok(Outcome::Committed),
            Err(Error::Conflict(_) | Error::Deadlock(_) | Error::LockTimeout { .. }) => {
                Ok(Outcome::Conflict)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn get(&self, table: &str, key: &[u8]) -> Res<Option<Vec<u8>>> {
        let tx = self.db.begin_read()?;
        Ok(tx.get(table, key)?)
    }

    fn scan(&self, table: &str, start: &[u8], limit: usize) -> Res<usize> {
        let tx = self.db.begin_read()?;
        let mut rows = tx.cursor(table, start..)?;
        let mut n = 0;
        while n < limit {
            let Some(row) = rows.next_row()? else { break };
            std::hint::black_box(row);
            n += 1;
        }
        Ok(n)
    }

    fn for_each(&self, table: &str, f: &mut RowFn<'_>) -> Res<()> {
        let tx = self.db.begin_read()?;
        for row in tx.scan_all(table)? {
            let (k, v) = row?;
            f(&k, &v)?;
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.db.close()?;
        Ok(())
    }
}
