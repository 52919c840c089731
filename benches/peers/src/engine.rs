//! The one trait every engine sits behind, and the engine registry.
//!
//! Each engine opens a directory with a fixed list of tables (a table is whatever the engine
//! calls a separate namespace: a redb table, a fjall keyspace, a sled tree, an LMDB named
//! database, a RocksDB column family), with its strongest durability: every write transaction
//! is on stable storage when its commit returns.

use std::path::Path;

/// Errors from any engine, boxed.
/// A callback given each row `(key, value)` of a table.
pub type RowFn<'a> = dyn FnMut(&[u8], &[u8]) -> Res<()> + 'a;

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How a read-modify-write transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed durably.
    Committed,
    /// Aborted by the engine's concurrency control (optimistic conflict); nothing was written.
    /// The caller counts it and may retry with a new transaction.
    Conflict,
}

/// One bank transfer: read both balances of `accounts`, write both, insert one `ledger` row,
/// all in one durable transaction.
pub struct Transfer<'a> {
    /// Key of the debited account in `accounts`.
    pub from: &'a [u8],
    /// Key of the credited account in `accounts`.
    pub to: &'a [u8],
    /// Amount moved.
    pub amount: i64,
    /// Key of the new row in `ledger` (unique per transfer attempt that commits).
    pub ledger_key: &'a [u8],
    /// Value of the new ledger row.
    pub ledger_value: &'a [u8],
}

/// Balances are little-endian i64 values.
pub fn decode_balance(v: &[u8]) -> Res<i64> {
    let bytes: [u8; 8] = v
        .try_into()
        .map_err(|_| format!("balance of {} bytes, expected 8", v.len()))?;
    Ok(i64::from_le_bytes(bytes))
}

/// The operations the workloads need. Implementations must be usable from many threads at
/// once; single-writer engines serialize writers internally (a writer waits, never aborts).
pub trait Engine: Send + Sync {
    /// Puts every pair into `table` in one durable transaction.
    fn put(&self, table: &str, pairs: &[(&[u8], &[u8])]) -> Res<()>;
    /// Runs one transfer as one durable transaction.
    fn transfer(&self, t: &Transfer<'_>) -> Res<Outcome>;
    /// Point read in its own read transaction / snapshot.
    fn get(&self, table: &str, key: &[u8]) -> Res<Option<Vec<u8>>>;
    /// Reads up to `limit` rows with keys >= `start`, in key order, in one read transaction;
    /// returns the number of rows read.
    fn scan(&self, table: &str, start: &[u8], limit: usize) -> Res<usize>;
    /// Visits every row of `table` in key order (used by correctness checks).
    fn for_each(&self, table: &str, f: &mut RowFn<'_>) -> Res<()>;
    /// Conflicts the engine retried internally during the last `transfer` on this thread
    /// (sled retries inside its transaction closure); 0 for engines that report conflicts.
    fn take_internal_retries(&self) -> u64 {
        0
    }
    /// Closes the store, flushing whatever the engine flushes on close.
    fn close(self: Box<Self>) -> Res<()>;
}

/// Every engine the harness knows, in report order.
pub const ALL: &[&str] = &[
    "vellum",
    "vellum-lock",
    "redb",
    "fjall",
    "sled",
    "lmdb",
    #[cfg(feature = "rocksdb")]
    "rocksdb-opt",
    #[cfg(feature = "rocksdb")]
    "rocksdb-pess",
];

/// Opens (creating if missing) engine `name` in `dir` with `tables`.
pub fn open(name: &str, dir: &Path, tables: &[&str]) -> Res<Box<dyn Engine>> {
    std::fs::create_dir_all(dir)?;
    Ok(match name {
        "vellum" => Box::new(crate::engines::vellum::VellumEngine::open(
            dir, tables, false,
        )?),
        "vellum-lock" => Box::new(crate::engines::vellum::VellumEngine::open(
            dir, tables, true,
        )?),
        "redb" => Box::new(crate::engines::redb::RedbEngine::open(dir, tables)?),
        "fjall" => Box::new(crate::engines::fjall::FjallEngine::open(dir, tables)?),
        "sled" => Box::new(crate::engines::sled::SledEngine::open(dir, tables)?),
        "lmdb" => Box::new(crate::engines::lmdb::LmdbEngine::open(dir, tables)?),
        #[cfg(feature = "rocksdb")]
        "rocksdb-opt" => Box::new(crate::engines::rocksdb::RocksOptEngine::open(dir, tables)?),
        #[cfg(feature = "rocksdb")]
        "rocksdb-pess" => Box::new(crate::engines::rocksdb::RocksPessEngine::open(dir, tables)?),
        other => return Err(format!("unknown engine {other:?} (known: {})", ALL.join(",")).into()),
    })
}

/// Position of `table` in `tables`, as an error if absent.
pub fn table_index(tables: &[&str], table: &str) -> Res<usize> {
    tables
        .iter()
        .position(|t| *t == table)
        .ok_or_else(|| format!("no table {table:?}").into())
}
