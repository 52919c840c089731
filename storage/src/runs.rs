//! Sorted runs: the segments the manifest lists, grouped into runs.
//!
//! Invariants:
//! * A run's segments hold disjoint user-key ranges and are kept in key order, so one key is in
//!   at most one segment of a run.
//! * [`RunSet::runs`] is ordered newest first, and every version in a run is above every
//!   version in the runs after it (flushes add a run of versions above everything on disk;
//!   compaction replaces adjacent runs by one). So the first run that holds a cell of a key at
//!   or below a read version holds the one the read sees.

use crate::bloom::key_hash;
use crate::error::Result;
use crate::memtable::CellValue;
use crate::segment::Segment;
use std::sync::Arc;

/// One sorted run.
#[derive(Debug, Default)]
pub(crate) struct Run {
    pub segments: Vec<Arc<Segment>>,
}

impl Run {
    pub fn min_version(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.footer.min_version)
            .min()
            .unwrap_or(0)
    }

    pub fn max_version(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.footer.max_version)
            .max()
            .unwrap_or(0)
    }

    pub fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.size()).sum()
    }

    pub fn ids(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.id).collect()
    }

    /// The segment whose key range holds `(table, key)`, if any.
    pub fn find(&self, table: u32, key: &[u8]) -> Option<&Arc<Segment>> {
        let i = self
            .segments
            .partition_point(|s| s.last_user_key().is_some_and(|last| last < (table, key)));
        let s = self.segments.get(i)?;
        ((s.first.0, &*s.first.1) <= (table, key)).then_some(s)
    }

    /// Segments that may hold keys in `[lo, hi]` (user keys), in key order.
    pub fn overlapping(&self, lo: (u32, &[u8]), hi: Option<(u32, &[u8])>) -> Vec<Arc<Segment>> {
        self.segments
            .iter()
            .filter(|s| s.last_user_key().is_some_and(|last| last >= lo))
            .filter(|s| hi.is_none_or(|hi| (s.first.0, &*s.first.1) <= hi))
            .cloned()
            .collect()
    }
}

/// The live runs, newest first.
#[derive(Debug, Default)]
pub(crate) struct RunSet {
    pub runs: Vec<Arc<Run>>,
}

impl RunSet {
    /// The newest cell of `(table, key)` with version `≤ at` on disk.
    pub fn get(&self, table: u32, key: &[u8], at: u64) -> Result<Option<(u64, CellValue)>> {
        let hash = key_hash(table, key);
        for run in &self.runs {
            if let Some(seg) = run.find(table, key) {
                if let Some(found) = seg.get(table, key, hash, at)? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    pub fn segment_count(&self) -> usize {
        self.runs.iter().map(|r| r.segments.len()).sum()
    }

    pub fn size(&self) -> u64 {
        self.runs.iter().map(|r| r.size()).sum()
    }

    /// Largest user table id on disk.
    pub fn max_user_table(&self) -> Option<u32> {
        self.runs
            .iter()
            .flat_map(|r| r.segments.iter())
            .map(|s| s.footer.max_user_table)
            .filter(|t| *t != u32::MAX)
            .max()
    }

    pub fn all_segments(&self) -> impl Iterator<Item = &Arc<Segment>> {
        self.runs.iter().flat_map(|r| r.segments.iter())
    }
}
