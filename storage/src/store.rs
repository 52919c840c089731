//! [`Store`]: the storage facade the database uses — apply committed changes, read at a
//! version, flush to segments (a "checkpoint"), compact, collect garbage, verify.
//!
//! Directory contents: `manifest` (the live segments and the version they cover), the segment
//! files `seg-<id>.sst`, and transiently `manifest.tmp`. A directory restored from a native
//! export (or written by an older build) holds a `checkpoint-<version>.ckpt` instead; it is
//! loaded into the memtable at open and replaced by segments at the first flush.
//!
//! Read order is memtables (active, then frozen ones being flushed, newest first), then runs
//! newest first; every source holds versions above those of the sources after it (see
//! [`crate::runs`]), so the first source with a cell of a key at or below the read version
//! holds the one the read sees. Readers take the memtable list before the run list, and a flush
//! publishes the new run before it drops the frozen memtable, so no reader misses a cell.

use crate::cache::BlockCache;
use crate::checkpoint::{self, Entry};
use crate::error::{io_err, Error, Result};
use crate::ids::{TableId, Version};
use crate::key::{InternalKey, VERSIONS_TABLE};
use crate::manifest::{self, ManifestData};
use crate::memtable::{bounds, CellValue, GcStats, Memtable};
use crate::merge::{Merge, RowCursor, Scan, Source};
use crate::options::{StoreOptions, StoreStats, VerifyReport};
use crate::runs::{Run, RunSet};
use crate::segment::{self, Segment};
use arc_swap::ArcSwap;
use parking_lot::{Condvar, Mutex, RwLock};
use rayon::prelude::*;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vellum_fs::FileSystem;

/// One change of a committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change<'a> {
    /// The table.
    pub table: TableId,
    /// The key.
    pub key: &'a [u8],
    /// The new value, or `None` to delete.
    pub value: Option<&'a [u8]>,
}

/// One stored cell, as returned by [`Store::changes_between`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellChange {
    /// The commit version that wrote it.
    pub version: Version,
    /// Its table.
    pub table: TableId,
    /// Its key.
    pub key: Vec<u8>,
    /// Its value, or `None` for a delete.
    pub value: Option<Vec<u8>>,
}

/// A cell found by a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The commit version that wrote the cell.
    pub version: Version,
    /// The value, or `None` if the cell is a tombstone (the key was deleted).
    pub value: Option<Vec<u8>>,
}

/// The durable state found at open or just written by [`Store::checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Every commit at or below this version is in storage.
    pub version: Version,
    /// The caller's metadata stored with it.
    pub meta: Vec<u8>,
    /// The file that records it (the manifest, or a checkpoint file).
    pub path: PathBuf,
    /// Reads at versions at or above this one see exact history; older versions may have been
    /// collapsed by garbage collection.
    pub history_floor: Version,
}

/// The memtables: the active one and those frozen for a flush (newest first).
#[derive(Debug, Default, Clone)]
pub(crate) struct Mems {
    pub active: Arc<Memtable>,
    pub frozen: Vec<Arc<Memtable>>,
}

impl Mems {
    /// Every memtable in read order: the active one, then the frozen ones newest first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Memtable>> {
        std::iter::once(&self.active).chain(self.frozen.iter())
    }
}

/// State shared by the store, its flushes and its compaction thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub fs: Arc<dyn FileSystem>,
    pub dir: PathBuf,
    pub opts: StoreOptions,
    pub cache: Arc<BlockCache>,
    /// Read without locking (readers never write a shared cache line to get them); replaced
    /// whole by flushes, which hold `flushing`.
    pub mems: ArcSwap<Mems>,
    /// Held shared by [`Store::apply`] and exclusively while a flush swaps the active
    /// memtable, so no commit is half applied to a memtable being frozen.
    pub rotate: RwLock<()>,
    /// Replaced whole by [`Shared::install`], under the manifest lock.
    pub runs: ArcSwap<RunSet>,
    /// The manifest as last written; its lock serialises manifest writers.
    pub manifest: Mutex<ManifestData>,
    /// One flush at a time.
    pub flushing: Mutex<()>,
    /// One compaction at a time.
    pub compacting: Mutex<()>,
    /// Largest garbage-collection horizon handed to [`Store::gc`].
    pub horizon: AtomicU64,
    pub counters: Counters,
    /// Signalled after every flush and compaction (stalled writers wait on it).
    pub progress: (Mutex<u64>, Condvar),
    /// Wakes the compaction thread.
    pub wake: (Mutex<bool>, Condvar),
    pub stop: AtomicBool,
    /// Segment files found at open without a manifest; removed after the first manifest write.
    pub orphans: Mutex<Vec<u64>>,
}

