//! Damage to segment files and the manifest: every flipped bit is caught by a checksum — at
//! open (header, footer, index, bloom filter, manifest) or by the read that touches the damaged
//! data block and by `Store::verify` — and reported as `Error::Corruption` naming the file and
//! an offset inside it. No read ever returns a wrong value.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vellum_fs::{FileSystem, SimFs, SimOptions};
use vellum_storage::{Change, Error, Store, StoreOptions, TableId, Version};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DIR: &str = "/db/data";
const KEYS: u32 = 150;

fn opts() -> StoreOptions {
    StoreOptions {
        background_compaction: false,
        ..StoreOptions::default()
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:04}").into_bytes()
}

fn value(i: u32, v: u64) -> Vec<u8> {
    format!("value {i} at {v} ").repeat(3).into_bytes()
}

/// A store with one segment: keys written at versions 1 and 2, every third deleted at 3.
fn build() -> Result<(Arc<SimFs>, PathBuf), Box<dyn std::error::Error>> {
    let fs = Arc::new(SimFs::new(SimOptions::default()));
    let (store, _) = Store::open_with(fs.clone(), Path::new(DIR), opts())?;
    for v in 1..=3u64 {
        let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
        let values: Vec<Vec<u8>> = (0..KEYS).map(|i| value(i, v)).collect();
        let changes: Vec<Change<'_>> = (0..KEYS as usize)
            .filter(|i| v < 3 || i % 3 == 0)
            .map(|i| Change {
                table: TableId(1),
                key: &keys[i],
                value: (v < 3).then_some(&values[i][..]),
            })
            .collect();
        store.apply(Version(v), &changes, &[TableId(1)]);
    }
    store.checkpoint(Version(3), b"meta")?;
    drop(store);
    let names = fs.list(Path::new(DIR))?;
    let seg = names
        .iter()
        .find(|n| n.starts_with("seg-"))
        .ok_or("no segment written")?;
    Ok((fs, Path::new(DIR).join(seg)))
}

fn expected(i: u32, at: u64) -> Option<Vec<u8>> {
    if at >= 3 && i.is_multiple_of(3) {
        None
    } else {
        Some(value(i, at.min(2)))
    }
}

fn names_file(e: &Error, file: &Path, len: u64) -> bool {
    matches!(e, Error::Corruption { file: f, offset, .. } if f == file && *offset < len)
}

/// Reads everything; returns whether some read reported corruption of `file`.
fn read_all(store: &Store, file: &Path, len: u64, ctx: &str) -> Result<bool, String> {
    let mut damaged = false;
    for at in [2u64, 3] {
        for i in 0..KEYS {
            match store.get(TableId(1), &key(i), Version(at)) {
                Ok(found) => {
                    let got = found.and_then(|f| f.value);
                    if got != expected(i, at) {
                        return Err(format!("{ctx}: key {i} at {at} read a wrong value"));
                    }
                }
                Err(e) if names_file(&e, file, len) => damaged = true,
                Err(e) => return Err(format!("{ctx}: get failed with {e:?}")),
            }
        }
        let mut rows = Vec::new();
        for r in store.scan(TableId(1), Bound::Unbounded, Bound::Unbounded, Version(at)) {
            match r {
                Ok((k, _, v)) => rows.push((k, v)),
                Err(e) if names_file(&e, file, len) => {
                    damaged = true;
                    rows.clear();
                    break;
                }
                Err(e) => return Err(format!("{ctx}: scan failed with {e:?}")),
            }
        }
        if !damaged {
            let want: Vec<(Vec<u8>, Vec<u8>)> = (0..KEYS)
                .filter_map(|i| expected(i, at).map(|v| (key(i), v)))
                .collect();
            if rows != want {
                return Err(format!("{ctx}: scan at {at} returned other rows"));
            }
        }
    }
    Ok(damaged)
}

#[test]
fn every_flipped_bit_of_a_segment_is_reported_as_corruption_naming_it() -> TestResult {
    let (fs, seg) = build()?;
    let len = fs.read(&seg)?.len() as u64;
    assert!(len > 8 << 10, "segment of {len} bytes spans several blocks");
    let mut at_open = 0;
    let mut on_read = 0;
    for offset in 0..len {
        let (fs, seg) = build()?;
        let mask = 1u8 << (offset % 8);
        fs.corrupt(&seg, offset, mask)?;
        let ctx = format!("byte {offset} ^= {mask:#04x}");
        match Store::open_with(fs.clone(), Path::new(DIR), opts()) {
            Err(e) if names_file(&e, &seg, len) => at_open += 1,
            Err(e) => return Err(format!("{ctx}: open failed with {e:?}").into()),
            Ok((store, _)) => {
                let read_saw_it = read_all(&store, &seg, len, &ctx)?;
                let report = store.verify();
                if !report.problems.iter().any(|e| names_file(e, &seg, len)) {
                    return Err(format!("{ctx}: verify missed it: {report:?}").into());
                }
                on_read += usize::from(read_saw_it);
            }
        }
    }
    assert!(at_open > 0 && on_read > 0, "open {at_open}, read {on_read}");
    Ok(())
}

#[test]
fn a_truncated_segment_or_a_damaged_manifest_fails_the_open_naming_it() -> TestResult {
    let (fs, seg) = build()?;
    let len = fs.read(&seg)?.len() as u64;
    for cut in (0..len).step_by(97) {
        let (fs, seg) = build()?;
        fs.truncate(&seg, cut)?;
        match Store::open_with(fs.clone(), Path::new(DIR), opts()) {
            Err(e) if names_file(&e, &seg, len) => {}
            other => return Err(format!("cut at {cut}: {other:?}").into()),
        }
    }
    let manifest = Path::new(DIR).join("manifest");
    let mlen = fs.read(&manifest)?.len() as u64;
    for offset in 0..mlen {
        let (fs, _) = build()?;
        fs.corrupt(&manifest, offset, 0x04)?;
        match Store::open_with(fs.clone(), Path::new(DIR), opts()) {
            Err(Error::Corruption { file, .. }) if file == manifest => {}
            Err(Error::UnsupportedVersion { file, .. }) if file == manifest => {}
            other => return Err(format!("manifest byte {offset}: {other:?}").into()),
        }
    }
    Ok(())
}
