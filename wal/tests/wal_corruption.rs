//! Durable damage: byte flips, truncation, foreign headers. Recovery must either refuse with
//! `Error::Corruption` naming the damaged segment, or return every record; it must never
//! panic and never return fewer records without saying so.

mod common;

use common::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use vellum_fs::{FileSystem, SimFs};
use vellum_wal::format::{SegmentHeader, FORMAT_VERSION, FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE};
use vellum_wal::{Error, Record, SyncPolicy, WalOptions};

/// Writes a log (single records and batches) and closes it cleanly; returns its records.
fn build(fs: &SimFs, opts: &WalOptions, records: u64) -> vellum_wal::Result<Vec<Record>> {
    let (wal, _) = open(fs, opts, 0)?;
    let mut written = Vec::new();
    let mut i = 0;
    while i < records {
        if i % 10 < 6 {
            written.extend(write_each(
                &wal,
                &[payload(i, (i * 29 % 120 + 1) as usize)],
            )?);
            i += 1;
        } else {
            let batch: Vec<Vec<u8>> = (i..i + 4)
                .map(|j| payload(j, (j * 17 % 90 + 1) as usize))
                .collect();
            written.extend(write_batch(&wal, &batch)?);
            i += 4;
        }
    }
    drop(wal); // clean close: sync and close mark
    Ok(written)
}

/// What a reopen did with damage at `flipped` in `seg`.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Every record came back.
    AllRecords,
    /// Refused with a corruption error naming `seg`.
    Corruption,
}

fn reopen_after_damage(
    fs: &SimFs,
    opts: &WalOptions,
    seg: &Path,
    flipped: u64,
    written: &[Record],
    ctx: &str,
) -> Result<Outcome, String> {
    let opened = catch_unwind(AssertUnwindSafe(|| open(fs, opts, 0)))
        .map_err(|_| format!("{ctx}: recovery panicked"))?;
    match opened {
        Ok((wal, recovered)) => {
            if recovered != written {
                return Err(format!(
                    "{ctx}: recovery returned {} of {} records without reporting corruption",
                    recovered.len(),
                    written.len()
                ));
            }
            drop(wal);
            match open(fs, opts, 0) {
                Ok((_, again)) if again == written => Ok(Outcome::AllRecords),
                other => Err(format!(
                    "{ctx}: the second reopen differs: {:?}",
                    other.map(|r| r.1.len())
                )),
            }
        }
        Err(Error::Corruption { file, offset, .. }) if file == seg && offset <= flipped => {
            Ok(Outcome::Corruption)
        }
        Err(e) => Err(format!("{ctx}: unexpected error {e:?}")),
    }
}

fn only_segment(fs: &SimFs) -> Result<PathBuf, String> {
    match segment_files(fs).as_slice() {
        [one] => Ok(one.clone()),
        other => Err(format!("expected one segment, found {other:?}")),
    }
}

#[test]
fn every_single_byte_flip_in_a_closed_segment_is_reported_or_harmless() -> TestResult {
    let opts = options(8192, SyncPolicy::Immediate, 2);
    let reference = strict_sim();
    let written = build(&reference, &opts, 40)?;
    let seg = only_segment(&reference)?;
    let end = written_end(&reference, &seg)?;
    assert!(end > 1000 && end < 8192, "written region ends at {end}");

    let mut harmless = Vec::new();
    for offset in 0..end as u64 {
        let masks: &[u8] = if offset < SEGMENT_HEADER_SIZE as u64 {
            &[0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80]
        } else {
            &[[0x01, 0x80, 0xFF, 0x10][offset as usize % 4]]
        };
        for &mask in masks {
            let fs = strict_sim();
            let again = build(&fs, &opts, 40)?;
            assert_eq!(again, written, "the build is deterministic");
            fs.corrupt(&seg, offset, mask)?;
            let ctx = format!("flip {mask:#04x} at offset {offset} of {end}");
            if reopen_after_damage(&fs, &opts, &seg, offset, &written, &ctx)? == Outcome::AllRecords
            {
                harmless.push(offset);
            }
        }
    }
    // Only the close mark (the last frame: no record follows that could prove it) may be
    // damaged without an error, and losing it loses no record.
    let mark = (end - FRAME_HEADER_SIZE) as u64;
    assert!(
        harmless.iter().all(|&o| o >= mark),
        "harmless flips before the close mark: {harmless:?}"
    );
    assert_eq!(harmless.len(), FRAME_HEADER_SIZE, "{harmless:?}");
    Ok(())
}

