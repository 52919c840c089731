//! The bank: 8 threads transfer random amounts between 10 accounts in table `accounts` and log
//! each transfer as one row of table `ledger`, retrying on conflict, while a reader takes
//! snapshots. Checked:
//! * every snapshot (and the end state, and the state after reopening) holds the initial total,
//!   and its balances are exactly the initial ones plus the transfers in its ledger (the two
//!   tables are consistent with each other at every snapshot);
//! * the ledger has one row per successful transfer;
//! * conflicts occurred, each was reported as [`Error::Conflict`] and counted in `stats()`.
//!
//! Conflicts are guaranteed, not left to thread timing: every thread's first transfer reads
//! account 0, waits at a barrier until all have read it, then writes it; the first committer
//! wins and the other seven conflict.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::Duration;
use vellum::{ConflictKind, Db, Durability, Error, Options, Transaction};

const THREADS: u64 = 8;
const ACCOUNTS: u64 = 10;
const INITIAL: u64 = 1_000;
const TOTAL: u64 = ACCOUNTS * INITIAL;

fn account(i: u64) -> String {
    format!("acct-{i:02}")
}

fn balance(tx: &Transaction, i: u64) -> Result<u64, String> {
    let raw = tx
        .get("accounts", account(i))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("account {i} missing"))?;
    let bytes: [u8; 8] = raw
        .as_slice()
        .try_into()
        .map_err(|_| format!("account {i}: bad balance {raw:?}"))?;
    Ok(u64::from_le_bytes(bytes))
}

/// A ledger row: from u8 | to u8 | amount u64.
fn ledger_row(from: u64, to: u64, amount: u64) -> Vec<u8> {
    let mut v = vec![from as u8, to as u8];
    v.extend_from_slice(&amount.to_le_bytes());
    v
}

/// What a snapshot holds: balances, their sum, ledger rows, and the balances the ledger implies.
struct Audit {
    balances: Vec<u64>,
    ledger_rows: u64,
    implied: Vec<u64>,
}

fn audit(tx: &Transaction) -> Result<Audit, String> {
    let balances = (0..ACCOUNTS)
        .map(|i| balance(tx, i))
        .collect::<Result<Vec<_>, _>>()?;
    // Ledger rows come in key order, not commit order: sum signed, check the result.
    let mut implied = vec![INITIAL as i64; ACCOUNTS as usize];
    let mut ledger_rows = 0;
    for row in tx.scan_all("ledger").map_err(|e| e.to_string())? {
        let (key, v) = row.map_err(|e| e.to_string())?;
        if v.len() != 10 {
            return Err(format!("ledger row {} malformed", show(&key)));
        }
        let (from, to) = (v[0] as usize, v[1] as usize);
        let amount = u64::from_le_bytes(v[2..10].try_into().map_err(|_| "bad row")?);
        implied[from] -= amount as i64;
        implied[to] += amount as i64;
        ledger_rows += 1;
    }
    let implied = implied
        .into_iter()
        .map(|b| u64::try_from(b).map_err(|_| format!("the ledger overdraws an account: {b}")))
        .collect::<Result<Vec<u64>, String>>()?;
    Ok(Audit {
        balances,
        ledger_rows,
        implied,
    })
}

fn check_audit(a: &Audit, ctx: &str) -> Result<(), String> {
    let sum: u64 = a.balances.iter().sum();
    if sum != TOTAL {
        return Err(format!(
            "{ctx}: balances sum to {sum}, not {TOTAL}: {:?}",
            a.balances
        ));
    }
    if a.balances != a.implied {
        return Err(format!(
            "{ctx}: balances {:?} differ from the {} ledger rows' {:?}",
            a.balances, a.ledger_rows, a.implied
        ));
    }
    Ok(())
}

fn setup(db: &Db) -> Result<(), Error> {
    db.create_table("accounts")?;
    db.create_table("ledger")?;
    db.transaction(|tx| {
        for i in 0..ACCOUNTS {
            tx.put("accounts", account(i), INITIAL.to_le_bytes())?;
        }
        Ok::<_, Error>(())
    })
}

/// One attempt at a transfer. `before_write` runs after the balances were read.
fn try_transfer(
    db: &Db,
    from: u64,
    to: u64,
    wanted: u64,
    ledger_key: &str,
    before_write: impl FnOnce(),
) -> Result<(), Error> {
    let mut tx = db.begin()?;
    let from_balance = balance(&tx, from).map_err(Error::InvalidArgument)?;
    let to_balance = balance(&tx, to).map_err(Error::InvalidArgument)?;
    before_write();
    let amount = wanted.min(from_balance);
    tx.put(
        "accounts",
        account(from),
        (from_balance - amount).to_le_bytes(),
    )?;
    tx.put("accounts", account(to), (to_balance + amount).to_le_bytes())?;
    tx.put("ledger", ledger_key, ledger_row(from, to, amount))?;
    tx.commit()?;
    Ok(())
}

#[derive(Debug, Default)]
struct Counts {
    transfers: u64,
    conflicts: u64,
}

