//! Fuzz target: the checkpoint reader.
//!
//! Each input is tried two ways, each in a fresh `SimFs`, as
//! `/db/data/checkpoint-00000000000000000001.ckpt`, followed by `vellum_storage::Store::open`:
//!
//! 1. the input bytes are the whole file;
//! 2. the input becomes the metadata and the block payloads (entries) of a file whose header,
//!    block checksums, end marker and footer are valid (layout: `docs/format/checkpoint.md`),
//!    so the entry decoder and the loading of entries are reached past the checksums.
//!    Optionally one byte is flipped afterwards.
//!
//! Property: any input gives `Ok` or `Err`, never a panic. When the second form opens, the
//! store must also round-trip: write a checkpoint at the loaded version, reopen, and read the
//! same rows and table versions at that version.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use vellum_fs::{FileSystem, SimFs, SimOptions};
use vellum_storage::{Store, TableId, Version, CHECKPOINT_FORMAT_VERSION, CHECKPOINT_MAGIC};

const DIR: &str = "/db/data";
const FILE: &str = "checkpoint-00000000000000000001.ckpt";
const FOOTER_MAGIC: &[u8; 8] = b"VELLCEND";
/// Tables whose rows are compared in the round trip (the first ones found).
const TABLES_CHECKED_MAX: usize = 16;

/// A fresh file system holding `bytes` as the checkpoint file.
fn file_system(bytes: &[u8]) -> Option<SimFs> {
    let fs = SimFs::new(SimOptions::default());
    let dir = Path::new(DIR);
    fs.create_dir_all(dir).ok()?;
    let mut file = fs.open_write(&dir.join(FILE)).ok()?;
    file.write_at(0, bytes).ok()?;
    file.sync_data().ok()?;
    fs.sync_dir(dir).ok()?;
    Some(fs)
}

fn open(fs: &SimFs) -> vellum_storage::Result<(Store, Option<vellum_storage::CheckpointInfo>)> {
    Store::open(Arc::new(fs.clone()), Path::new(DIR))
}

/// Counts the entries of a block payload the way the reader decodes them, and collects their
/// table ids. `None` if the payload is malformed.
fn count_entries(payload: &[u8], tables: &mut BTreeSet<u32>) -> Option<u64> {
    let mut pos = 0usize;
    let mut count = 0u64;
    let u32_at = |at: usize| -> Option<u32> {
        let b = payload.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    while pos < payload.len() {
        let tag = payload[pos];
        let table = u32_at(pos + 1)?;
        payload.get(pos + 5..pos + 13)?;
        pos += 13;
        match tag {
            1 => {
                let key_len = u32_at(pos)? as usize;
                let value_len = u32_at(pos + 4)? as usize;
                pos = pos.checked_add(8)?.checked_add(key_len)?.checked_add(value_len)?;
                if pos > payload.len() {
                    return None;
                }
            }
            2 => {}
            _ => return None,
        }
        tables.insert(table);
        count += 1;
    }
    Some(count)
}

/// Reads the input front to back; zeros once it is used up.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = end;
        &self.data[start..end]
    }
    fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

/// Variant 2: a checksummed file around the input. Returns the file and the table ids of its
/// entries (empty if the entries are malformed).
fn framed(data: &[u8]) -> (Vec<u8>, BTreeSet<u32>) {
    let mut input = Input { data, pos: 0 };
    let flags = input.byte();
    let version = u64::from(input.byte());
    let meta_len = usize::from(input.byte() % 16);
    let flip_at = u16::from_le_bytes([input.byte(), input.byte()]) as usize;
    let meta = input.take(meta_len).to_vec();
    let body = input.rest();
    // Split the entries into 1..=4 blocks (a split may cut an entry in two: also worth trying).
    let parts = usize::from(flags & 3) + 1;
    let step = body.len().div_ceil(parts).max(1);
    let blocks: Vec<&[u8]> = body.chunks(step).collect();
    let mut tables = BTreeSet::new();
    let mut entries = Some(0u64);
    for block in &blocks {
        entries = entries.and_then(|n| Some(n + count_entries(block, &mut tables)?));
    }
    let entries = entries.unwrap_or_else(|| {
        tables.clear();
        u64::from(flags >> 4)
    });

    let mut out = Vec::new();
    out.extend_from_slice(&CHECKPOINT_MAGIC);
    out.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    let crc = crc32c(&out[0..28]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&crc32c(&meta).to_le_bytes());
    for block in &blocks {
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c(block).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&[0u8; 8]);
    let mut footer = Vec::with_capacity(28);
    footer.extend_from_slice(&entries.to_le_bytes());
    footer.extend_from_slice(&(blocks.len() as u64).to_le_bytes());
    let crc = crc32c(&footer);
    footer.extend_from_slice(&crc.to_le_bytes());
    footer.extend_from_slice(FOOTER_MAGIC);
    out.extend_from_slice(&footer);
    if flags & 4 != 0 {
        let at = flip_at % out.len();
        out[at] ^= 1 << (flags >> 5);
    }
    (out, tables)
}

/// CRC-32C (Castagnoli), bitwise: the fuzz package needs no checksum crate of its own.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Rows `(key, version, value)` and the table version of each table, read at `at`.
type Image = Vec<(u32, Vec<(Vec<u8>, Version, Vec<u8>)>, Option<Version>)>;

fn image(store: &Store, tables: &BTreeSet<u32>, at: Version) -> Image {
    let mut out = Vec::new();
    for &t in tables.iter().take(TABLES_CHECKED_MAX) {
        let table = TableId(t);
        let rows = store
            .scan(table, Bound::Unbounded, Bound::Unbounded, at)
            .collect::<vellum_storage::Result<Vec<_>>>();
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => panic!("scan of an opened checkpoint failed: {e}"),
        };
        let version = match store.table_version(table, at) {
            Ok(v) => v,
            Err(e) => panic!("table_version of an opened checkpoint failed: {e}"),
        };
        out.push((t, rows, version));
    }
    out
}

fn round_trip(fs: &SimFs, store: Store, version: Version, meta: &[u8], tables: &BTreeSet<u32>) {
    let before = image(&store, tables, version);
    if let Err(e) = store.checkpoint(version, meta) {
        panic!("writing back a checkpoint that loaded failed: {e}");
    }
    drop(store);
    match open(fs) {
        Ok((store, Some(info))) => {
            assert_eq!(info.version, version, "checkpoint version changed");
            assert_eq!(info.meta, meta, "checkpoint metadata changed");
            let after = image(&store, tables, version);
            assert_eq!(after, before, "rows changed across a checkpoint round trip");
        }
        Ok((_, None)) => panic!("the checkpoint vanished in a round trip"),
        Err(e) => panic!("a checkpoint written back from a loaded one fails to open: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(fs) = file_system(data) {
        let _ = open(&fs);
    }
    let (file, tables) = framed(data);
    if let Some(fs) = file_system(&file) {
        if let Ok((store, Some(info))) = open(&fs) {
            round_trip(&fs, store, info.version, &info.meta, &tables);
        }
    }
});
