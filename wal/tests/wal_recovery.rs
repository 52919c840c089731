//! Recovery after a clean close: order, lsns, replay point, rotation, release and recycling.

mod common;

use common::*;
use vellum_fs::FileSystem;
use vellum_wal::format::{FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE};
use vellum_wal::{Error, Lsn, SyncPolicy, Wal};

const SEG: u64 = 4096;

fn sizes(n: u64, seed: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| payload(seed * 1_000_000 + i, (i * 37 % 300) as usize + 1))
        .collect()
}

#[test]
fn waited_records_come_back_in_order_with_their_lsns() -> TestResult {
    let fs = strict_sim();
    let opts = options(65536, SyncPolicy::Immediate, 2);
    let (wal, recovered) = open(&fs, &opts, 0)?;
    assert!(recovered.is_empty());
    let written = write_each(&wal, &sizes(100, 1))?;
    drop(wal);

    let (wal, recovered) = open(&fs, &opts, 0)?;
    assert_eq!(recovered, written);
    assert!(recovered.windows(2).all(|w| w[0].lsn < w[1].lsn));
    drop(wal);
    // A clean close leaves nothing to lose, even for a file system that forgets unsynced data.
    fs.restart();
    let (_wal, again) = open(&fs, &opts, 0)?;
    assert_eq!(again, written);
    Ok(())
}

#[test]
fn records_at_or_below_replay_after_are_not_returned() -> TestResult {
    let fs = strict_sim();
    let opts = options(8192, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    let written = write_each(&wal, &sizes(60, 2))?;
    drop(wal);

    for cut in [0usize, 1, 17, 40, 59] {
        let replay_after = written[cut].lsn.0;
        let (wal, recovered) = open(&fs, &opts, replay_after)?;
        assert_eq!(
            recovered,
            written[cut + 1..],
            "replay_after = {replay_after}"
        );
        assert!(recovered.iter().all(|r| r.lsn.0 > replay_after));
        drop(wal);
    }
    // Replaying from before the first record returns everything.
    let (_wal, recovered) = open(&fs, &opts, 0)?;
    assert_eq!(recovered, written);
    Ok(())
}

#[test]
fn lsns_keep_increasing_across_reopens_and_every_session_is_recovered() -> TestResult {
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::Immediate, 2);
    let mut all = Vec::new();
    for session in 0..5 {
        let (wal, recovered) = open(&fs, &opts, 0)?;
        assert_eq!(recovered, all, "session {session}");
        let new = write_each(&wal, &sizes(20, 10 + session))?;
        if let (Some(prev), Some(first)) = (all.last(), new.first()) {
            let prev: &vellum_wal::Record = prev;
            assert!(first.lsn > prev.lsn, "lsns must never be reused");
        }
        all.extend(new);
    }
    let (_wal, recovered) = open(&fs, &opts, 0)?;
    assert_eq!(recovered, all);
    Ok(())
}

#[test]
fn one_wait_covers_a_whole_batch_of_enqueued_records() -> TestResult {
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    let batch = write_batch(&wal, &sizes(50, 3))?;
    assert!(wal.durable_lsn() >= batch[batch.len() - 1].lsn);
    // Lsns are handed out contiguously inside a batch.
    assert!(batch.windows(2).all(|w| w[1].lsn.0 == w[0].lsn.0 + 1));
    // Simulate a power cut right now: the batch was synced, so it survives without a close.
    fs.crash_now();
    drop(wal);
    fs.restart();
    let (_wal, recovered) = open(&fs, &opts, 0)?;
    assert_eq!(recovered, batch);
    Ok(())
}

#[test]
fn buffered_and_unsynced_policies_recover_everything_after_a_clean_close() -> TestResult {
    for sync in [
        SyncPolicy::Buffered(std::time::Duration::from_millis(1)),
        SyncPolicy::None,
    ] {
        let fs = strict_sim();
        let opts = options(SEG, sync, 2);
        let (wal, _) = open(&fs, &opts, 0)?;
        let written = write_each(&wal, &sizes(80, 4))?;
        wal.sync()?;
        assert!(wal.durable_lsn() >= written[written.len() - 1].lsn);
        wal.close()?;
        fs.restart();
        let (_wal, recovered) = open(&fs, &opts, 0)?;
        assert_eq!(recovered, written, "{sync:?}");
    }
    Ok(())
}

