//! LMDB through heed 0.23: one named database per table, default environment flags (no
//! `NO_SYNC`/`NO_META_SYNC`: commit returns after fsync of data and meta page). Single writer:
//! `write_txn` waits on LMDB's writer mutex, so transfers never abort.

use crate::engine::{decode_balance, table_index, Engine, Outcome, Res, RowFn, Transfer};
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions};
use std::path::Path;

/// heed 0.23 ties a `Database` handle to a borrow of its `Env` (`Database<'env, ..>`), which a
/// struct owning both cannot express. The handle is only a DBI number plus a phantom lifetime,
/// so it is stored as `'static` and the engine keeps the invariant the lifetime guarded: the
/// handles are used only through `&self`, while `env` is alive (and `dbs` is dropped first).
type Db = Database<'static, Bytes, Bytes>;

pub struct LmdbEngine {
    dbs: Vec<Db>,
    names: Vec<String>,
    env: Env,
}

impl LmdbEngine {
    pub fn open(dir: &Path, tables: &[&str]) -> Res<Self> {
        let path = dir.join("lmdb");
        std::fs::create_dir_all(&path)?;
        // SAFETY: the environment is opened once per directory by this process, and the map is
        // never truncated or written to by anything else while open.
        let env = unsafe {
            EnvOpenOptions::new()
                .map_size(crate::LMDB_MAP_BYTES)
                .max_dbs(16)
                .max_readers(256)
                .open(&path)?
        };
        let mut dbs: Vec<Db> = Vec::new();
        for t in tables {
            let wtxn = env.write_txn()?;
            let db = env
                .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                    let db = opener.create_database::<Bytes, Bytes>(wtxn, Some(t))?;
                    Ok(CommitOrAbort::<_, ()>::Commit(db))
                })?
                .unwrap_commit();
            // SAFETY: only the phantom lifetime changes (see `Db`); `env` outlives every use.
            dbs.push(unsafe { std::mem::transmute::<Database<'_, Bytes, Bytes>, Db>(db) });
        }
        Ok(LmdbEngine {
            env,
            names: tables.iter().map(|s| s.to_string()).collect(),
            dbs,
        })
    }

    fn db(&self, table: &str) -> Res<Db> {
        let names: Vec<&str> = self.names.iter().map(|s| s.as_str()).collect();
        Ok(self.dbs[table_index(&names, table)?])
    }
}

impl Engine for LmdbEngine {
    fn put(&self, table: &str, pairs: &[(&[u8], &[u8])]) -> Res<()> {
        let db = self.db(table)?;
        let mut wtxn = self.env.write_txn()?;
        for (k, v) in pairs {
            db.put(&mut wtxn, k, v)?;
        }
        wtxn.commit()?;
        Ok(())
    }

    fn transfer(&self, t: &Transfer<'_>) -> Res<Outcome> {
        let acc = self.db("accounts")?;
        let ledger = self.db("ledger")?;
        let mut wtxn = self.env.write_txn()?;
        let from = decode_balance(acc.get(&wtxn, t.from)?.ok_or("missing account")?)?;
        let to = decode_balance(acc.get(&wtxn, t.to)?.ok_or("missing account")?)?;
        acc.put(&mut wtxn, t.from, &(from - t.amount).to_le_bytes())?;
        acc.put(&mut wtxn, t.to, &(to + t.amount).to_le_bytes())?;
        ledger.put(&mut wtxn, t.ledger_key, t.ledger_value)?;
        wtxn.commit()?;
        Ok(Outcome::Committed)
    }

    fn get(&self, table: &str, key: &[u8]) -> Res<Option<Vec<u8>>> {
        let db = self.db(table)?;
        let rtxn = self.env.read_txn()?;
        Ok(db.get(&rtxn, key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, table: &str, start: &[u8], limit: usize) -> Res<usize> {
        let db = self.db(table)?;
        let rtxn = self.env.read_txn()?;
        let mut n = 0;
        let range = (std::ops::Bound::Included(start), std::ops::Bound::Unbounded);
        for row in db.range(&rtxn, &range)?.take(limit) {
            let (k, v) = row?;
            std::hint::black_box((k, v));
            n += 1;
        }
        Ok(n)
    }

    fn for_each(&self, table: &str, f: &mut RowFn<'_>) -> Res<()> {
        let db = self.db(table)?;
        let rtxn = self.env.read_txn()?;
        for row in db.iter(&rtxn)? {
            let (k, v) = row?;
            f(k, v)?;
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.env.force_sync()?;
        let LmdbEngine { dbs, names: _, env } = *self;
        drop(dbs);
        let done = env.prepare_for_closing();
        done.wait();
        Ok(())
    }
}
