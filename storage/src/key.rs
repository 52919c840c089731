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

/// Compares user keys of the same table; used by scans to spot the next key.
pub(crate) fn cmp_user(a: &InternalKey, table: u32, key: &[u8]) -> Ordering {
    (a.table, &*a.key).cmp(&(table, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_sorts_first_within_a_key() {
        let a = InternalKey::new(TableId(1), b"k", Version(9));
        let b = InternalKey::new(TableId(1), b"k", Version(3));
        let c = InternalKey::new(TableId(1), b"l", Version(99));
        let d = InternalKey::new(TableId(2), b"a", Version(1));
        assert!(a < b && b < c && c < d);
    }
}
