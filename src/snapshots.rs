//! The visible watermark and the registry of live snapshots.
//!
//! Invariants:
//! * `visible` only grows. Every commit with version `≤ visible` is applied to storage and
//!   done under the durability mode; a snapshot never sees a later commit without an earlier
//!   one because commits are applied in version order before they become visible, and the WAL
//!   completes them in that same order.
//! * `visible_lsn` is the log position of the commit record of version `visible` (or the last
//!   record below it): a checkpoint at `visible` covers the log up to `visible_lsn`.
//! * The GC horizon is never above the snapshot of a live transaction; registration and horizon
//!   computation happen under one lock, so a transaction starting concurrently either is seen or
//!   reads a `visible` that is at least the horizon.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use vellum_storage::Version;
use vellum_wal::Lsn;

#[derive(Debug, Default)]
struct Inner {
    visible: Version,
    visible_lsn: Lsn,
    live: BTreeMap<Version, usize>,
    /// Full history is kept above this version: garbage collection has collapsed (or may be
    /// collapsing) versions at or below it.
    floor: Version,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Snapshots {
    inner: Mutex<Inner>,
}

impl Snapshots {
    pub fn new(visible: Version, visible_lsn: Lsn, floor: Version) -> Self {
        Snapshots {
            inner: Mutex::new(Inner {
                visible,
                visible_lsn,
                live: BTreeMap::new(),
                floor,
            }),
        }
    }

    /// Registers a reader of the history after `v` (not a snapshot at the visible version):
    /// fails with the current floor if that history is no longer complete.
    pub fn acquire_history(&self, v: Version) -> Result<(), Version> {
        let mut g = self.inner.lock();
        if v < g.floor {
            return Err(g.floor);
        }
        *g.live.entry(v).or_insert(0) += 1;
        Ok(())
    }

    /// The horizon for a garbage-collection pass, at most `keep` (a retention floor), raising
    /// the floor to it in the same step so no reader can register for history the pass may
    /// remove.
    pub fn collect_horizon(&self, keep: Version) -> Version {
        let mut g = self.inner.lock();
        let h = g
            .live
            .keys()
            .next()
            .copied()
            .unwrap_or(g.visible)
            .min(g.visible)
            .min(keep);
        g.floor = g.floor.max(h);
        h
    }

    /// The newest version readers may see.
    pub fn visible(&self) -> Version {
        self.inner.lock().visible
    }

    /// `(visible, visible_lsn)`, read together.
    pub fn visible_with_lsn(&self) -> (Version, Lsn) {
        let g = self.inner.lock();
        (g.visible, g.visible_lsn)
    }

    /// Publishes a commit that is applied and done.
    pub fn publish(&self, version: Version, lsn: Lsn) {
        let mut g = self.inner.lock();
        if version > g.visible {
            g.visible = version;
            g.visible_lsn = lsn;
        }
    }

    /// Registers a new snapshot at the current visible version and returns it.
    pub fn acquire(&self) -> Version {
        let mut g = self.inner.lock();
        let v = g.visible;
        *g.live.entry(v).or_insert(0) += 1;
        v
    }

    /// Releases a snapshot taken with [`Snapshots::acquire`].
    pub fn release(&self, v: Version) {
        let mut g = self.inner.lock();
        if let Some(n) = g.live.get_mut(&v) {
            *n -= 1;
            if *n == 0 {
                g.live.remove(&v);
            }
        } else {
            debug_assert!(false, "released snapshot {v} that was not live");
        }
    }

    /// Number of live snapshots.
    pub fn live_count(&self) -> usize {
        self.inner.lock().live.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizon_follows_the_oldest_live_snapshot() {
        let s = Snapshots::new(Version(5), Lsn(5), Version::ZERO);
        let a = s.acquire();
        s.publish(Version(9), Lsn(9));
        let b = s.acquire();
        assert_eq!((a, b), (Version(5), Version(9)));
        assert_eq!(s.collect_horizon(Version::MAX), Version(5));
        s.release(a);
        assert_eq!(s.collect_horizon(Version::MAX), Version(9));
        assert_eq!(
            s.acquire_history(Version(8)),
            Err(Version(9)),
            "below the floor"
        );
        assert_eq!(s.acquire_history(Version(9)), Ok(()));
        s.release(Version(9));
        s.release(b);
        s.publish(Version(7), Lsn(7));
        assert_eq!(s.visible(), Version(9), "visible never goes back");
    }
}
