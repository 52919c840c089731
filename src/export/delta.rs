//! Delta Lake tables: one per vellum table, under `target/delta/<table file name>/`.
//!
//! Each export writes one Parquet data file per table (`part-<commit version:020>-<id>.parquet`,
//! `version` as signed `INT64`: Delta has no unsigned types) and commits one new Delta version
//! to the table's `_delta_log`: version 0 carries `protocol` (minReaderVersion 1,
//! minWriterVersion 2) and `metaData`; every version `remove`s the files of the previous one and
//! `add`s the new file, so Delta version `n` of a table is the table at one vellum commit
//! version, and time travel by Delta version reaches every earlier export. The export's
//! `manifest.json` records each table's Delta version, which ties the tables together at one
//! vellum commit version.
//!
//! Commit files are `_delta_log/<version:020>.json`, one action per line, created atomically
//! (temporary file, sync, rename, directory sync) and never overwritten. One exporter at a time
//! per target directory.

use super::sink::FileSink;
use super::{corrupt, ExportProgress, FileEntry};
use crate::error::{io_err, Result};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use vellum_fs::FileSystem;
use vellum_storage::Version;

/// Directory under the export target that holds the Delta tables.
pub(crate) const DELTA_DIR: &str = "delta";
const LOG_DIR: &str = "_delta_log";

/// The Spark/Delta schema of every table: key and value binary, version long.
const SCHEMA: &str = r#"{"type":"struct","fields":[{"name":"key","type":"binary","nullable":false,"metadata":{}},{"name":"value","type":"binary","nullable":false,"metadata":{}},{"name":"version","type":"long","nullable":false,"metadata":{}}]}"#;

/// The state of a Delta table's log: its next version and its live data files.
#[derive(Debug, Default)]
struct LogState {
    next_version: u64,
    files: BTreeSet<String>,
    table_id: Option<String>,
}

fn log_file(dir: &Path, version: u64) -> PathBuf {
    dir.join(LOG_DIR).join(format!("{version:020}.json"))
}

/// Replays `_delta_log` (commits only; this writer writes no checkpoints).
fn read_log(fs: &dyn FileSystem, table_dir: &Path) -> Result<LogState> {
    let mut state = LogState::default();
    loop {
        let path = log_file(table_dir, state.next_version);
        if !fs.exists(&path).map_err(io_err(&path))? {
            return Ok(state);
        }
        let text = fs.read(&path).map_err(io_err(&path))?;
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| corrupt(&path, format!("not a Delta commit: {e}")))?;
            if let Some(p) = action.pointer("/add/path").and_then(|p| p.as_str()) {
                state.files.insert(p.to_string());
            }
            if let Some(p) = action.pointer("/remove/path").and_then(|p| p.as_str()) {
                state.files.remove(p);
            }
            if let Some(id) = action.pointer("/metaData/id").and_then(|p| p.as_str()) {
                state.table_id = Some(id.to_string());
            }
        }
        state.next_version += 1;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Writes the table's data file for this export; returns (row count, file entry relative to
/// the table directory, table directory).
pub(crate) fn write_data(
    fs: &dyn FileSystem,
    target: &Path,
    table_file_stem: &str,
    commit_version: Version,
    rows: impl Iterator<Item = vellum_storage::Result<(Vec<u8>, Version, Vec<u8>)>>,
    progress: &mut ExportProgress,
    report: Option<&(dyn Fn(&ExportProgress) + Send + Sync)>,
) -> Result<(u64, FileEntry, PathBuf)> {
    let table_dir = target.join(DELTA_DIR).join(table_file_stem);
    vellum_fs::create_dir_durable(fs, &table_dir.join(LOG_DIR)).map_err(io_err(&table_dir))?;
    let id: u64 = rand::Rng::random(&mut rand::rng());
    let name = format!("part-{:020}-{id:016x}.parquet", commit_version.get());
    let (rows, entry) = super::parquet::write_table(
        fs,
        &table_dir.join(&name),
        &name,
        rows,
        true,
        progress,
        report,
    )?;
    fs.sync_dir(&table_dir).map_err(io_err(&table_dir))?;
    Ok((rows, entry, table_dir))
}

/// Commits a new Delta version of the table replacing its files by `file`; returns it.
pub(crate) fn commit(
    fs: &dyn FileSystem,
    table_dir: &Path,
    file: &FileEntry,
    rows: u64,
    commit_version: Version,
) -> Result<u64> {
    let state = read_log(fs, table_dir)?;
    let now = now_ms();
    let mut actions = Vec::new();
    if state.next_version == 0 {
        actions.push(json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}));
        let table_id = format!(
            "{:016x}{:016x}",
            rand::Rng::random::<u64>(&mut rand::rng()),
            rand::Rng::random::<u64>(&mut rand::rng())
        );
        actions.push(json!({"metaData": {
            "id": format!("{}-{}-{}-{}-{}", &table_id[0..8], &table_id[8..12], &table_id[12..16], &table_id[16..20], &table_id[20..32]),
            "format": {"provider": "parquet", "options": {}},
            "schemaString": SCHEMA,
            "partitionColumns": [],
            "configuration": {},
            "createdTime": now,
        }}));
    }
    for old in &state.files {
        actions.push(json!({"remove": {
            "path": old, "deletionTimestamp": now, "dataChange": true,
        }}));
    }
    actions.push(json!({"add": {
        "path": file.path, "partitionValues": {}, "size": file.bytes,
        "modificationTime": now, "dataChange": true,
        "stats": json!({"numRecords": rows}).to_string(),
    }}));
    actions.push(json!({"commitInfo": {
        "timestamp": now,
        "operation": "WRITE",
        "operationParameters": {"mode": "Overwrite"},
        "engineInfo": format!("vellum {}", env!("CARGO_PKG_VERSION")),
        "vellumCommitVersion": commit_version.get(),
    }}));
    let mut text = Vec::new();
    for a in &actions {
        serde_json::to_writer(&mut text, a).map_err(|e| {
            crate::Error::InvalidArgument(format!("cannot encode a Delta action: {e}"))
        })?;
        text.push(b'\n');
    }
    let version = state.next_version;
    let path = log_file(table_dir, version);
    let log_dir = table_dir.join(LOG_DIR);
    let tmp = log_dir.join(format!(".{version:020}.json.tmp"));
    let mut sink = FileSink::create(fs, &tmp, "")?;
    sink.write(&text)?;
    sink.finish()?;
    if fs.exists(&path).map_err(io_err(&path))? {
        return Err(corrupt(
            &path,
            "Delta version already exists: another writer?",
        ));
    }
    fs.rename(&tmp, &path).map_err(io_err(&tmp))?;
    fs.sync_dir(&log_dir).map_err(io_err(&log_dir))?;
    Ok(version)
}
