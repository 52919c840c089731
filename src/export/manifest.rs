//! `manifest.json`: what an export holds, for readers that never link vellum.

use super::ExportFormat;
use serde::{Deserialize, Serialize};
use vellum_storage::Version;

/// Version of the manifest layout.
pub const MANIFEST_VERSION: u32 = 1;

/// The manifest of one export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of this manifest ([`MANIFEST_VERSION`]).
    pub manifest_version: u32,
    /// The export format (`"jsonl"`).
    pub format: String,
    /// The vellum commit version every table was read at.
    pub commit_version: u64,
    /// When the export finished, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The tables, sorted by name.
    pub tables: Vec<TableEntry>,
}

/// One table of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// The table's name.
    pub name: String,
    /// Rows exported.
    pub rows: u64,
    /// The table's version (newest commit that changed it) at the export's commit version.
    pub table_version: u64,
    /// Its data files, relative to the export directory.
    pub files: Vec<FileEntry>,
    /// Delta exports: the table's Delta table directory, relative to the export directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_table: Option<String>,
    /// Delta exports: the Delta version of that table that holds this export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_version: Option<u64>,
}

/// One data file of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the export directory.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// CRC-32C of the whole file, as 8 lowercase hex digits.
    pub crc32c: String,
}

impl Manifest {
    pub(crate) fn new(format: ExportFormat, version: Version, tables: Vec<TableEntry>) -> Self {
        let created_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Manifest {
            manifest_version: MANIFEST_VERSION,
            format: format.name().to_string(),
            commit_version: version.get(),
            created_unix_ms,
            tables,
        }
    }
}
