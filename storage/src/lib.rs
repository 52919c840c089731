//! vellum-storage: versioned table storage.
//!
//! Owns every version of every cell, `(table, key, version) -> value | tombstone`, and makes it
//! durable through checkpoints. Dependency rule: storage never allocates versions and knows
//! nothing of transactions or the write-ahead log; the caller applies committed changes with
//! the version it assigned and reads at the snapshot version it chose.
//!
//! The API ([`Store`]) is the seam for the persistent segment engine of a later release: every
//! read returns `Result` so a disk-backed implementation fits under it without changing callers.
//!
//! Invariants:
//! * A cell, once applied, is never overwritten: a later write of the same key is a new cell
//!   with a higher version. Reads at version `v` see the newest cell with version `≤ v`.
//! * [`Store::gc`] removes only cells that no read at a version `≥` its horizon can see.
//! * A checkpoint at version `c` holds, for every key, its newest cell with version `≤ c`
//!   (tombstones omitted) and every table's version as of `c`.

#![warn(missing_docs)]

mod checkpoint;
mod error;
mod ids;
mod key;
mod memtable;
mod store;

pub use checkpoint::{CHECKPOINT_FORMAT_VERSION, CHECKPOINT_MAGIC};
pub use error::{Error, Result};
pub use ids::{TableId, Version};
pub use memtable::{GcStats, Scan};
pub use store::{CellChange, Change, CheckpointInfo, Found, Store};
