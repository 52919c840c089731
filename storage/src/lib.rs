//! vellum-storage: versioned table storage.
//!
//! Owns every retained version of every cell, `(table, key, version) -> value | tombstone`,
//! and makes it durable. A log-structured engine: committed changes go to a memtable
//! (`crossbeam-skiplist`); a flush writes it to an immutable, block-based, checksummed segment
//! file and records it in the manifest; a background compaction merges segment runs and drops
//! versions no reader can see. Dependency rule: storage never allocates versions and knows
//! nothing of transactions or the write-ahead log; the caller applies committed changes with
//! the version it assigned, reads at the snapshot version it chose, says up to which version
//! a flush goes (its "checkpoint") and which versions are no longer needed (the GC horizon).
//!
//! Invariants:
//! * A cell, once applied, is never overwritten: a later write of the same key is a new cell
//!   with a higher version. Reads at version `v` see the newest cell with version `≤ v`.
//! * Garbage collection removes only cells that no read at a version `≥` the horizon can see,
//!   and a tombstone only when nothing older can resurface.
//! * After [`Store::checkpoint`] at `c` returns, every commit `≤ c` is durable in segments
//!   listed by the manifest, and no segment holds a commit above `c` (those stay in memory
//!   until a later flush), so the caller may drop its log up to `c`.
//! * A crash at any write or sync leaves the previous manifest or the new one, and every
//!   segment a manifest lists is complete.

#![warn(missing_docs)]

mod bloom;
mod cache;
mod checkpoint;
mod compaction;
mod error;
mod flush;
mod ids;
mod key;
mod manifest;
mod memtable;
mod merge;
mod options;
mod runs;
mod segment;
mod store;

pub use checkpoint::{CHECKPOINT_FORMAT_VERSION, CHECKPOINT_MAGIC};
pub use error::{Error, Result};
pub use ids::{TableId, Version};
pub use manifest::{MANIFEST_FORMAT_VERSION, MANIFEST_MAGIC};
pub use memtable::GcStats;
pub use merge::{RowCursor, Scan};
pub use options::{StoreOptions, StoreStats, VerifyReport};
pub use segment::{key_prefix, SEGMENT_FORMAT_VERSION, SEGMENT_MAGIC};
pub use store::{CellChange, Change, CheckpointInfo, Found, Store};
