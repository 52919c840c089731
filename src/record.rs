//! Log records: one write-ahead-log payload per committed transaction, holding every table's
//! changes, so multi-table atomicity comes from one record; plus the records of two-phase
//! commit.
//!
//! Layout (little-endian; also in `docs/format/checkpoint.md`):
//!
//! ```text
//! 1 commit            format u8 = 1 | version u64 | changes
//! 2 prepare           format u8 = 2 | prepared transaction (see crate::prepared)
//! 3 commit prepared   format u8 = 3 | version u64 | gid | changes
//! 4 rollback prepared format u8 = 4 | gid
//! changes: change_count u32 | change*
//! change:  table u32 | op u8 (1 = put, 2 = delete) | key_len u32 | key | [value_len u32 | value]
//! gid:     len u16 | UTF-8 bytes
//! ```

use crate::catalog::{decode_id, CATALOG};
use vellum_storage::{Change, TableId, Version};

/// Record formats. Never reuse a number.
pub(crate) const RECORD_FORMAT: u8 = 1;
pub(crate) const PREPARE_FORMAT: u8 = 2;
pub(crate) const COMMIT_PREPARED_FORMAT: u8 = 3;
pub(crate) const ROLLBACK_PREPARED_FORMAT: u8 = 4;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
/// Byte offset of the version field (formats 1 and 3), patched in once it is assigned.
const VERSION_OFFSET: usize = 1;

/// A change as the record encoders take it.
pub(crate) type ChangeRef<'a> = (TableId, &'a [u8], Option<&'a [u8]>);

/// Encodes a commit record whose version is filled in later with [`set_version`].
pub(crate) fn encode<'a>(
    changes: impl ExactSizeIterator<Item = ChangeRef<'a>>,
    size_hint: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + size_hint + changes.len() * 13);
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&0u64.to_le_bytes());
    encode_changes(&mut out, changes);
    out
}

/// Encodes a commit-prepared record whose version is filled in later with [`set_version`].
pub(crate) fn encode_commit_prepared<'a>(
    gid: &str,
    changes: impl ExactSizeIterator<Item = ChangeRef<'a>>,
) -> Vec<u8> {
    let mut out = vec![COMMIT_PREPARED_FORMAT];
    out.extend_from_slice(&0u64.to_le_bytes());
    put_str16(&mut out, gid);
    encode_changes(&mut out, changes);
    out
}

/// Encodes a rollback-prepared record.
pub(crate) fn encode_rollback_prepared(gid: &str) -> Vec<u8> {
    let mut out = vec![ROLLBACK_PREPARED_FORMAT];
    put_str16(&mut out, gid);
    out
}

pub(crate) fn encode_changes<'a>(
    out: &mut Vec<u8>,
    changes: impl ExactSizeIterator<Item = ChangeRef<'a>>,
) {
    out.extend_from_slice(&(changes.len() as u32).to_le_bytes());
    for (table, key, value) in changes {
        out.extend_from_slice(&table.0.to_le_bytes());
        out.push(if value.is_some() { OP_PUT } else { OP_DELETE });
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        if let Some(v) = value {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
    }
}

/// Appends a string of at most `u16::MAX` bytes (callers validate the length).
pub(crate) fn put_str16(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

pub(crate) fn set_version(record: &mut [u8], version: Version) {
    record[VERSION_OFFSET..VERSION_OFFSET + 8].copy_from_slice(&version.0.to_le_bytes());
}

/// A decoded commit record borrowing from its payload.
#[cfg(test)]
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded<'a> {
    pub version: Version,
    pub changes: Vec<Change<'a>>,
}

/// A bounds-checked little-endian reader over a record.
pub(crate) struct Reader<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("record ends early at byte {}", self.pos))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn str16(&mut self) -> Result<String, String> {
        let len = self.u16()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "string is not UTF-8".to_string())
    }
    pub fn table(&mut self) -> Result<TableId, String> {
        let table = TableId(self.u32()?);
        if table > TableId::MAX {
            return Err(format!("table id {} out of range", table.0));
        }
        Ok(table)
    }
    pub fn finish(&self) -> Result<(), String> {
        if self.pos != self.data.len() {
            return Err(format!(
                "{} unexpected bytes at the end",
                self.data.len() - self.pos
            ));
        }
        Ok(())
    }
    pub fn changes(&mut self) -> Result<Vec<Change<'a>>, String> {
        let count = self.u32()? as usize;
        // Each change takes at least 9 bytes: do not trust `count` for the allocation.
        let mut changes = Vec::with_capacity(count.min(self.data.len() / 9));
        for _ in 0..count {
            let table = self.table()?;
            let op = self.u8()?;
            let key_len = self.u32()? as usize;
            let key = self.take(key_len)?;
            let value = match op {
                OP_PUT => {
                    let len = self.u32()? as usize;
                    Some(self.take(len)?)
                }
                OP_DELETE => None,
                other => return Err(format!("unknown change kind {other}")),
            };
            changes.push(Change { table, key, value });
        }
        Ok(changes)
    }
}

