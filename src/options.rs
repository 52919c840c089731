//! Options and limits. Every limit is a named constant with the reason for its value.

use crate::tx::RetryPolicy;
use std::sync::Arc;
use std::time::Duration;
use vellum_fs::{FileSystem, RealFs};

/// Longest key (64 KiB): keys are compared on every index step and copied into every version;
/// larger identifiers belong in values.
pub const KEY_SIZE_MAX: usize = 64 << 10;
/// Longest value (64 MiB): a value is held in memory whole while it is read or written.
pub const VALUE_SIZE_MAX: usize = 64 << 20;
/// Most bytes one transaction may write (512 MiB), counted as keys plus values plus
/// [`CHANGE_OVERHEAD_BYTES`] per change: its commit record must fit one write-ahead-log record
/// (at most 1 GiB) and the write set lives in memory.
pub const TRANSACTION_BYTES_MAX: usize = 512 << 20;
/// Bytes a change adds to a commit record besides its key and value (table, kind, lengths),
/// counted toward [`TRANSACTION_BYTES_MAX`].
pub const CHANGE_OVERHEAD_BYTES: usize = 13;

/// Longest table name in bytes of UTF-8.
pub const TABLE_NAME_MAX: usize = 255;

/// When a commit counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `commit` returns after the commit record is on stable storage (`fdatasync`). Concurrent
    /// commits share one write and one sync (group commit). The default.
    Immediate,
    /// `commit` returns after the record is handed to the operating system; a background
    /// thread syncs at least every `max_delay`. A process crash loses nothing; a power cut can
    /// lose the commits of the last `max_delay`.
    Buffered {
        /// Longest time a commit stays unsynced.
        max_delay: Duration,
    },
    /// `commit` returns after the record is handed to the operating system; syncs happen only
    /// at log rotation, open, close and before each checkpoint. For tests and bulk loads.
    None,
}

/// How to open a database.
#[derive(Debug, Clone)]
pub struct Options {
    /// When commits are durable. Default: [`Durability::Immediate`].
    pub durability: Durability,
    /// Create the database if the directory holds none. Default: true.
    pub create_if_missing: bool,
    /// Preallocated size of each write-ahead-log segment. Default: 64 MiB.
    pub wal_segment_bytes: u64,
    /// A checkpoint is taken in the background once this many bytes were logged since the last
    /// one (counting the log replayed at open), so reopening replays about this much log at
    /// most. Default: 256 MiB.
    pub checkpoint_after_wal_bytes: u64,
    /// The file system all database files go through. Default: the operating system's.
    /// Tests pass a [`crate::fs::SimFs`] to simulate crashes.
    pub file_system: Arc<dyn FileSystem>,
    /// How long a pessimistic transaction waits for a key lock before
    /// [`crate::Error::LockTimeout`]. Default: 1 s.
    pub lock_wait_timeout: Duration,
    /// How [`crate::Db::run`] retries. Default: [`RetryPolicy::default`].
    pub retry: RetryPolicy,
    /// Bytes of recent commits kept in memory before they are flushed to a segment file (a
    /// checkpoint is taken once this much accumulated; commits stall, counted in
    /// [`crate::Stats`], while twice as much waits). Default: 64 MiB.
    pub memtable_bytes: u64,
    /// Bytes of segment blocks cached in memory. Default: 32 MiB.
    pub block_cache_bytes: u64,
    /// Keep every version of the last this-many commits readable through
    /// [`crate::Db::read_at`], even when no snapshot pins them. Default: 0.
    pub retain_versions: u64,
    /// Keep every version committed within this window readable through
    /// [`crate::Db::read_at`]. Versions committed before the database was opened count as
    /// committed at the open (they are kept at least this long after it). Default: zero.
    pub retain_versions_for: Duration,
    /// Merge segment files on a background thread as they accumulate. Turn off only to make
    /// file operations deterministic (crash tests); [`crate::Db::compact`] still works.
    /// Default: true.
    pub background_compaction: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Immediate,
            create_if_missing: true,
            wal_segment_bytes: 64 << 20,
            checkpoint_after_wal_bytes: 256 << 20,
            file_system: Arc::new(RealFs),
            lock_wait_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            memtable_bytes: 64 << 20,
            block_cache_bytes: 32 << 20,
            retain_versions: 0,
            retain_versions_for: Duration::ZERO,
            background_compaction: true,
        }
    }
}

impl Options {
    /// Sets [`Options::durability`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets [`Options::create_if_missing`].
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Sets [`Options::wal_segment_bytes`].
    pub fn wal_segment_bytes(mut self, bytes: u64) -> Self {
        self.wal_segment_bytes = bytes;
        self
    }

    /// Sets [`Options::checkpoint_after_wal_bytes`].
    pub fn checkpoint_after_wal_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_after_wal_bytes = bytes;
        self
    }

    /// Sets [`Options::lock_wait_timeout`].
    pub fn lock_wait_timeout(mut self, timeout: Duration) -> Self {
        self.lock_wait_timeout = timeout;
        self
    }

    /// Sets [`Options::retry`].
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sets [`Options::memtable_bytes`].
    pub fn memtable_bytes(mut self, bytes: u64) -> Self {
        self.memtable_bytes = bytes;
        self
    }

    /// Sets [`Options::block_cache_bytes`].
    pub fn block_cache_bytes(mut self, bytes: u64) -> Self {
        self.block_cache_bytes = bytes;
        self
    }

    /// Sets [`Options::retain_versions`].
    pub fn retain_versions(mut self, count: u64) -> Self {
        self.retain_versions = count;
        self
    }

    /// Sets [`Options::retain_versions_for`].
    pub fn retain_versions_for(mut self, window: Duration) -> Self {
        self.retain_versions_for = window;
        self
    }

    /// Sets [`Options::background_compaction`].
    pub fn background_compaction(mut self, on: bool) -> Self {
        self.background_compaction = on;
        self
    }

    /// Sets [`Options::file_system`].
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.file_system = fs;
        self
    }
}
