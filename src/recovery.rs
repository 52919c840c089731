//! Recovery: replay the commit records logged after the checkpoint into storage.
//!
//! The checkpoint's metadata holds the log position it covers and the prepared (two-phase)
//! transactions unresolved at that point; every record after it is a commit (version above the
//! checkpoint's, in version order), a prepare, or the resolution of a prepared transaction. A
//! record that passes the log's checksum but does not decode, or breaks version order, is
//! corruption.

use crate::error::{Error, Result};
use crate::prepared::{PreparedTx, TwoPhase};
use crate::record::{self, LogRecord, Reader};
use std::path::Path;
use vellum_storage::{Store, Version};
use vellum_wal::{Lsn, Record};

/// Checkpoint metadata: format u8 (= 1) | covered lsn u64 | prepared_count u32 |
/// (len u32 | prepared transaction)*.
const META_FORMAT: u8 = 1;

pub(crate) fn encode_meta<'a>(lsn: Lsn, prepared: impl Iterator<Item = &'a PreparedTx>) -> Vec<u8> {
    let mut m = vec![META_FORMAT];
    m.extend_from_slice(&lsn.0.to_le_bytes());
    let count_at = m.len();
    m.extend_from_slice(&0u32.to_le_bytes());
    let mut count = 0u32;
    for p in prepared {
        let mut body = Vec::new();
        p.encode_body(&mut body);
        m.extend_from_slice(&(body.len() as u32).to_le_bytes());
        m.extend_from_slice(&body);
        count += 1;
    }
    m[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    m
}

pub(crate) fn decode_meta(file: &Path, meta: &[u8]) -> Result<(Lsn, Vec<PreparedTx>)> {
    let parse = || -> Result<(Lsn, Vec<PreparedTx>), String> {
        let mut r = Reader::new(meta);
        if r.u8()? != META_FORMAT {
            return Err("unknown checkpoint metadata format".into());
        }
        let lsn = Lsn(r.u64()?);
        let count = r.u32()? as usize;
        let mut prepared = Vec::with_capacity(count.min(meta.len() / 4));
        for _ in 0..count {
            let len = r.u32()? as usize;
            let mut body = Reader::new(r.take(len)?);
            prepared.push(PreparedTx::decode_body(&mut body)?);
            body.finish()?;
        }
        r.finish()?;
        Ok((lsn, prepared))
    };
    parse().map_err(|reason| Error::Corruption {
        file: file.to_path_buf(),
        offset: 32,
        reason: format!("checkpoint metadata: {reason}"),
    })
}

/// Applies `records` (all after the checkpoint) to storage and to the prepared transactions,
/// and returns the newest version and its lsn.
pub(crate) fn replay(
    store: &Store,
    two_phase: &mut TwoPhase,
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
            reason: format!("log record at lsn {}: {reason}", rec.lsn),
        };
        match record::decode_any(&rec.payload).map_err(corrupt)? {
            LogRecord::Commit {
                version,
                gid,
                changes,
            } => {
                if version <= last.0 {
                    return Err(corrupt(format!(
                        "version {version} does not follow version {}",
                        last.0
                    )));
                }
                let touched = record::touched_tables(&changes);
                store.apply(version, &changes, &touched);
                if let Some(gid) = gid {
                    two_phase.remove(&gid);
                }
                last = (version, rec.lsn);
            }
            LogRecord::Prepare(prepared) => {
                two_phase.remove(&prepared.gid);
                two_phase.insert(prepared);
            }
            LogRecord::RollbackPrepared(gid) => {
                two_phase.remove(&gid);
            }
        }
    }
    Ok(last)
}
