//! Crash simulation: crash the file system at every mutating operation of a workload, restart
//! it (losing unsynced data, possibly keeping a torn prefix), reopen, and check that
//! * every acknowledged record (its `wait` returned `Ok` under `Immediate`) is recovered,
//! * the recovered records are a gap-free prefix of what was enqueued,
//! * recovery never panics and never reports corruption after a mere crash,
//! * a second reopen returns the same records, and the log keeps working after recovery.

mod common;

use common::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use vellum_fs::SimFs;
use vellum_wal::{Error, Lsn, Record, SyncPolicy, Wal, WalOptions};

const SEG: u64 = 4096;

/// Batches of payloads: mostly single records, some batches of three, a few records larger
/// than a segment.
fn plan(batches: u64, salt: u64) -> Vec<Vec<Vec<u8>>> {
    (0..batches)
        .map(|b| {
            let n = if b % 5 == 2 { 3 } else { 1 };
            (0..n)
                .map(|j| {
                    let id = salt * 100_000 + b * 10 + j;
                    let len = if b % 13 == 7 && j == 0 {
                        5000
                    } else {
                        ((b * 53 + j * 31 + salt * 7) % 400 + 1) as usize
                    };
                    payload(id, len)
                })
                .collect()
        })
        .collect()
}

/// What a workload did before it stopped.
#[derive(Debug, Default)]
struct Run {
    /// Every record that was enqueued, in lsn order.
    enqueued: Vec<Record>,
    /// Highest lsn whose `wait` returned `Ok` (acknowledged records form a prefix).
    acked: u64,
    /// The checkpoint given to `release_upto`, if it was called.
    released: Option<u64>,
    /// The log opened successfully.
    opened: bool,
    /// What `open` returned.
    recovered_at_open: Vec<Record>,
}

/// Opens the log and writes `plan` with `Immediate` until something fails. If `release_at` is
/// given, everything acknowledged so far is released before that batch (recycling segments).
fn run(
    fs: &SimFs,
    opts: &WalOptions,
    replay_after: u64,
    plan: &[Vec<Vec<u8>>],
    release_at: Option<usize>,
) -> Run {
    let mut run = Run::default();
    let Ok((wal, recovered)) = open(fs, opts, replay_after) else {
        return run;
    };
    run.opened = true;
    run.acked = recovered.last().map_or(0, |r| r.lsn.0);
    run.recovered_at_open = recovered;
    'batches: for (b, batch) in plan.iter().enumerate() {
        if Some(b) == release_at && run.acked > 0 {
            run.released = Some(run.acked);
            if wal.release_upto(Lsn(run.acked)).is_err() {
                break;
            }
        }
        let mut tickets = Vec::new();
        for p in batch {
            match wal.enqueue(p) {
                Ok(t) => {
                    run.enqueued.push(Record {
                        lsn: t.lsn(),
                        payload: p.clone(),
                    });
                    tickets.push(t);
                }
                Err(_) => break 'batches,
            }
        }
        for t in tickets {
            if wal.wait(t).is_err() {
                // Fail-stop: once a write or sync failed, the log refuses everything.
                let again = wal.enqueue(b"after the failure");
                assert!(matches!(again, Err(Error::Poisoned(_))), "{again:?}");
                break 'batches;
            }
            assert!(wal.durable_lsn() >= t.lsn());
            run.acked = t.lsn().0;
        }
    }
    drop(wal); // syncs and writes the close mark when nothing failed
    run
}

/// Opens without letting a panic escape: a panic becomes an error that names the case.
fn open_checked(
    fs: &SimFs,
    opts: &WalOptions,
    replay_after: u64,
    ctx: &str,
) -> Result<(Wal, Vec<Record>), String> {
    match catch_unwind(AssertUnwindSafe(|| open(fs, opts, replay_after))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{ctx}: reopen after a crash failed: {e}")),
        Err(_) => Err(format!("{ctx}: reopen panicked")),
    }
}

