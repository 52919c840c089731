//! Group commit: concurrent committers share writes and syncs, and every record is recovered
//! exactly once, in the order of its lsn.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::Mutex;
use vellum_wal::{Lsn, Record, SyncPolicy, Wal};

const THREADS: u64 = 8;
const PER_THREAD: u64 = 200;

/// Payload of record `i` of thread `t`: the pair is in the first 16 bytes.
fn tagged(t: u64, i: u64, len: usize) -> Vec<u8> {
    let mut p = t.to_le_bytes().to_vec();
    p.extend_from_slice(&i.to_le_bytes());
    p.extend(payload(t * 1_000_000 + i, len));
    p
}

fn untag(p: &[u8]) -> (u64, u64) {
    let mut t = [0u8; 8];
    let mut i = [0u8; 8];
    t.copy_from_slice(&p[0..8]);
    i.copy_from_slice(&p[8..16]);
    (u64::from_le_bytes(t), u64::from_le_bytes(i))
}

/// Runs `THREADS` committers that each enqueue and wait `PER_THREAD` records; returns the
/// tickets' lsns per thread.
fn commit_concurrently(
    wal: &Wal,
    len: impl Fn(u64) -> usize + Sync,
) -> Result<Vec<Vec<Lsn>>, String> {
    let results = Mutex::new(vec![Vec::new(); THREADS as usize]);
    let failure = Mutex::new(None);
    let start = std::sync::Barrier::new(THREADS as usize);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (results, failure, len, start) = (&results, &failure, &len, &start);
            s.spawn(move || {
                start.wait();
                let mut lsns = Vec::with_capacity(PER_THREAD as usize);
                for i in 0..PER_THREAD {
                    let outcome = wal.enqueue(&tagged(t, i, len(i))).and_then(|ticket| {
                        wal.wait(ticket)?;
                        Ok(ticket)
                    });
                    match outcome {
                        Ok(ticket) => {
                            if wal.durable_lsn() < ticket.lsn() {
                                *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                                    "wait returned before lsn {} was durable",
                                    ticket.lsn()
                                ));
                            }
                            lsns.push(ticket.lsn());
                        }
                        Err(e) => {
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(e.to_string());
                            return;
                        }
                    }
                }
                results.lock().unwrap_or_else(|e| e.into_inner())[t as usize] = lsns;
            });
        }
    });
    if let Some(why) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(why);
    }
    Ok(results.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// Checks that `recovered` holds every record of every thread exactly once, each with the lsn
/// its ticket carried, in each thread's order.
fn check_recovered(recovered: &[Record], lsns: &[Vec<Lsn>]) -> Result<(), String> {
    if recovered.len() as u64 != THREADS * PER_THREAD {
        return Err(format!(
            "recovered {} records, expected {}",
            recovered.len(),
            THREADS * PER_THREAD
        ));
    }
    if !recovered.windows(2).all(|w| w[0].lsn < w[1].lsn) {
        return Err("recovered records are not in lsn order".into());
    }
    let mut seen: HashMap<(u64, u64), Lsn> = HashMap::new();
    for r in recovered {
        let (t, i) = untag(&r.payload);
        if seen.insert((t, i), r.lsn).is_some() {
            return Err(format!("record {i} of thread {t} recovered twice"));
        }
    }
    for (t, thread_lsns) in lsns.iter().enumerate() {
        if thread_lsns.len() as u64 != PER_THREAD {
            return Err(format!(
                "thread {t} committed only {} records",
                thread_lsns.len()
            ));
        }
        if !thread_lsns.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!("lsns of thread {t} are not increasing"));
        }
        for (i, lsn) in thread_lsns.iter().enumerate() {
            match seen.get(&(t as u64, i as u64)) {
                Some(got) if got == lsn => {}
                other => {
                    return Err(format!(
                        "record {i} of thread {t}: ticket lsn {lsn}, recovered {other:?}"
                    ))
                }
            }
        }
    }
    Ok(())
}

