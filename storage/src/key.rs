//! The internal key of the MVCC index: `(table, user key, version descending)`.
//!
//! Ordering puts all cells of a table together, keys in byte order, and for one key the newest
//! version first, so "newest cell at or below version v" is the first entry at or after
//! `(table, key, v)`.

use crate::ids::{TableId, Version};
use std::cmp::{Ordering, Reverse};

/// The internal table that records table versions: key = table id (4 bytes, big-endian),
/// value = empty, version = a commit that changed the table. Above every user table id
/// ([`TableId::MAX`] is `u32::MAX - 1`), so it never shows in a user table's range.
pub(crate) const VERSIONS_TABLE: u32 = u32::MAX;

/// Internal key; derives its order field by field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct InternalKey {
    pub table: u32,
    pub key: Box<[u8]>,
    pub version: Reverse<u64>,
}

impl InternalKey {
    pub fn new(table: TableId, key: &[u8], version: Version) -> Self {
        InternalKey {
            table: table.0,
            key: key.into(),
            version: Reverse(version.0),
        }
    }

    pub fn version(&self) -> Version {
        Version(self.version.0)
    }

    /// True if `self` and `other` name the same user key of the same table.
    pub fn same_user_key(&self, table: u32, key: &[u8]) -> bool {
        self.table == table && *self.key == *key
    }
}

/// A borrowed view of an internal key, so the memtable can be searched without building an
/// owned [`InternalKey`] (an allocation) per lookup. Its order is `InternalKey`'s.
pub(crate) trait KeyView {
    fn parts(&self) -> (u32, &[u8], Reverse<u64>);
}

impl KeyView for InternalKey {
    fn parts(&self) -> (u32, &[u8], Reverse<u64>) {
        (self.table, &self.key, self.version)
    }
}

impl KeyView for (u32, &[u8], Reverse<u64>) {
    fn parts(&self) -> (u32, &[u8], Reverse<u64>) {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn KeyView + 'a> for InternalKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyView + '_ {}

impl PartialOrd for dyn KeyView + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn KeyView + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

/// Compares user keys of the same table; used by scans to spot the next key.
pub(crate) fn cmp_user(a: &InternalKey, table: u32, key: &[u8]) -> Ordering {
    (a.table, &*a.key).cmp(&(table, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_view_orders_like_the_key() {
        let keys = [
            InternalKey::new(TableId(1), b"k", Version(9)),
            InternalKey::new(TableId(1), b"k", Version(3)),
            InternalKey::new(TableId(1), b"ka", Version(99)),
            InternalKey::new(TableId(2), b"", Version(1)),
        ];
        for a in &keys {
            for b in &keys {
                let view = (b.table, &*b.key, b.version);
                let (va, vb): (&dyn KeyView, &dyn KeyView) = (a, &view);
                assert_eq!(va.cmp(vb), a.cmp(b));
            }
        }
    }

    #[test]
    fn newest_version_sorts_first_within_a_key() {
        let a = InternalKey::new(TableId(1), b"k", Version(9));
        let b = InternalKey::new(TableId(1), b"k", Version(3));
        let c = InternalKey::new(TableId(1), b"l", Version(99));
        let d = InternalKey::new(TableId(2), b"a", Version(1));
        assert!(a < b && b < c && c < d);
    }
}
