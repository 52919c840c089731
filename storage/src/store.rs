//! [`Store`]: the storage facade the database uses — apply committed changes, read at a
//! version, checkpoint, collect garbage.
//!
//! Directory contents: `checkpoint-<version>.ckpt` (the newest is authoritative) and, while a
//! checkpoint is being written, `checkpoint-<version>.ckpt.tmp` (removed at open).

use crate::checkpoint::{self, Entry};
use crate::error::{io_err, Result};
use crate::ids::{TableId, Version};
use crate::memtable::{GcStats, Memtable, Scan};
use parking_lot::Mutex;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

/// The checkpoint found at open or just written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Every commit at or below this version is in the checkpoint.
    pub version: Version,
    /// The caller's metadata stored with it.
    pub meta: Vec<u8>,
    /// The checkpoint file.
    pub path: PathBuf,
}

/// Versioned table storage.
#[derive(Debug)]
pub struct Store {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    mem: Memtable,
    /// Serialises checkpoints (one writer of checkpoint files at a time).
    checkpointing: Mutex<()>,
}

impl Store {
    /// Opens the store in `dir` (created if missing) and loads its newest checkpoint.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<(Store, Option<CheckpointInfo>)> {
        vellum_fs::create_dir_durable(fs.as_ref(), dir).map_err(io_err(dir))?;
        let mut newest: Option<(Version, PathBuf)> = None;
        let mut older = Vec::new();
        for name in fs.list(dir).map_err(io_err(dir))? {
            let path = dir.join(&name);
            if name.ends_with(".ckpt.tmp") {
                fs.remove_file(&path).map_err(io_err(&path))?;
            } else if let Some(v) = checkpoint::parse_name(&name) {
                match &newest {
                    Some((nv, _)) if *nv >= v => older.push(path),
                    _ => {
                        if let Some((_, p)) = newest.replace((v, path)) {
                            older.push(p);
                        }
                    }
                }
            }
        }
        let store = Store {
            fs: fs.clone(),
            dir: dir.to_path_buf(),
            mem: Memtable::default(),
            checkpointing: Mutex::new(()),
        };
        let Some((_, path)) = newest else {
            return Ok((store, None));
        };
        let data = fs.read(&path).map_err(io_err(&path))?;
        let loaded = checkpoint::read(&path, &data, |entry| match entry {
            Entry::Cell {
                table,
                version,
                key,
                value,
            } => store.mem.insert(table, key, version, Some(value)),
            Entry::TableVersion { table, version } => store.mem.touch_table(table, version),
        })?;
        for p in older {
            fs.remove_file(&p).map_err(io_err(&p))?;
        }
        Ok((
            store,
            Some(CheckpointInfo {
                version: loaded.version,
                meta: loaded.meta,
                path,
            }),
        ))
    }

    /// Applies the changes of one committed transaction at `version`; `touched` lists every
    /// table whose version becomes `version` (the caller decides: vellum passes the tables
    /// written and the tables created).
    pub fn apply(&self, version: Version, changes: &[Change<'_>], touched: &[TableId]) {
        for c in changes {
            self.mem.insert(c.table, c.key, version, c.value);
        }
        for t in touched {
            self.mem.touch_table(*t, version);
        }
    }

    /// The newest cell of `key` with version `≤ at`, tombstones included.
    pub fn get(&self, table: TableId, key: &[u8], at: Version) -> Result<Option<Found>> {
        Ok(self.mem.get(table, key, at).map(|(version, value)| Found {
            version,
            value: value.map(|v| v.into_vec()),
        }))
    }

    /// The version of the newest cell of `key`, whatever its version (including commits applied
    /// but not yet visible to readers). Used for conflict checks.
    pub fn latest_version(&self, table: TableId, key: &[u8]) -> Result<Option<Version>> {
        Ok(self.mem.get(table, key, Version::MAX).map(|(v, _)| v))
    }

    /// The version of the newest commit `≤ at` that changed `table`.
    pub fn table_version(&self, table: TableId, at: Version) -> Result<Option<Version>> {
        Ok(self.mem.table_version(table, at))
    }

    /// Live rows of `table` within the bounds, as of version `at`, in key order.
    pub fn scan(
        &self,
        table: TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        at: Version,
    ) -> Scan<'_> {
        self.mem.scan(table, lower, upper, at)
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
        Ok(self
            .mem
            .change_in_range(table, lower, upper, after)
            .map(|(k, v)| (k.into_vec(), v)))
    }

    /// Every cell with a version in `(after, upto]`, ordered by version, then table, then
    /// key: the committed changes of that span, transaction by transaction. The caller must
    /// know the span is retained (no garbage collection at or above `after`).
    pub fn changes_between(&self, after: Version, upto: Version) -> Result<Vec<CellChange>> {
        let mut out: Vec<CellChange> = self
            .mem
            .cells_between(after, upto)
            .map(|(table, key, version, value)| CellChange {
                version,
                table,
                key: key.into_vec(),
                value: value.map(|v| v.into_vec()),
            })
            .collect();
        out.sort_by(|a, b| (a.version, a.table, &a.key).cmp(&(b.version, b.table, &b.key)));
        Ok(out)
    }

    /// The largest table id that has ever held a cell or a version.
    pub fn max_table_id(&self) -> TableId {
        self.mem.max_table()
    }

    /// Approximate bytes of cells applied since open (including checkpoint load).
    pub fn approximate_bytes(&self) -> u64 {
        self.mem.approximate_bytes()
    }

    /// Writes a checkpoint at `version` with the caller's `meta`, durably, then removes older
    /// checkpoints. The caller guarantees every commit `≤ version` has been applied.
    pub fn checkpoint(&self, version: Version, meta: &[u8]) -> Result<CheckpointInfo> {
        let _one_at_a_time = self.checkpointing.lock();
        let path = checkpoint::write(self.fs.as_ref(), &self.dir, version, meta, &self.mem)?;
        let mut removed = false;
        for name in self.fs.list(&self.dir).map_err(io_err(&self.dir))? {
            if let Some(v) = checkpoint::parse_name(&name) {
                if v < version {
                    let p = self.dir.join(&name);
                    self.fs.remove_file(&p).map_err(io_err(&p))?;
                    removed = true;
                }
            }
        }
        if removed {
            self.fs.sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        Ok(CheckpointInfo {
            version,
            meta: meta.to_vec(),
            path,
        })
    }

    /// Writes a checkpoint of the store at `version` into another directory `dir` (for
    /// exports), durably; does not touch the store's own checkpoints. Returns its path.
    pub fn write_checkpoint_to(
        &self,
        dir: &Path,
        version: Version,
        meta: &[u8],
    ) -> Result<PathBuf> {
        checkpoint::write(self.fs.as_ref(), dir, version, meta, &self.mem)
    }

    /// The file name a checkpoint at `version` has.
    pub fn checkpoint_file_name(version: Version) -> String {
        checkpoint::file_name(version)
    }

    /// Drops every version no read at a version `≥ horizon` can see.
    pub fn gc(&self, horizon: Version) -> GcStats {
        self.mem.gc(horizon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vellum_fs::{SimFs, SimOptions};

    fn change<'a>(table: u32, key: &'a [u8], value: Option<&'a [u8]>) -> Change<'a> {
        Change {
            table: TableId(table),
            key,
            value,
        }
    }

    #[test]
    fn checkpoint_then_reopen_restores_reads_and_table_versions() -> Result<()> {
        let fs = Arc::new(SimFs::default());
        let dir = Path::new("/db/data");
        let (store, none) = Store::open(fs.clone(), dir)?;
        assert!(none.is_none());
        store.apply(Version(1), &[change(1, b"k", Some(b"v1"))], &[TableId(1)]);
        store.apply(
            Version(2),
            &[change(1, b"k", Some(b"v2")), change(2, b"x", Some(b"y"))],
            &[TableId(1), TableId(2)],
        );
        store.apply(Version(3), &[change(2, b"x", None)], &[TableId(2)]);
        store.checkpoint(Version(3), b"lsn=3")?;
        fs.restart();
        let (store, info) = Store::open(fs.clone(), dir)?;
        let info = info
            .ok_or_else(|| std::io::Error::other("no checkpoint"))
            .map_err(io_err(dir))?;
        assert_eq!(
            (info.version, info.meta.as_slice()),
            (Version(3), &b"lsn=3"[..])
        );
        assert_eq!(
            store
                .get(TableId(1), b"k", Version(3))?
                .and_then(|f| f.value),
            Some(b"v2".to_vec())
        );
        assert_eq!(store.get(TableId(2), b"x", Version(3))?, None);
        assert_eq!(
            store.table_version(TableId(2), Version::MAX)?,
            Some(Version(3))
        );
        assert_eq!(store.max_table_id(), TableId(2));
        Ok(())
    }

    #[test]
    fn a_crash_during_checkpoint_leaves_the_previous_one_or_the_new_one() -> Result<()> {
        for n in 1..30u64 {
            let fs = Arc::new(SimFs::new(SimOptions {
                seed: n,
                ..SimOptions::default()
            }));
            let dir = Path::new("/db/data");
            let (store, _) = Store::open(fs.clone(), dir)?;
            store.apply(Version(1), &[change(1, b"a", Some(b"1"))], &[TableId(1)]);
            store.checkpoint(Version(1), b"one")?;
            store.apply(Version(2), &[change(1, b"a", Some(b"2"))], &[TableId(1)]);
            fs.crash_after(Some(n));
            let _ = store.checkpoint(Version(2), b"two");
            fs.restart();
            let (store, info) = Store::open(fs.clone(), dir)?;
            let v = info.map(|i| i.version);
            let a = store
                .get(TableId(1), b"a", Version::MAX)?
                .and_then(|f| f.value);
            match v {
                Some(Version(1)) => assert_eq!(a, Some(b"1".to_vec()), "crash at {n}"),
                Some(Version(2)) => assert_eq!(a, Some(b"2".to_vec()), "crash at {n}"),
                other => panic!("crash at {n}: checkpoint {other:?}"),
            }
        }
        Ok(())
    }
}
