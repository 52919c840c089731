//! The visible watermark and the registry of live snapshots.
//!
//! Invariants:
//! * `visible` only grows. Every commit with version `≤ visible` is applied to storage and
//!   done under the durability mode; a snapshot never sees a later commit without an earlier
//!   one because commits are applied in version order before they become visible, and the WAL
//!   completes them in that same order.
//! * `visible_lsn` is the log position of the commit record of version `visible` (or the last
//!   record below it): a checkpoint at `visible` covers the log up to `visible_lsn`.
//! * The GC horizon is never above the snapshot of a live transaction. Transactions register in
//!   one of a fixed set of slots without taking a lock (so readers on different threads write
//!   no shared cache line): a slot goes `FREE → REGISTERING`, then the reader loads `visible`
//!   and stores it in the slot. The horizon computation loads `visible` first and then every
//!   slot (all sequentially consistent), waiting out `REGISTERING` ones: a slot it finds free
//!   belongs to a reader that will load a `visible` at least the one the computation loaded.
//!   When every slot is taken, or for history readers, registration falls back to a map under
//!   the lock, where registration and horizon computation exclude each other.

use parking_lot::Mutex;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use vellum_storage::Version;
use vellum_wal::Lsn;

/// Lock-free registration slots; more live transactions than this use the locked map.
const SLOTS: usize = 64;
/// Slot value: not in use. In-use slots hold `version + 1`.
const FREE: u64 = 0;
/// Slot value: taken, version not stored yet.
const REGISTERING: u64 = u64::MAX;

/// One slot on its own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot(AtomicU64);

#[derive(Debug, Default)]
struct Inner {
    visible_lsn: Lsn,
    live: BTreeMap<Version, usize>,
    /// Full history is kept above this version: garbage collection has collapsed (or may be
    /// collapsing) versions at or below it.
    floor: Version,
}

/// A registered snapshot; give it back with [`Snapshots::release_pin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pin {
    /// The version the snapshot reads at.
    pub version: Version,
    slot: Option<usize>,
}

