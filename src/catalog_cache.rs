//! A cache of table-name → id resolutions, so a read does not look the name up in storage's
//! catalog on every call.
//!
//! Invariant: an entry is used only for reads at versions at or above the newest applied
//! commit that changed the catalog (`changed_at`), and only if it was filled for that same
//! `changed_at`. Commits that change the catalog raise `changed_at` after applying and before
//! they become visible, so a reader whose snapshot includes such a commit sees the raised value
//! and either finds entries filled after it or misses (and reads storage). Reads at older
//! versions always read storage.

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use vellum_storage::{TableId, Version};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct CatalogCache {
    changed_at: AtomicU64,
    /// `(changed_at the entries were filled for, entries)`; read without a lock, replaced
    /// whole on every fill (fills are rare: once per table name and catalog change).
    entries: ArcSwap<(u64, HashMap<String, TableId>)>,
}

impl CatalogCache {
    pub fn new(changed_at: Version) -> Self {
        CatalogCache {
            changed_at: AtomicU64::new(changed_at.0),
            entries: ArcSwap::from_pointee((changed_at.0, HashMap::new())),
        }
    }

    /// Notes an applied (not yet visible) commit at `version` that changed the catalog.
    pub fn changed(&self, version: Version) {
        self.changed_at.fetch_max(version.0, Ordering::AcqRel);
    }

    /// The cached id of `name` for a read at `at`, if the cache may answer it.
    pub fn get(&self, name: &str, at: Version) -> Option<TableId> {
        let changed_at = self.changed_at.load(Ordering::Acquire);
        if at.0 < changed_at {
            return None;
        }
        let g = self.entries.load();
        (g.0 == changed_at)
            .then(|| g.1.get(name).copied())
            .flatten()
    }

    /// Remembers `name → id`, read from storage at `at`.
    pub fn put(&self, name: &str, id: TableId, at: Version) {
        let changed_at = self.changed_at.load(Ordering::Acquire);
        if at.0 < changed_at {
            return;
        }
        self.entries.rcu(|cur| {
            let mut next = if cur.0 == changed_at {
                (changed_at, cur.1.clone())
            } else {
                (changed_at, HashMap::new())
            };
            next.1.insert(name.to_string(), id);
            Arc::new(next)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_serve_only_reads_after_the_last_catalog_change() {
        let c = CatalogCache::new(Version(5));
        c.put("t", TableId(3), Version(7));
        assert_eq!(c.get("t", Version(7)), Some(TableId(3)));
        assert_eq!(c.get("t", Version(4)), None, "older than the last change");
        c.changed(Version(9));
        assert_eq!(c.get("t", Version(10)), None, "filled before the change");
        c.put("t", TableId(4), Version(8));
        assert_eq!(
            c.get("t", Version(10)),
            None,
            "a read below the change fills nothing"
        );
        c.put("t", TableId(4), Version(9));
        assert_eq!(c.get("t", Version(10)), Some(TableId(4)));
    }
}
