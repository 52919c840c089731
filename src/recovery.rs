//! Recovery: replay the commit records logged after the checkpoint into storage.
//!
//! The checkpoint's metadata holds the log position it covers; every record after it is a
//! committed transaction with a version above the checkpoint's, in version order. A record that
//! passes the log's checksum but does not decode, or breaks version order, is corruption.

use crate::error::{Error, Result};
use crate::record;
use std::path::Path;
use vellum_storage::{Store, Version};
use vellum_wal::{Lsn, Record};

const META_FORMAT: u8 = 1;

/// Checkpoint metadata: format u8 | covered lsn u64.
pub(crate) fn encode_meta(lsn: Lsn) -> Vec<u8> {
    let mut m = vec![META_FORMAT];
    m.extend_from_slice(&lsn.0.to_le_bytes());
    m
}

pub(crate) fn decode_meta(file: &Path, meta: &[u8]) -> Result<Lsn> {
    match meta {
        [META_FORMAT, rest @ ..] if rest.len() == 8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(rest);
            Ok(Lsn(u64::from_le_bytes(a)))
        }
        _ => Err(Error::Corruption {
            file: file.to_path_buf(),
            offset: 32,
            reason: "checkpoint metadata is not a vellum log position".into(),
        }),
    }
}

/// Applies `records` (all after the checkpoint) and returns the newest version and its lsn.
pub(crate) fn replay(
    store: &Store,
    wal_dir: &Path,
    checkpoint: Version,
    checkpoint_lsn: Lsn,
    records: &[Record],
) -> Result<(Version, Lsn)> {
    let mut last = (checkpoint, checkpoint_lsn);
    for rec in records {
        let corrupt = |reason: String| Error::Corruption {
            file: wal_dir.to_path_buf(),
            offset: 0,
            reason: format!("commit record at lsn {}: {reason}", rec.lsn),
        };
        let decoded = record::decode(&rec.payload).map_err(corrupt)?;
        if decoded.version <= last.0 {
            return Err(corrupt(format!(
                "version {} does not follow version {}",
                decoded.version, last.0
            )));
        }
        let touched = record::touched_tables(&decoded.changes);
        store.apply(decoded.version, &decoded.changes, &touched);
        last = (decoded.version, rec.lsn);
    }
    Ok(last)
}