/// Checks `recovered` against a run: acknowledged records present, gap-free prefix of what
/// was enqueued (and of what the run's own open returned before it).
fn check(
    recovered: &[Record],
    expected: &[Record],
    acked: u64,
    replay_after: u64,
    ctx: &str,
) -> Result<(), String> {
    let expected: Vec<Record> = expected
        .iter()
        .filter(|r| r.lsn.0 > replay_after)
        .cloned()
        .collect();
    if !is_prefix(recovered, &expected) {
        return Err(format!(
            "{ctx}: recovered {} records that are not a prefix of the {} enqueued (first lsns {:?} vs {:?})",
            recovered.len(),
            expected.len(),
            recovered.iter().take(5).map(|r| r.lsn.0).collect::<Vec<_>>(),
            expected.iter().take(5).map(|r| r.lsn.0).collect::<Vec<_>>(),
        ));
    }
    let last = recovered.last().map_or(replay_after, |r| r.lsn.0);
    if expected.iter().any(|r| r.lsn.0 <= acked) && last < acked {
        return Err(format!(
            "{ctx}: acknowledged up to lsn {acked} but recovered only up to lsn {last}"
        ));
    }
    Ok(())
}

/// After a crash and restart: reopen twice (same records), then write one more record and
/// check it comes back after the recovered ones.
fn verify_after_restart(
    fs: &SimFs,
    opts: &WalOptions,
    replay_after: u64,
    expected: &[Record],
    acked: u64,
    ctx: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let (wal, first) = open_checked(fs, opts, replay_after, ctx)?;
    check(&first, expected, acked, replay_after, ctx)?;
    drop(wal);
    let (wal, second) = open_checked(fs, opts, replay_after, ctx)?;
    if second != first {
        return Err(format!(
            "{ctx}: a second reopen returned {} records instead of {}",
            second.len(),
            first.len()
        )
        .into());
    }
    let more = write_each(&wal, &[payload(u64::MAX, 33)])?;
    if let Some(prev) = first.last() {
        if more[0].lsn <= prev.lsn {
            return Err(format!("{ctx}: lsn {} reused after recovery", more[0].lsn).into());
        }
    }
    drop(wal);
    let (_wal, third) = open_checked(fs, opts, replay_after, ctx)?;
    let mut want = first;
    want.extend(more);
    if third != want {
        return Err(format!("{ctx}: records written after recovery were not recovered").into());
    }
    Ok(())
}

/// Crash configurations: (seed, keep_unsynced, tear).
const CONFIGS: [(u64, bool, bool); 6] = [
    (1, true, true),
    (2, true, true),
    (3, true, false),
    (4, true, false),
    (5, false, false),
    (6, false, true),
];

fn sweep(
    plan: &[Vec<Vec<u8>>],
    release_at: Option<usize>,
    spares: usize,
) -> Result<usize, Box<dyn std::error::Error>> {
    let opts = options(SEG, SyncPolicy::Immediate, spares);
    // A crash-free run counts the mutating operations of the workload, including the close.
    let dry = strict_sim();
    let clean = run(&dry, &opts, 0, plan, release_at);
    assert!(clean.opened && clean.acked == clean.enqueued[clean.enqueued.len() - 1].lsn.0);
    let total = dry.op_count();
    assert!(total > 50, "workload too small: {total} operations");
    let mut cases = 0;
    for &(seed, keep, tear) in &CONFIGS {
        for n in 1..=total + 1 {
            let fs = sim(seed * 7919 + n, keep, tear);
            fs.crash_after(Some(n));
            let r = run(&fs, &opts, 0, plan, release_at);
            assert_eq!(
                fs.has_crashed(),
                n <= total,
                "the workload is deterministic"
            );
            fs.restart();
            let ctx =
                format!("seed {seed} keep_unsynced {keep} tear {tear}: crash at op {n}/{total}");
            let replay_after = r.released.unwrap_or(0);
            verify_after_restart(&fs, &opts, replay_after, &r.enqueued, r.acked, &ctx)?;
            cases += 1;
        }
    }
    Ok(cases)
}