/// Monotonic counters (see [`StoreStats`]).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub flushes: AtomicU64,
    pub compactions: AtomicU64,
    pub flushed_bytes: AtomicU64,
    pub compacted_bytes: AtomicU64,
    pub cells_dropped: AtomicU64,
    pub write_stalls: AtomicU64,
    pub write_stall_micros: AtomicU64,
}

impl Shared {
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(manifest::FILE_NAME)
    }

    /// A fresh segment id (persisted with the next manifest write).
    pub fn next_segment_id(&self) -> u64 {
        let mut m = self.manifest.lock();
        let id = m.next_segment_id;
        m.next_segment_id += 1;
        id
    }

    /// Writes `data` as the manifest and publishes `runs` with it. Called with the manifest
    /// lock held (`current` is its guard's contents).
    pub fn install(
        &self,
        current: &mut ManifestData,
        mut data: ManifestData,
        runs: RunSet,
    ) -> Result<()> {
        data.generation = current.generation + 1;
        data.next_segment_id = data.next_segment_id.max(current.next_segment_id);
        data.gc_floor = data.gc_floor.max(self.horizon.load(Ordering::Acquire));
        let path = self.manifest_path();
        vellum_fs::write_file_atomic(self.fs.as_ref(), &path, &data.encode())
            .map_err(io_err(&path))?;
        *current = data;
        self.runs.store(Arc::new(runs));
        let orphans = std::mem::take(&mut *self.orphans.lock());
        self.remove_segment_files(&orphans);
        Ok(())
    }

    /// Tells stalled writers and the compaction thread that something changed.
    pub fn notify(&self) {
        *self.progress.0.lock() += 1;
        self.progress.1.notify_all();
        *self.wake.0.lock() = true;
        self.wake.1.notify_all();
    }

    /// Opens segments in parallel.
    pub fn open_segments(&self, ids: &[u64]) -> Result<Vec<Arc<Segment>>> {
        ids.par_iter()
            .map(|id| {
                let path = self.dir.join(segment::file_name(*id));
                Segment::open(self.fs.as_ref(), &path, *id, self.cache.clone()).map(Arc::new)
            })
            .collect()
    }

    /// Removes files of segments no longer listed (best effort: leftovers go at next open).
    pub fn remove_segment_files(&self, ids: &[u64]) {
        for id in ids {
            let path = self.dir.join(segment::file_name(*id));
            if let Err(e) = self.fs.remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove an obsolete segment");
            }
        }
        if !ids.is_empty() {
            if let Err(e) = self.fs.sync_dir(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not sync the data directory");
            }
        }
    }

    /// The sources of every cell in `(lo, hi)`: memtables first, then runs newest first,
    /// leaving out runs `skip_run` rejects (by their version range).
    pub fn sources(
        &self,
        lo: Bound<InternalKey>,
        hi: Bound<InternalKey>,
        fill_cache: bool,
        skip_run: impl Fn(&Run) -> bool,
    ) -> Vec<Source> {
        let mems = self.mems.load_full();
        let runs = self.runs.load_full();
        // An empty memtable can gain cells only of commits newer than any reader's version
        // (and the callers that read at the newest version hold the commit lock).
        let mut sources: Vec<Source> = mems
            .all()
            .filter(|m| !m.is_empty())
            .map(|m| Source::mem(m.clone(), lo.clone(), hi.clone()))
            .collect();
        for run in runs.runs.iter().filter(|r| !skip_run(r)) {
            sources.push(Source::run(run, &lo, hi.clone(), fill_cache));
        }
        sources
    }
}

/// Commits with at least this many changes are applied to the memtable in parallel.
const PARALLEL_APPLY_MIN: usize = 8192;

/// Versioned table storage.
#[derive(Debug)]
pub struct Store {
    shared: Arc<Shared>,
    compactor: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Store {
    /// Opens the store in `dir` (created if missing) with default options.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<(Store, Option<CheckpointInfo>)> {
        Store::open_with(fs, dir, StoreOptions::default())
    }

