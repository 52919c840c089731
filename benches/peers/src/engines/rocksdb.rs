//! RocksDB through the `rocksdb` crate, twice: `OptimisticTransactionDB` ("rocksdb-opt") and
//! the pessimistic, lock-based `TransactionDB` ("rocksdb-pess"). One column family per table,
//! all sharing one LRU block cache of `crate::CACHE_BYTES`; no compression (the crate is built
//! without compression libraries). The WAL is on and every write (`put`'s atomic write batch, a
//! transfer's commit) uses `WriteOptions::set_sync(true)`: the WAL is synced before it returns.
//!
//! A transfer reads both balances with `get_for_update_cf` (exclusive), in key order. In the
//! optimistic DB that registers the keys for validation at commit, which fails with `Busy` (a
//! key was written since it was read) or `TryAgain` (the memtable history is too short to tell):
//! both are `Conflict`. In the pessimistic DB it locks the keys (key order means transfers never
//! deadlock; deadlock detection is on anyway); a lock timeout (`TimedOut`), `Busy` (deadlock) or
//! `TryAgain` is `Conflict`, and the transaction is rolled back.
//!
//! Reads (`get`, `scan`, `for_each`) go to the DB directly, without a snapshot, like the other
//! engines' read transactions over committed data.
//!
//! Both DB types are used in `SingleThreaded` mode, named explicitly: column families are all
//! created at open, and both `DBCommon<SingleThreaded, _>` and `TransactionDB<SingleThreaded>`
//! are `Send + Sync`, so the `multi-threaded-cf` feature is not needed.

use crate::engine::{decode_balance, Engine, Outcome, Res, RowFn, Transfer};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBAccess, DBCompressionType,
    DBPinnableSlice, DBRawIteratorWithThreadMode, Error, ErrorKind, OptimisticTransactionDB,
    OptimisticTransactionOptions, Options, SingleThreaded, Transaction, TransactionDB,
    TransactionDBOptions, TransactionOptions, WriteBatchWithTransaction, WriteOptions,
};
use std::path::Path;

/// The optimistic engine, "rocksdb-opt".
pub type RocksOptEngine = RocksEngine<OptimisticTransactionDB<SingleThreaded>>;
/// The pessimistic engine, "rocksdb-pess".
pub type RocksPessEngine = RocksEngine<TransactionDB<SingleThreaded>>;

/// What differs between the two transactional DB types (the same calls are inherent methods
/// on unrelated types in the crate, so this trait just forwards to them).
pub trait TxDb: DBAccess + Send + Sync + Sized {
    /// Per-transaction options, built once at open.
    type TxOpts: Send + Sync;
    /// Subdirectory of the engine directory.
    const DIR: &'static str;
    fn open_db(
        opts: &Options,
        path: &Path,
        cfs: Vec<ColumnFamilyDescriptor>,
    ) -> Result<Self, Error>;
    fn tx_opts() -> Self::TxOpts;
    fn cf(&self, name: &str) -> Option<&ColumnFamily>;
    fn begin<'a>(&'a self, w: &WriteOptions, o: &Self::TxOpts) -> Transaction<'a, Self>;
    fn write_batch(
        &self,
        b: WriteBatchWithTransaction<true>,
        w: &WriteOptions,
    ) -> Result<(), Error>;
    fn get_pinned<'a>(
        &'a self,
        cf: &ColumnFamily,
        key: &[u8],
    ) -> Result<Option<DBPinnableSlice<'a>>, Error>;
    fn raw_iter<'a>(&'a self, cf: &ColumnFamily) -> DBRawIteratorWithThreadMode<'a, Self>;
    fn sync_wal(&self) -> Result<(), Error>;
}

/// Forwards the methods both DB types have under the same names and signatures.
macro_rules! forward_common {
    () => {
        fn cf(&self, name: &str) -> Option<&ColumnFamily> {
            self.cf_handle(name)
        }
        fn get_pinned<'a>(
            &'a self,
            cf: &ColumnFamily,
            key: &[u8],
        ) -> Result<Option<DBPinnableSlice<'a>>, Error> {
            self.get_pinned_cf(cf, key)
        }
        fn raw_iter<'a>(&'a self, cf: &ColumnFamily) -> DBRawIteratorWithThreadMode<'a, Self> {
            self.raw_iterator_cf(cf)
        }
        fn write_batch(
            &self,
            b: WriteBatchWithTransaction<true>,
            w: &WriteOptions,
        ) -> Result<(), Error> {
            self.write_opt(b, w)
        }
        fn sync_wal(&self) -> Result<(), Error> {
            self.flush_wal(true)
        }
    };
}

impl TxDb for OptimisticTransactionDB<SingleThreaded> {
    type TxOpts = OptimisticTransactionOptions;
    const DIR: &'static str = "rocksdb-opt";
    fn open_db(
        opts: &Options,
        path: &Path,
        cfs: Vec<ColumnFamilyDescriptor>,
    ) -> Result<Self, Error> {
        Self::open_cf_descriptors(opts, path, cfs)
    }
    fn tx_opts() -> Self::TxOpts {
        OptimisticTransactionOptions::default()
    }
    fn begin<'a>(&'a self, w: &WriteOptions, o: &Self::TxOpts) -> Transaction<'a, Self> {
        self.transaction_opt(w, o)
    }
    forward_common!();
}