#[test]
fn every_acknowledged_record_survives_a_crash_at_any_operation() -> TestResult {
    let cases = sweep(&plan(40, 1), None, 2)?;
    assert!(cases >= 300, "only {cases} crash cases");
    Ok(())
}

#[test]
fn a_crash_while_releasing_and_recycling_segments_loses_nothing_acknowledged() -> TestResult {
    let cases = sweep(&plan(60, 2), Some(25), 2)?;
    assert!(cases >= 300, "only {cases} crash cases");
    Ok(())
}

/// Like the previous sweep, but the release happens where later writes fill a recycled spare
/// (whose stale frames end mid-frame) and rotate out of it into the next segment.
#[test]
fn a_crash_after_rotating_out_of_a_recycled_segment_loses_nothing_acknowledged() -> TestResult {
    let cases = sweep(&plan(60, 2), Some(21), 2)?;
    assert!(cases >= 300, "only {cases} crash cases");
    Ok(())
}

/// A second crash while the log recovers from the first (zeroing the torn tail, writing the
/// open mark) or right after it.
#[test]
fn a_crash_during_recovery_loses_nothing_acknowledged() -> TestResult {
    let opts = options(SEG, SyncPolicy::Immediate, 2);
    let first_plan = plan(30, 3);
    let second_plan = plan(4, 4);
    let dry = strict_sim();
    run(&dry, &opts, 0, &first_plan, None);
    let total = dry.op_count();
    let mut cases = 0;
    for &(seed, keep, tear) in &CONFIGS[..4] {
        for n in (1..=total).step_by(4) {
            // Phase 1: crash while writing.
            let fs = sim(seed * 104_729 + n, keep, tear);
            fs.crash_after(Some(n));
            let r1 = run(&fs, &opts, 0, &first_plan, None);
            fs.restart();
            // Phase 2: crash at every operation of the recovery and a few records after it,
            // until a run gets through without reaching the crash point.
            let mut m = 1;
            loop {
                let ctx = format!(
                    "seed {seed} keep_unsynced {keep} tear {tear}: crash at op {n}/{total}, then at op {m} of recovery"
                );
                // Re-create the same phase-1 state (deterministic) for every second crash point.
                let fs = sim(seed * 104_729 + n, keep, tear);
                fs.crash_after(Some(n));
                let again = run(&fs, &opts, 0, &first_plan, None);
                assert_eq!(again.enqueued, r1.enqueued);
                fs.restart();
                fs.crash_after(Some(m));
                let r2 = run(&fs, &opts, 0, &second_plan, None);
                let crashed = fs.has_crashed();
                fs.restart();
                // Phase 2 either returned what phase 1 left (then that is durable) or failed.
                if r2.opened {
                    check(&r2.recovered_at_open, &r1.enqueued, r1.acked, 0, &ctx)?;
                }
                let mut expected = if r2.opened {
                    r2.recovered_at_open.clone()
                } else {
                    r1.enqueued.clone()
                };
                let acked = if r2.opened { r2.acked } else { r1.acked };
                expected.extend(r2.enqueued.iter().cloned());
                verify_after_restart(&fs, &opts, 0, &expected, acked, &ctx)?;
                cases += 1;
                if !crashed {
                    break;
                }
                m += 1;
            }
        }
    }
    assert!(cases >= 300, "only {cases} crash cases");
    Ok(())
}