    /// Opens the store in `dir` (created if missing): reads the manifest and opens its
    /// segments, removes leftovers of crashed flushes and compactions, and starts the
    /// compaction thread.
    pub fn open_with(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        opts: StoreOptions,
    ) -> Result<(Store, Option<CheckpointInfo>)> {
        vellum_fs::create_dir_durable(fs.as_ref(), dir).map_err(io_err(dir))?;
        let names = fs.list(dir).map_err(io_err(dir))?;
        for name in names.iter().filter(|n| n.ends_with(".tmp")) {
            let p = dir.join(name);
            fs.remove_file(&p).map_err(io_err(&p))?;
        }
        let manifest_path = dir.join(manifest::FILE_NAME);
        let manifest = if names.iter().any(|n| n == manifest::FILE_NAME) {
            let data = fs.read(&manifest_path).map_err(io_err(&manifest_path))?;
            Some(ManifestData::decode(&manifest_path, &data)?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            fs: fs.clone(),
            dir: dir.to_path_buf(),
            cache: Arc::new(BlockCache::new(opts.block_cache_bytes)),
            opts,
            mems: ArcSwap::from_pointee(Mems::default()),
            rotate: RwLock::new(()),
            runs: ArcSwap::from_pointee(RunSet::default()),
            manifest: Mutex::new(manifest.clone().unwrap_or_default()),
            flushing: Mutex::new(()),
            compacting: Mutex::new(()),
            horizon: AtomicU64::new(manifest.as_ref().map_or(0, |m| m.gc_floor)),
            counters: Counters::default(),
            progress: (Mutex::new(0), Condvar::new()),
            wake: (Mutex::new(false), Condvar::new()),
            stop: AtomicBool::new(false),
            orphans: Mutex::new(Vec::new()),
        });
        let info = match manifest {
            Some(m) => {
                let listed: std::collections::HashSet<u64> =
                    m.runs.iter().flatten().copied().collect();
                let mut runs = RunSet::default();
                for ids in &m.runs {
                    runs.runs.push(Arc::new(Run {
                        segments: shared.open_segments(ids)?,
                    }));
                }
                shared.runs.store(Arc::new(runs));
                let mut removed = false;
                for name in &names {
                    let stale_segment =
                        segment::parse_name(name).is_some_and(|id| !listed.contains(&id));
                    if stale_segment || checkpoint::parse_name(name).is_some() {
                        let p = dir.join(name);
                        fs.remove_file(&p).map_err(io_err(&p))?;
                        removed = true;
                    }
                }
                if removed {
                    fs.sync_dir(dir).map_err(io_err(dir))?;
                }
                Some(CheckpointInfo {
                    version: Version(m.covered),
                    meta: m.meta,
                    path: manifest_path,
                    history_floor: Version(m.gc_floor),
                })
            }
            None => {
                // Segments without a manifest: a first flush that crashed before its manifest,
                // or a manifest lost to damage. Nothing is deleted before the caller has checked
                // its log (an open it refuses must change nothing); they go once the first
                // manifest is written, and new ids start above them.
                let orphans: Vec<u64> = names
                    .iter()
                    .filter_map(|n| segment::parse_name(n))
                    .collect();
                if let Some(max) = orphans.iter().max() {
                    shared.manifest.lock().next_segment_id = max + 1;
                }
                *shared.orphans.lock() = orphans;
                load_checkpoint_file(&shared, &names)?
            }
        };
        let store = Store {
            shared,
            compactor: Mutex::new(None),
        };
        if store.shared.opts.background_compaction {
            let handle = crate::compaction::spawn(&store.shared).map_err(io_err(dir))?;
            *store.compactor.lock() = Some(handle);
            store.shared.notify();
        }
        Ok((store, info))
    }

