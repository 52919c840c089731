//! The in-memory MVCC index: every retained version of every cell, and every table's version
//! history.
//!
//! Built on `crossbeam-skiplist` so readers never block writers or each other. Keys are inserted
//! once and never overwritten (a new version is a new key), which keeps clear of the skiplist's
//! known overwrite races.
//!
//! Invariants:
//! * `cells` holds `(table, key, version) -> Some(value) | None (tombstone)`.
//! * `table_versions` holds `(table, version)` for every applied version that changed the table.
//! * [`Memtable::gc`] at horizon `h` keeps, per key and per table, the newest entry `≤ h` and
//!   every entry `> h`, and drops a key's newest-`≤ h` entry too when it is a tombstone (it
//!   reads as "absent", like no entry). Reads at any version `≥ h` are unaffected.

use crate::ids::{TableId, Version};
use crate::key::{cmp_user, InternalKey};
use crossbeam_skiplist::{map, SkipMap};
use std::cmp::{Ordering, Reverse};
use std::ops::Bound;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering as AtomicOrdering};

pub(crate) type CellValue = Option<Box<[u8]>>;
type Bounds = (Bound<InternalKey>, Bound<InternalKey>);

/// The MVCC index.
#[derive(Debug, Default)]
pub(crate) struct Memtable {
    cells: SkipMap<InternalKey, CellValue>,
    table_versions: SkipMap<(u32, Reverse<u64>), ()>,
    max_table: AtomicU32,
    bytes: AtomicU64,
}

/// What a garbage-collection pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Cells (versions or tombstones) removed.
    pub cells_removed: u64,
    /// Table-version entries removed.
    pub table_versions_removed: u64,
}

impl Memtable {
    pub fn insert(&self, table: TableId, key: &[u8], version: Version, value: Option<&[u8]>) {
        debug_assert!(table <= TableId::MAX);
        let size = key.len() + value.map_or(0, |v| v.len()) + 32;
        self.bytes.fetch_add(size as u64, AtomicOrdering::Relaxed);
        self.cells
            .insert(InternalKey::new(table, key, version), value.map(Box::from));
        self.max_table.fetch_max(table.0, AtomicOrdering::Relaxed);
    }

    pub fn touch_table(&self, table: TableId, version: Version) {
        self.table_versions
            .insert((table.0, Reverse(version.0)), ());
        self.max_table.fetch_max(table.0, AtomicOrdering::Relaxed);
    }

    pub fn max_table(&self) -> TableId {
        TableId(self.max_table.load(AtomicOrdering::Relaxed))
    }

    /// Approximate bytes held (keys, values and per-cell overhead) since creation.
    pub fn approximate_bytes(&self) -> u64 {
        self.bytes.load(AtomicOrdering::Relaxed)
    }

    /// Newest cell of the key with version `≤ at`: its version and value (`None` = tombstone).
    pub fn get(&self, table: TableId, key: &[u8], at: Version) -> Option<(Version, CellValue)> {
        let lo = InternalKey::new(table, key, at);
        let hi = InternalKey::new(table, key, Version::ZERO);
        self.cells
            .range(lo..=hi)
            .next()
            .map(|e| (e.key().version(), e.value().clone()))
    }

    pub fn table_version(&self, table: TableId, at: Version) -> Option<Version> {
        self.table_versions
            .range((table.0, Reverse(at.0))..=(table.0, Reverse(0)))
            .next()
            .map(|e| Version(e.key().1 .0))
    }

