//! Recovery scan: find the valid end of the log and decide torn tail versus corruption.
//!
//! Rule (see `docs/format/wal.md`): the log is read frame by frame while each frame is valid and
//! carries the next lsn. In every segment but the last, the first frame that is not the next
//! one ends the segment, and the next segment must start at exactly the next lsn (else records
//! are missing: corruption). In the last segment, where reading stops (zero bytes, or damage),
//! the rest of the segment is searched for a *proof*: a valid frame with a higher lsn whose
//! `durable_lsn` covers the first missing lsn. A proof means the missing record had been synced
//! before, so the damage is corruption and recovery fails with the file and offset. Without a
//! proof the stop is a torn tail: everything after it was never known to be durable, and is
//! discarded (zeroed, so that no unproven frame can ever be mistaken for a new one).

use crate::error::{io_err, Error, Result};
use crate::format::{parse_frame, Kind, Parsed, FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE};
use crate::segment::read_header;
use crate::{Lsn, Record};
use std::path::{Path, PathBuf};
use vellum_fs::FileSystem;

/// What recovery found.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Data records with lsn above the replay point, in order.
    pub records: Vec<Record>,
    /// Live segments kept: (seq, first lsn, path).
    pub segments: Vec<(u64, u64, PathBuf)>,
    /// Where the next frame goes.
    pub tail_offset: u64,
    /// Capacity of the tail segment.
    pub tail_capacity: u64,
    /// The bytes from `tail_offset` on must be zeroed before writing.
    pub tail_needs_zeroing: bool,
    /// Length of the tail segment file.
    pub tail_len: u64,
    /// Lsn of the last valid record (data or mark).
    pub last_lsn: u64,
}

/// Result of searching past a stop for later frames.
#[derive(Debug, Default)]
struct Search {
    /// Offset of a frame proving the missing record was durable.
    proof: Option<usize>,
    /// A valid frame with a live lsn exists but proves nothing.
    unproven: bool,
}

/// Searches `data` after `stop` (where record `missing` should have been) for frames with
/// lsn ≥ `missing`.
///
/// Only frames that could be real count: the `k`-th record after `missing` starts at least
/// `k` frame headers after `stop`, so a frame at offset `i` has lsn ≤ `missing + (i - stop) /
/// FRAME_HEADER_SIZE`, and a real frame's durable lsn is below its own lsn. A checksummed
/// frame-shaped fragment inside client data (for example the payload of a torn record whose
/// header was lost) fails these bounds unless crafted to fit them.
fn search(data: &[u8], stop: usize, missing: u64) -> Search {
    let mut found = Search::default();
    let mut i = stop + 1;
    while i + FRAME_HEADER_SIZE <= data.len() {
        // A frame header is never all zeros (its lsn is ≥ 1), so a run of zeros can be skipped
        // up to the last FRAME_HEADER_SIZE - 1 bytes before the next non-zero byte.
        if data[i] == 0 {
            match data[i..].iter().position(|&b| b != 0) {
                None => break,
                Some(p) => {
                    let next = i + p;
                    let jump = next.saturating_sub(FRAME_HEADER_SIZE - 1);
                    if jump > i {
                        i = jump;
                        continue;
                    }
                }
            }
        }
        let lsn_max = missing.saturating_add(((i - stop) / FRAME_HEADER_SIZE) as u64);
        match parse_frame(data, i) {
            Parsed::Valid(h, payload) if h.lsn <= lsn_max && h.durable_lsn < h.lsn => {
                if h.lsn >= missing {
                    if h.durable_lsn >= missing {
                        found.proof = Some(i);
                        return found;
                    }
                    found.unproven = true;
                }
                i += FRAME_HEADER_SIZE + payload.len();
            }
            _ => i += 1,
        }
    }
    found
}

fn corruption(file: &Path, offset: u64, reason: String) -> Error {
    Error::Corruption {
        file: file.to_path_buf(),
        offset,
        reason,
    }
}