    /// Applies the changes of one committed transaction at `version`; `touched` lists every
    /// table whose version becomes `version` (the caller decides: vellum passes the tables
    /// written and the tables created).
    pub fn apply(&self, version: Version, changes: &[Change<'_>], touched: &[TableId]) {
        let _rotate = self.shared.rotate.read();
        let mems = self.shared.mems.load();
        let active = &mems.active;
        if changes.len() >= PARALLEL_APPLY_MIN {
            // A large commit is inserted by every core (the memtable takes concurrent inserts;
            // nothing reads these cells before the commit is published).
            changes.par_chunks(PARALLEL_APPLY_MIN / 2).for_each(|part| {
                for c in part {
                    active.insert(c.table, c.key, version, c.value);
                }
            });
        } else {
            for c in changes {
                active.insert(c.table, c.key, version, c.value);
            }
        }
        for t in touched {
            mems.active.touch_table(*t, version);
        }
    }

    fn get_cell(&self, table: u32, key: &[u8], at: Version) -> Result<Option<(u64, CellValue)>> {
        for mem in self.shared.mems.load().all() {
            if let Some((v, value)) = mem.get_raw(table, key, at) {
                return Ok(Some((v.0, value)));
            }
        }
        self.shared.runs.load().get(table, key, at.0)
    }

    /// The newest cell of `key` with version `≤ at`, tombstones included.
    pub fn get(&self, table: TableId, key: &[u8], at: Version) -> Result<Option<Found>> {
        Ok(self
            .get_cell(table.0, key, at)?
            .map(|(version, value)| Found {
                version: Version(version),
                value: value.map(|v| v.into_vec()),
            }))
    }

    /// The version of the newest cell of `key`, whatever its version (including commits applied
    /// but not yet visible to readers). Used for conflict checks.
    pub fn latest_version(&self, table: TableId, key: &[u8]) -> Result<Option<Version>> {
        Ok(self
            .get_cell(table.0, key, Version::MAX)?
            .map(|(v, _)| Version(v)))
    }

    /// The version of the newest commit `≤ at` that changed `table`.
    pub fn table_version(&self, table: TableId, at: Version) -> Result<Option<Version>> {
        Ok(self
            .get_cell(VERSIONS_TABLE, &table.0.to_be_bytes(), at)?
            .map(|(v, _)| Version(v)))
    }

    /// Live rows of `table` within the bounds, as of version `at`, in key order.
    pub fn scan(
        &self,
        table: TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        at: Version,
    ) -> Scan<'_> {
        Scan::new(self.rows(table, lower, upper, at))
    }