    pub fn scan(
        &self,
        table: TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        at: Version,
    ) -> Scan<'_> {
        Scan {
            inner: self.cells.range(bounds(table, lower, upper)),
            table: table.0,
            at,
            current: None,
        }
    }

    /// The first key within the bounds (in key order) whose newest cell has a version above
    /// `after`, with that version.
    pub fn change_in_range(
        &self,
        table: TableId,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        after: Version,
    ) -> Option<(Box<[u8]>, Version)> {
        let mut current: Option<Box<[u8]>> = None;
        for e in self.cells.range(bounds(table, lower, upper)) {
            let k = e.key();
            // Entries of one key come newest first: only the first one of each key matters.
            if current.as_deref() == Some(&*k.key) {
                continue;
            }
            if k.version.0 > after.0 {
                return Some((k.key.clone(), k.version()));
            }
            current = Some(k.key.clone());
        }
        None
    }

    /// Every key's newest cell at or below `at`, tombstones included, in key order.
    pub fn newest_cells(
        &self,
        at: Version,
    ) -> impl Iterator<Item = (TableId, Box<[u8]>, Version, CellValue)> + '_ {
        let mut last: Option<(u32, Box<[u8]>)> = None;
        self.cells.iter().filter_map(move |e| {
            let k = e.key();
            if k.version.0 > at.0 {
                return None;
            }
            if let Some((t, key)) = &last {
                if k.same_user_key(*t, key) {
                    return None;
                }
            }
            last = Some((k.table, k.key.clone()));
            Some((
                TableId(k.table),
                k.key.clone(),
                k.version(),
                e.value().clone(),
            ))
        })
    }

    /// Every cell with a version in `(after, upto]`, in index order.
    pub fn cells_between(
        &self,
        after: Version,
        upto: Version,
    ) -> impl Iterator<Item = (TableId, Box<[u8]>, Version, CellValue)> + '_ {
        self.cells.iter().filter_map(move |e| {
            let k = e.key();
            let v = k.version.0;
            (v > after.0 && v <= upto.0).then(|| {
                (
                    TableId(k.table),
                    k.key.clone(),
                    k.version(),
                    e.value().clone(),
                )
            })
        })
    }

    /// Every table's newest version at or below `at`.
    pub fn newest_table_versions(&self, at: Version) -> Vec<(TableId, Version)> {
        let mut out: Vec<(TableId, Version)> = Vec::new();
        for e in self.table_versions.iter() {
            let (t, Reverse(v)) = *e.key();
            if v <= at.0 && out.last().map(|l| l.0 .0) != Some(t) {
                out.push((TableId(t), Version(v)));
            }
        }
        out
    }

    pub fn gc(&self, horizon: Version) -> GcStats {
        let mut stats = GcStats::default();
        // Per key: entries newest first. Once the newest entry ≤ horizon is seen, every later
        // (older) entry of the key is invisible to reads at versions ≥ horizon.
        let mut key_state: Option<(u32, Box<[u8]>, bool)> = None;
        for e in self.cells.iter() {
            let k = e.key();
            let same = key_state
                .as_ref()
                .is_some_and(|(t, key, _)| cmp_user(k, *t, key) == Ordering::Equal);
            if !same {
                key_state = Some((k.table, k.key.clone(), false));
            }
            let Some((_, _, seen_floor)) = key_state.as_mut() else {
                continue;
            };
            if k.version.0 > horizon.0 {
                continue;
            }
            if *seen_floor {
                e.remove();
                stats.cells_removed += 1;
            } else {
                *seen_floor = true;
                // A tombstone at the floor reads as "absent", exactly like no entry at all once
                // everything older is gone.
                if e.value().is_none() {
                    e.remove();
                    stats.cells_removed += 1;
                }
            }
        }
        let mut last_table: Option<(u32, bool)> = None;
        for e in self.table_versions.iter() {
            let (t, Reverse(v)) = *e.key();
            if last_table.map(|l| l.0) != Some(t) {
                last_table = Some((t, false));
            }
            if v > horizon.0 {
                continue;
            }
            if let Some((_, seen)) = last_table.as_mut() {
                if *seen {
                    e.remove();
                    stats.table_versions_removed += 1;
                } else {
                    *seen = true;
                }
            }
        }
        stats
    }
}

/// Skiplist bounds covering keys of `table` within `lower..upper`, every version.
fn bounds(table: TableId, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Bounds {
    let lo = match lower {
        Bound::Included(k) => Bound::Included(InternalKey::new(table, k, Version::MAX)),
        Bound::Excluded(k) => Bound::Excluded(InternalKey::new(table, k, Version::ZERO)),
        Bound::Unbounded => Bound::Included(InternalKey::new(table, &[], Version::MAX)),
    };
    let hi = match upper {
        Bound::Included(k) => Bound::Included(InternalKey::new(table, k, Version::ZERO)),
        Bound::Excluded(k) => Bound::Excluded(InternalKey::new(table, k, Version::MAX)),
        Bound::Unbounded => {
            Bound::Excluded(InternalKey::new(TableId(table.0 + 1), &[], Version::MAX))
        }
    };
    (lo, hi)
}

/// Iterator over the live rows of one table at one version, in key order.
pub struct Scan<'a> {
    inner: map::Range<'a, InternalKey, Bounds, InternalKey, CellValue>,
    table: u32,
    at: Version,
    /// The user key whose visible cell was already decided.
    current: Option<Box<[u8]>>,
}