/// Any log record, decoded.
#[derive(Debug)]
pub(crate) enum LogRecord<'a> {
    /// A transaction's commit, or the commit of a prepared one (`gid` set).
    Commit {
        version: Version,
        gid: Option<String>,
        changes: Vec<Change<'a>>,
    },
    Prepare(crate::prepared::PreparedTx),
    RollbackPrepared(String),
}

/// Decodes a plain commit record (format 1); `Err` says what is malformed.
#[cfg(test)]
pub(crate) fn decode(data: &[u8]) -> Result<Decoded<'_>, String> {
    match decode_any(data)? {
        LogRecord::Commit {
            version,
            gid: None,
            changes,
        } => Ok(Decoded { version, changes }),
        _ => Err("not a plain commit record".into()),
    }
}

/// Decodes any log record; `Err` says what is malformed.
pub(crate) fn decode_any(data: &[u8]) -> Result<LogRecord<'_>, String> {
    let mut r = Reader::new(data);
    let format = r.u8()?;
    let record = match format {
        RECORD_FORMAT | COMMIT_PREPARED_FORMAT => {
            let version = Version(r.u64()?);
            if version == Version::ZERO {
                return Err("commit record without a version".into());
            }
            let gid = if format == COMMIT_PREPARED_FORMAT {
                Some(r.str16()?)
            } else {
                None
            };
            LogRecord::Commit {
                version,
                gid,
                changes: r.changes()?,
            }
        }
        PREPARE_FORMAT => LogRecord::Prepare(crate::prepared::PreparedTx::decode_body(&mut r)?),
        ROLLBACK_PREPARED_FORMAT => LogRecord::RollbackPrepared(r.str16()?),
        other => return Err(format!("unknown log record format {other}")),
    };
    r.finish()?;
    Ok(record)
}

/// Tables whose version the commit sets: every table written, and every table the commit
/// creates (a catalog put names the new table's id).
pub(crate) fn touched_tables(changes: &[Change<'_>]) -> Vec<TableId> {
    let mut out: Vec<TableId> = changes.iter().map(|c| c.table).collect();
    for c in changes {
        if c.table == CATALOG {
            if let Some(id) = c.value.and_then(decode_id) {
                out.push(id);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() -> Result<(), String> {
        let changes = vec![
            (TableId(1), &b"k1"[..], Some(&b"v1"[..])),
            (TableId(2), &b""[..], None),
        ];
        let mut rec = encode(changes.into_iter(), 4);
        set_version(&mut rec, Version(42));
        let d = decode(&rec)?;
        assert_eq!(d.version, Version(42));
        assert_eq!(d.changes.len(), 2);
        assert_eq!(d.changes[0].value, Some(&b"v1"[..]));
        assert_eq!(d.changes[1].value, None);
        assert_eq!(touched_tables(&d.changes), vec![TableId(1), TableId(2)]);
        Ok(())
    }

    #[test]
    fn truncated_or_garbage_records_are_errors_not_panics() {
        let mut rec = encode(
            vec![(TableId(1), &b"key"[..], Some(&b"value"[..]))].into_iter(),
            8,
        );
        set_version(&mut rec, Version(1));
        for len in 0..rec.len() {
            assert!(decode(&rec[..len]).is_err(), "cut at {len}");
        }
        let mut huge_count = rec.clone();
        huge_count[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge_count).is_err());
    }
}
