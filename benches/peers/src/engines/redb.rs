//! redb 4: one `TableDefinition<&[u8], &[u8]>` per table, `Durability::Immediate` (its
//! default: commit returns after fsync). Single writer: `begin_write` waits for the previous
//! writer, so transfers never abort.

use crate::engine::{decode_balance, Engine, Outcome, Res, RowFn, Transfer};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

pub struct RedbEngine {
    db: Database,
}

fn def(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

impl RedbEngine {
    pub fn open(dir: &Path, tables: &[&str]) -> Res<Self> {
        let db = Database::builder()
            .set_cache_size(crate::CACHE_BYTES)
            .create(dir.join("redb.db"))?;
        let mut tx = db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        for t in tables {
            tx.open_table(def(t))?;
        }
        tx.commit()?;
        Ok(RedbEngine { db })
    }
}

impl Engine for RedbEngine {
    fn put(&self, table: &str, pairs: &[(&[u8], &[u8])]) -> Res<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut t = tx.open_table(def(table))?;
            for (k, v) in pairs {
                t.insert(*k, *v)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn transfer(&self, tr: &Transfer<'_>) -> Res<Outcome> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        {
            let mut acc = tx.open_table(def("accounts"))?;
            let from = decode_balance(acc.get(tr.from)?.ok_or("missing account")?.value())?;
            let to = decode_balance(acc.get(tr.to)?.ok_or("missing account")?.value())?;
            acc.insert(tr.from, &(from - tr.amount).to_le_bytes()[..])?;
            acc.insert(tr.to, &(to + tr.amount).to_le_bytes()[..])?;
            let mut ledger = tx.open_table(def("ledger"))?;
            ledger.insert(tr.ledger_key, tr.ledger_value)?;
        }
        tx.commit()?;
        Ok(Outcome::Committed)
    }

    fn get(&self, table: &str, key: &[u8]) -> Res<Option<Vec<u8>>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(def(table))?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    fn scan(&self, table: &str, start: &[u8], limit: usize) -> Res<usize> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(def(table))?;
        let mut n = 0;
        for row in t.range(start..)?.take(limit) {
            let (k, v) = row?;
            std::hint::black_box((k.value(), v.value()));
            n += 1;
        }
        Ok(n)
    }

    fn for_each(&self, table: &str, f: &mut RowFn<'_>) -> Res<()> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(def(table))?;
        for row in t.iter()? {
            let (k, v) = row?;
            f(k.value(), v.value())?;
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> Res<()> {
        drop(self.db);
        Ok(())
    }
}