impl std::fmt::Debug for Scan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan")
            .field("table", &self.table)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl Iterator for Scan<'_> {
    /// `(key, version, value)` of each live row.
    type Item = crate::Result<(Vec<u8>, Version, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        for e in self.inner.by_ref() {
            let k = e.key();
            if k.version.0 > self.at.0 {
                continue;
            }
            if self.current.as_deref() == Some(&*k.key) {
                continue;
            }
            self.current = Some(k.key.clone());
            if let Some(value) = e.value() {
                return Some(Ok((k.key.to_vec(), k.version(), value.to_vec())));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TableId {
        TableId(1)
    }

    #[test]
    fn get_returns_the_newest_version_at_or_below_the_snapshot() {
        let m = Memtable::default();
        m.insert(t(), b"k", Version(2), Some(b"two"));
        m.insert(t(), b"k", Version(5), Some(b"five"));
        m.insert(t(), b"k", Version(7), None);
        assert_eq!(m.get(t(), b"k", Version(1)), None);
        assert_eq!(m.get(t(), b"k", Version(4)).map(|c| c.0), Some(Version(2)));
        assert_eq!(
            m.get(t(), b"k", Version(6)).and_then(|c| c.1).as_deref(),
            Some(&b"five"[..])
        );
        assert_eq!(m.get(t(), b"k", Version(9)), Some((Version(7), None)));
        assert_eq!(m.get(TableId(2), b"k", Version(9)), None);
    }

    #[test]
    fn scan_sees_one_consistent_version_and_hides_tombstones() -> crate::Result<()> {
        let m = Memtable::default();
        m.insert(t(), b"a", Version(1), Some(b"a1"));
        m.insert(t(), b"b", Version(1), Some(b"b1"));
        m.insert(t(), b"b", Version(3), None);
        m.insert(t(), b"c", Version(4), Some(b"c4"));
        m.insert(TableId(2), b"a", Version(1), Some(b"other"));
        let rows: Vec<_> = m
            .scan(t(), Bound::Unbounded, Bound::Unbounded, Version(2))
            .collect::<crate::Result<_>>()?;
        assert_eq!(rows.len(), 2);
        let rows: Vec<_> = m
            .scan(t(), Bound::Unbounded, Bound::Unbounded, Version(9))
            .collect::<crate::Result<_>>()?;
        let keys: Vec<_> = rows.iter().map(|r| r.0.clone()).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec()]);
        let rows: Vec<_> = m
            .scan(
                t(),
                Bound::Excluded(b"a"),
                Bound::Included(b"c"),
                Version(9),
            )
            .collect::<crate::Result<_>>()?;
        assert_eq!(rows.len(), 1);
        Ok(())
    }

    #[test]
    fn gc_keeps_what_reads_at_or_above_the_horizon_can_see() {
        let m = Memtable::default();
        for v in 1..=5 {
            m.insert(t(), b"k", Version(v), Some(format!("v{v}").as_bytes()));
        }
        m.insert(t(), b"gone", Version(1), Some(b"x"));
        m.insert(t(), b"gone", Version(2), None);
        let stats = m.gc(Version(3));
        assert_eq!(stats.cells_removed, 2 + 2);
        assert_eq!(m.get(t(), b"k", Version(3)).map(|c| c.0), Some(Version(3)));
        assert_eq!(m.get(t(), b"k", Version(5)).map(|c| c.0), Some(Version(5)));
        assert_eq!(
            m.get(t(), b"k", Version(2)),
            None,
            "below the horizon is gone"
        );
        assert_eq!(m.get(t(), b"gone", Version(9)), None);
    }

    #[test]
    fn table_version_tracks_history() {
        let m = Memtable::default();
        m.touch_table(t(), Version(2));
        m.touch_table(t(), Version(6));
        assert_eq!(m.table_version(t(), Version(1)), None);
        assert_eq!(m.table_version(t(), Version(5)), Some(Version(2)));
        assert_eq!(m.table_version(t(), Version::MAX), Some(Version(6)));
        assert_eq!(m.newest_table_versions(Version(5)), vec![(t(), Version(2))]);
    }
}