impl TxDb for TransactionDB<SingleThreaded> {
    type TxOpts = TransactionOptions;
    const DIR: &'static str = "rocksdb-pess";
    fn open_db(
        opts: &Options,
        path: &Path,
        cfs: Vec<ColumnFamilyDescriptor>,
    ) -> Result<Self, Error> {
        // Default lock timeouts (1 s for transactions and for `put`'s batch writes).
        Self::open_cf_descriptors(opts, &TransactionDBOptions::default(), path, cfs)
    }
    fn tx_opts() -> Self::TxOpts {
        let mut o = TransactionOptions::default();
        o.set_deadlock_detect(true);
        o
    }
    fn begin<'a>(&'a self, w: &WriteOptions, o: &Self::TxOpts) -> Transaction<'a, Self> {
        self.transaction_opt(w, o)
    }
    forward_common!();
}

pub struct RocksEngine<D: TxDb> {
    db: D,
    write: WriteOptions,
    tx_opts: D::TxOpts,
}

/// Errors of the concurrency control: optimistic validation failures (`Busy`, `TryAgain`),
/// pessimistic lock timeouts (`TimedOut`) and deadlocks (`Busy`).
fn is_conflict(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Busy | ErrorKind::TryAgain | ErrorKind::TimedOut
    )
}

impl<D: TxDb> RocksEngine<D> {
    pub fn open(dir: &Path, tables: &[&str]) -> Res<Self> {
        let cache = Cache::new_lru_cache(crate::CACHE_BYTES);
        let cf_opts = || {
            let mut block = BlockBasedOptions::default();
            block.set_block_cache(&cache);
            let mut o = Options::default();
            o.set_block_based_table_factory(&block);
            o.set_compression_type(DBCompressionType::None);
            o
        };
        let mut opts = cf_opts(); // also the default column family's options
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = tables
            .iter()
            .map(|t| ColumnFamilyDescriptor::new(*t, cf_opts()))
            .collect();
        let db = D::open_db(&opts, &dir.join(D::DIR), cfs)?;
        let mut write = WriteOptions::default();
        write.set_sync(true);
        write.disable_wal(false);
        Ok(RocksEngine {
            db,
            write,
            tx_opts: D::tx_opts(),
        })
    }

    fn cf(&self, table: &str) -> Res<&ColumnFamily> {
        self.db
            .cf(table)
            .ok_or_else(|| format!("no table {table:?}").into())
    }
}

impl<D: TxDb> Engine for RocksEngine<D> {
    fn put(&self, table: &str, pairs: &[(&[u8], &[u8])]) -> Res<()> {
        // One atomic write batch (in the pessimistic DB it takes the keys' locks), WAL synced.
        let cf = self.cf(table)?;
        let mut batch = WriteBatchWithTransaction::<true>::default();
        for (k, v) in pairs {
            batch.put_cf(cf, k, v);
        }
        self.db.write_batch(batch, &self.write)?;
        Ok(())
    }

    fn transfer(&self, t: &Transfer<'_>) -> Res<Outcome> {
        let (acc, ledger) = (self.cf("accounts")?, self.cf("ledger")?);
        let tx = self.db.begin(&self.write, &self.tx_opts);
        // A conflict error rolls back and ends the transfer as `Conflict`; any other error is
        // returned (dropping the transaction rolls it back).
        macro_rules! step {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) if is_conflict(&e) => {
                        tx.rollback()?;
                        return Ok(Outcome::Conflict);
                    }
                    Err(e) => return Err(e.into()),
                }
            };
        }
        // Lock (pessimistic) / register for validation (optimistic) in key order.
        let ordered = t.from <= t.to;
        let (first, second) = if ordered {
            (t.from, t.to)
        } else {
            (t.to, t.from)
        };
        let v1 = step!(tx.get_for_update_cf(acc, first, true));
        let v2 = step!(tx.get_for_update_cf(acc, second, true));
        let (from, to) = if ordered { (v1, v2) } else { (v2, v1) };
        let from = decode_balance(&from.ok_or("missing account")?)?;
        let to = decode_balance(&to.ok_or("missing account")?)?;
        step!(tx.put_cf(acc, t.from, (from - t.amount).to_le_bytes()));
        step!(tx.put_cf(acc, t.to, (to + t.amount).to_le_bytes()));
        step!(tx.put_cf(ledger, t.ledger_key, t.ledger_value));
        match tx.commit() {
            Ok(()) => Ok(Outcome::Committed),
            // A failed commit has consumed (and dropped, i.e. rolled back) the transaction.
            Err(e) if is_conflict(&e) => Ok(Outcome::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    fn get(&self, table: &str, key: &[u8]) -> Res<Option<Vec<u8>>> {
        Ok(self
            .db
            .get_pinned(self.cf(table)?, key)?
            .map(|v| v.to_vec()))
    }

    fn scan(&self, table: &str, start: &[u8], limit: usize) -> Res<usize> {
        let mut it = self.db.raw_iter(self.cf(table)?);
        it.seek(start);
        let mut n = 0;
        while n < limit {
            let Some((k, v)) = it.item() else { break };
            std::hint::black_box((k, v));
            n += 1;
            it.next();
        }
        it.status()?;
        Ok(n)
    }

    fn for_each(&self, table: &str, f: &mut RowFn<'_>) -> Res<()> {
        let mut it = self.db.raw_iter(self.cf(table)?);
        it.seek_to_first();
        while let Some((k, v)) = it.item() {
            f(k, v)?;
            it.next();
        }
        it.status()?;
        Ok(())
    }

    fn close(self: Box<Self>) -> Res<()> {
        // Every commit already synced the WAL; closing needs no flush for durability.
        self.db.sync_wal()?;
        drop(self);
        Ok(())
    }
}
