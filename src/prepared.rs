//! Two-phase commit as a participant: prepared transactions and their reservations.
//!
//! `tx.prepare(gid)` validates the transaction like a commit, durably logs a prepare record
//! holding its whole write set, and reserves its keys: until the prepared transaction is
//! committed or rolled back, any other commit that writes a reserved key (or, for a
//! serializable transaction, a key it read or a key inside a range it scanned, or the catalog
//! entry of a table it writes) fails with a conflict. So `commit_prepared` cannot fail on
//! conflicts: nothing it depends on can change.
//!
//! Durability: prepare, commit-prepared and rollback-prepared are log records; unresolved
//! prepared transactions are also written into every checkpoint's metadata, so they survive a
//! crash and the release of the log that held their prepare record.
//!
//! Layout of a prepared transaction (prepare record body and checkpoint metadata entry):
//! `gid str16 | has_label u8 | [label str16] | changes | key_count u32 | (table u32 | key_len u32
//! | key)* | range_count u32 | (table u32 | lower bound | upper bound)*`, a bound being
//! `tag u8 (0 unbounded, 1 included, 2 excluded) | [len u32 | key]`.

use crate::record::{encode_changes, put_str16, Reader, PREPARE_FORMAT};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use vellum_storage::{Change, TableId};

/// Longest global id, in bytes.
pub const GLOBAL_ID_MAX: usize = 255;

/// A staged change, owned.
pub(crate) type OwnedChange = (TableId, Vec<u8>, Option<Vec<u8>>);
/// A key range of one table.
pub(crate) type KeyRange = (TableId, Bound<Vec<u8>>, Bound<Vec<u8>>);

/// A prepared, unresolved transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreparedTx {
    pub gid: String,
    pub label: Option<String>,
    pub changes: Vec<OwnedChange>,
    /// Keys no other commit may write (beyond `changes`' own keys).
    pub keys: Vec<(TableId, Vec<u8>)>,
    /// Ranges no other commit may write into.
    pub ranges: Vec<KeyRange>,
}

/// What [`crate::Db::prepared`] reports about a prepared transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedInfo {
    /// Its global id.
    pub global_id: String,
    /// Its label, if it had one.
    pub label: Option<String>,
    /// Number of changes it will commit.
    pub changes: usize,
}

