//! Fuzz target: the segment reader (`docs/format/segment.md`).
//!
//! A store in a fresh `SimFs` flushes one small segment, so its manifest lists it; then the
//! segment file's bytes are replaced by the input — as is, or written over the flushed file at an
//! offset the input chooses (so most of the framing stays intact and the header, footer, index
//! and bloom checks each meet damage of their own).
//! The store is reopened and, if it opens, every table is scanned, a few keys are read and
//! `verify` runs.
//!
//! Property: any input gives `Ok` or `Err`, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vellum_fs::{FileSystem, SimFs, SimOptions};
use vellum_storage::{Change, Store, StoreOptions, TableId, Version};

const DIR: &str = "/db/data";

fn opts() -> StoreOptions {
    StoreOptions {
        background_compaction: false,
        ..StoreOptions::default()
    }
}

/// A store with one flushed segment; returns the file system and the segment's path.
fn flushed() -> Option<(SimFs, PathBuf)> {
    let fs = SimFs::new(SimOptions::default());
    let (store, _) = Store::open_with(Arc::new(fs.clone()), Path::new(DIR), opts()).ok()?;
    for v in 1..=3u64 {
        let keys: Vec<Vec<u8>> = (0..20u8).map(|i| vec![b'k', i]).collect();
        let changes: Vec<Change<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Change {
                table: TableId(1 + (i % 2) as u32),
                key: k,
                value: (v < 3 || i % 3 != 0).then_some(&b"value"[..]),
            })
            .collect();
        store.apply(Version(v), &changes, &[TableId(1), TableId(2)]);
    }
    store.checkpoint(Version(3), b"meta").ok()?;
    drop(store);
    let name = fs
        .list(Path::new(DIR))
        .ok()?
        .into_iter()
        .find(|n| n.starts_with("seg-"))?;
    Some((fs, Path::new(DIR).join(name)))
}

fn replace(fs: &SimFs, path: &Path, bytes: &[u8]) -> Option<()> {
    let mut f = fs.open_write(path).ok()?;
    f.set_len(0).ok()?;
    f.write_at(0, bytes).ok()?;
    f.sync_data().ok()
}

fn exercise(fs: &SimFs) {
    let Ok((store, _)) = Store::open_with(Arc::new(fs.clone()), Path::new(DIR), opts()) else {
        return;
    };
    for t in 0..4u32 {
        for row in store.scan(TableId(t), Bound::Unbounded, Bound::Unbounded, Version::MAX) {
            if row.is_err() {
                break;
            }
        }
        let _ = store.get(TableId(t), b"k\x01", Version(2));
        let _ = store.table_version(TableId(t), Version::MAX);
    }
    let _ = store.changes_between(Version(1), Version(3));
    let _ = store.verify();
}

fuzz_target!(|data: &[u8]| {
    let Some((fs, path)) = flushed() else { return };
    if replace(&fs, &path, data).is_some() {
        exercise(&fs);
    }
    let Some((fs, path)) = flushed() else { return };
    let Ok(mut original) = fs.read(&path) else { return };
    if let Some((&at, rest)) = data.split_first() {
        let start = usize::from(at) * original.len() / 256;
        for (i, b) in rest.iter().enumerate() {
            if let Some(slot) = original.get_mut(start + i) {
                *slot = *b;
            }
        }
        if replace(&fs, &path, &original).is_some() {
            exercise(&fs);
        }
    }
});
