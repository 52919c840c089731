//! [`WriteSet`]: a transaction's staged changes, ordered by [`WriteKey`].
//!
//! Invariant: a `WriteKey`'s `prefix` is always `key_prefix(key)`, so ordering by
//! `(table, prefix, key)` is ordering by `(table, key)`; most comparisons in a large write set
//! end at the integers without comparing key bytes.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use vellum_storage::{key_prefix, TableId};

/// A staged key: its table and bytes.
#[derive(Debug, Clone)]
pub(crate) struct WriteKey {
    pub table: TableId,
    prefix: u64,
    pub key: Vec<u8>,
}

impl WriteKey {
    pub fn new(table: TableId, key: Vec<u8>) -> WriteKey {
        WriteKey {
            table,
            prefix: key_prefix(&key),
            key,
        }
    }

    /// The smallest key of `table`.
    pub fn first(table: TableId) -> WriteKey {
        WriteKey::new(table, Vec::new())
    }
}

impl PartialEq for WriteKey {
    fn eq(&self, other: &Self) -> bool {
        self.table == other.table && self.prefix == other.prefix && self.key == other.key
    }
}

impl Eq for WriteKey {}

impl PartialOrd for WriteKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WriteKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.table, self.prefix)
            .cmp(&(other.table, other.prefix))
            .then_with(|| self.key.cmp(&other.key))
    }
}

/// The staged changes: `(table, key) -> Some(value) | None (delete)`.
pub(crate) type WriteSet = BTreeMap<WriteKey, Option<Vec<u8>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_table_then_key_bytes() {
        let raw: [(u32, &[u8]); 8] = [
            (1, b""),
            (1, b"\0"),
            (1, b"a"),
            (1, b"a\0"),
            (1, b"abcdefgh"),
            (1, b"abcdefgh\0"),
            (1, b"b"),
            (2, b""),
        ];
        for (ta, a) in raw {
            for (tb, b) in raw {
                let (x, y) = (
                    WriteKey::new(TableId(ta), a.to_vec()),
                    WriteKey::new(TableId(tb), b.to_vec()),
                );
                assert_eq!(x.cmp(&y), (ta, a).cmp(&(tb, b)), "{a:?} vs {b:?}");
                assert_eq!(x == y, (ta, a) == (tb, b));
            }
        }
    }
}
