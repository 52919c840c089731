//! vellum's native export format: one checkpoint file (`docs/format/checkpoint.md`) holding
//! every table at the export's version, and the manifest.
//!
//! [`Db::open_export`] verifies the file against the manifest and opens it as an in-memory,
//! read-only view; [`Db::restore_export`] copies it into a new database directory as that
//! database's checkpoint, so the restored database starts at the export's version.

use super::{corrupt, publish, ExportFormat, FileEntry, Manifest, TableEntry};
use crate::db::Db;
use crate::error::{io_err, Error, Result};
use crate::options::Options;
use crate::snapshot::Snapshot;
use std::path::Path;
use std::sync::Arc;
use vellum_fs::{FileSystem, RealFs, SimFs, SimOptions};
use vellum_storage::{Store, Version};

/// Writes the checkpoint file into the staging directory; returns the manifest, rows, bytes.
pub(super) fn write(
    snapshot: &Snapshot,
    fs: &dyn FileSystem,
    dir: &Path,
    tables: &[String],
) -> Result<(Manifest, u64, u64)> {
    let db = &snapshot.tx.db;
    let version = snapshot.version();
    // A checkpoint's metadata: the log position it covers (none: a restored database starts a
    // new log) and no prepared transactions.
    let meta = crate::recovery::encode_meta(vellum_wal::Lsn(0), std::iter::empty());
    let path = db.store.write_checkpoint_to(dir, version, &meta)?;
    let data = fs.read(&path).map_err(io_err(&path))?;
    let name = Store::checkpoint_file_name(version);
    let mut entries = Vec::with_capacity(tables.len());
    let mut rows_total = 0;
    for name_ in tables {
        let rows = snapshot.scan_all(name_)?.count() as u64;
        rows_total += rows;
        entries.push(TableEntry {
            name: name_.clone(),
            rows,
            table_version: snapshot.table_version(name_)?.get(),
            files: vec![FileEntry {
                path: name.clone(),
                bytes: data.len() as u64,
                crc32c: format!("{:08x}", crc32c::crc32c(&data)),
            }],
            delta_table: None,
            delta_version: None,
        });
    }
    Ok((
        Manifest::new(ExportFormat::Native, version, entries),
        rows_total,
        data.len() as u64,
    ))
}

/// Reads and verifies the native export in `export_dir`: its manifest and checkpoint bytes.
fn load(fs: &dyn FileSystem, export_dir: &Path) -> Result<(Manifest, String, Vec<u8>)> {
    let manifest_path = export_dir.join(publish::MANIFEST);
    let bytes = fs.read(&manifest_path).map_err(io_err(&manifest_path))?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(&manifest_path, format!("manifest is not valid: {e}")))?;
    if manifest.format != ExportFormat::Native.name() {
        return Err(Error::InvalidArgument(format!(
            "{} is a {} export, not a native one",
            export_dir.display(),
            manifest.format
        )));
    }
    let expected = Store::checkpoint_file_name(Version(manifest.commit_version));
    let entry = manifest
        .tables
        .iter()
        .flat_map(|t| t.files.iter())
        .find(|f| f.path == expected)
        .cloned();
    let path = export_dir.join(&expected);
    let data = fs.read(&path).map_err(io_err(&path))?;
    if let Some(entry) = entry {
        if entry.bytes != data.len() as u64
            || entry.crc32c != format!("{:08x}", crc32c::crc32c(&data))
        {
            return Err(corrupt(&path, "size or checksum differs from the manifest"));
        }
    }
    Ok((manifest, expected, data))
}

impl Db {
    /// Opens a native export read-only: the returned snapshot reads every table at the
    /// export's commit version. The data is loaded into memory; nothing is written.
    pub fn open_export(export_dir: impl AsRef<Path>) -> Result<Snapshot> {
        let (manifest, name, data) = load(&RealFs, export_dir.as_ref())?;
        let sim = SimFs::new(SimOptions::default());
        let root = Path::new("/export");
        let db = restore_into(
            &sim,
            root,
            &name,
            &data,
            Options::default().file_system(Arc::new(sim.clone())),
        )?;
        let snapshot = db.snapshot()?;
        if snapshot.version().get() != manifest.commit_version {
            return Err(corrupt(
                export_dir.as_ref(),
                "the checkpoint's version differs from the manifest's",
            ));
        }
        Ok(snapshot)
    }

    /// Restores a native export into a new database at `path` (which must not hold a
    /// database) and opens it; it starts at the export's commit version.
    pub fn restore_export(
        export_dir: impl AsRef<Path>,
        path: impl AsRef<Path>,
        options: Options,
    ) -> Result<Db> {
        let (_, name, data) = load(&RealFs, export_dir.as_ref())?;
        let fs = options.file_system.clone();
        restore_into(fs.as_ref(), path.as_ref(), &name, &data, options)
    }
}

fn restore_into(
    fs: &dyn FileSystem,
    path: &Path,
    name: &str,
    data: &[u8],
    options: Options,
) -> Result<Db> {
    if fs.exists(path).map_err(io_err(path))? && !fs.list(path).map_err(io_err(path))?.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} is not empty: restore into a new directory",
            path.display()
        )));
    }
    let data_dir = path.join("data");
    vellum_fs::create_dir_durable(fs, &data_dir).map_err(io_err(&data_dir))?;
    let file = data_dir.join(name);
    vellum_fs::write_file_atomic(fs, &file, data).map_err(io_err(&file))?;
    Db::open_with(path, options)
}
