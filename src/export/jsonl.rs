//! The JSON Lines format: one object per row.
//!
//! `{"key": "...", "key_encoding": "utf8"|"base64", "value": "...", "value_encoding": ...,
//! "version": N}` followed by a newline, rows in key order.

use super::sink::FileSink;
use super::{ExportProgress, FileEntry, PROGRESS_EVERY_ROWS};
use crate::error::{Error, Result};
use base64::Engine;
use serde::Serialize;
use std::path::Path;
use vellum_fs::FileSystem;
use vellum_storage::Version;

#[derive(Serialize)]
struct Row<'a> {
    key: std::borrow::Cow<'a, str>,
    key_encoding: &'static str,
    value: std::borrow::Cow<'a, str>,
    value_encoding: &'static str,
    version: u64,
}

/// Text of `bytes` and its encoding: UTF-8 where valid, base64 otherwise.
fn encode(bytes: &[u8]) -> (std::borrow::Cow<'_, str>, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.into(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into(),
            "base64",
        ),
    }
}

/// Writes one table's rows; returns the row count and the file entry.
pub(crate) fn write_table(
    fs: &dyn FileSystem,
    path: &Path,
    name: &str,
    rows: impl Iterator<Item = vellum_storage::Result<(Vec<u8>, Version, Vec<u8>)>>,
    progress: &mut ExportProgress,
    report: Option<&(dyn Fn(&ExportProgress) + Send + Sync)>,
) -> Result<(u64, FileEntry)> {
    let mut sink = FileSink::create(fs, path, name)?;
    let mut count = 0u64;
    let mut line = Vec::with_capacity(256);
    let start_bytes = progress.bytes;
    for row in rows {
        let (key, version, value) = row?;
        let (k, key_encoding) = encode(&key);
        let (v, value_encoding) = encode(&value);
        line.clear();
        serde_json::to_writer(
            &mut line,
            &Row {
                key: k,
                key_encoding,
                value: v,
                value_encoding,
                version: version.get(),
            },
        )
        .map_err(|e| Error::InvalidArgument(format!("cannot encode a row as JSON: {e}")))?;
        line.push(b'\n');
        sink.write(&line)?;
        count += 1;
        progress.rows += 1;
        if count.is_multiple_of(PROGRESS_EVERY_ROWS) {
            progress.bytes = start_bytes + sink.len();
            if let Some(f) = report {
                f(progress);
            }
        }
    }
    let entry = sink.finish()?;
    progress.bytes = start_bytes + entry.bytes;
    Ok((count, entry))
}

/// Parses a JSON Lines table file back into `(key, value, version)` rows.
pub(crate) fn parse(path: &Path, data: &[u8]) -> Result<Vec<super::LoadedRow>> {
    #[derive(serde::Deserialize)]
    struct OwnedRow {
        key: String,
        key_encoding: String,
        value: String,
        value_encoding: String,
        version: u64,
    }
    let bad = |what: String| super::corrupt(path, what);
    let decode = |text: String, encoding: &str| -> Result<Vec<u8>> {
        match encoding {
            "utf8" => Ok(text.into_bytes()),
            "base64" => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| bad(format!("bad base64: {e}"))),
            other => Err(bad(format!("unknown encoding {other}"))),
        }
    };
    let mut rows = Vec::new();
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let row: OwnedRow =
            serde_json::from_slice(line).map_err(|e| bad(format!("not a row: {e}")))?;
        rows.push((
            decode(row.key, &row.key_encoding)?,
            decode(row.value, &row.value_encoding)?,
            Version(row.version),
        ));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn text_stays_text_and_binary_becomes_base64() {
        assert_eq!(encode(b"alice"), ("alice".into(), "utf8"));
        assert_eq!(encode(&[0xff, 0x00]), ("/wA=".into(), "base64"));
    }
}
