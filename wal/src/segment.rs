//! Segment files: naming, listing, creation (preallocated or recycled) and release.
//!
//! Names: `wal-<seq>.log` for live segments, `spare-<seq>.log` for released segments kept for
//! reuse (all zeros), `wal-<seq>.recycle` for a released segment being zeroed, `wal-<seq>.tmp`
//! for a segment being prepared. `.tmp` and `.recycle` files are removed at open. Sequence
//! numbers are zero-padded to 20 digits so names sort in log order.
//!
//! Invariants:
//! * A `wal-*.log` file always has its header synced and its full capacity allocated (zeros or
//!   stale frames from an earlier use) before its name becomes durable: writing into it later
//!   never changes the file size, so `fdatasync` need not commit file-system metadata.
//! * A spare is entirely zeros (zeroed and synced before it gets its `spare-` name), so a
//!   segment made from it reads exactly like a freshly preallocated one: after its last frame
//!   come zeros, never stale frames or fragments of them.

use crate::error::{io_err, Error, Result};
use crate::format::{SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_SIZE};
use std::path::{Path, PathBuf};
use vellum_fs::{FileSystem, WritableFile};

/// Bytes of zeros written per call while preallocating.
const ZERO_CHUNK: usize = 1 << 20;

pub(crate) fn segment_name(seq: u64) -> String {
    format!("wal-{seq:020}.log")
}

fn temp_name(seq: u64) -> String {
    format!("wal-{seq:020}.tmp")
}

pub(crate) fn spare_name(seq: u64) -> String {
    format!("spare-{seq:020}.log")
}

fn parse_seq(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The files of a WAL directory, by role.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Live segments, ascending by sequence number.
    pub segments: Vec<(u64, PathBuf)>,
    /// Released segments available for reuse.
    pub spares: Vec<PathBuf>,
    /// Unfinished segment preparations (removed at open).
    pub temps: Vec<PathBuf>,
    /// Released segments whose zeroing did not finish (removed at open).
    pub recycling: Vec<PathBuf>,
}

pub(crate) fn list(fs: &dyn FileSystem, dir: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    for name in fs.list(dir).map_err(io_err(dir))? {
        let path = dir.join(&name);
        if let Some(seq) = parse_seq(&name, "wal-", ".log") {
            listing.segments.push((seq, path));
        } else if parse_seq(&name, "spare-", ".log").is_some() {
            listing.spares.push(path);
        } else if parse_seq(&name, "wal-", ".tmp").is_some() {
            listing.temps.push(path);
        } else if parse_seq(&name, "wal-", ".recycle").is_some() {
            listing.recycling.push(path);
        }
    }
    listing.segments.sort();
    Ok(listing)
}

/// An open, live segment.
#[derive(Debug)]
pub(crate) struct OpenSegment {
    pub file: Box<dyn WritableFile>,
    pub path: PathBuf,
    pub capacity: u64,
}

/// Writes zeros over `[from, to)` of `file`.
pub(crate) fn zero_range(file: &mut dyn WritableFile, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(ZERO_CHUNK);
        file.write_at(at, &zeros[..n])?;
        at += n as u64;
    }
    Ok(())
}

/// Creates live segment `seq` whose first record will be `first_lsn`, reusing `spare` if given.
/// On return the header and the preallocated space are durable and the name is durable.
pub(crate) fn create(
    fs: &dyn FileSystem,
    dir: &Path,
    seq: u64,
    first_lsn: u64,
    capacity: u64,
    spare: Option<PathBuf>,
) -> Result<OpenSegment> {
    let tmp = dir.join(temp_name(seq));
    let path = dir.join(segment_name(seq));
    if let Some(spare) = &spare {
        fs.rename(spare, &tmp).map_err(io_err(spare))?;
    }
    let mut file = fs.open_write(&tmp).map_err(io_err(&tmp))?;
    let len = if spare.is_some() {
        file.len().map_err(io_err(&tmp))?
    } else {
        file.set_len(0).map_err(io_err(&tmp))?;
        0
    };
    let capacity = capacity.max(len);
    zero_range(file.as_mut(), len, capacity).map_err(io_err(&tmp))?;
    let header = SegmentHeader {
        format: FORMAT_VERSION,
        seq,
        first_lsn,
        capacity,
    };
    file.write_at(0, &header.encode()).map_err(io_err(&tmp))?;
    file.sync_data().map_err(io_err(&tmp))?;
    fs.rename(&tmp, &path).map_err(io_err(&tmp))?;
    fs.sync_dir(dir).map_err(io_err(dir))?;
    Ok(OpenSegment {
        file,
        path,
        capacity,
    })
}

