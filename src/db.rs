//! [`Db`]: opening, closing, and the state every transaction shares.
//!
//! Directory layout: `VELLUM` (identity), `LOCK` (held while open), `wal/` (write-ahead log
//! segments), `data/` (storage: `manifest` and segment files, see `docs/format/manifest.md`).
//! Opening locks the directory, opens storage (the manifest names the version its segments
//! cover and the log position of it), replays the log after it (see [`crate::recovery`]), then
//! starts the checkpoint worker; storage starts its compaction thread.

use crate::catalog::{self, CATALOG};
use crate::catalog_cache::CatalogCache;
use crate::error::{io_err, Error, Result};
use crate::identity;
use crate::locks::{LockManager, TxId};
use crate::options::{Durability, Options};
use crate::prepared::{PreparedInfo, TwoPhase};
use crate::retention::Retention;
use crate::snapshots::Snapshots;
use crate::tx::{Transaction, TxBuilder};
use crate::workers::Worker;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vellum_fs::{DirLock, FileSystem};
use vellum_storage::{Store, StoreOptions, StoreStats, TableId, VerifyReport, Version};
use vellum_wal::{Lsn, SyncPolicy, Wal, WalOptions, WalStats};

/// State guarded by the commit lock: validation, version assignment, log enqueue and apply to
/// storage happen under it, so log order, version order and apply order are one order.
#[derive(Debug)]
pub(crate) struct CommitState {
    pub next_version: Version,
}

/// Counters since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Transactions committed with at least one write.
    pub commits: u64,
    /// Commits refused with [`Error::Conflict`].
    pub conflicts: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Transactions currently open (each pins its snapshot).
    pub live_transactions: usize,
    /// Write-ahead-log counters (records, write batches, syncs, bytes).
    pub wal: WalStats,
    /// Storage counters: flushes, compactions, write stalls, segments, memory.
    pub storage: StoreStats,
}

#[derive(Debug)]
pub(crate) struct DbInner {
    pub path: PathBuf,
    pub opts: Options,
    pub store: Store,
    pub wal: Wal,
    pub commit: Mutex<CommitState>,
    pub snapshots: Snapshots,
    pub retention: Retention,
    pub catalog_cache: CatalogCache,
    pub next_table_id: AtomicU32,
    pub commits: AtomicU64,
    pub conflicts: AtomicU64,
    pub checkpoints: AtomicU64,
    /// Log bytes (see [`DbInner::log_bytes`]) when the last checkpoint started.
    pub wal_bytes_at_checkpoint: AtomicU64,
    /// Bytes of log replayed at open: they count toward the next checkpoint.
    pub replayed_log_bytes: u64,

    /// Serialises checkpoints.
    pub checkpoint_lock: Mutex<()>,
    pub worker: Worker,
    pub locks: LockManager,
    pub two_phase: Mutex<TwoPhase>,
    next_tx: AtomicU64,
    /// Distinguishes this database from others in the process, for [`DbInner::next_tx_id`].
    uid: u64,
    /// Labels of recent commits, for conflict reports: (version, label), oldest first.
    recent_labels: Mutex<VecDeque<(Version, String)>>,
    _lock: Box<dyn DirLock>,
}

/// How many recent commit labels are kept for conflict reports.
const RECENT_LABELS_MAX: usize = 4096;

/// An open database. Cheap to clone; all clones share one database. Dropping the last clone
/// (and every transaction) closes it: the log is synced and marked closed.
#[derive(Debug, Clone)]
pub struct Db {
    // Field order matters: the guard drops first, so the checkpoint worker is stopped and
    // joined (releasing any reference it holds) before `inner` can drop, which makes closing
    // (and releasing the directory lock) complete when the last handle is dropped.
    guard: Arc<WorkerGuard>,
    pub(crate) inner: Arc<DbInner>,
}

/// Stops the checkpoint worker when the last [`Db`] handle goes away.
#[derive(Debug)]
struct WorkerGuard {
    db: Arc<DbInner>,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        self.db.worker.stop();
    }
}

