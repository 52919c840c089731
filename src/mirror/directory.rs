//! [`DirectoryMirror`]: a directory of JSON Lines tables, republished whole at each flush.
//!
//! The mirror keeps every table in memory, applies transactions to it, and at each flush
//! publishes the whole state as a JSON Lines export (same layout and protocol as
//! [`crate::export`]: a new `export-*` directory with `manifest.json`, renamed into place, then
//! `LATEST` moved). A reader following `LATEST` therefore sees every table at one commit
//! version — never part of a transaction across tables. Its position is the `commit_version`
//! of the manifest `LATEST` names, so it survives crashes of either side. Only the two newest
//! published directories are kept.
//!
//! Cost: each flush rewrites every table; fine for modest tables, not for large ones.

use super::{Mirror, MirrorError};
use crate::error::{io_err, Result};
use crate::export::{publish_rows, read_latest, TableRows};
use crate::feed::{Change, CommittedTransaction};
use crate::snapshot::Snapshot;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vellum_fs::{FileSystem, RealFs};
use vellum_storage::Version;

/// Rows of one mirrored table: key → (value, version that wrote it).
type Rows = BTreeMap<Vec<u8>, (Vec<u8>, Version)>;

/// A mirror into a directory; see the module documentation.
pub struct DirectoryMirror {
    fs: Arc<dyn FileSystem>,
    target: PathBuf,
    tables: BTreeMap<String, (Rows, Version)>,
    position: Option<Version>,
    dirty: bool,
}

impl std::fmt::Debug for DirectoryMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryMirror")
            .field("target", &self.target)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl DirectoryMirror {
    /// Opens (or starts) a mirror in `target` on the real file system, loading what its
    /// newest published state holds.
    pub fn open(target: impl AsRef<Path>) -> Result<DirectoryMirror> {
        Self::open_with(Arc::new(RealFs), target)
    }

    /// Like [`DirectoryMirror::open`] on a given file system.
    pub fn open_with(fs: Arc<dyn FileSystem>, target: impl AsRef<Path>) -> Result<DirectoryMirror> {
        let target = target.as_ref().to_path_buf();
        let mut tables = BTreeMap::new();
        let mut position = None;
        if let Some((version, loaded)) = read_latest(fs.as_ref(), &target)? {
            for (name, rows, table_version) in loaded {
                tables.insert(
                    name,
                    (
                        rows.into_iter().map(|(k, v, n)| (k, (v, n))).collect(),
                        table_version,
                    ),
                );
            }
            position = Some(version);
        }
        Ok(DirectoryMirror {
            fs,
            target,
            tables,
            position,
            dirty: false,
        })
    }

    /// The directory this mirror publishes into.
    pub fn target(&self) -> &Path {
        &self.target
    }

    fn publish(&mut self) -> Result<()> {
        let Some(version) = self.position else {
            return Ok(());
        };
        let tables: Vec<TableRows<'_>> = self
            .tables
            .iter()
            .map(|(name, (rows, table_version))| TableRows {
                name,
                table_version: *table_version,
                rows: Box::new(
                    rows.iter()
                        .map(|(k, (v, n))| (k.as_slice(), *n, v.as_slice())),
                ),
            })
            .collect();
        let published = publish_rows(self.fs.as_ref(), &self.target, version, tables)?;
        self.prune(&published)?;
        self.dirty = false;
        Ok(())
    }

    /// Removes published directories older than the two newest.
    fn prune(&self, newest: &Path) -> Result<()> {
        let mut dirs: Vec<String> = self
            .fs
            .list(&self.target)
            .map_err(io_err(&self.target))?
            .into_iter()
            .filter(|n| n.starts_with("export-"))
            .collect();
        dirs.sort();
        let keep_from = dirs.len().saturating_sub(2);
        for name in &dirs[..keep_from] {
            let path = self.target.join(name);
            if path != newest {
                self.fs.remove_dir_all(&path).map_err(io_err(&path))?;
            }
        }
        Ok(())
    }
}

impl Mirror for DirectoryMirror {
    fn position(&mut self) -> std::result::Result<Option<Version>, MirrorError> {
        Ok(self.position)
    }

    fn load_snapshot(&mut self, snapshot: &Snapshot) -> std::result::Result<(), MirrorError> {
        let mut tables = BTreeMap::new();
        for name in snapshot.list_tables()? {
            let mut rows = Rows::new();
            for row in snapshot.versioned_rows(&name)? {
                let (key, version, value) = row?;
                rows.insert(key, (value, version));
            }
            let table_version = snapshot.table_version(&name)?;
            tables.insert(name, (rows, table_version));
        }
        self.tables = tables;
        self.position = Some(snapshot.version());
        self.dirty = true;
        Ok(())
    }

    fn apply(&mut self, tx: &CommittedTransaction) -> std::result::Result<(), MirrorError> {
        // In-memory changes cannot fail part-way, so applying in place is all-or-nothing.
        let v = tx.version;
        for change in &tx.changes {
            match change {
                Change::CreateTable { table } => {
                    self.tables.insert(table.clone(), (Rows::new(), v));
                }
                Change::DropTable { table } => {
                    self.tables.remove(table);
                }
                Change::Put { table, key, value } => {
                    let t = self
                        .tables
                        .entry(table.clone())
                        .or_insert_with(|| (Rows::new(), v));
                    t.0.insert(key.clone(), (value.clone(), v));
                    t.1 = v;
                }
                Change::Delete { table, key } => {
                    if let Some(t) = self.tables.get_mut(table) {
                        t.0.remove(key);
                        t.1 = v;
                    }
                }
            }
        }
        self.position = Some(v);
        self.dirty = true;
        Ok(())
    }

    fn flush(&mut self) -> std::result::Result<(), MirrorError> {
        if self.dirty {
            self.publish()?;
        }
        Ok(())
    }
}