/// Runs one thread's transfers, retrying each on conflict until it commits.
fn teller(db: &Db, t: u64, per_thread: u64, start: &Barrier) -> Result<Counts, String> {
    let mut rng = XorShift::new(t + 1);
    let mut counts = Counts::default();
    for n in 0..per_thread {
        let (from, to) = if n == 0 {
            (0, 1 + t % (ACCOUNTS - 1))
        } else {
            let from = rng.below(ACCOUNTS);
            (from, (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS)
        };
        let wanted = 1 + rng.below(200);
        let key = format!("{t:02}-{n:06}");
        let mut first_attempt = n == 0;
        loop {
            let barrier = first_attempt;
            first_attempt = false;
            let result = try_transfer(db, from, to, wanted, &key, || {
                if barrier {
                    start.wait();
                }
            });
            match result {
                Ok(()) => break,
                Err(e) if e.is_retryable() => {
                    let report = e.conflict().ok_or("retryable error without a report")?;
                    if report.kind != ConflictKind::WriteWrite || report.table != "accounts" {
                        return Err(format!("thread {t}: unexpected conflict {report:?}"));
                    }
                    counts.conflicts += 1;
                    // The winner may still be waiting for its sync (applied, not yet visible
                    // to new snapshots): let it finish instead of spinning.
                    std::thread::yield_now();
                }
                Err(e) => return Err(format!("thread {t} transfer {n}: {e:?}")),
            }
        }
        counts.transfers += 1;
    }
    Ok(counts)
}

fn run_bank(path: &Path, durability: Durability, per_thread: u64) -> TestResult {
    let opts = Options::default()
        .durability(durability)
        .wal_segment_bytes(256 << 10)
        .checkpoint_after_wal_bytes(32 << 10);
    let db = Db::open_with(path, opts.clone())?;
    setup(&db)?;
    let start = Barrier::new(THREADS as usize);
    let done = AtomicBool::new(false);
    let snapshots = AtomicU64::new(0);
    let (counts, reader) = std::thread::scope(|s| {
        let reader = s.spawn(|| -> Result<(), String> {
            let mut last_rows = 0;
            loop {
                let finished = done.load(Ordering::Acquire);
                let tx = db.begin_read().map_err(|e| e.to_string())?;
                let a = audit(&tx)?;
                check_audit(&a, &format!("snapshot at {}", tx.snapshot_version()))?;
                if a.ledger_rows < last_rows {
                    return Err(format!(
                        "ledger shrank from {last_rows} to {}",
                        a.ledger_rows
                    ));
                }
                last_rows = a.ledger_rows;
                // A read-only transaction never aborts.
                tx.commit()
                    .map_err(|e| format!("read-only commit: {e:?}"))?;
                snapshots.fetch_add(1, Ordering::Relaxed);
                if finished {
                    return Ok(());
                }
                std::thread::yield_now();
            }
        });
        let tellers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (db, start) = (&db, &start);
                s.spawn(move || teller(db, t, per_thread, start))
            })
            .collect();
        let counts: Vec<Result<Counts, String>> = tellers
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a teller panicked".into())))
            .collect();
        done.store(true, Ordering::Release);
        let reader = reader
            .join()
            .unwrap_or_else(|_| Err("the reader panicked".into()));
        (counts, reader)
    });
    reader?;
    let counts = counts.into_iter().collect::<Result<Vec<_>, _>>()?;
    let transfers: u64 = counts.iter().map(|c| c.transfers).sum();
    let conflicts: u64 = counts.iter().map(|c| c.conflicts).sum();
    assert_eq!(transfers, THREADS * per_thread);
    assert!(snapshots.load(Ordering::Relaxed) > 0);

    let stats = db.stats();
    assert!(stats.conflicts > 0, "no conflicts: {stats:?}");
    assert!(
        conflicts >= THREADS - 1,
        "the barrier round alone makes 7 conflicts"
    );
    assert_eq!(stats.conflicts, conflicts, "every conflict is counted once");
    assert_eq!(
        stats.commits,
        3 + transfers,
        "setup commits + one per transfer"
    );
    assert_eq!(stats.live_transactions, 0);

    let final_state = |db: &Db, ctx: &str| -> Result<Audit, String> {
        let tx = db.begin_read().map_err(|e| e.to_string())?;
        let a = audit(&tx)?;
        check_audit(&a, ctx)?;
        if a.ledger_rows != transfers {
            return Err(format!(
                "{ctx}: {} ledger rows for {transfers} transfers",
                a.ledger_rows
            ));
        }
        Ok(a)
    };
    let before = final_state(&db, "after the run")?;
    let all_rows: BTreeMap<Vec<u8>, Vec<u8>> =
        read_state(&db)?.remove("ledger").ok_or("no ledger")?;
    db.close()?;

    let db = Db::open_with(path, opts)?;
    let after = final_state(&db, "after reopening")?;
    assert_eq!(
        after.balances, before.balances,
        "balances changed across reopen"
    );
    let reopened_rows = read_state(&db)?.remove("ledger").ok_or("no ledger")?;
    assert!(reopened_rows == all_rows, "ledger changed across reopen");
    Ok(())
}

#[test]
fn concurrent_transfers_without_sync_keep_the_total_and_one_ledger_row_per_transfer() -> TestResult
{
    let dir = tempfile::tempdir()?;
    run_bank(&dir.path().join("bank"), Durability::None, 1000)
}

#[test]
fn concurrent_transfers_with_buffered_durability_keep_the_total_and_the_ledger() -> TestResult {
    let dir = tempfile::tempdir()?;
    let durability = Durability::Buffered {
        max_delay: Duration::from_millis(2),
    };
    run_bank(&dir.path().join("bank"), durability, 150)
}

#[test]
fn concurrent_transfers_with_immediate_durability_keep_the_total_and_the_ledger() -> TestResult {
    let dir = tempfile::tempdir()?;
    run_bank(&dir.path().join("bank"), Durability::Immediate, 50)
}
