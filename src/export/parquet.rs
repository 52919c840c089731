//! The Parquet format: one file per table with columns `key` (binary), `value` (binary) and
//! `version`, written with the `parquet` crate's low-level column writer (no arrow), Snappy
//! compressed, in row groups of [`ROW_GROUP_ROWS`] rows.
//!
//! Plain Parquet exports annotate `version` as an unsigned 64-bit integer (`INT64` with
//! `INTEGER(64, false)`); Delta Lake data files must not (Delta has no unsigned types, and Spark
//! reads `UINT64` as `decimal(20,0)`), so they use a plain signed `INT64`.

use super::sink::FileSink;
use super::{ExportProgress, FileEntry, PROGRESS_EVERY_ROWS};
use crate::error::{Error, Result};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use vellum_fs::FileSystem;
use vellum_storage::Version;

/// Rows per row group.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

const SCHEMA_UNSIGNED: &str = "message vellum_row {
    required binary key;
    required binary value;
    required int64 version (INTEGER(64, false));
}";
const SCHEMA_SIGNED: &str = "message vellum_row {
    required binary key;
    required binary value;
    required int64 version;
}";

/// Lets the parquet writer write into a [`FileSink`].
struct SinkWriter<'a>(&'a mut FileSink);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .write(buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn parquet_err(e: parquet::errors::ParquetError) -> Error {
    Error::Io {
        path: std::path::PathBuf::new(),
        source: std::io::Error::other(format!("parquet: {e}")),
    }
}

/// Column buffers of one row group.
#[derive(Default)]
struct Columns {
    keys: Vec<ByteArray>,
    values: Vec<ByteArray>,
    versions: Vec<i64>,
}

impl Columns {
    fn write_to<W: Write + Send>(&mut self, writer: &mut SerializedFileWriter<W>) -> Result<()> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let mut rg = writer.next_row_group().map_err(parquet_err)?;
        let mut index = 0;
        while let Some(mut col) = rg.next_column().map_err(parquet_err)? {
            match index {
                0 => col
                    .typed::<ByteArrayType>()
                    .write_batch(&self.keys, None, None)
                    .map(|_| ()),
                1 => col
                    .typed::<ByteArrayType>()
                    .write_batch(&self.values, None, None)
                    .map(|_| ()),
                _ => col
                    .typed::<Int64Type>()
                    .write_batch(&self.versions, None, None)
                    .map(|_| ()),
            }
            .map_err(parquet_err)?;
            col.close().map_err(parquet_err)?;
            index += 1;
        }
        rg.close().map_err(parquet_err)?;
        self.keys.clear();
        self.values.clear();
        self.versions.clear();
        Ok(())
    }
}

/// Writes one table's rows; returns the row count and the file entry.
pub(crate) fn write_table(
    fs: &dyn FileSystem,
    path: &Path,
    name: &str,
    rows: impl Iterator<Item = vellum_storage::Result<(Vec<u8>, Version, Vec<u8>)>>,
    signed_version: bool,
    progress: &mut ExportProgress,
    report: Option<&(dyn Fn(&ExportProgress) + Send + Sync)>,
) -> Result<(u64, FileEntry)> {
    let schema = parse_message_type(if signed_version {
        SCHEMA_SIGNED
    } else {
        SCHEMA_UNSIGNED
    })
    .map_err(parquet_err)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("vellum {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut sink = FileSink::create(fs, path, name)?;
    let start_bytes = progress.bytes;
    let mut count = 0u64;
    {
        let mut writer =
            SerializedFileWriter::new(SinkWriter(&mut sink), Arc::new(schema), Arc::new(props))
                .map_err(parquet_err)?;
        let mut columns = Columns::default();
        for row in rows {
            let (key, version, value) = row?;
            let version = i64::try_from(version.get()).map_err(|_| {
                Error::InvalidArgument(format!(
                    "version {version} does not fit a signed 64-bit integer"
                ))
            })?;
            columns.keys.push(ByteArray::from(key));
            columns.values.push(ByteArray::from(value));
            columns.versions.push(version);
            count += 1;
            progress.rows += 1;
            if columns.keys.len() >= ROW_GROUP_ROWS {
                columns.write_to(&mut writer)?;
            }
            if count.is_multiple_of(PROGRESS_EVERY_ROWS) {
                if let Some(f) = report {
                    f(progress);
                }
            }
        }
        columns.write_to(&mut writer)?;
        writer.close().map_err(parquet_err)?;
    }
    let entry = sink.finish()?;
    progress.bytes = start_bytes + entry.bytes;
    Ok((count, entry))
}
