//! Consistent snapshot exports for readers that never link vellum.
//!
//! An export writes every table's rows at exactly one version (a [`crate::Snapshot`]) into a
//! new directory under the target, published atomically (see [`publish`]): a reader sees a
//! complete export at one commit version, or nothing. Every export carries a `manifest.json`
//! (format version, commit version, wall-clock time, every table with row count, files, sizes
//! and checksums); `LATEST` names the newest complete export. Writers keep committing while an
//! export runs: the snapshot pins its version.
//!
//! Formats: JSON Lines, Parquet, Delta Lake, and vellum's native format (a checkpoint file,
//! openable read-only and restorable). The layout is documented in `docs/format/export.md`.

mod delta;
mod jsonl;
mod manifest;
mod native;
mod parquet;
mod publish;
mod sink;

pub use manifest::{FileEntry, Manifest, TableEntry, MANIFEST_VERSION};

use crate::error::{Error, Result};
use crate::snapshot::Snapshot;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vellum_storage::Version;

/// The format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExportFormat {
    /// One `<table>.jsonl` file per table, one JSON object per row: `key` and `value` as UTF-8
    /// text where valid, base64 otherwise (`key_encoding`, `value_encoding` say which), and the
    /// row's `version`.
    #[default]
    JsonLines,
    /// One `<table>.parquet` file per table with columns `key` (binary), `value` (binary) and
    /// `version` (unsigned 64-bit integer), Snappy compressed.
    Parquet,
    /// One Delta Lake table per vellum table under `target/delta/`, each export adding a Delta
    /// version; `manifest.json` names each table's Delta version.
    Delta,
    /// vellum's own format: one checkpoint file of every table at the export's version, which
    /// [`crate::Db::open_export`] opens read-only and [`crate::Db::restore_export`] restores
    /// into a new database.
    Native,
}

impl ExportFormat {
    /// The name used in manifests and directory names.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::JsonLines => "jsonl",
            ExportFormat::Parquet => "parquet",
            ExportFormat::Delta => "delta",
            ExportFormat::Native => "native",
        }
    }
}

/// Progress of a running export, passed to [`ExportOptions::progress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportProgress {
    /// The table being written.
    pub table: String,
    /// Tables finished so far.
    pub tables_done: usize,
    /// Tables in the export.
    pub tables_total: usize,
    /// Rows written so far (all tables).
    pub rows: u64,
    /// Bytes written so far (all tables).
    pub bytes: u64,
}

impl ExportProgress {
    /// Progress before anything is written, for an export of `tables_total` tables.
    fn starting(tables_total: usize) -> Self {
        ExportProgress {
            table: String::new(),
            tables_done: 0,
            tables_total,
            rows: 0,
            bytes: 0,
        }
    }
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&ExportProgress) + Send + Sync>;