    /// A cursor over the live rows of `table` within the bounds, as of version `at`, in key
    /// order; each row borrows the cursor instead of being copied out.
    pub fn rows(
        &self,
        table: TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        at: Version,
    ) -> RowCursor<'_> {
        let (lo, hi) = bounds(table, lower, upper);
        let sources = self
            .shared
            .sources(lo, hi, true, |run| run.min_version() > at.0);
        RowCursor::new(Merge::new(sources), at)
    }

    /// The first key within the bounds (in key order) whose newest cell has a version above
    /// `after`, with that version: a commit after `after` inserted, changed or deleted it.
    pub fn change_in_range(
        &self,
        table: TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        after: Version,
    ) -> Result<Option<(Vec<u8>, Version)>> {
        let (lo, hi) = bounds(table, lower, upper);
        // A run whose versions are all ≤ `after` cannot hold a key's newest cell above it.
        let sources = self
            .shared
            .sources(lo, hi, true, |run| run.max_version() <= after.0);
        let mut merge = Merge::new(sources);
        merge.start()?;
        // The key whose newest cell was already seen (at or below `after`).
        let mut seen: Option<Vec<u8>> = None;
        while let Some(c) = merge.current() {
            if seen.as_deref() != Some(c.key) {
                if c.version > after.0 {
                    return Ok(Some((c.key.to_vec(), Version(c.version))));
                }
                let buf = seen.get_or_insert_with(Vec::new);
                buf.clear();
                buf.extend_from_slice(c.key);
            }
            merge.advance()?;
        }
        Ok(None)
    }

    /// Every cell with a version in `(after, upto]`, ordered by version, then table, then
    /// key: the committed changes of that span, transaction by transaction. The caller must
    /// know the span is retained (no garbage collection at or above `after`).
    pub fn changes_between(&self, after: Version, upto: Version) -> Result<Vec<CellChange>> {
        let mems = self.shared.mems.load_full();
        let runs = self.shared.runs.load_full();
        let mut out: Vec<CellChange> = Vec::new();
        for mem in mems.all() {
            out.extend(
                mem.cells_between(after, upto)
                    .filter(|(t, ..)| t.0 != VERSIONS_TABLE)
                    .map(|(table, key, version, value)| CellChange {
                        version,
                        table,
                        key: key.into_vec(),
                        value: value.map(|v| v.into_vec()),
                    }),
            );
        }
        for seg in runs.all_segments() {
            seg.for_each_between(after.0, upto.0, |c| {
                if c.table != VERSIONS_TABLE {
                    out.push(CellChange {
                        version: Version(c.version),
                        table: TableId(c.table),
                        key: c.key.to_vec(),
                        value: c.value.map(<[u8]>::to_vec),
                    });
                }
            })?;
        }
        out.sort_by(|a, b| (a.version, a.table, &a.key).cmp(&(b.version, b.table, &b.key)));
        out.dedup_by(|a, b| (a.version, a.table, &a.key) == (b.version, b.table, &b.key));
        Ok(out)
    }

    /// The largest table id that has ever held a cell or a version.
    pub fn max_table_id(&self) -> TableId {
        let mem = self
            .shared
            .mems
            .load()
            .all()
            .map(|t| t.max_table())
            .max()
            .unwrap_or_default();
        let disk = self
            .shared
            .runs
            .load()
            .max_user_table()
            .map(TableId)
            .unwrap_or_default();
        mem.max(disk)
    }

    /// Approximate bytes in the active memtable.
    pub fn approximate_bytes(&self) -> u64 {
        self.shared.mems.load().active.approximate_bytes()
    }

    /// True once the active memtable has reached its budget: the caller should flush
    /// ([`Store::checkpoint`]).
    pub fn needs_flush(&self) -> bool {
        self.approximate_bytes() >= self.shared.opts.memtable_bytes
    }

    /// Waits while the store is over its limits (a memtable of twice its budget, or more runs
    /// than [`StoreOptions::max_runs`]), at most `limit`; returns how long it waited. Stalls
    /// are counted in [`StoreStats`]. Call it outside any lock a flush needs.
    pub fn wait_for_room(&self, limit: Duration) -> Duration {
        // Runs pile up only for a compaction thread to merge; without one nothing would end
        // the wait.
        let compacting = self.shared.opts.background_compaction;
        let over = || {
            self.approximate_bytes() >= 2 * self.shared.opts.memtable_bytes
                || (compacting && self.shared.runs.load().runs.len() > self.shared.opts.max_runs)
        };
        if !over() {
            return Duration::ZERO;
        }
        let start = Instant::now();
        self.shared
            .counters
            .write_stalls
            .fetch_add(1, Ordering::Relaxed);
        self.shared.notify();
        let (lock, cond) = &self.shared.progress;
        while over() && start.elapsed() < limit {
            let mut g = lock.lock();
            cond.wait_for(&mut g, Duration::from_millis(10));
        }
        let waited = start.elapsed();
        self.shared
            .counters
            .write_stall_micros
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        waited
    }

    /// Flushes every commit `≤ version` to a new segment and records it, with the caller's
    /// `meta`, in the manifest, durably. The caller guarantees every commit `≤ version` has
    /// been applied; cells above `version` stay in memory.
    pub fn checkpoint(&self, version: Version, meta: &[u8]) -> Result<CheckpointInfo> {
        crate::flush::flush(&self.shared, version, meta)
    }

    /// Writes a checkpoint file of the store at `version` into another directory `dir` (for
    /// exports), durably; does not touch the store's own files. Returns its path.
    pub fn write_checkpoint_to(
        &self,
        dir: &Path,
        version: Version,
        meta: &[u8],
    ) -> Result<PathBuf> {
        let sources = self
            .shared
            .sources(Bound::Unbounded, Bound::Unbounded, false, |run| {
                run.min_version() > version.0
            });
        let rows = VisibleRows(RowCursor::new(Merge::new(sources), version));
        checkpoint::write(self.shared.fs.as_ref(), dir, version, meta, rows)
    }

    /// The file name a checkpoint at `version` has.
    pub fn checkpoint_file_name(version: Version) -> String {
        checkpoint::file_name(version)
    }

    /// Raises the garbage-collection horizon: from now on no read at a version below
    /// `horizon` will be made, so compactions may drop every version such reads alone could
    /// see. Also collapses old versions in the active memtable.
    pub fn gc(&self, horizon: Version) -> GcStats {
        self.shared.horizon.fetch_max(horizon.0, Ordering::AcqRel);
        let active = self.shared.mems.load().active.clone();
        active.gc(horizon)
    }

    /// Merges every run into one, dropping what the horizon allows (tombstones included).
    pub fn compact_all(&self) -> Result<()> {
        crate::compaction::compact_all(&self.shared)
    }

    /// Runs the compactions the policy asks for now, on the calling thread.
    pub fn compact_pending(&self) -> Result<()> {
        crate::compaction::compact_pending(&self.shared)
    }

    /// Counters and sizes.
    pub fn stats(&self) -> StoreStats {
        let c = &self.shared.counters;
        let runs = self.shared.runs.load_full();
        let memtable_bytes = self
            .shared
            .mems
            .load()
            .all()
            .map(|t| t.approximate_bytes())
            .sum();
        StoreStats {
            flushes: c.flushes.load(Ordering::Relaxed),
            compactions: c.compactions.load(Ordering::Relaxed),
            flushed_bytes: c.flushed_bytes.load(Ordering::Relaxed),
            compacted_bytes: c.compacted_bytes.load(Ordering::Relaxed),
            cells_dropped: c.cells_dropped.load(Ordering::Relaxed),
            write_stalls: c.write_stalls.load(Ordering::Relaxed),
            write_stall_micros: c.write_stall_micros.load(Ordering::Relaxed),
            segments: runs.segment_count() as u64,
            runs: runs.runs.len() as u64,
            segment_bytes: runs.size(),
            memtable_bytes,
            block_cache_bytes: self.shared.cache.weight(),
        }
    }

    /// Checks the manifest and every checksum of every live segment (header, footer, index,
    /// bloom filter, every data block), reading them from disk; reports what it found.
    pub fn verify(&self) -> VerifyReport {
        let mut report = VerifyReport::default();
        let path = self.shared.manifest_path();
        if self.shared.manifest.lock().generation > 0 {
            match self.shared.fs.read(&path) {
                Ok(data) => {
                    if let Err(e) = ManifestData::decode(&path, &data) {
                        report.problems.push(e);
                    }
                }
                Err(source) => report.problems.push(Error::Io { path, source }),
            }
        }
        let runs = self.shared.runs.load_full();
        let segments: Vec<&Arc<Segment>> = runs.all_segments().collect();
        let results: Vec<(u64, Result<(u64, u64)>)> = segments
            .par_iter()
            .map(|s| {
                // Opened afresh: header, footer, index and bloom filter are read and checked
                // again too, then every data block.
                let fresh = Segment::open(
                    self.shared.fs.as_ref(),
                    &s.path,
                    s.id,
                    self.shared.cache.clone(),
                );
                (s.size(), fresh.and_then(|f| f.verify()))
            })
            .collect();
        for (size, r) in results {
            report.segments += 1;
            report.bytes += size;
            match r {
                Ok((blocks, cells)) => {
                    report.blocks += blocks;
                    report.cells += cells;
                }
                Err(e) => report.problems.push(e),
            }
        }
        report
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.notify();
        if let Some(h) = self.compactor.lock().take() {
            let _ = h.join();
        }
    }
}