#[test]
fn byte_flips_in_any_segment_of_a_rotated_log_name_that_segment() -> TestResult {
    let opts = options(4096, SyncPolicy::Immediate, 2);
    let reference = strict_sim();
    let written = build(&reference, &opts, 100)?;
    let segs = segment_files(&reference);
    assert!(segs.len() >= 3, "{segs:?}");
    let mut cases = 0;
    for (k, seg) in segs.iter().enumerate() {
        let end = written_end(&reference, seg)? as u64;
        let last = k + 1 == segs.len();
        let offsets =
            (0..SEGMENT_HEADER_SIZE as u64).chain((SEGMENT_HEADER_SIZE as u64..end).step_by(7));
        for offset in offsets {
            let fs = strict_sim();
            build(&fs, &opts, 100)?;
            fs.corrupt(seg, offset, 0x40)?;
            let ctx = format!("segment {k}: flip at offset {offset} of {end}");
            let outcome = reopen_after_damage(&fs, &opts, seg, offset, &written, &ctx)?;
            let in_close_mark = last && offset >= end - FRAME_HEADER_SIZE as u64;
            let want = if in_close_mark {
                Outcome::AllRecords
            } else {
                Outcome::Corruption
            };
            assert_eq!(outcome, want, "{ctx}");
            cases += 1;
        }
    }
    assert!(cases > 500, "{cases}");
    Ok(())
}

#[test]
fn a_segment_truncated_below_its_preallocated_size_is_corruption() -> TestResult {
    let opts = options(8192, SyncPolicy::Immediate, 2);
    let reference = strict_sim();
    let written = build(&reference, &opts, 30)?;
    let seg = only_segment(&reference)?;
    let end = written_end(&reference, &seg)? as u64;
    for len in [0, 1, 43, 44, 45, 100, end - 1, end, end + 1, 4096, 8191] {
        let fs = strict_sim();
        build(&fs, &opts, 30)?;
        fs.truncate(&seg, len)?;
        let opened = catch_unwind(AssertUnwindSafe(|| open(&fs, &opts, 0)));
        let Ok(result) = opened else {
            return Err(format!("recovery panicked on a file truncated to {len}").into());
        };
        let err = result.map(|(_, r)| r.len()).err();
        assert!(
            matches!(&err, Some(Error::Corruption { file, .. }) if *file == seg),
            "truncated to {len} of {} ({} records): {err:?}",
            8192,
            written.len()
        );
    }
    Ok(())
}

#[test]
fn a_byte_flip_in_the_zeroed_space_after_the_last_record_is_harmless() -> TestResult {
    let opts = options(8192, SyncPolicy::Immediate, 2);
    let reference = strict_sim();
    let written = build(&reference, &opts, 30)?;
    let seg = only_segment(&reference)?;
    let end = written_end(&reference, &seg)? as u64;
    let offsets = (end..end + 64)
        .chain((end + 64..8192).step_by(61))
        .chain([8191]);
    for offset in offsets {
        let fs = strict_sim();
        build(&fs, &opts, 30)?;
        fs.corrupt(&seg, offset, 0x5A)?;
        let ctx = format!("flip at offset {offset} (records end at {end})");
        let outcome = reopen_after_damage(&fs, &opts, &seg, offset, &written, &ctx)?;
        assert_eq!(outcome, Outcome::AllRecords, "{ctx}");
    }
    Ok(())
}

/// The space after the last frame of a full (non-last) segment is just as unused as the
/// space after the last frame of the log: the next segment's header says where the log goes
/// on, and its first lsn is exactly the one expected.
#[test]
fn a_byte_flip_in_the_unused_space_of_an_earlier_segment_is_harmless() -> TestResult {
    let opts = options(4096, SyncPolicy::Immediate, 2);
    let reference = strict_sim();
    let written = build(&reference, &opts, 100)?;
    let first = segment_files(&reference)[0].clone();
    let end = written_end(&reference, &first)? as u64;
    assert!(end < 4096 - 5);
    for offset in [end, end + 1, end + 3, 4095] {
        let fs = strict_sim();
        build(&fs, &opts, 100)?;
        fs.corrupt(&first, offset, 0x01)?;
        let ctx = format!("flip at offset {offset} of the first segment (its frames end at {end})");
        let outcome = reopen_after_damage(&fs, &opts, &first, offset, &written, &ctx)?;
        assert_eq!(outcome, Outcome::AllRecords, "{ctx}");
    }
    Ok(())
}

#[test]
fn garbage_at_the_tail_after_a_crash_is_cut_and_the_log_goes_on() -> TestResult {
    let opts = options(8192, SyncPolicy::Immediate, 2);
    for seed in 0..40u64 {
        let fs = sim(seed, true, true);
        let (wal, _) = open(&fs, &opts, 0)?;
        let acked = write_each(&wal, &(0..10).map(|i| payload(i, 200)).collect::<Vec<_>>())?;
        let seg = only_segment(&fs)?;
        let end = written_end(&fs, &seg)? as u64;
        // The next write crashes part-way (torn) and may partly survive the restart.
        fs.crash_after(Some(1 + seed % 2));
        let t = wal.enqueue(&payload(99, 3000))?;
        assert!(wal.wait(t).is_err());
        drop(wal);
        fs.restart();
        // Whatever survived, also scribble over a few bytes of the unsynced region.
        for k in 0..(seed % 5) {
            fs.corrupt(&seg, end + 7 * k + seed % 11, 0xA5)?;
        }
        let (wal, recovered) = open(&fs, &opts, 0)?;
        // The crashed record may have survived whole (crash at its sync, write kept), but
        // only if nothing scribbled over it.
        let mut with_crashed = acked.clone();
        with_crashed.push(Record {
            lsn: t.lsn(),
            payload: payload(99, 3000),
        });
        assert!(
            recovered == acked || (seed % 5 == 0 && recovered == with_crashed),
            "seed {seed}: {} records",
            recovered.len()
        );
        let more = write_each(&wal, &[payload(100, 50)])?;
        drop(wal);
        let (_wal, again) = open(&fs, &opts, 0)?;
        let mut want = recovered.clone();
        want.extend(more);
        let recovered = again;
        assert_eq!(recovered, want, "seed {seed}");
    }
    Ok(())
}

