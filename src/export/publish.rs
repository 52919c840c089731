//! Atomic publication of an export directory.
//!
//! ```text
//! target/
//!   LATEST                              name of the newest complete export, then "\n"
//!   export-<version:020>-<id:016x>/     a published export: manifest.json + data files
//!   .staging-<version:020>-<id:016x>/   an export being written
//! ```
//!
//! Protocol: create the staging directory (its entry synced), write and sync every data file,
//! write and sync `manifest.json`, sync the staging directory, rename it to its `export-` name,
//! sync `target`, then replace `LATEST` atomically (temporary file, sync, rename, sync). A crash
//! at any point leaves every `export-` directory complete (the rename is the publication) and
//! `LATEST` naming a complete one or absent; leftover staging directories are removed by the
//! next export. A published directory is never modified.

use super::{corrupt, ExportFormat, Manifest};
use crate::error::{io_err, Result};
use rand::Rng;
use std::path::{Path, PathBuf};
use vellum_fs::FileSystem;
use vellum_storage::Version;

/// Name of the pointer file.
pub(crate) const LATEST: &str = "LATEST";
/// Name of the manifest inside an export directory.
pub(crate) const MANIFEST: &str = "manifest.json";
const STAGING_PREFIX: &str = ".staging-";

/// An export directory being written.
pub(crate) struct Staging<'a> {
    fs: &'a dyn FileSystem,
    target: PathBuf,
    dir: PathBuf,
    name: String,
}

impl<'a> Staging<'a> {
    pub fn begin(fs: &'a dyn FileSystem, target: &Path, version: Version) -> Result<Staging<'a>> {
        vellum_fs::create_dir_durable(fs, target).map_err(io_err(target))?;
        let mut removed = false;
        for entry in fs.list(target).map_err(io_err(target))? {
            if entry.starts_with(STAGING_PREFIX) {
                let stale = target.join(&entry);
                fs.remove_dir_all(&stale).map_err(io_err(&stale))?;
                removed = true;
            }
        }
        if removed {
            fs.sync_dir(target).map_err(io_err(target))?;
        }
        let id: u64 = rand::rng().random();
        let suffix = format!("{:020}-{id:016x}", version.get());
        let dir = target.join(format!("{STAGING_PREFIX}{suffix}"));
        vellum_fs::create_dir_durable(fs, &dir).map_err(io_err(&dir))?;
        Ok(Staging {
            fs,
            target: target.to_path_buf(),
            dir,
            name: format!("export-{suffix}"),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the manifest and publishes the directory; returns its final path.
    pub fn publish(self, manifest: &Manifest) -> Result<PathBuf> {
        let fs = self.fs;
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| {
            crate::Error::InvalidArgument(format!("cannot encode the manifest: {e}"))
        })?;
        // Atomically, so that even an unpublished staging directory never holds a torn
        // manifest: temporary file, sync, rename, directory sync.
        let manifest_path = self.dir.join(MANIFEST);
        vellum_fs::write_file_atomic(fs, &manifest_path, &json).map_err(io_err(&manifest_path))?;
        let published = self.target.join(&self.name);
        fs.rename(&self.dir, &published)
            .map_err(io_err(&self.dir))?;
        fs.sync_dir(&self.target).map_err(io_err(&self.target))?;
        let latest = self.target.join(LATEST);
        vellum_fs::write_file_atomic(fs, &latest, format!("{}\n", self.name).as_bytes())
            .map_err(io_err(&latest))?;
        Ok(published)
    }
}

/// The data file name of a table: [`file_stem_for`] plus the format's extension.
pub(crate) fn file_name_for(table: &str, format: ExportFormat) -> String {
    let ext = match format {
        ExportFormat::JsonLines => "jsonl",
        ExportFormat::Parquet => "parquet",
        ExportFormat::Delta => "delta",
        ExportFormat::Native => "ckpt",
    };
    format!("{}.{ext}", file_stem_for(table))
}

/// Longest table file stem before it is shortened: leaves room for an extension within the
/// 255-byte file-name limit of common file systems.
const STEM_MAX: usize = 120;
/// How much of a shortened stem is kept before its hash.
const STEM_KEPT: usize = 100;

/// The table name made portable: every byte outside `[A-Za-z0-9-]` (including `_` itself) is
/// written as `_XX` (uppercase hex), so distinct tables get distinct names that are safe in file
/// systems and in URLs (readers such as deltalake parse paths as URLs, where `%` would decode).
/// A stem longer than [`STEM_MAX`] bytes keeps its first [`STEM_KEPT`] bytes followed by `~` and
/// a 64-bit FNV-1a hash of the whole table name in hex.
pub(crate) fn file_stem_for(table: &str) -> String {
    let mut out = String::with_capacity(table.len() + 8);
    for b in table.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    if out.len() > STEM_MAX {
        let hash = table.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        out.truncate(STEM_KEPT);
        out.push_str(&format!("~{hash:016x}"));
    }
    out
}

/// The export `LATEST` names under `target`, with its manifest.
pub(crate) fn latest(fs: &dyn FileSystem, target: &Path) -> Result<Option<(PathBuf, Manifest)>> {
    let pointer = target.join(LATEST);
    if !fs.exists(&pointer).map_err(io_err(&pointer))? {
        return Ok(None);
    }
    let name = fs.read(&pointer).map_err(io_err(&pointer))?;
    let name = std::str::from_utf8(&name)
        .map_err(|_| corrupt(&pointer, "LATEST is not UTF-8"))?
        .trim();
    if !name.starts_with("export-") || name.contains('/') {
        return Err(corrupt(
            &pointer,
            format!("LATEST names `{name}`, not an export"),
        ));
    }
    let dir = target.join(name);
    let manifest_path = dir.join(MANIFEST);
    let bytes = fs.read(&manifest_path).map_err(io_err(&manifest_path))?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(&manifest_path, format!("manifest is not valid: {e}")))?;
    Ok(Some((dir, manifest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_file_names_are_portable_and_distinct() {
        assert_eq!(
            file_name_for("accounts", ExportFormat::JsonLines),
            "accounts.jsonl"
        );
        assert_eq!(
            file_name_for("a/b c", ExportFormat::JsonLines),
            "a_2Fb_20c.jsonl"
        );
        assert_eq!(
            file_name_for(".hidden", ExportFormat::Parquet),
            "_2Ehidden.parquet"
        );
        assert_ne!(
            file_name_for("a_2F", ExportFormat::JsonLines),
            file_name_for("a/", ExportFormat::JsonLines)
        );
        let long = file_name_for(&" ".repeat(255), ExportFormat::Parquet);
        assert!(long.len() <= 255 - 10, "{}", long.len());
        assert_ne!(long, file_name_for(&" ".repeat(254), ExportFormat::Parquet));
    }
}