#[test]
fn a_new_log_reopens_empty_and_a_missing_log_is_refused_when_it_must_exist() -> TestResult {
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::Immediate, 2);
    let err = Wal::open(dyn_fs(&fs), &dir(), opts.clone(), Lsn(0), true).err();
    assert!(matches!(err, Some(Error::Corruption { .. })), "{err:?}");

    let (wal, recovered) = open(&fs, &opts, 0)?;
    assert!(recovered.is_empty());
    wal.close()?;
    let (wal, recovered) = Wal::open(dyn_fs(&fs), &dir(), opts, Lsn(0), true)?;
    assert!(recovered.is_empty());
    assert_eq!(wal.segment_count(), 1);
    assert_eq!(segment_files(&fs).len(), 1);
    Ok(())
}

#[test]
fn a_new_log_starts_after_the_replay_point() -> TestResult {
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 500)?;
    let written = write_each(&wal, &sizes(5, 5))?;
    assert!(written.iter().all(|r| r.lsn.0 > 500));
    drop(wal);
    let (_wal, recovered) = open(&fs, &opts, 500)?;
    assert_eq!(recovered, written);
    Ok(())
}

#[test]
fn a_segment_size_below_the_minimum_is_rejected() -> TestResult {
    let fs = strict_sim();
    let err = open(&fs, &options(4095, SyncPolicy::Immediate, 2), 0).err();
    assert!(matches!(err, Some(Error::Io { .. })), "{err:?}");
    assert!(fs.file_paths().is_empty());
    Ok(())
}

#[test]
fn leftover_temporary_segments_are_removed_at_open() -> TestResult {
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    let written = write_each(&wal, &sizes(10, 6))?;
    drop(wal);
    let tmp = dir().join(format!("wal-{:020}.tmp", 99));
    let mut f = fs.open_write(&tmp)?;
    f.write_at(0, b"half-prepared segment")?;
    f.sync_data()?;
    drop(f);
    let (_wal, recovered) = open(&fs, &opts, 0)?;
    assert_eq!(recovered, written);
    assert!(!fs.exists(&tmp)?);
    Ok(())
}

#[test]
fn rotation_across_many_segments_returns_everything() -> TestResult {
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    let mut written = write_each(&wal, &sizes(300, 7))?;
    written.extend(write_batch(&wal, &sizes(100, 8))?);
    let count = wal.segment_count();
    assert!(count >= 15, "only {count} segments");
    drop(wal);

    let files = segment_files(&fs);
    assert_eq!(files.len(), count);
    for f in &files {
        assert!(
            fs.file_len(f)? >= SEG,
            "{} is not preallocated",
            f.display()
        );
    }
    let (wal, recovered) = open(&fs, &opts, 0)?;
    assert_eq!(recovered, written);
    assert_eq!(wal.segment_count(), count);
    Ok(())
}

#[test]
fn records_larger_than_a_segment_get_a_segment_of_their_own() -> TestResult {
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    let mut payloads = Vec::new();
    for i in 0..12u64 {
        let len = match i % 4 {
            0 => 10_000,
            1 => 50,
            2 => SEG as usize - SEGMENT_HEADER_SIZE - FRAME_HEADER_SIZE, // exactly fills one
            _ => 3 * SEG as usize + 7,
        };
        payloads.push(payload(900 + i, len));
    }
    let mut written = write_each(&wal, &payloads)?;
    // A batch with several oversized records in a row.
    written.extend(write_batch(
        &wal,
        &[payload(1, 9000), payload(2, 9000), payload(3, 10)],
    )?);
    drop(wal);

    let big = segment_files(&fs)
        .iter()
        .filter(|f| fs.file_len(f).is_ok_and(|l| l > SEG))
        .count();
    assert!(big >= 6, "only {big} oversized segments");
    let (wal, recovered) = open(&fs, &opts, 0)?;
    assert_eq!(recovered, written);
    // The log keeps working after them.
    let more = write_each(&wal, &sizes(20, 9))?;
    written.extend(more);
    drop(wal);
    let (_wal, recovered) = open(&fs, &opts, 0)?;
    assert_eq!(recovered, written);
    Ok(())
}

#[test]
fn release_upto_removes_old_segments_and_keeps_spares_up_to_the_maximum() -> TestResult {
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    let written = write_each(&wal, &sizes(200, 11))?;
    let before = wal.segment_count();
    assert!(before >= 8);

    let upto = written[120].lsn;
    wal.release_upto(upto)?;
    let after = wal.segment_count();
    assert!(after < before, "{before} -> {after}");
    assert_eq!(segment_files(&fs).len(), after);
    let spares = spare_files(&fs);
    assert_eq!(spares.len(), 2.min(before - after));
    drop(wal);

    let (wal, recovered) = open(&fs, &opts, upto.0)?;
    assert_eq!(recovered, written[121..]);
    // Releasing again with the same point changes nothing; releasing everything keeps the
    // segment being written.
    wal.release_upto(upto)?;
    assert_eq!(wal.segment_count(), after);
    let last = written[written.len() - 1].lsn;
    wal.release_upto(last)?;
    assert_eq!(wal.segment_count(), 1);
    assert_eq!(spare_files(&fs).len(), 2, "spares are capped");
    drop(wal);
    let (_wal, recovered) = open(&fs, &opts, last.0)?;
    assert!(recovered.is_empty());
    Ok(())
}