/// Scans the live segments (ascending) and returns what was found.
pub(crate) fn recover(
    fs: &dyn FileSystem,
    segments: &[(u64, PathBuf)],
    replay_after: Lsn,
) -> Result<Outcome> {
    let mut records = Vec::new();
    let mut kept = Vec::new();
    let mut expected: Option<u64> = None;
    let mut previous_stop: Option<(PathBuf, usize, bool)> = None;
    for (idx, (seq, path)) in segments.iter().enumerate() {
        let data = fs.read(path).map_err(io_err(path))?;
        let header = read_header(path, *seq, &data)?;
        let next = match expected {
            None if header.first_lsn > replay_after.0 + 1 => {
                return Err(corruption(
                    path,
                    24,
                    format!(
                        "log starts at lsn {} but the checkpoint covers only up to lsn {}: \
                         records in between are missing",
                        header.first_lsn, replay_after.0
                    ),
                ))
            }
            None => header.first_lsn,
            Some(e) if e != header.first_lsn => {
                // Name the damage where it is, if the previous segment stopped at damage.
                return Err(match &previous_stop {
                    Some((prev, at, true)) => corruption(
                        prev,
                        *at as u64,
                        format!(
                            "record {e} is damaged, and the next segment starts at lsn {}",
                            header.first_lsn
                        ),
                    ),
                    _ => corruption(
                        path,
                        24,
                        format!(
                            "segment starts at lsn {} but lsn {e} was expected",
                            header.first_lsn
                        ),
                    ),
                });
            }
            Some(e) => e,
        };
        kept.push((*seq, header.first_lsn, path.clone()));
        let (stop, mut next, damaged) = read_frames(&data, next, replay_after, &mut records);
        expected = Some(next);
        if idx + 1 < segments.len() {
            // The writer syncs a segment, then starts the next one at exactly the next lsn.
            // Whatever follows the last frame here is unused space; if frames were lost, the
            // next segment's first lsn will not match and that is reported as corruption.
            previous_stop = Some((path.clone(), stop, damaged));
            continue;
        }
        // The log ends here.
        let search_here = search(&data, stop, next);
        if let Some(at) = search_here.proof {
            return Err(corruption(
                path,
                stop as u64,
                format!(
                    "record {next} is damaged or missing, but the record at offset {at} proves \
                     it had been made durable"
                ),
            ));
        }
        next = next.max(1);
        return Ok(Outcome {
            records,
            segments: kept,
            tail_offset: stop as u64,
            tail_capacity: header.capacity,
            // Anything but zeros after the stop (damage, unproven frames, or stale frames of
            // an old log) is cleared before writing resumes there: the invariant is that after
            // the last frame come zeros, never frames or fragments of frames.
            tail_needs_zeroing: damaged
                || search_here.unproven
                || data
                    .get(stop..)
                    .is_some_and(|rest| rest.iter().any(|&b| b != 0)),
            tail_len: data.len() as u64,
            last_lsn: next - 1,
        });
    }
    // Only reached with no segments: the caller creates the first one.
    Ok(Outcome {
        records,
        segments: kept,
        tail_offset: SEGMENT_HEADER_SIZE as u64,
        tail_capacity: 0,
        tail_needs_zeroing: false,
        tail_len: 0,
        last_lsn: replay_after.0,
    })
}

/// Reads consecutive frames from the segment body. Returns the offset where reading stopped,
/// the next expected lsn, and whether it stopped at damage (as opposed to zero bytes or stale
/// frames of a recycled segment).
fn read_frames(
    data: &[u8],
    mut expected: u64,
    replay_after: Lsn,
    records: &mut Vec<Record>,
) -> (usize, u64, bool) {
    let mut offset = SEGMENT_HEADER_SIZE;
    loop {
        match parse_frame(data, offset) {
            Parsed::Valid(h, payload) if h.lsn == expected => {
                if h.kind == Kind::Data as u8 && h.lsn > replay_after.0 {
                    records.push(Record {
                        lsn: Lsn(h.lsn),
                        payload: payload.to_vec(),
                    });
                }
                expected += 1;
                offset += FRAME_HEADER_SIZE + payload.len();
            }
            Parsed::Valid(h, _) if h.lsn < expected => return (offset, expected, false),
            Parsed::Zero => return (offset, expected, false),
            _ => return (offset, expected, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::seal_frame;

    fn frame(lsn: u64, durable: u64, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; FRAME_HEADER_SIZE];
        f.extend_from_slice(payload);
        seal_frame(&mut f, lsn, durable, Kind::Data);
        f
    }

    #[test]
    fn search_skips_zeros_and_finds_a_proof() {
        let mut data = vec![0u8; 5000];
        let f = frame(10, 9, b"x");
        data[3001..3001 + f.len()].copy_from_slice(&f);
        let s = search(&data, 0, 9);
        assert_eq!(s.proof, Some(3001));
        let s = search(&data, 0, 10);
        assert_eq!(s.proof, None);
        assert!(s.unproven);
    }

    #[test]
    fn search_ignores_stale_frames() {
        let mut data = frame(3, 2, b"old");
        data.extend(frame(4, 3, b"older"));
        let s = search(&data, 0, 10);
        assert!(s.proof.is_none() && !s.unproven);
    }
}
