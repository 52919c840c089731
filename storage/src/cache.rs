//! The block cache: verified data blocks of segment files, shared by every segment of a store
//! and bounded in bytes.
//!
//! Segments are read with positional reads (`pread`) into this cache rather than mapped with
//! `mmap`: the process's resident memory stays bounded by the memtable budget plus this cache
//! (mapped file pages count as resident once touched), a damaged or truncated file is an
//! `Error::Corruption` instead of a `SIGBUS`, and the simulated file system of the crash tests
//! exercises exactly the read path production uses. A block enters the cache only after its
//! checksum matched, so a cached block is never re-verified.

use crate::segment::Block;
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::sync::Arc;

/// Cache key: `(segment id, block offset)`.
type BlockKey = (u64, u64);

#[derive(Debug, Clone, Copy)]
struct BlockWeight;

impl Weighter<BlockKey, Arc<Block>> for BlockWeight {
    fn weight(&self, _key: &BlockKey, block: &Arc<Block>) -> u64 {
        block.memory() as u64 + 64
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct BlockCache {
    blocks: Cache<BlockKey, Arc<Block>, BlockWeight>,
}

impl BlockCache {
    /// A cache holding at most about `bytes` of blocks.
    pub fn new(bytes: u64) -> BlockCache {
        // quick_cache wants an estimate of the item count; blocks are ~4 KiB.
        let items = usize::try_from(bytes / 4096).unwrap_or(usize::MAX).max(16);
        BlockCache {
            blocks: Cache::with_weighter(items, bytes.max(1), BlockWeight),
        }
    }

    pub fn get(&self, segment: u64, offset: u64) -> Option<Arc<Block>> {
        self.blocks.get(&(segment, offset))
    }

    pub fn insert(&self, segment: u64, offset: u64, block: Arc<Block>) {
        self.blocks.insert((segment, offset), block);
    }

    /// Bytes held.
    pub fn weight(&self) -> u64 {
        self.blocks.weight()
    }
}