/// How to export.
#[derive(Clone, Default)]
pub struct ExportOptions {
    /// The format.
    pub format: ExportFormat,
    /// Called after each table and every [`PROGRESS_EVERY_ROWS`] rows.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for ExportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportOptions")
            .field("format", &self.format)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl ExportOptions {
    /// Options for `format`.
    pub fn new(format: ExportFormat) -> Self {
        ExportOptions {
            format,
            progress: None,
        }
    }

    /// Sets the progress callback.
    pub fn progress(mut self, f: impl Fn(&ExportProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }
}

/// How often (in rows) the progress callback is called within a table.
pub const PROGRESS_EVERY_ROWS: u64 = 10_000;

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    /// The published export directory.
    pub path: PathBuf,
    /// The commit version exported.
    pub version: Version,
    /// The manifest written with it.
    pub manifest: Manifest,
    /// Rows written, all tables.
    pub rows: u64,
    /// Bytes of data files written, all tables.
    pub bytes: u64,
    /// Wall-clock time taken.
    pub elapsed: Duration,
}

impl ExportReport {
    /// Rows per second.
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Megabytes (10^6 bytes) of data files per second.
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Snapshot {
    /// Exports every table at this snapshot's version into a new directory under `target`
    /// (created if missing), published atomically, and points `target/LATEST` at it.
    pub fn export(&self, target: impl AsRef<Path>, options: ExportOptions) -> Result<ExportReport> {
        let started = Instant::now();
        let db = &self.tx.db;
        let fs = db.opts.file_system.clone();
        let target = target.as_ref();
        let staging = publish::Staging::begin(fs.as_ref(), target, self.version())?;
        let tables = self.list_tables()?;
        if options.format == ExportFormat::Native {
            let (manifest, rows, bytes) = native::write(self, fs.as_ref(), staging.dir(), &tables)?;
            let path = staging.publish(&manifest)?;
            if let Some(f) = &options.progress {
                f(&ExportProgress {
                    table: String::new(),
                    tables_done: tables.len(),
                    tables_total: tables.len(),
                    rows,
                    bytes,
                });
            }
            return Ok(ExportReport {
                path,
                version: self.version(),
                rows,
                bytes,
                manifest,
                elapsed: started.elapsed(),
            });
        }
        let mut entries = Vec::with_capacity(tables.len());
        let mut delta_pending = Vec::new();
        let mut progress = ExportProgress::starting(tables.len());
        for name in &tables {
            progress.table = name.clone();
            let rows = self.versioned_rows(name)?;
            let file_name = publish::file_name_for(name, options.format);
            let entry = match options.format {
                ExportFormat::JsonLines => jsonl::write_table(
                    fs.as_ref(),
                    &staging.dir().join(&file_name),
                    &file_name,
                    rows,
                    &mut progress,
                    options.progress.as_deref(),
                )?,
                ExportFormat::Parquet => parquet::write_table(
                    fs.as_ref(),
                    &staging.dir().join(&file_name),
                    &file_name,
                    rows,
                    false,
                    &mut progress,
                    options.progress.as_deref(),
                )?,
                ExportFormat::Native => {
                    return Err(Error::InvalidArgument("native exports are whole".into()))
                }
                ExportFormat::Delta => {
                    let stem = publish::file_stem_for(name);
                    let (count, file, table_dir) = delta::write_data(
                        fs.as_ref(),
                        target,
                        &stem,
                        self.version(),
                        rows,
                        &mut progress,
                        options.progress.as_deref(),
                    )?;
                    delta_pending.push((entries.len(), table_dir, file.clone(), count));
                    let relative = FileEntry {
                        path: format!("../{}/{stem}/{}", delta::DELTA_DIR, file.path),
                        ..file
                    };
                    (count, relative)
                }
            };
            entries.push(TableEntry {
                name: name.clone(),
                rows: entry.0,
                table_version: self.table_version(name)?.get(),
                files: vec![entry.1],
                delta_table: None,
                delta_version: None,
            });
            progress.tables_done += 1;
            if let Some(f) = &options.progress {
                f(&progress);
            }
        }
        // Delta: every data file is durable; now commit one Delta version per table.
        for (index, table_dir, file, count) in delta_pending {
            let version = delta::commit(fs.as_ref(), &table_dir, &file, count, self.version())?;
            if let (Some(entry), Some(dir_name)) = (entries.get_mut(index), table_dir.file_name()) {
                entry.delta_table = Some(format!(
                    "../{}/{}",
                    delta::DELTA_DIR,
                    dir_name.to_string_lossy()
                ));
                entry.delta_version = Some(version);
            }
        }
        let manifest = Manifest::new(options.format, self.version(), entries);
        let path = staging.publish(&manifest)?;
        Ok(ExportReport {
            path,
            version: self.version(),
            rows: progress.rows,
            bytes: progress.bytes,
            manifest,
            elapsed: started.elapsed(),
        })
    }
}

/// One table's rows for [`publish_rows`]: `(key, version, value)` in key order.
pub(crate) struct TableRows<'a> {
    pub name: &'a str,
    pub table_version: Version,
    pub rows: Box<dyn Iterator<Item = (&'a [u8], Version, &'a [u8])> + 'a>,
}

/// Publishes rows held in memory as a JSON Lines export at `version` (the protocol of
/// [`Snapshot::export`]); returns the published directory.
pub(crate) fn publish_rows(
    fs: &dyn vellum_fs::FileSystem,
    target: &Path,
    version: Version,
    tables: Vec<TableRows<'_>>,
) -> Result<PathBuf> {
    let staging = publish::Staging::begin(fs, target, version)?;
    let mut progress = ExportProgress::starting(tables.len());
    let mut entries = Vec::with_capacity(tables.len());
    for table in tables {
        let file_name = publish::file_name_for(table.name, ExportFormat::JsonLines);
        let rows = table.rows.map(|(k, n, v)| Ok((k.to_vec(), n, v.to_vec())));
        let (count, file) = jsonl::write_table(
            fs,
            &staging.dir().join(&file_name),
            &file_name,
            rows,
            &mut progress,
            None,
        )?;
        entries.push(TableEntry {
            name: table.name.to_string(),
            rows: count,
            table_version: table.table_version.get(),
            files: vec![file],
            delta_table: None,
            delta_version: None,
        });
    }
    staging.publish(&Manifest::new(ExportFormat::JsonLines, version, entries))
}

/// A row read back from a JSON Lines file: `(key, value, version)`.
pub(crate) type LoadedRow = (Vec<u8>, Vec<u8>, Version);

/// A table read back by [`read_latest`]: name, rows, table version.
pub(crate) type LoadedTable = (String, Vec<LoadedRow>, Version);

/// Reads back the JSON Lines export `LATEST` names under `target`: its commit version and
/// every table. Checks each file's size and checksum against the manifest.
pub(crate) fn read_latest(
    fs: &dyn vellum_fs::FileSystem,
    target: &Path,
) -> Result<Option<(Version, Vec<LoadedTable>)>> {
    let Some((dir, manifest)) = publish::latest(fs, target)? else {
        return Ok(None);
    };
    if manifest.format != ExportFormat::JsonLines.name() {
        return Err(corrupt(
            &dir,
            format!("a {} export, not JSON Lines", manifest.format),
        ));
    }
    let mut tables = Vec::with_capacity(manifest.tables.len());
    for table in &manifest.tables {
        let mut rows = Vec::with_capacity(table.rows as usize);
        for file in &table.files {
            let path = dir.join(&file.path);
            let data = fs.read(&path).map_err(crate::error::io_err(&path))?;
            if data.len() as u64 != file.bytes
                || format!("{:08x}", crc32c::crc32c(&data)) != file.crc32c
            {
                return Err(corrupt(&path, "size or checksum differs from the manifest"));
            }
            rows.extend(jsonl::parse(&path, &data)?);
        }
        tables.push((table.name.clone(), rows, Version(table.table_version)));
    }
    Ok(Some((Version(manifest.commit_version), tables)))
}

/// Reads the manifest of the newest complete export under `target` (the one `LATEST` names),
/// through the real file system.
pub fn latest_export(target: impl AsRef<Path>) -> Result<Option<(PathBuf, Manifest)>> {
    publish::latest(&vellum_fs::RealFs, target.as_ref())
}

pub(crate) fn corrupt(file: &Path, reason: impl Into<String>) -> Error {
    Error::Corruption {
        file: file.to_path_buf(),
        offset: 0,
        reason: reason.into(),
    }
}