impl PreparedTx {
    pub fn change_refs(&self) -> impl ExactSizeIterator<Item = Change<'_>> {
        self.changes.iter().map(|(t, k, v)| Change {
            table: *t,
            key: k,
            value: v.as_deref(),
        })
    }

    /// The prepare log record.
    pub fn encode_record(&self) -> Vec<u8> {
        let mut out = vec![PREPARE_FORMAT];
        self.encode_body(&mut out);
        out
    }

    pub fn encode_body(&self, out: &mut Vec<u8>) {
        put_str16(out, &self.gid);
        match &self.label {
            Some(l) => {
                out.push(1);
                put_str16(out, l);
            }
            None => out.push(0),
        }
        encode_changes(
            out,
            self.changes
                .iter()
                .map(|(t, k, v)| (*t, k.as_slice(), v.as_deref())),
        );
        out.extend_from_slice(&(self.keys.len() as u32).to_le_bytes());
        for (t, k) in &self.keys {
            out.extend_from_slice(&t.0.to_le_bytes());
            put_bytes(out, k);
        }
        out.extend_from_slice(&(self.ranges.len() as u32).to_le_bytes());
        for (t, lo, hi) in &self.ranges {
            out.extend_from_slice(&t.0.to_le_bytes());
            put_bound(out, lo);
            put_bound(out, hi);
        }
    }

    pub fn decode_body(r: &mut Reader<'_>) -> Result<PreparedTx, String> {
        let gid = r.str16()?;
        let label = match r.u8()? {
            0 => None,
            1 => Some(r.str16()?),
            other => return Err(format!("bad label tag {other}")),
        };
        let changes = r
            .changes()?
            .into_iter()
            .map(|c| (c.table, c.key.to_vec(), c.value.map(<[u8]>::to_vec)))
            .collect();
        let key_count = r.u32()? as usize;
        let mut keys = Vec::with_capacity(key_count.min(r.data.len() / 8));
        for _ in 0..key_count {
            let t = r.table()?;
            keys.push((t, get_bytes(r)?));
        }
        let range_count = r.u32()? as usize;
        let mut ranges = Vec::with_capacity(range_count.min(r.data.len() / 6));
        for _ in 0..range_count {
            let t = r.table()?;
            let lo = get_bound(r)?;
            let hi = get_bound(r)?;
            ranges.push((t, lo, hi));
        }
        Ok(PreparedTx {
            gid,
            label,
            changes,
            keys,
            ranges,
        })
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn get_bytes(r: &mut Reader<'_>) -> Result<Vec<u8>, String> {
    let len = r.u32()? as usize;
    Ok(r.take(len)?.to_vec())
}

fn put_bound(out: &mut Vec<u8>, b: &Bound<Vec<u8>>) {
    match b {
        Bound::Unbounded => out.push(0),
        Bound::Included(k) => {
            out.push(1);
            put_bytes(out, k);
        }
        Bound::Excluded(k) => {
            out.push(2);
            put_bytes(out, k);
        }
    }
}

fn get_bound(r: &mut Reader<'_>) -> Result<Bound<Vec<u8>>, String> {
    match r.u8()? {
        0 => Ok(Bound::Unbounded),
        1 => Ok(Bound::Included(get_bytes(r)?)),
        2 => Ok(Bound::Excluded(get_bytes(r)?)),
        other => Err(format!("bad bound tag {other}")),
    }
}

fn in_range(key: &[u8], lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    let above = match lo {
        Bound::Unbounded => true,
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
    };
    let below = match hi {
        Bound::Unbounded => true,
        Bound::Included(h) => key <= h.as_slice(),
        Bound::Excluded(h) => key < h.as_slice(),
    };
    above && below
}

/// The prepared transactions of a database and the keys they reserve.
#[derive(Debug, Default)]
pub(crate) struct TwoPhase {
    prepared: BTreeMap<String, PreparedTx>,
    owners: HashMap<(TableId, Vec<u8>), String>,
}

impl TwoPhase {
    pub fn contains(&self, gid: &str) -> bool {
        self.prepared.contains_key(gid)
    }

    pub fn insert(&mut self, tx: PreparedTx) {
        let gid = tx.gid.clone();
        let keys = tx
            .changes
            .iter()
            .map(|(t, k, _)| (*t, k.clone()))
            .chain(tx.keys.iter().cloned());
        for key in keys {
            self.owners.insert(key, gid.clone());
        }
        self.prepared.insert(gid, tx);
    }

    pub fn remove(&mut self, gid: &str) -> Option<PreparedTx> {
        let tx = self.prepared.remove(gid)?;
        self.owners.retain(|_, owner| owner != gid);
        Some(tx)
    }

    /// The prepared transaction that reserves `key` of `table`, if any.
    pub fn reserved_by(&self, table: TableId, key: &[u8]) -> Option<&str> {
        if self.prepared.is_empty() {
            return None;
        }
        if let Some(owner) = self.owners.get(&(table, key.to_vec())) {
            return Some(owner);
        }
        self.prepared.values().find_map(|p| {
            p.ranges
                .iter()
                .any(|(t, lo, hi)| *t == table && in_range(key, lo, hi))
                .then_some(p.gid.as_str())
        })
    }

    pub fn list(&self) -> Vec<PreparedInfo> {
        self.prepared
            .values()
            .map(|p| PreparedInfo {
                global_id: p.gid.clone(),
                label: p.label.clone(),
                changes: p.changes.len(),
            })
            .collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &PreparedTx> {
        self.prepared.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PreparedTx {
        PreparedTx {
            gid: "g-1".into(),
            label: Some("transfer".into()),
            changes: vec![
                (TableId(1), b"a".to_vec(), Some(b"1".to_vec())),
                (TableId(2), b"b".to_vec(), None),
            ],
            keys: vec![(TableId(1), b"read".to_vec())],
            ranges: vec![(
                TableId(3),
                Bound::Included(b"m".to_vec()),
                Bound::Excluded(b"p".to_vec()),
            )],
        }
    }

    #[test]
    fn prepared_transactions_round_trip() -> Result<(), String> {
        let p = sample();
        let rec = p.encode_record();
        let mut r = Reader::new(&rec[1..]);
        assert_eq!(PreparedTx::decode_body(&mut r)?, p);
        r.finish()?;
        for len in 1..rec.len() {
            let mut r = Reader::new(&rec[1..len]);
            assert!(
                PreparedTx::decode_body(&mut r)
                    .and_then(|_| r.finish())
                    .is_err(),
                "cut at {len}"
            );
        }
        Ok(())
    }

    #[test]
    fn reservations_cover_written_and_read_keys_and_ranges_until_resolved() {
        let mut two = TwoPhase::default();
        two.insert(sample());
        assert_eq!(two.reserved_by(TableId(1), b"a"), Some("g-1"));
        assert_eq!(two.reserved_by(TableId(1), b"read"), Some("g-1"));
        assert_eq!(two.reserved_by(TableId(3), b"n"), Some("g-1"));
        assert_eq!(two.reserved_by(TableId(3), b"p"), None);
        assert!(two.remove("g-1").is_some());
        assert_eq!(two.reserved_by(TableId(1), b"a"), None);
    }
}
