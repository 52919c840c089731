//! [`Block`]: a verified data block in memory, with the offset of each entry.
//!
//! The file stores entries back to back without an offset table (see `docs/format/segment.md`);
//! each entry's header is decoded once, when the block is read from the file, into a table of
//! where its key and value lie, so seeks within a block are binary searches and stepping
//! through entries decodes nothing. A block that does not decode completely is rejected when
//! it is read, so every entry of a `Block` is valid.

use super::{decode_entry, Cursor, RawEntry};
use std::cmp::Ordering;

/// The first 8 bytes of `key`, big-endian, zero-padded: if the prefixes of two keys differ,
/// they order the keys (a shorter key pads with zeros, and a key ordered before another
/// differs from it at a smaller byte or ends first). Equal prefixes say nothing.
#[inline]
pub fn key_prefix(key: &[u8]) -> u64 {
    match key.first_chunk::<8>() {
        Some(head) => u64::from_be_bytes(*head),
        None => key
            .iter()
            .enumerate()
            .fold(0, |p, (i, &b)| p | u64::from(b) << (56 - 8 * i)),
    }
}

/// Compares `(table, key, version descending)` with a target whose prefix is known, looking at
/// the key bytes only when the tables and prefixes are equal.
pub(crate) fn cmp_internal(a: (u32, u64, &[u8], u64), target: (u32, u64, &[u8], u64)) -> Ordering {
    (a.0, a.1)
        .cmp(&(target.0, target.1))
        .then_with(|| a.2.cmp(target.2))
        .then_with(|| target.3.cmp(&a.3))
}

/// Where one entry's parts lie in the block, decoded once.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// [`key_prefix`] of the key (also in [`Block::prefixes`]; here for stepping through
    /// entries, which then reads one slot per entry).
    prefix: u64,
    table: u32,
    version: u64,
    key_at: u32,
    key_len: u32,
    /// `u32::MAX` for a tombstone.
    value_at: u32,
    value_len: u32,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Block {
    data: Box<[u8]>,
    slots: Box<[Slot]>,
    /// [`key_prefix`] of each entry's key, in a dense array of their own: a seek's binary
    /// search reads this and touches a slot and the key bytes only where prefixes are equal.
    prefixes: Box<[u64]>,
    /// The table of every entry, if they all belong to one (the usual case); a seek then
    /// needs no table comparisons.
    table: Option<u32>,
}

