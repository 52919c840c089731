//! The block cache: verified data blocks of segment files, shared by every segment of a store
//! and bounded in bytes, with a lock-free way to the blocks it holds.
//!
//! Segments are read with positional reads (`pread`) into this cache rather than mapped with
//! `mmap`: the process's resident memory stays bounded by the memtable budget plus this cache
//! (mapped file pages count as resident once touched), a damaged or truncated file is an
//! `Error::Corruption` instead of a `SIGBUS`, and the simulated file system of the crash tests
//! exercises exactly the read path production uses. A block enters the cache only after its
//! checksum matched, so a cached block is never re-verified.
//!
//! The cache (`quick_cache`, S3-FIFO) decides what stays; each segment also keeps one slot per
//! block ([`HotSlots`]) pointing at its cached blocks, which readers load without taking the
//! cache's shard lock or writing to memory another thread reads. Invariants:
//! * a slot holds only a block of its own segment and index (segments are immutable, so any
//!   such block is correct);
//! * evicting or replacing a block in the cache empties its slot, and a reader filling a slot
//!   checks afterwards that the cache still holds that very block for that very slot, emptying
//!   it otherwise; so a slot holds a block only while the cache does, and the slots add nothing
//!   to the cache's budget.
//!
//! Hits through a slot do not reach the cache, so every [`TOUCH_EVERY`]th one on a thread
//! tells the cache the block was used: blocks read often keep their place.

use crate::segment::Block;
use arc_swap::ArcSwapOption;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};
use std::cell::Cell;
use std::sync::{Arc, Weak};

/// Cache key: `(segment id, block offset)`.
type BlockKey = (u64, u64);

/// One slot per data block of a segment, by index: the block while the cache holds it.
pub(crate) type HotSlots = [ArcSwapOption<Block>];

/// Slot hits per thread between two recency updates in the cache.
pub(crate) const TOUCH_EVERY: u32 = 16;

/// A cached block and the slot that points at it.
#[derive(Clone)]
struct Cached {
    block: Arc<Block>,
    slots: Weak<HotSlots>,
    index: usize,
}

#[derive(Debug, Clone, Copy)]
struct BlockWeight;

impl Weighter<BlockKey, Cached> for BlockWeight {
    fn weight(&self, _key: &BlockKey, c: &Cached) -> u64 {
        c.block.memory() as u64 + 64
    }
}

/// Empties an evicted block's slot.
#[derive(Debug, Clone, Copy)]
struct EmptySlot;

impl Lifecycle<BlockKey, Cached> for EmptySlot {
    type RequestState = ();

    fn begin_request(&self) {}

    fn on_evict(&self, _state: &mut (), _key: BlockKey, c: Cached) {
        if let Some(slot) = c.slots.upgrade().as_deref().and_then(|s| s.get(c.index)) {
            slot.store(None);
        }
    }
}

/// See the module documentation. Entries leave only by eviction or replacement (both empty
/// their slot): `clear`, `remove` and the like bypass the callback and must not be used
/// without emptying the slots themselves.
pub(crate) struct BlockCache {
    blocks: Cache<BlockKey, Cached, BlockWeight, DefaultHashBuilder, EmptySlot>,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("weight", &self.blocks.weight())
            .finish_non_exhaustive()
    }
}

thread_local! {
    static SLOT_HITS: Cell<u32> = const { Cell::new(0) };
}

/// Empty slots for a segment of `blocks` data blocks.
pub(crate) fn hot_slots(blocks: usize) -> Arc<HotSlots> {
    (0..blocks).map(|_| ArcSwapOption::empty()).collect()
}

impl BlockCache {
    /// A cache holding at most about `bytes` of blocks.
    pub fn new(bytes: u64) -> BlockCache {
        // quick_cache wants an estimate of the item count; blocks are ~4 KiB.
        let items = usize::try_from(bytes / 4096).unwrap_or(usize::MAX).max(16);
        BlockCache {
            blocks: Cache::with(
                items,
                bytes.max(1),
                BlockWeight,
                DefaultHashBuilder::default(),
                EmptySlot,
            ),
        }
    }

    /// Block `index` of segment `segment` (at `offset`), through its slot if it has one.
    pub fn get(
        &self,
        segment: u64,
        offset: u64,
        slots: &Arc<HotSlots>,
        index: usize,
    ) -> Option<Arc<Block>> {
        let slot = slots.get(index)?;
        if let Some(b) = slot.load_full() {
            self.slot_hit(segment, offset);
            return Some(b);
        }
        let b = self.blocks.get(&(segment, offset))?.block;
        self.fill_slot(segment, offset, slots, index, &b);
        Some(b)
    }

    /// Calls `f` with block `index` of segment `segment` (at `offset`) if its slot holds it,
    /// without taking a reference to the block.
    #[inline]
    pub fn with_slot<R>(
        &self,
        segment: u64,
        offset: u64,
        slots: &HotSlots,
        index: usize,
        f: impl FnOnce(&Block) -> R,
    ) -> Option<R> {
        let guard = slots.get(index)?.load();
        let block = guard.as_deref()?;
        self.slot_hit(segment, offset);
        Some(f(block))
    }

