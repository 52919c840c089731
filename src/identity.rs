//! The `VELLUM` identity file that marks a directory as a vellum database.
//!
//! Layout (16 bytes, little-endian): magic `VELLUMDB` | format u32 | crc32c u32 over bytes 0..12.
//! It is written last when a database is created (atomically: temporary file, sync, rename,
//! directory sync), so a directory without it holds no acknowledged commit.

use crate::error::{io_err, Error, Result};
use std::path::Path;
use vellum_fs::FileSystem;

/// Name of the identity file.
pub(crate) const FILE_NAME: &str = "VELLUM";
const MAGIC: [u8; 8] = *b"VELLUMDB";
/// Database format version (layout of the directory as a whole).
pub(crate) const DB_FORMAT: u32 = 1;
/// Entries of a database directory that may exist before the identity file does (a creation
/// that was interrupted).
pub(crate) const OWN_ENTRIES: [&str; 4] = ["LOCK", "wal", "data", "VELLUM.tmp"];

pub(crate) fn encode() -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&DB_FORMAT.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..12]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Checks an existing identity file.
pub(crate) fn check(fs: &dyn FileSystem, path: &Path) -> Result<()> {
    let data = fs.read(path).map_err(io_err(path))?;
    let corrupt = |reason: &str| Error::Corruption {
        file: path.to_path_buf(),
        offset: 0,
        reason: reason.into(),
    };
    if data.len() != 16 {
        return Err(corrupt("identity file has the wrong length"));
    }
    if data[0..8] != MAGIC {
        return Err(corrupt("bad magic in the identity file"));
    }
    if crc32c::crc32c(&data[0..12]) != u32::from_le_bytes([data[12], data[13], data[14], data[15]])
    {
        return Err(corrupt("identity file checksum mismatch"));
    }
    let format = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if format != DB_FORMAT {
        return Err(Error::UnsupportedFormat {
            file: path.to_path_buf(),
            found: format,
            supported: DB_FORMAT,
        });
    }
    Ok(())
}
