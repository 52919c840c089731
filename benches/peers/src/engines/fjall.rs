//! fjall 3, `OptimisticTxDatabase`: one keyspace per table; every write transaction commits with
//! `PersistMode::SyncAll` (the journal is fsynced before commit returns). Conflicts (its
//! serializable snapshot isolation) come back as `Conflict`.

use crate::engine::{decode_balance, table_index, Engine, Outcome, Res, RowFn, Transfer};
use fjall::{
    KeyspaceCreateOptions, OptimisticTxDatabase, OptimisticTxKeyspace, PersistMode, Readable,
};
use std::path::Path;

pub struct FjallEngine {
    db: OptimisticTxDatabase,
    names: Vec<String>,
    keyspaces: Vec<OptimisticTxKeyspace>,
}

const PERSIST: PersistMode = PersistMode::SyncAll;

impl FjallEngine {
    pub fn open(dir: &Path, tables: &[&str]) -> Res<Self> {
        let db = OptimisticTxDatabase::builder(dir.join("fjall"))
            .cache_size(crate::CACHE_BYTES as u64)
            .open()?;
        let mut keyspaces = Vec::new();
        for t in tables {
            keyspaces.push(db.keyspace(t, KeyspaceCreateOptions::default)?);
        }
        Ok(FjallEngine {
            db,
            names: tables.iter().map(|s| s.to_string()).collect(),
            keyspaces,
        })
    }

    fn ks(&self, table: &str) -> Res<&OptimisticTxKeyspace> {
        let names: Vec<&str> = self.names.iter().map(|s| s.as_str()).collect();
        Ok(&self.keyspaces[table_index(&names, table)?])
    }
}

impl Engine for FjallEngine {
    fn put(&self, table: &str, pairs: &[(&[u8], &[u8])]) -> Res<()> {
        let ks = self.ks(table)?.inner();
        let mut tx = self.db.write_tx()?.durability(Some(PERSIST));
        for (k, v) in pairs {
            tx.insert(ks, *k, *v);
        }
        tx.commit()?
            .map_err(|c| format!("fjall conflict on a disjoint put: {c}"))?;
        Ok(())
    }

    fn transfer(&self, t: &Transfer<'_>) -> Res<Outcome> {
        let acc = self.ks("accounts")?.inner();
        let ledger = self.ks("ledger")?.inner();
        let mut tx = self.db.write_tx()?.durability(Some(PERSIST));
        let from = decode_balance(&tx.get(acc, t.from)?.ok_or("missing account")?)?;
        let to = decode_balance(&tx.get(acc, t.to)?.ok_or("missing account")?)?;
        tx.insert(acc, t.from, &(from - t.amount).to_le_bytes()[..]);
        tx.insert(acc, t.to, &(to + t.amount).to_le_bytes()[..]);
        tx.insert(ledger, t.ledger_key, t.ledger_value);
        Ok(match tx.commit()? {
            Ok(()) => Outcome::Committed,
            Err(_conflict) => Outcome::Conflict,
        })
    }

    fn get(&self, table: &str, key: &[u8]) -> Res<Option<Vec<u8>>> {
        let snap = self.db.read_tx();
        Ok(snap.get(self.ks(table)?.inner(), key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, table: &str, start: &[u8], limit: usize) -> Res<usize> {
        let snap = self.db.read_tx();
        let mut n = 0;
        for g in snap.range(self.ks(table)?.inner(), start..).take(limit) {
            let (k, v) = g.into_inner()?;
            std::hint::black_box((k, v));
            n += 1;
        }
        Ok(n)
    }

    fn for_each(&self, table: &str, f: &mut RowFn<'_>) -> Res<()> {
        let snap = self.db.read_tx();
        for g in snap.iter(self.ks(table)?.inner()) {
            let (k, v) = g.into_inner()?;
            f(&k, &v)?;
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}