#[test]
fn an_unsynced_tail_lost_at_a_power_cut_is_cut_cleanly() -> TestResult {
    for seed in 0..64 {
        for (keep, tear) in [(true, true), (true, false), (false, false)] {
            let fs = sim(seed, keep, tear);
            let opts = options(SEG, SyncPolicy::None, 2);
            let (wal, _) = open(&fs, &opts, 0)?;
            let synced = write_each(&wal, &(0..20).map(|i| payload(i, 150)).collect::<Vec<_>>())?;
            wal.sync()?;
            // Written to the "operating system" only: a power cut may keep any torn prefix.
            let unsynced =
                write_batch(&wal, &(20..60).map(|i| payload(i, 150)).collect::<Vec<_>>())?;
            fs.crash_now();
            drop(wal);
            fs.restart();
            let mut all = synced.clone();
            all.extend(unsynced);
            let ctx = format!("seed {seed} keep {keep} tear {tear}");
            verify_after_restart(&fs, &opts, 0, &all, synced[synced.len() - 1].lsn.0, &ctx)?;
        }
    }
    Ok(())
}

/// Concurrent committers crashing: every acknowledged record of every thread survives.
#[test]
fn acknowledged_records_of_concurrent_committers_survive_a_crash() -> TestResult {
    use std::sync::Mutex;
    for n in [5u64, 20, 60, 120, 200, 300] {
        let fs = sim(n, true, true);
        let opts = options(SEG, SyncPolicy::Immediate, 2);
        let (wal, _) = open(&fs, &opts, 0)?;
        fs.crash_after(Some(n));
        let enqueued = Mutex::new(Vec::new());
        let acked = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (wal, enqueued, acked) = (&wal, &enqueued, &acked);
                s.spawn(move || {
                    for i in 0..100u64 {
                        let p = payload(t * 1000 + i, (i * 13 % 200 + 1) as usize);
                        // Enqueue under the lock so the shared list is in lsn order.
                        let ticket = {
                            let mut q = enqueued.lock().unwrap_or_else(|e| e.into_inner());
                            match wal.enqueue(&p) {
                                Ok(ticket) => {
                                    q.push(Record {
                                        lsn: ticket.lsn(),
                                        payload: p,
                                    });
                                    ticket
                                }
                                Err(_) => return,
                            }
                        };
                        if wal.wait(ticket).is_err() {
                            return;
                        }
                        acked
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(ticket.lsn());
                    }
                });
            }
        });
        drop(wal);
        // A crash point past the end of the workload is a power cut after a clean close.
        fs.restart();
        let enqueued = enqueued.into_inner().unwrap_or_else(|e| e.into_inner());
        let acked = acked.into_inner().unwrap_or_else(|e| e.into_inner());
        let max_acked = acked.iter().map(|l| l.0).max().unwrap_or(0);
        verify_after_restart(
            &fs,
            &opts,
            0,
            &enqueued,
            max_acked,
            &format!("crash at op {n}"),
        )?;
    }
    Ok(())
}

/// A spare is recycled with its old frames inside. When the recycled segment fills up and the
/// log rotates into the next one, the stale bytes after its last new frame must not hide the
/// acknowledged records of the next segment.
#[test]
fn an_acknowledged_record_after_a_filled_recycled_segment_survives_a_crash() -> TestResult {
    let fs = strict_sim();
    let opts = options(SEG, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    // Old frames of 65 bytes; new frames of 125 bytes end at offset 4044, inside an old frame.
    let old = write_each(&wal, &(0..300).map(|i| payload(i, 40)).collect::<Vec<_>>())?;
    let checkpoint = old[old.len() - 1].lsn;
    wal.release_upto(checkpoint)?;
    assert_eq!(spare_files(&fs).len(), 2);
    // Write until the log has rotated out of the first recycled segment into the second one.
    let mut new = Vec::new();
    while !spare_files(&fs).is_empty() {
        new.extend(write_each(
            &wal,
            &[payload(50_000 + new.len() as u64, 100)],
        )?);
    }
    // The last record went into the second recycled segment and was acknowledged.
    fs.crash_now();
    drop(wal);
    fs.restart();
    let (_wal, recovered) = open(&fs, &opts, checkpoint.0)?;
    assert_eq!(
        recovered.len(),
        new.len(),
        "acknowledged records up to lsn {} were lost",
        new[new.len() - 1].lsn
    );
    assert_eq!(recovered, new);
    Ok(())
}