impl Block {
    /// Splits a verified payload into entries; `Err(position)` names the first entry that does
    /// not decode.
    pub fn parse(data: Vec<u8>) -> Result<Block, usize> {
        let mut slots = Vec::with_capacity(data.len() / 64);
        let mut prefixes = Vec::with_capacity(data.len() / 64);
        let mut r = Cursor::new(&data);
        while !r.is_empty() {
            let at = r.position();
            let e = decode_entry(&mut r).ok_or(at)?;
            let end = r.position();
            let value_len = e.value.map_or(0, <[u8]>::len);
            let key_at = end - value_len - e.key.len();
            let pos = |n: usize| u32::try_from(n).map_err(|_| at);
            let prefix = key_prefix(e.key);
            prefixes.push(prefix);
            slots.push(Slot {
                prefix,
                table: e.table,
                version: e.version,
                key_at: pos(key_at)?,
                key_len: pos(e.key.len())?,
                value_at: if e.value.is_some() {
                    pos(end - value_len)?
                } else {
                    u32::MAX
                },
                value_len: pos(value_len)?,
            });
        }
        let table = slots.first().map(|s| s.table);
        let table = table.filter(|t| slots.iter().all(|s| s.table == *t));
        Ok(Block {
            data: data.into(),
            slots: slots.into(),
            prefixes: prefixes.into(),
            table,
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of memory held (for the cache's budget).
    pub fn memory(&self) -> usize {
        self.data.len()
            + std::mem::size_of_val(&*self.slots)
            + std::mem::size_of_val(&*self.prefixes)
    }

    /// Entry `i`, if there is one.
    #[inline]
    pub fn entry(&self, i: usize) -> Option<RawEntry<'_>> {
        let s = self.slots.get(i)?;
        let part = |at: u32, len: u32| self.data.get(at as usize..(at as usize + len as usize));
        let key = part(s.key_at, s.key_len)?;
        let value = if s.value_at == u32::MAX {
            None
        } else {
            Some(part(s.value_at, s.value_len)?)
        };
        Some(RawEntry {
            table: s.table,
            version: s.version,
            key,
            value,
            prefix: s.prefix,
        })
    }

    /// Index of the first entry at or after the internal key `(table, key, version desc)`;
    /// [`Block::len`] if every entry is below it.
    pub fn seek(&self, table: u32, key: &[u8], version: u64) -> usize {
        let prefix = key_prefix(key);
        let target = (table, prefix, key, version);
        let below = |i: usize| {
            self.entry(i).is_some_and(|e| {
                cmp_internal((e.table, e.prefix, e.key, e.version), target) == Ordering::Less
            })
        };
        let (lo, hi) = match self.table {
            Some(t) if t < table => return self.len(),
            Some(t) if t > table => return 0,
            // One table: prefixes order the entries, and only entries with the target's prefix
            // need their keys and versions compared.
            Some(_) => {
                let start = self.prefixes.partition_point(|p| *p < prefix);
                let equal = self.prefixes.get(start..).unwrap_or_default();
                (start, start + equal.partition_point(|p| *p == prefix))
            }
            None => (0, self.len()),
        };
        let (mut lo, mut hi) = (lo, hi);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if below(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::super::encode_entry;
    use super::*;

    fn block(keys: &[(&[u8], u64)]) -> Block {
        let mut data = Vec::new();
        for (k, v) in keys {
            encode_entry(&mut data, 1, k, *v, Some(b"x"));
        }
        Block::parse(data).unwrap_or_else(|at| panic!("entry at {at} does not decode"))
    }

    #[test]
    fn seek_finds_the_first_entry_at_or_after_the_key() {
        let b = block(&[(b"a", 5), (b"b", 9), (b"b", 4), (b"d", 1)]);
        assert_eq!(b.len(), 4);
        assert_eq!(b.seek(1, b"a", u64::MAX), 0);
        assert_eq!(b.seek(1, b"b", u64::MAX), 1);
        assert_eq!(b.seek(1, b"b", 7), 2, "newest version at or below 7");
        assert_eq!(b.seek(1, b"b", 3), 3, "no version of b at or below 3");
        assert_eq!(b.seek(1, b"c", u64::MAX), 3);
        assert_eq!(b.seek(1, b"e", u64::MAX), 4);
        assert_eq!(b.seek(0, b"z", 1), 0, "lower table");
        assert_eq!(b.seek(2, b"", u64::MAX), 4, "higher table");
        assert_eq!(b.entry(2).map(|e| (e.key, e.version)), Some((&b"b"[..], 4)));
        assert!(b.entry(4).is_none());
    }

    #[test]
    fn seek_agrees_with_a_linear_search_for_shared_prefixes_and_mixed_tables() {
        // Keys sharing their first 8 bytes (and shorter ones), several versions each, in one
        // table and spread over two tables.
        let mut cells: Vec<(u32, Vec<u8>, u64)> = Vec::new();
        for k in 0..12u8 {
            let key = if k % 3 == 0 {
                vec![b'p'; usize::from(k % 8)]
            } else {
                [b"user:000".as_slice(), &[k, k / 2]].concat()
            };
            for v in [9, 4, 1] {
                cells.push((1, key.clone(), v));
                cells.push((2, key.clone(), v));
            }
        }
        cells.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(b.2.cmp(&a.2)));
        cells.dedup();
        let one_table: Vec<_> = cells.iter().filter(|c| c.0 == 1).cloned().collect();
        for cells in [one_table, cells] {
            let mut data = Vec::new();
            for (t, k, v) in &cells {
                encode_entry(&mut data, *t, k, *v, Some(b"x"));
            }
            let b = Block::parse(data).unwrap_or_else(|at| panic!("entry at {at}"));
            for (t, k, _) in &cells {
                for at in [u64::MAX, 9, 5, 4, 2, 1, 0] {
                    let expected = cells
                        .iter()
                        .position(|(ct, ck, cv)| {
                            use std::cmp::Reverse;
                            (ct, ck.as_slice(), Reverse(*cv)) >= (t, k.as_slice(), Reverse(at))
                        })
                        .unwrap_or(cells.len());
                    assert_eq!(b.seek(*t, k, at), expected, "table {t} key {k:?} at {at}");
                }
            }
            assert_eq!(b.seek(0, b"", u64::MAX), 0);
            assert_eq!(b.seek(3, b"", u64::MAX), cells.len());
        }
    }

    #[test]
    fn prefixes_order_keys_when_they_differ() {
        let keys: [&[u8]; 7] = [b"", b"\0", b"a", b"a\0", b"ab", b"abcdefgh", b"abcdefghi"];
        for a in keys {
            for b in keys {
                let (pa, pb) = (key_prefix(a), key_prefix(b));
                if pa != pb {
                    assert_eq!(pa.cmp(&pb), a.cmp(b), "{a:?} vs {b:?}");
                }
                assert_eq!(
                    cmp_internal((1, pa, a, 5), (1, pb, b, 5)),
                    a.cmp(b),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn a_block_that_does_not_decode_is_rejected_with_the_entry_position() {
        let mut data = Vec::new();
        encode_entry(&mut data, 1, b"a", 1, Some(b"x"));
        let second = data.len();
        encode_entry(&mut data, 1, b"b", 1, Some(b"y"));
        data.truncate(data.len() - 1);
        assert_eq!(Block::parse(data).err(), Some(second));
    }
}