#[test]
fn concurrent_committers_share_syncs_and_every_record_is_recovered_once() -> TestResult {
    let fs = strict_sim();
    let opts = options(65536, SyncPolicy::Immediate, 2);
    // Syncs take 100 µs, like a fast disk's fdatasync, so committers overlap with a leader's
    // sync even on a machine with few cores.
    let slow = SlowSyncFs::wrap(&fs, std::time::Duration::from_micros(100));
    let (wal, _) = Wal::open(slow, &dir(), opts.clone(), Lsn(0), false)?;
    let lsns = commit_concurrently(&wal, |i| (i % 50) as usize)?;
    let stats = wal.stats();
    assert!(stats.records >= THREADS * PER_THREAD, "{stats:?}");
    assert!(stats.syncs < stats.records, "no sync was shared: {stats:?}");
    assert!(stats.batches <= stats.records, "{stats:?}");
    assert!(stats.bytes > 0);
    drop(wal);
    // Everything was synced before `wait` returned: a power cut now loses nothing.
    fs.restart();
    let (_wal, recovered) = open(&fs, &opts, 0)?;
    check_recovered(&recovered, &lsns)?;
    Ok(())
}

#[test]
fn concurrent_committers_across_segment_rotations_lose_nothing() -> TestResult {
    let fs = strict_sim();
    let opts = options(4096, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    // Sizes up to 700 bytes with an occasional record larger than a segment.
    let lsns = commit_concurrently(&wal, |i| {
        if i % 97 == 5 {
            6000
        } else {
            (i * 41 % 700) as usize
        }
    })?;
    assert!(wal.segment_count() > 50);
    fs.crash_now();
    drop(wal);
    fs.restart();
    let (_wal, recovered) = open(&fs, &opts, 0)?;
    check_recovered(&recovered, &lsns)?;
    Ok(())
}

#[test]
fn concurrent_committers_with_releases_in_between_recover_after_the_checkpoint() -> TestResult {
    let fs = strict_sim();
    let opts = options(4096, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    let first = commit_concurrently(&wal, |i| (i % 64) as usize + 1)?;
    let checkpoint = wal.durable_lsn();
    wal.release_upto(checkpoint)?;
    assert_eq!(wal.segment_count(), 1);
    drop(wal);
    let (wal, recovered) = open(&fs, &opts, checkpoint.0)?;
    assert!(
        recovered.is_empty(),
        "{} records above the checkpoint",
        recovered.len()
    );
    let second = commit_concurrently(&wal, |i| (i % 64) as usize + 1)?;
    drop(wal);
    let (_wal, recovered) = open(&fs, &opts, checkpoint.0)?;
    check_recovered(&recovered, &second)?;
    assert!(recovered[0].lsn > first.iter().flatten().copied().max().unwrap_or_default());
    Ok(())
}

#[test]
fn buffered_committers_share_writes_and_a_final_sync_makes_all_durable() -> TestResult {
    for sync in [
        SyncPolicy::Buffered(std::time::Duration::from_millis(2)),
        SyncPolicy::None,
    ] {
        let fs = strict_sim();
        let opts = options(65536, sync, 2);
        let (wal, _) = open(&fs, &opts, 0)?;
        let results = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (wal, results) = (&wal, &results);
                s.spawn(move || {
                    for i in 0..100u64 {
                        let r = wal
                            .enqueue(&tagged(t, i, 20))
                            .and_then(|ticket| wal.wait(ticket).map(|_| ticket.lsn()));
                        results
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(r.map_err(|e| e.to_string()));
                    }
                });
            }
        });
        let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        let last = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .copied()
            .max()
            .unwrap_or_default();
        assert!(results.iter().all(|r| r.is_ok()), "{sync:?}");
        wal.sync()?;
        assert!(wal.durable_lsn() >= last, "{sync:?}");
        fs.crash_now();
        drop(wal);
        fs.restart();
        let (_wal, recovered) = open(&fs, &opts, 0)?;
        assert_eq!(recovered.len(), 400, "{sync:?}");
    }
    Ok(())
}