/// Newest non-tombstone cell of every key at a version, across all sources, copied out.
struct VisibleRows<'a>(RowCursor<'a>);

impl Iterator for VisibleRows<'_> {
    type Item = Result<(InternalKey, Box<[u8]>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.0.advance() {
            Ok(true) => self.0.row().map(|(table, key, version, value)| {
                Ok((
                    InternalKey {
                        table,
                        key: key.into(),
                        version: std::cmp::Reverse(version.0),
                    },
                    value.into(),
                ))
            }),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Loads the newest legacy checkpoint file (a restored export) into the active memtable.
fn load_checkpoint_file(shared: &Shared, names: &[String]) -> Result<Option<CheckpointInfo>> {
    let newest = names
        .iter()
        .filter_map(|n| checkpoint::parse_name(n).map(|v| (v, n)))
        .max();
    let Some((_, name)) = newest else {
        return Ok(None);
    };
    let path = shared.dir.join(name);
    let data = shared.fs.read(&path).map_err(io_err(&path))?;
    let mem = shared.mems.load().active.clone();
    let loaded = checkpoint::read(&path, &data, |entry| match entry {
        Entry::Cell {
            table,
            version,
            key,
            value,
        } => mem.insert(table, key, version, Some(value)),
        Entry::TableVersion { table, version } => mem.touch_table(table, version),
    })?;
    Ok(Some(CheckpointInfo {
        version: loaded.version,
        meta: loaded.meta,
        path,
        history_floor: loaded.version,
    }))
}