/// Known limit: a record damaged inside the last batch written before a crash (so no later
/// frame and no close mark proves it durable) looks exactly like a torn write. Recovery cuts
/// the log there; the record is lost even though its `wait` had returned.
#[test]
fn known_limit_damage_in_the_last_batch_before_a_crash_is_taken_for_a_torn_write() -> TestResult {
    let opts = options(8192, SyncPolicy::Immediate, 2);
    let fs = strict_sim();
    let (wal, _) = open(&fs, &opts, 0)?;
    let acked = write_each(&wal, &(0..10).map(|i| payload(i, 40)).collect::<Vec<_>>())?;
    fs.crash_now();
    drop(wal);
    fs.restart();
    let seg = only_segment(&fs)?;
    let end = written_end(&fs, &seg)? as u64;
    fs.corrupt(&seg, end - 10, 0x01)?; // inside the payload of the last record
    let (_wal, recovered) = open(&fs, &opts, 0)?;
    assert_eq!(recovered, acked[..9]);
    Ok(())
}

#[test]
fn a_segment_of_another_format_version_is_refused() -> TestResult {
    let opts = options(8192, SyncPolicy::Immediate, 2);
    let fs = strict_sim();
    build(&fs, &opts, 5)?;
    let seg = only_segment(&fs)?;
    let data = fs.read(&seg)?;
    let mut header = SegmentHeader::decode(&data).map_err(|e| e.to_string())?;
    assert_eq!(header.format, FORMAT_VERSION);
    header.format = FORMAT_VERSION + 1;
    let mut f = fs.open_write(&seg)?;
    f.write_at(0, &header.encode())?;
    f.sync_data()?;
    drop(f);
    let err = open(&fs, &opts, 0).err();
    assert!(
        matches!(&err, Some(Error::UnsupportedVersion { file, found, supported })
            if *file == seg && *found == FORMAT_VERSION + 1 && *supported == FORMAT_VERSION),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn a_header_naming_another_segment_is_corruption() -> TestResult {
    let opts = options(8192, SyncPolicy::Immediate, 2);
    let fs = strict_sim();
    build(&fs, &opts, 5)?;
    let seg = only_segment(&fs)?;
    let mut header = SegmentHeader::decode(&fs.read(&seg)?).map_err(|e| e.to_string())?;
    header.seq += 1;
    let mut f = fs.open_write(&seg)?;
    f.write_at(0, &header.encode())?;
    f.sync_data()?;
    drop(f);
    let err = open(&fs, &opts, 0).err();
    assert!(
        matches!(&err, Some(Error::Corruption { file, offset: 16, .. }) if *file == seg),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn a_missing_middle_segment_is_corruption() -> TestResult {
    let opts = options(4096, SyncPolicy::Immediate, 2);
    let fs = strict_sim();
    build(&fs, &opts, 100)?;
    let segs = segment_files(&fs);
    assert!(segs.len() >= 3);
    fs.remove_file(&segs[1])?;
    fs.sync_dir(&dir())?;
    let err = open(&fs, &opts, 0).err();
    assert!(
        matches!(&err, Some(Error::Corruption { file, offset: 24, .. }) if *file == segs[2]),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn a_foreign_file_named_like_a_segment_is_corruption() -> TestResult {
    let opts = options(8192, SyncPolicy::Immediate, 2);
    let fs = strict_sim();
    build(&fs, &opts, 5)?;
    let foreign = dir().join(format!("wal-{:020}.log", 77));
    let mut f = fs.open_write(&foreign)?;
    f.write_at(0, &[0x42; 8192])?;
    f.sync_data()?;
    drop(f);
    let err = open(&fs, &opts, 0).err();
    assert!(
        matches!(&err, Some(Error::Corruption { file, offset: 0, .. }) if *file == foreign),
        "{err:?}"
    );
    // Files whose names only resemble segments are ignored.
    fs.remove_file(&foreign)?;
    for name in ["wal-77.log", "wal-0000000000000000007x.log", "notes.txt"] {
        let mut f = fs.open_write(&dir().join(name))?;
        f.write_at(0, b"not a segment")?;
    }
    let (_wal, recovered) = open(&fs, &opts, 0)?;
    assert_eq!(recovered.len(), 5);
    Ok(())
}