/// Releases segments that hold only records at or below a checkpoint: keeps up to
/// `spares_max` of them (counting `spares_now`) as zeroed spares, removes the rest.
/// Returns the new spare paths.
///
/// A kept segment is renamed to `wal-<seq>.recycle` (so it is no longer part of the log),
/// zeroed over its whole length, synced, and only then renamed to `spare-<seq>.log`.
pub(crate) fn release(
    fs: &dyn FileSystem,
    dir: &Path,
    released: &[(u64, PathBuf)],
    spares_now: usize,
    spares_max: usize,
) -> Result<Vec<PathBuf>> {
    let mut recycling = Vec::new();
    for (seq, path) in released {
        if spares_now + recycling.len() < spares_max {
            let tmp = dir.join(format!("wal-{seq:020}.recycle"));
            fs.rename(path, &tmp).map_err(io_err(path))?;
            recycling.push((*seq, tmp));
        } else {
            fs.remove_file(path).map_err(io_err(path))?;
        }
    }
    if released.is_empty() {
        return Ok(Vec::new());
    }
    // The log no longer names the released segments once this is durable.
    fs.sync_dir(dir).map_err(io_err(dir))?;
    let mut spares = Vec::new();
    for (seq, tmp) in recycling {
        let mut file = fs.open_write(&tmp).map_err(io_err(&tmp))?;
        let len = file.len().map_err(io_err(&tmp))?;
        zero_range(file.as_mut(), 0, len).map_err(io_err(&tmp))?;
        file.sync_data().map_err(io_err(&tmp))?;
        let spare = dir.join(spare_name(seq));
        fs.rename(&tmp, &spare).map_err(io_err(&tmp))?;
        spares.push(spare);
    }
    if !spares.is_empty() {
        fs.sync_dir(dir).map_err(io_err(dir))?;
    }
    Ok(spares)
}

/// Reads and checks the header of a live segment.
pub(crate) fn read_header(path: &Path, seq: u64, data: &[u8]) -> Result<SegmentHeader> {
    let corrupt = |offset: u64, reason: String| Error::Corruption {
        file: path.to_path_buf(),
        offset,
        reason,
    };
    let header = SegmentHeader::decode(data).map_err(|r| corrupt(0, r.to_string()))?;
    if header.format != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            file: path.to_path_buf(),
            found: header.format,
            supported: FORMAT_VERSION,
        });
    }
    if header.seq != seq {
        return Err(corrupt(
            16,
            format!(
                "header names segment {} but the file is segment {seq}",
                header.seq
            ),
        ));
    }
    if (data.len() as u64) < header.capacity {
        return Err(corrupt(
            data.len() as u64,
            format!(
                "file is {} bytes but was preallocated to {}: it was truncated",
                data.len(),
                header.capacity
            ),
        ));
    }
    debug_assert!(data.len() >= SEGMENT_HEADER_SIZE);
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_in_log_order() {
        assert_eq!(parse_seq(&segment_name(42), "wal-", ".log"), Some(42));
        assert_eq!(parse_seq(&spare_name(7), "spare-", ".log"), Some(7));
        assert_eq!(parse_seq("wal-12.log", "wal-", ".log"), None);
        assert!(segment_name(9) < segment_name(10));
    }
}