#[test]
fn without_spares_released_segments_are_deleted() -> TestResult {
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::Immediate, 0);
    let (wal, _) = open(&fs, &opts, 0)?;
    let written = write_each(&wal, &sizes(120, 12))?;
    let last = written[written.len() - 1].lsn;
    wal.release_upto(last)?;
    assert_eq!(wal.segment_count(), 1);
    assert!(spare_files(&fs).is_empty());
    assert_eq!(fs.file_paths().len(), 1);
    Ok(())
}

#[test]
fn replaying_from_before_a_released_segment_is_corruption() -> TestResult {
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    let written = write_each(&wal, &sizes(100, 13))?;
    let upto = written[80].lsn;
    wal.release_upto(upto)?;
    drop(wal);
    let first = segment_files(&fs)[0].clone();
    let err = open(&fs, &opts, 0).err();
    assert!(
        matches!(&err, Some(Error::Corruption { file, offset: 24, .. }) if *file == first),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn a_recycled_spare_as_the_tail_reopens_with_only_the_new_records() -> TestResult {
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    let old = write_each(&wal, &sizes(120, 14))?;
    let checkpoint = old[old.len() - 1].lsn;
    wal.release_upto(checkpoint)?;
    assert_eq!(spare_files(&fs).len(), 2);
    // Fill the current segment and spill into exactly one recycled spare.
    let mut new = Vec::new();
    while spare_files(&fs).len() == 2 {
        new.extend(write_each(&wal, &[payload(new.len() as u64, 73)])?);
    }
    assert_eq!(wal.segment_count(), 2);
    drop(wal);
    let (_wal, recovered) = open(&fs, &opts, checkpoint.0)?;
    assert_eq!(recovered, new);
    Ok(())
}

/// Spares are recycled with their old frames still inside; a recycled segment that is filled
/// and followed by another one must not make those stale bytes look like damage.
#[test]
fn writing_across_several_recycled_segments_then_reopening_returns_only_the_new_records(
) -> TestResult {
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    // Old frames of 65 bytes, new ones of 125: the stale bytes after the last new frame of a
    // recycled segment (offset 44 + 32 * 125 = 4044) are the middle of an old frame.
    let old = write_each(&wal, &(0..300).map(|i| payload(i, 40)).collect::<Vec<_>>())?;
    let checkpoint = old[old.len() - 1].lsn;
    wal.release_upto(checkpoint)?;
    assert_eq!(spare_files(&fs).len(), 2);
    let new = write_each(
        &wal,
        &(0..100)
            .map(|i| payload(10_000 + i, 100))
            .collect::<Vec<_>>(),
    )?;
    assert!(spare_files(&fs).is_empty(), "both spares were recycled");
    assert!(wal.segment_count() >= 4);
    drop(wal);

    let reopened = open(&fs, &opts, checkpoint.0);
    let recovered = match reopened {
        Ok((_wal, recovered)) => recovered,
        Err(e) => return Err(format!("reopen after recycling failed: {e}").into()),
    };
    assert_eq!(
        recovered, new,
        "stale frames of recycled segments must never come back"
    );
    Ok(())
}

/// Under `Buffered` or `None` a record counts as done once written, so the layer above may
/// checkpoint it before the log syncs it. After a power cut the log then ends below the
/// checkpoint. A record committed after that recovery must not receive an lsn the checkpoint
/// claims to cover, or the next recovery (from the same checkpoint) silently skips it.
/// Refusing to open is acceptable; losing the record is not.
#[test]
fn a_log_that_ends_below_the_checkpoint_is_refused() -> TestResult {
    // The database syncs the log before every checkpoint, so a log that ends below the
    // checkpoint's lsn has lost synced records. Writing on would hand out lsns the checkpoint
    // already covers (and the next open would skip them), so open must refuse.
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::None, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    write_each(&wal, &sizes(5, 20))?;
    wal.sync()?;
    let unsynced = write_each(&wal, &sizes(5, 21))?;
    let checkpoint = unsynced[unsynced.len() - 1].lsn.0;
    fs.crash_now();
    drop(wal);
    fs.restart();
    let err = open(&fs, &opts, checkpoint).err();
    assert!(
        matches!(&err, Some(Error::Corruption { reason, .. }) if reason.contains("checkpoint")),
        "{err:?}"
    );
    Ok(())
}
