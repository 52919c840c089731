//! Tuning of the store, and the counters it reports.

/// How the store sizes its memory and files.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The memtable is flushed to a segment once it holds about this many bytes; writers are
    /// stalled (and the stall counted) while it holds twice as much.
    pub memtable_bytes: u64,
    /// Bytes of verified data blocks kept in memory.
    pub block_cache_bytes: u64,
    /// Compaction closes an output segment once it reaches this size.
    pub segment_bytes: u64,
    /// Compaction merges the newest runs once this many of them have similar sizes.
    pub compaction_trigger: usize,
    /// Writers are stalled while more runs than this wait for compaction.
    pub max_runs: usize,
    /// Run compaction on a background thread (otherwise only [`crate::Store::compact_all`]
    /// and [`crate::Store::compact_pending`] compact).
    pub background_compaction: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            memtable_bytes: 64 << 20,
            block_cache_bytes: 32 << 20,
            segment_bytes: 64 << 20,
            compaction_trigger: 4,
            max_runs: 20,
            background_compaction: true,
        }
    }
}

/// Counters and sizes of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Memtable flushes written.
    pub flushes: u64,
    /// Compactions finished.
    pub compactions: u64,
    /// Bytes of segments written by flushes.
    pub flushed_bytes: u64,
    /// Bytes of segments written by compactions.
    pub compacted_bytes: u64,
    /// Cells dropped by compactions (old versions, tombstones).
    pub cells_dropped: u64,
    /// Times a writer waited for a flush or a compaction.
    pub write_stalls: u64,
    /// Microseconds writers spent waiting.
    pub write_stall_micros: u64,
    /// Live segment files.
    pub segments: u64,
    /// Live runs.
    pub runs: u64,
    /// Bytes of live segment files.
    pub segment_bytes: u64,
    /// Approximate bytes in memtables (active and being flushed).
    pub memtable_bytes: u64,
    /// Bytes in the block cache.
    pub block_cache_bytes: u64,
}

/// What [`crate::Store::verify`] found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: u64,
    /// Data blocks whose checksum matched.
    pub blocks: u64,
    /// Cells decoded.
    pub cells: u64,
    /// Bytes of segment files read.
    pub bytes: u64,
    /// Every problem found (`Error::Corruption` naming the file and offset, or I/O errors).
    pub problems: Vec<crate::Error>,
}

impl VerifyReport {
    /// True if nothing was wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}
