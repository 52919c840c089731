//! The commit record: one write-ahead-log payload per committed transaction, holding every
//! table's changes, so multi-table atomicity comes from one record.
//!
//! Layout (little-endian; also in `docs/format/checkpoint.md`):
//!
//! ```text
//! format u8 (= 1) | version u64 | change_count u32 | change*
//! change: table u32 | op u8 (1 = put, 2 = delete) | key_len u32 | key | [value_len u32 | value]
//! ```

use crate::catalog::{decode_id, CATALOG};
use vellum_storage::{Change, TableId, Version};

/// Format of commit records written by this build. Never reuse a number.
pub(crate) const RECORD_FORMAT: u8 = 1;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
/// Byte offset of the version field, patched in once the version is assigned.
const VERSION_OFFSET: usize = 1;

/// Encodes a record whose version is filled in later with [`set_version`].
pub(crate) fn encode<'a>(
    changes: impl ExactSizeIterator<Item = (TableId, &'a [u8], Option<&'a [u8]>)>,
    size_hint: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + size_hint + changes.len() * 13);
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&0u64.to_le_bytes());
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
    out
}

pub(crate) fn set_version(record: &mut [u8], version: Version) {
    record[VERSION_OFFSET..VERSION_OFFSET + 8].copy_from_slice(&version.0.to_le_bytes());
}

/// A decoded record borrowing from its payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded<'a> {
    pub version: Version,
    pub changes: Vec<Change<'a>>,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("record ends early at byte {}", self.pos))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// Decodes a record; `Err` says what is malformed.
pub(crate) fn decode(data: &[u8]) -> Result<Decoded<'_>, String> {
    let mut r = Reader { data, pos: 0 };
    let format = r.take(1)?[0];
    if format != RECORD_FORMAT {
        return Err(format!("unknown commit record format {format}"));
    }
    let version = Version(r.u64()?);
    if version == Version::ZERO {
        return Err("commit record without a version".into());
    }
    let count = r.u32()? as usize;
    // Each change takes at least 9 bytes: do not trust `count` for the allocation.
    let mut changes = Vec::with_capacity(count.min(data.len() / 9));
    for _ in 0..count {
        let table = TableId(r.u32()?);
        if table > TableId::MAX {
            return Err(format!("table id {} out of range", table.0));
        }
        let op = r.take(1)?[0];
        let key_len = r.u32()? as usize;
        let key = r.take(key_len)?;
        let value = match op {
            OP_PUT => {
                let len = r.u32()? as usize;
                Some(r.take(len)?)
            }
            OP_DELETE => None,
            other => return Err(format!("unknown change kind {other}")),
        };
        changes.push(Change { table, key, value });
    }
    if r.pos != data.len() {
        return Err(format!(
            "{} unexpected bytes after the changes",
            data.len() - r.pos
        ));
    }
    Ok(Decoded { version, changes })
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