impl Pin {
    /// A pin registered in the locked map (by [`Snapshots::acquire_history`]).
    pub fn history(version: Version) -> Pin {
        Pin {
            version,
            slot: None,
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Snapshots {
    /// Written only under `inner`'s lock; read without it.
    visible: AtomicU64,
    inner: Mutex<Inner>,
    slots: Box<[Slot]>,
}

impl Default for Snapshots {
    fn default() -> Self {
        Snapshots::new(Version::ZERO, Lsn::default(), Version::ZERO)
    }
}

/// The slot a thread tries first: threads are spread over the slots in turn.
fn first_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HINT: Cell<Option<usize>> = const { Cell::new(None) };
    }
    HINT.with(|h| match h.get() {
        Some(i) => i,
        None => {
            let i = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
            h.set(Some(i));
            i
        }
    })
}

impl Snapshots {
    pub fn new(visible: Version, visible_lsn: Lsn, floor: Version) -> Self {
        Snapshots {
            visible: AtomicU64::new(visible.0),
            inner: Mutex::new(Inner {
                visible_lsn,
                live: BTreeMap::new(),
                floor,
            }),
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
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
        // `visible` before the slots: see the module documentation.
        let visible = Version(self.visible.load(Ordering::SeqCst));
        let mut h = g
            .live
            .keys()
            .next()
            .copied()
            .unwrap_or(visible)
            .min(visible)
            .min(keep);
        for slot in self.slots.iter() {
            let mut spins = 0u32;
            let v = loop {
                match slot.0.load(Ordering::SeqCst) {
                    REGISTERING => {
                        spins += 1;
                        if spins < 64 {
                            std::hint::spin_loop();
                        } else {
                            std::thread::yield_now();
                        }
                    }
                    v => break v,
                }
            };
            if v != FREE {
                h = h.min(Version(v - 1));
            }
        }
        g.floor = g.floor.max(h);
        h
    }

    /// The newest version readers may see.
    pub fn visible(&self) -> Version {
        Version(self.visible.load(Ordering::Acquire))
    }

    /// `(visible, visible_lsn)`, read together.
    pub fn visible_with_lsn(&self) -> (Version, Lsn) {
        let g = self.inner.lock();
        (Version(self.visible.load(Ordering::Acquire)), g.visible_lsn)
    }

    /// Publishes a commit that is applied and done.
    pub fn publish(&self, version: Version, lsn: Lsn) {
        let mut g = self.inner.lock();
        if version.0 > self.visible.load(Ordering::Acquire) {
            debug_assert!(version.0 < REGISTERING - 1, "version space exhausted");
            self.visible.store(version.0, Ordering::SeqCst);
            g.visible_lsn = lsn;
        }
    }

    /// Registers a new snapshot at the current visible version and returns it.
    pub fn acquire(&self) -> Pin {
        let start = first_slot();
        for i in 0..SLOTS {
            let idx = (start + i) % SLOTS;
            let slot = &self.slots[idx].0;
            if slot.load(Ordering::Relaxed) == FREE
                && slot
                    .compare_exchange(FREE, REGISTERING, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
            {
                let v = self.visible.load(Ordering::SeqCst);
                slot.store(v + 1, Ordering::SeqCst);
                return Pin {
                    version: Version(v),
                    slot: Some(idx),
                };
            }
        }
        let mut g = self.inner.lock();
        let v = Version(self.visible.load(Ordering::Acquire));
        *g.live.entry(v).or_insert(0) += 1;
        Pin::history(v)
    }

    /// Releases a snapshot taken with [`Snapshots::acquire`] or [`Pin::history`].
    pub fn release_pin(&self, pin: Pin) {
        match pin.slot {
            Some(idx) => {
                debug_assert_eq!(
                    self.slots[idx].0.load(Ordering::Relaxed),
                    pin.version.0 + 1,
                    "released a slot this pin does not hold"
                );
                self.slots[idx].0.store(FREE, Ordering::Release);
            }
            None => self.release(pin.version),
        }
    }

    /// Releases a history reader registered with [`Snapshots::acquire_history`].
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
        let g = self.inner.lock();
        let in_slots = self
            .slots
            .iter()
            .filter(|s| s.0.load(Ordering::Acquire) != FREE)
            .count();
        g.live.values().sum::<usize>() + in_slots
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
        assert_eq!((a.version, b.version), (Version(5), Version(9)));
        assert_eq!(s.collect_horizon(Version::MAX), Version(5));
        s.release_pin(a);
        assert_eq!(s.collect_horizon(Version::MAX), Version(9));
        assert_eq!(
            s.acquire_history(Version(8)),
            Err(Version(9)),
            "below the floor"
        );
        assert_eq!(s.acquire_history(Version(9)), Ok(()));
        s.release(Version(9));
        s.release_pin(b);
        s.publish(Version(7), Lsn(7));
        assert_eq!(s.visible(), Version(9), "visible never goes back");
    }

    #[test]
    fn more_snapshots_than_slots_fall_back_to_the_map() {
        let s = Snapshots::new(Version(3), Lsn(3), Version::ZERO);
        let old: Vec<Pin> = (0..SLOTS + 5).map(|_| s.acquire()).collect();
        assert_eq!(s.live_count(), SLOTS + 5);
        assert_eq!(old.iter().filter(|p| p.slot.is_none()).count(), 5);
        s.publish(Version(8), Lsn(8));
        let newer = s.acquire();
        assert_eq!((newer.version, newer.slot), (Version(8), None));
        assert_eq!(s.collect_horizon(Version::MAX), Version(3));
        for p in old {
            s.release_pin(p);
        }
        assert_eq!(s.live_count(), 1);
        assert_eq!(s.collect_horizon(Version::MAX), Version(8));
        s.release_pin(newer);
        assert_eq!(s.live_count(), 0);
    }

    /// While a snapshot is live, the floor raised by concurrent horizon computations never
    /// passes it, however registration and computation interleave.
    #[test]
    fn concurrent_horizons_never_pass_a_live_snapshot() {
        let s = std::sync::Arc::new(Snapshots::new(Version(1), Lsn(1), Version::ZERO));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..2 {
            let (s, stop) = (s.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut checked = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let p = s.acquire();
                    for _ in 0..8 {
                        let floor = s.inner.lock().floor;
                        assert!(floor <= p.version, "floor {floor} passed {}", p.version);
                        checked += 1;
                    }
                    s.release_pin(p);
                }
                checked
            }));
        }
        for v in 2..20_000u64 {
            s.publish(Version(v), Lsn(v));
            s.collect_horizon(Version::MAX);
        }
        stop.store(true, Ordering::Relaxed);
        let checked: u64 = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        assert!(checked > 0);
    }
}