impl Db {
    /// Opens (creating if missing) the database in directory `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Self::open_with(path, Options::default())
    }

    /// Opens the database in directory `path`.
    pub fn open_with(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        let path = path.as_ref().to_path_buf();
        let fs = opts.file_system.clone();
        let existed = prepare_dir(fs.as_ref(), &path, opts.create_if_missing)?;
        let lock = fs.lock_dir(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::Locked(path.clone())
            } else {
                Error::Io {
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        let store_opts = StoreOptions {
            memtable_bytes: opts.memtable_bytes,
            block_cache_bytes: opts.block_cache_bytes,
            background_compaction: opts.background_compaction,
            ..StoreOptions::default()
        };
        let (store, checkpoint) = Store::open_with(fs.clone(), &path.join("data"), store_opts)?;
        let history_floor = checkpoint
            .as_ref()
            .map_or(Version::ZERO, |c| c.history_floor);
        let mut two_phase = TwoPhase::default();
        let (ckpt_version, ckpt_lsn) = match &checkpoint {
            Some(info) => {
                let (lsn, prepared) = crate::recovery::decode_meta(&info.path, &info.meta)?;
                for p in prepared {
                    two_phase.insert(p);
                }
                (info.version, lsn)
            }
            None => (Version::ZERO, Lsn(0)),
        };
        let wal_opts = WalOptions {
            segment_size: opts.wal_segment_bytes,
            sync: match opts.durability {
                Durability::Immediate => SyncPolicy::Immediate,
                Durability::Buffered { max_delay } => SyncPolicy::Buffered(max_delay),
                Durability::None => SyncPolicy::None,
            },
            ..WalOptions::default()
        };
        let (wal, records) = Wal::open(fs.clone(), &path.join("wal"), wal_opts, ckpt_lsn, existed)?;
        let (visible, visible_lsn) = crate::recovery::replay(
            &store,
            &mut two_phase,
            &path.join("wal"),
            ckpt_version,
            ckpt_lsn,
            &records,
        )?;
        let replayed_log_bytes = records.iter().map(|r| r.payload.len() as u64).sum();
        drop(records);
        if !existed {
            let id_path = path.join(identity::FILE_NAME);
            vellum_fs::write_file_atomic(fs.as_ref(), &id_path, &identity::encode())
                .map_err(io_err(&id_path))?;
        }
        // Ids above every table in storage and every table a recovered prepared transaction
        // writes or creates (its cells are not in storage until it commits).
        let next_table = two_phase
            .all()
            .flat_map(|p| p.changes.iter())
            .flat_map(|(t, _, v)| {
                let created = (*t == CATALOG)
                    .then(|| v.as_deref().and_then(catalog::decode_id))
                    .flatten();
                [Some(*t), created]
            })
            .flatten()
            .fold(store.max_table_id(), TableId::max)
            .0
            + 1;
        let inner = Arc::new(DbInner {
            path,
            store,
            commit: Mutex::new(CommitState {
                next_version: Version(visible.0 + 1),
            }),
            snapshots: Snapshots::new(visible, visible_lsn, history_floor),
            retention: Retention::new(opts.retain_versions, opts.retain_versions_for, visible),
            // Every catalog change so far is at or below `visible`: reads at it or later may use
            // the cache (no storage lookup needed here).
            catalog_cache: CatalogCache::new(visible),
            next_table_id: AtomicU32::new(next_table),
            commits: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            wal_bytes_at_checkpoint: AtomicU64::new(0),
            replayed_log_bytes,

            checkpoint_lock: Mutex::new(()),
            worker: Worker::default(),
            locks: LockManager::default(),
            two_phase: Mutex::new(two_phase),
            next_tx: AtomicU64::new(1),
            uid: {
                static NEXT_UID: AtomicU64 = AtomicU64::new(1);
                NEXT_UID.fetch_add(1, Ordering::Relaxed)
            },
            recent_labels: Mutex::new(VecDeque::new()),
            wal,
            opts,
            _lock: lock,
        });
        crate::workers::start(&inner)?;
        if crate::workers::checkpoint_due(&inner) {
            inner.worker.nudge();
        }
        Ok(Db {
            guard: Arc::new(WorkerGuard { db: inner.clone() }),
            inner,
        })
    }

    /// Begins a read-write transaction at the newest committed version, with the default
    /// settings (snapshot isolation, optimistic). [`Db::tx`] configures one.
    pub fn begin(&self) -> Result<Transaction> {
        self.tx().begin()
    }

    /// Begins a read-only transaction. It never blocks and never aborts; writes are refused
    /// with [`Error::ReadOnly`].
    pub fn begin_read(&self) -> Result<Transaction> {
        self.tx().read_only().begin()
    }

    /// A builder for a transaction: isolation, pessimistic mode, timeout, read-only, label,
    /// retries; ending in `.begin()` or `.run(|tx| ..)`.
    pub fn tx(&self) -> TxBuilder<'_> {
        TxBuilder::new(self)
    }

    /// Runs `f` in a transaction and commits, retrying the whole transaction on retryable
    /// errors (conflicts, deadlocks, lock-wait timeouts) with exponential backoff and jitter,
    /// as [`Options::retry`] allows. When retries run out the error is
    /// [`Error::RetriesExhausted`], saying how many attempts were made.
    pub fn run<T>(&self, f: impl FnMut(&mut Transaction) -> Result<T>) -> Result<T> {
        self.tx().run(f)
    }

    /// The prepared (two-phase commit) transactions awaiting [`Db::commit_prepared`] or
    /// [`Db::rollback_prepared`], including those recovered after a crash.
    pub fn prepared(&self) -> Vec<PreparedInfo> {
        self.inner.two_phase.lock().list()
    }

    /// Waits until the visible version reaches `version` or `timeout` passes; returns whether
    /// it did. A commit's winner in a conflict report becomes visible shortly after it is
    /// durable; waiting for it avoids retrying against a snapshot that cannot see it.
    pub fn wait_for_version(&self, version: Version, timeout: Duration) -> bool {
        self.inner
            .wait_visible(version, Some(Instant::now() + timeout))
            .unwrap_or(false)
    }

    /// Runs `f` in a transaction: commits if it returns `Ok`, rolls back if it returns `Err`
    /// or panics (the panic then continues). Conflicts are returned, not retried.
    pub fn transaction<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&mut Transaction) -> std::result::Result<T, E>,
        E: From<Error>,
    {
        let mut tx = self.begin()?;
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Creates a table in its own transaction.
    pub fn create_table(&self, name: &str) -> Result<()> {
        self.transaction(|tx| tx.create_table(name))
    }

    /// Drops a table (and makes its rows unreachable) in its own transaction.
    pub fn drop_table(&self, name: &str) -> Result<()> {
        self.transaction(|tx| tx.drop_table(name))
    }

    /// Names of all tables at the newest version, sorted.
    pub fn list_tables(&self) -> Result<Vec<String>> {
        self.begin_read()?.list_tables()
    }

    /// The newest committed (visible) version.
    pub fn version(&self) -> Version {
        self.inner.snapshots.visible()
    }

    /// Writes a checkpoint now and releases the log it covers.
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.checkpoint()
    }

    /// A read-only view of every table at an older `version`: any version from the oldest
    /// retained one (kept by a live snapshot or transaction, or by
    /// [`Options::retain_versions`] / [`Options::retain_versions_for`]) up to
    /// [`Db::version`]. An older version fails with [`Error::NotRetained`] naming the oldest
    /// one readable; a newer one with [`Error::InvalidArgument`].
    pub fn read_at(&self, version: Version) -> Result<crate::Snapshot> {
        let visible = self.inner.snapshots.visible();
        if version > visible {
            return Err(Error::InvalidArgument(format!(
                "version {version} is not committed yet (newest: {visible})"
            )));
        }
        let tx = Transaction::new_at(self.inner.clone(), self.tx().read_only().config(), version)?;
        Ok(crate::Snapshot { tx })
    }

    /// Checks every checksum of the manifest and of every segment file, and reports what it
    /// found; damage is listed as [`Error::Corruption`] naming the file and offset.
    pub fn verify(&self) -> VerifyReport {
        self.inner.store.verify()
    }

    /// Flushes recent commits to a segment, then merges every segment into one, dropping the
    /// versions that no snapshot, transaction or retention window can read. Reclaims disk
    /// space after many overwrites and deletes; runs on the calling thread.
    pub fn compact(&self) -> Result<()> {
        self.inner.checkpoint()?;
        self.inner.collect_garbage();
        self.inner.store.compact_all()?;
        Ok(())
    }

    /// Counters since open.
    pub fn stats(&self) -> Stats {
        let i = &self.inner;
        Stats {
            commits: i.commits.load(Ordering::Relaxed),
            conflicts: i.conflicts.load(Ordering::Relaxed),
            checkpoints: i.checkpoints.load(Ordering::Relaxed),
            live_transactions: i.snapshots.live_count(),
            wal: i.wal.stats(),
            storage: i.store.stats(),
        }
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Closes the database: flushes the commits since the last checkpoint to a segment (so the
    /// next open replays no log) and reports errors of that flush and of the final sync. If other clones or
    /// transactions are still alive, the database stays open until they are gone.
    pub fn close(self) -> Result<()> {
        let Db { guard, inner } = self;
        drop(guard);
        match Arc::try_unwrap(inner) {
            Ok(inner) => inner.shutdown(),
            Err(_shared) => Ok(()),
        }
    }
}

impl DbInner {
    /// Log bytes since open, plus the log replayed at open.
    pub(crate) fn log_bytes(&self) -> u64 {
        self.wal.stats().bytes + self.replayed_log_bytes
    }

    pub(crate) fn checkpoint(&self) -> Result<()> {
        let _one = self.checkpoint_lock.lock();
        let bytes = self.log_bytes();
        // Read under the commit lock, so the prepared set is consistent with the log: a
        // prepared transaction is either in it, or its commit/rollback record is already
        // enqueued (and the sync below makes that record durable before the checkpoint can
        // release the prepare record's log). Later prepare and resolve records replay
        // idempotently on top of it.
        let (version, lsn, meta) = {
            let _commits = self.commit.lock();
            let (version, lsn) = self.snapshots.visible_with_lsn();
            let meta = crate::recovery::encode_meta(lsn, self.two_phase.lock().all());
            (version, lsn, meta)
        };
        // A checkpoint must never cover log records that are not durable yet (Buffered and
        // None modes): after a power cut the log would end below the checkpoint.
        self.wal.sync()?;
        // Collapsing what no reader needs first keeps it out of the segment, and records the
        // horizon in the manifest the flush writes.
        self.collect_garbage();
        self.store.checkpoint(version, &meta)?;
        self.wal.release_upto(lsn)?;
        self.wal_bytes_at_checkpoint.store(bytes, Ordering::Relaxed);
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Raises storage's garbage-collection horizon to what no snapshot, no history reader and
    /// no retention window needs any more.
    pub(crate) fn collect_garbage(&self) {
        let keep = self.retention.floor(self.snapshots.visible());
        self.store.gc(self.snapshots.collect_horizon(keep));
    }

    /// Waits until every commit up to `version` is durable and published (at once for
    /// `Version::ZERO`): `Ok(true)` when it is, `Ok(false)` if `deadline` passes first, an
    /// error if the log fails first.
    pub(crate) fn wait_visible(&self, version: Version, deadline: Option<Instant>) -> Result<bool> {
        loop {
            if self.snapshots.visible() >= version {
                return Ok(true);
            }
            self.wal.check_healthy()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// A transaction id unique in this database. Threads take ids in blocks, so starting a
    /// transaction writes no cache line another thread writes.
    pub(crate) fn next_tx_id(&self) -> TxId {
        const BLOCK: u64 = 1024;
        thread_local! {
            /// `(database uid, next id, end of the block)`.
            static IDS: std::cell::Cell<(u64, u64, u64)> = const { std::cell::Cell::new((0, 0, 0)) };
        }
        IDS.with(|ids| {
            let (uid, next, end) = ids.get();
            let (next, end) = if uid == self.uid && next < end {
                (next, end)
            } else {
                let start = self.next_tx.fetch_add(BLOCK, Ordering::Relaxed);
                (start, start + BLOCK)
            };
            ids.set((self.uid, next + 1, end));
            next
        })
    }

    /// Remembers the label of the commit at `version` (called in version order).
    pub(crate) fn remember_label(&self, version: Version, label: Option<&str>) {
        if let Some(label) = label {
            let mut labels = self.recent_labels.lock();
            if labels.len() == RECENT_LABELS_MAX {
                labels.pop_front();
            }
            labels.push_back((version, label.to_string()));
        }
    }

    /// The label of the commit at `version`, if it had one and is recent.
    pub(crate) fn label_of(&self, version: Version) -> Option<String> {
        let labels = self.recent_labels.lock();
        let at = labels.binary_search_by_key(&version, |(v, _)| *v).ok()?;
        labels.get(at).map(|(_, l)| l.clone())
    }

    pub(crate) fn table_id_for_new(&self) -> Result<TableId> {
        let id = self.next_table_id.fetch_add(1, Ordering::Relaxed);
        if TableId(id) > TableId::MAX {
            return Err(Error::InvalidArgument("table id space exhausted".into()));
        }
        Ok(TableId(id))
    }

    fn shutdown(&self) -> Result<()> {
        self.worker.stop();
        // A clean close leaves no log to replay: the next open costs the same however long the
        // database has lived.
        let flushed = if self.log_bytes() > self.wal_bytes_at_checkpoint.load(Ordering::Relaxed) {
            self.checkpoint()
        } else {
            Ok(())
        };
        self.wal.close()?;
        flushed
    }
}

impl Drop for DbInner {
    fn drop(&mut self) {
        self.worker.stop();
    }
}

/// Checks what `path` holds. Returns true if a database exists there.
fn prepare_dir(fs: &dyn FileSystem, path: &Path, create: bool) -> Result<bool> {
    let id_path = path.join(identity::FILE_NAME);
    if fs.exists(&id_path).map_err(io_err(&id_path))? {
        identity::check(fs, &id_path)?;
        return Ok(true);
    }
    if fs.exists(path).map_err(io_err(path))? {
        let names = fs.list(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotADirectory {
                Error::NotADatabase(path.to_path_buf())
            } else {
                Error::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
        if names
            .iter()
            .any(|n| !identity::OWN_ENTRIES.contains(&n.as_str()))
        {
            return Err(Error::NotADatabase(path.to_path_buf()));
        }
    }
    if !create {
        return Err(Error::NotFound(path.to_path_buf()));
    }
    vellum_fs::create_dir_durable(fs, path).map_err(io_err(path))?;
    Ok(false)
}