    /// Counts a hit through a slot, and every [`TOUCH_EVERY`]th time tells the cache.
    #[inline]
    pub fn slot_hit(&self, segment: u64, offset: u64) {
        let touch = SLOT_HITS.with(|n| {
            let hits = n.get().wrapping_add(1);
            n.set(hits);
            hits % TOUCH_EVERY == 0
        });
        if touch {
            // Only the recency update matters.
            let _ = self.blocks.get(&(segment, offset));
        }
    }

    /// Caches block `index` of segment `segment` (at `offset`) and points its slot at it.
    pub fn insert(
        &self,
        segment: u64,
        offset: u64,
        slots: &Arc<HotSlots>,
        index: usize,
        block: Arc<Block>,
    ) {
        self.blocks.insert(
            (segment, offset),
            Cached {
                block: block.clone(),
                slots: Arc::downgrade(slots),
                index,
            },
        );
        self.fill_slot(segment, offset, slots, index, &block);
    }

    /// Points slot `index` of `slots` at `block`, unless the cache no longer holds that very
    /// block for that very slot: it was evicted meanwhile (the eviction may have emptied the
    /// slot before it was filled), replaced by another reader's copy, or cached for another
    /// `Segment` value with the same id. Then the slot is emptied here; otherwise only the
    /// cache's eviction empties slots, which keeps them within the cache's budget.
    fn fill_slot(
        &self,
        segment: u64,
        offset: u64,
        slots: &Arc<HotSlots>,
        index: usize,
        block: &Arc<Block>,
    ) {
        let Some(slot) = slots.get(index) else {
            return;
        };
        slot.store(Some(block.clone()));
        let still_ours = self.blocks.peek(&(segment, offset)).is_some_and(|c| {
            Arc::ptr_eq(&c.block, block)
                && c.index == index
                && std::ptr::addr_eq(c.slots.as_ptr(), Arc::as_ptr(slots))
        });
        if !still_ours {
            slot.store(None);
        }
    }

    /// Bytes held.
    pub fn weight(&self) -> u64 {
        self.blocks.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: usize) -> Arc<Block> {
        let mut data = Vec::new();
        for i in 0..n {
            crate::segment::encode_entry(&mut data, 1, &i.to_be_bytes(), 1, Some(&[7; 100]));
        }
        Arc::new(Block::parse(data).unwrap_or_else(|at| panic!("entry at {at}")))
    }

    #[test]
    fn a_cached_block_is_found_through_its_slot_and_eviction_empties_the_slot() {
        let one = block(30);
        // Room for about two blocks.
        let cache = BlockCache::new(2 * (one.memory() as u64 + 64) + 100);
        let slots = hot_slots(8);
        cache.insert(1, 0, &slots, 0, one.clone());
        let got = cache.get(1, 0, &slots, 0);
        assert!(got.is_some_and(|b| Arc::ptr_eq(&b, &one)));
        assert!(
            slots[0].load().is_some(),
            "the slot points at the cached block"
        );
        for i in 1..8 {
            cache.insert(1, i as u64 * 4096, &slots, i, block(30));
        }
        let filled = slots.iter().filter(|s| s.load().is_some()).count();
        assert!(
            filled <= 3,
            "slots hold only what the cache holds: {filled} filled, cache weight {}",
            cache.weight()
        );
        assert!(cache.weight() <= 2 * (one.memory() as u64 + 64) + 100);
    }

    #[test]
    fn a_slot_is_filled_only_with_the_block_the_cache_holds_for_it() {
        let cache = BlockCache::new(1 << 20);
        let (ours, theirs) = (hot_slots(1), hot_slots(1));
        let b = block(10);
        cache.insert(3, 0, &theirs, 0, b.clone());
        // Another segment value with the same id finds the block, but its slot stays empty:
        // the cache's eviction would empty `theirs`, not `ours`.
        assert!(cache
            .get(3, 0, &ours, 0)
            .is_some_and(|g| Arc::ptr_eq(&g, &b)));
        assert!(ours[0].load().is_none());
        // A second copy replacing the first empties the slot holding the first, and is then
        // what the slot holds.
        let copy = block(10);
        cache.insert(3, 0, &theirs, 0, copy.clone());
        assert!(theirs[0]
            .load()
            .as_ref()
            .is_some_and(|g| Arc::ptr_eq(g, &copy)));
    }

    #[test]
    fn a_slot_emptied_behind_the_cache_is_filled_again_from_it() {
        let cache = BlockCache::new(1 << 20);
        let slots = hot_slots(2);
        let b = block(10);
        cache.insert(7, 4096, &slots, 1, b.clone());
        slots[1].store(None);
        assert!(cache
            .get(7, 4096, &slots, 1)
            .is_some_and(|g| Arc::ptr_eq(&g, &b)));
        assert!(slots[1].load().is_some());
        assert!(cache.get(7, 0, &slots, 0).is_none(), "never cached");
        assert!(cache.get(7, 0, &slots, 9).is_none(), "no such slot");
    }
}
