//! Serializable stress: 8 threads run 10,000 transactions in total, mixing two classic
//! write-skew workloads, every one under `Isolation::Serializable` with retries, while an
//! auditor takes read-only snapshots. No invariant may ever be violated.
//!
//! * Doctors on call (table `oncall`, key `shift-<s>/doc-<d>`, value `1` on call / `0` off):
//!   a doctor goes off call only if, reading the whole shift (a prefix scan), someone else is
//!   still on call. Invariant: every shift has at least one doctor on call. Doctors are put back
//!   on call now and then so the workload keeps going.
//! * Bank (table `accounts`, key `c<cc>/checking` and `c<cc>/savings`, balance i64): a
//!   withdrawal reads both of a customer's accounts and debits one if their sum covers it; a
//!   transfer does the same check and credits another customer's account; deposits credit.
//!   Withdrawals and deposits log a row in `ledger`. Invariants: each customer's two balances
//!   sum to ≥ 0; the total equals the initial money plus the ledger (transfers conserve money).
//!
//! Invariants are checked in every snapshot the auditor and the workers take, at the end, and
//! after reopening. A deterministic two-transaction interleaving shows that under `Snapshot`
//! both patterns do break their invariant (write skew), and that `Serializable` refuses the
//! second commit.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use vellum::{ConflictKind, Db, Durability, Error, Isolation, Options, Transaction};

const THREADS: usize = 8;
const TOTAL_TRANSACTIONS: usize = 10_000;
const PER_THREAD: usize = TOTAL_TRANSACTIONS / THREADS;
const SHIFTS: u64 = 6;
const DOCTORS: u64 = 3;
const CUSTOMERS: u64 = 12;
const INITIAL: i64 = 100;
const INITIAL_TOTAL: i64 = INITIAL * 2 * CUSTOMERS as i64;
/// Attempts per transaction: enough that running out is rare (failures are counted).
const MAX_ATTEMPTS: u32 = 1000;

fn doctor_key(shift: u64, doctor: u64) -> String {
    format!("shift-{shift}/doc-{doctor}")
}

fn shift_prefix(shift: u64) -> String {
    format!("shift-{shift}/")
}

fn account_key(customer: u64, savings: bool) -> String {
    format!(
        "c{customer:02}/{}",
        if savings { "savings" } else { "checking" }
    )
}

fn decode_i64(raw: &[u8]) -> Result<i64, Error> {
    let bytes: [u8; 8] = raw
        .try_into()
        .map_err(|_| Error::InvalidArgument(format!("bad i64 of {} bytes", raw.len())))?;
    Ok(i64::from_le_bytes(bytes))
}

fn balance(tx: &Transaction, customer: u64, savings: bool) -> Result<i64, Error> {
    let raw = tx
        .get("accounts", account_key(customer, savings))?
        .ok_or_else(|| Error::InvalidArgument(format!("account of {customer} missing")))?;
    decode_i64(&raw)
}

fn setup(db: &Db) -> Result<(), Error> {
    db.transaction(|tx| {
        tx.create_table("oncall")?;
        tx.create_table("accounts")?;
        tx.create_table("ledger")?;
        for s in 0..SHIFTS {
            for d in 0..DOCTORS {
                tx.put("oncall", doctor_key(s, d), "1")?;
            }
        }
        for c in 0..CUSTOMERS {
            for savings in [false, true] {
                tx.put("accounts", account_key(c, savings), INITIAL.to_le_bytes())?;
            }
        }
        Ok::<_, Error>(())
    })
}

/// Doctors of `shift` on call, as `tx` sees them (a prefix scan: the whole shift is read).
fn on_call(tx: &Transaction, shift: u64) -> Result<Vec<Vec<u8>>, Error> {
    let mut out = Vec::new();
    for row in tx.scan_prefix("oncall", shift_prefix(shift))? {
        let (key, value) = row?;
        if value == b"1" {
            out.push(key);
        }
    }
    Ok(out)
}

/// Checks every invariant in the snapshot of `tx`; returns the ledger's row count.
fn audit(tx: &Transaction, ctx: &str) -> Result<u64, String> {
    let e = |e: Error| format!("{ctx}: {e:?}");
    for s in 0..SHIFTS {
        let n = on_call(tx, s).map_err(e)?.len();
        if n == 0 {
            return Err(format!(
                "{ctx}: shift {s} has no doctor on call (snapshot {})",
                tx.snapshot_version()
            ));
        }
    }
    let mut total = 0i64;
    for c in 0..CUSTOMERS {
        let checking = balance(tx, c, false).map_err(e)?;
        let savings = balance(tx, c, true).map_err(e)?;
        if checking + savings < 0 {
            return Err(format!(
                "{ctx}: customer {c} overdrawn: {checking} + {savings} (snapshot {})",
                tx.snapshot_version()
            ));
        }
        total += checking + savings;
    }
    let mut ledger = 0i64;
    let mut rows = 0;
    for row in tx.scan_all("ledger").map_err(e)? {
        let (_, v) = row.map_err(e)?;
        ledger += decode_i64(&v).map_err(e)?;
        rows += 1;
    }
    if total != INITIAL_TOTAL + ledger {
        return Err(format!(
            "{ctx}: total {total} != initial {INITIAL_TOTAL} + ledger {ledger} (snapshot {})",
            tx.snapshot_version()
        ));
    }
    Ok(rows)
}

/// What one worker's committed transactions did.
#[derive(Debug, Default, Clone)]
struct Tally {
    committed: u64,
    /// Transactions that ran out of retries (nothing committed).
    exhausted: u64,
    off_call: u64,
    back_on_call: u64,
    withdrawals: u64,
    refused_withdrawals: u64,
    transfers: u64,
    deposits: u64,
    /// Sum of the ledger rows this worker committed.
    ledger: i64,
    ledger_rows: u64,
    audits: u64,
}

/// What a transaction did, for the tally (known only once it committed).
enum Did {
    OffCall,
    StayedOnCall,
    BackOnCall,
    Withdrew(i64),
    RefusedWithdrawal,
    Transferred,
    Deposited(i64),
}

fn worker(db: &Db, t: usize, start: &Barrier) -> Result<Tally, String> {
    let mut rng = XorShift::new(t as u64 * 7919 + 1);
    let mut tally = Tally::default();
    start.wait();
    for n in 0..PER_THREAD {
        let ledger_key = format!("t{t}-{n:05}");
        let pick = rng.below(100);
        let shift = rng.below(SHIFTS);
        let doctor = rng.below(DOCTORS);
        let (c1, c2) = {
            let a = rng.below(CUSTOMERS);
            (a, (a + 1 + rng.below(CUSTOMERS - 1)) % CUSTOMERS)
        };
        let (savings1, savings2) = (rng.chance(1, 2), rng.chance(1, 2));
        let amount = 1 + rng.below(60) as i64;
        let choice = rng.next_u64();
        let body = |tx: &mut Transaction| -> Result<Did, Error> {
            if pick < 35 {
                // Doctor goes off call if someone else in the shift stays on.
                let on = on_call(tx, shift)?;
                if on.len() < 2 {
                    return Ok(Did::StayedOnCall);
                }
                let who = &on[(choice % on.len() as u64) as usize];
                tx.put("oncall", who, "0")?;
                Ok(Did::OffCall)
            } else if pick < 45 {
                let key = doctor_key(shift, doctor);
                if tx.get("oncall", &key)?.as_deref() == Some(b"1") {
                    return Ok(Did::StayedOnCall);
                }
                tx.put("oncall", &key, "1")?;
                Ok(Did::BackOnCall)
            } else if pick < 75 {
                // Withdrawal: the two accounts together must cover it; one is debited.
                let checking = balance(tx, c1, false)?;
                let savings = balance(tx, c1, true)?;
                if checking + savings < amount {
                    return Ok(Did::RefusedWithdrawal);
                }
                let from = if savings1 { savings } else { checking };
                tx.put(
                    "accounts",
                    account_key(c1, savings1),
                    (from - amount).to_le_bytes(),
                )?;
                tx.put("ledger", &ledger_key, (-amount).to_le_bytes())?;
                Ok(Did::Withdrew(amount))
            } else if pick < 90 {
                // Transfer from c1 (same constraint) to one of c2's accounts.
                let checking = balance(tx, c1, false)?;
                let savings = balance(tx, c1, true)?;
                if checking + savings < amount {
                    return Ok(Did::RefusedWithdrawal);
                }
                let from = if savings1 { savings } else { checking };
                let to = balance(tx, c2, savings2)?;
                tx.put(
                    "accounts",
                    account_key(c1, savings1),
                    (from - amount).to_le_bytes(),
                )?;
                tx.put(
                    "accounts",
                    account_key(c2, savings2),
                    (to + amount).to_le_bytes(),
                )?;
                Ok(Did::Transferred)
            } else {
                let deposit = amount * 2;
                let to = balance(tx, c1, savings1)?;
                tx.put(
                    "accounts",
                    account_key(c1, savings1),
                    (to + deposit).to_le_bytes(),
                )?;
                tx.put("ledger", &ledger_key, deposit.to_le_bytes())?;
                Ok(Did::Deposited(deposit))
            }
        };
        let result = db
            .tx()
            .isolation(Isolation::Serializable)
            .label(format!("t{t}-{n}"))
            .max_retries(MAX_ATTEMPTS)
            .max_retry_time(Duration::from_secs(120))
            .run(body);
        match result {
            Ok(did) => {
                tally.committed += 1;
                match did {
                    Did::OffCall => tally.off_call += 1,
                    Did::StayedOnCall => {}
                    Did::BackOnCall => tally.back_on_call += 1,
                    Did::Withdrew(a) => {
                        tally.withdrawals += 1;
                        tally.ledger -= a;
                        tally.ledger_rows += 1;
                    }
                    Did::RefusedWithdrawal => tally.refused_withdrawals += 1,
                    Did::Transferred => tally.transfers += 1,
                    Did::Deposited(a) => {
                        tally.deposits += 1;
                        tally.ledger += a;
                        tally.ledger_rows += 1;
                    }
                }
            }
            Err(Error::RetriesExhausted { .. }) => tally.exhausted += 1,
            Err(e) => return Err(format!("thread {t} transaction {n}: {e:?}")),
        }
        if n % 100 == 0 {
            let tx = db.begin_read().map_err(|e| e.to_string())?;
            audit(&tx, &format!("thread {t} after transaction {n}"))?;
            tally.audits += 1;
        }
    }
    Ok(tally)
}

fn sum_tallies(tallies: &[Tally]) -> Tally {
    let mut s = Tally::default();
    for t in tallies {
        s.committed += t.committed;
        s.exhausted += t.exhausted;
        s.off_call += t.off_call;
        s.back_on_call += t.back_on_call;
        s.withdrawals += t.withdrawals;
        s.refused_withdrawals += t.refused_withdrawals;
        s.transfers += t.transfers;
        s.deposits += t.deposits;
        s.ledger += t.ledger;
        s.ledger_rows += t.ledger_rows;
        s.audits += t.audits;
    }
    s
}

fn run_stress(path: &Path, durability: Durability) -> TestResult {
    let opts = Options::default()
        .durability(durability)
        .wal_segment_bytes(1 << 20)
        .checkpoint_after_wal_bytes(512 << 10);
    let db = Db::open_with(path, opts.clone())?;
    setup(&db)?;
    let started = Instant::now();
    let start = Barrier::new(THREADS + 1);
    let done = AtomicBool::new(false);
    let snapshots = AtomicU64::new(0);
    let (tallies, auditor) = std::thread::scope(|s| {
        let auditor = s.spawn(|| -> Result<(), String> {
            start.wait();
            let mut last_rows = 0;
            loop {
                let finished = done.load(Ordering::Acquire);
                let tx = db.begin_read().map_err(|e| e.to_string())?;
                let rows = audit(&tx, "auditor")?;
                if rows < last_rows {
                    return Err(format!("the ledger shrank from {last_rows} to {rows}"));
                }
                last_rows = rows;
                snapshots.fetch_add(1, Ordering::Relaxed);
                if finished {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (db, start) = (&db, &start);
                s.spawn(move || worker(db, t, start))
            })
            .collect();
        let tallies: Vec<Result<Tally, String>> = workers
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect();
        done.store(true, Ordering::Release);
        let auditor = auditor
            .join()
            .unwrap_or_else(|_| Err("the auditor panicked".into()));
        (tallies, auditor)
    });
    let elapsed = started.elapsed();
    let tallies = tallies.into_iter().collect::<Result<Vec<_>, _>>()?;
    auditor?;
    let total = sum_tallies(&tallies);
    let stats = db.stats();
    eprintln!(
        "{durability:?}: {} transactions in {elapsed:?}: {} committed, {} ran out of retries; \
         {} conflicts retried; {total:?}; {} auditor snapshots",
        THREADS * PER_THREAD,
        total.committed,
        total.exhausted,
        stats.conflicts,
        snapshots.load(Ordering::Relaxed),
    );
    const { assert!(THREADS * PER_THREAD >= 10_000) };
    assert_eq!(
        total.committed + total.exhausted,
        (THREADS * PER_THREAD) as u64
    );
    // Retries rarely run out.
    assert!(
        total.exhausted * 100 <= total.committed,
        "{} of {} transactions ran out of retries",
        total.exhausted,
        THREADS * PER_THREAD
    );
    // The workload did exercise both patterns, and contended.
    assert!(total.off_call > 0 && total.back_on_call > 0, "{total:?}");
    assert!(total.withdrawals > 0 && total.transfers > 0 && total.deposits > 0);
    assert!(
        total.refused_withdrawals > 0,
        "the constraint was never tight"
    );
    assert!(stats.conflicts > 0, "no conflicts at all: {stats:?}");
    assert!(snapshots.load(Ordering::Relaxed) > 0);

    // End state: the invariants, and the ledger is exactly the acknowledged transactions'.
    let check_end = |db: &Db, ctx: &str| -> Result<(), String> {
        let tx = db.begin_read().map_err(|e| e.to_string())?;
        let rows = audit(&tx, ctx)?;
        if rows != total.ledger_rows {
            return Err(format!(
                "{ctx}: {rows} ledger rows for {} acknowledged",
                total.ledger_rows
            ));
        }
        let ledger: i64 = tx
            .scan_all("ledger")
            .map_err(|e| e.to_string())?
            .map(|r| r.and_then(|(_, v)| decode_i64(&v)))
            .sum::<Result<i64, Error>>()
            .map_err(|e| e.to_string())?;
        if ledger != total.ledger {
            return Err(format!(
                "{ctx}: ledger sums to {ledger}, acknowledged {}",
                total.ledger
            ));
        }
        Ok(())
    };
    check_end(&db, "end state")?;
    let before: BTreeMap<String, Rows> = read_state(&db)?;
    db.close()?;
    let db = Db::open_with(path, opts)?;
    check_end(&db, "after reopening")?;
    assert!(read_state(&db)? == before, "state changed across reopen");
    assert!(
        elapsed < Duration::from_secs(60),
        "took {elapsed:?}: far too slow"
    );
    Ok(())
}

#[test]
fn serializable_doctors_and_bank_under_8_threads_never_violate_an_invariant() -> TestResult {
    let dir = tempfile::tempdir()?;
    run_stress(&dir.path().join("stress"), Durability::None)
}

#[test]
fn serializable_stress_with_buffered_durability_never_violates_an_invariant() -> TestResult {
    let dir = tempfile::tempdir()?;
    let durability = Durability::Buffered {
        max_delay: Duration::from_millis(2),
    };
    run_stress(&dir.path().join("stress"), durability)
}

// ---------------------------------------------------------------------------------------------
// Deterministic write skew: allowed by Snapshot, refused by Serializable.

fn open_small(path: &Path) -> Result<Db, Error> {
    Db::open_with(
        path,
        Options::default()
            .durability(Durability::None)
            .wal_segment_bytes(256 << 10),
    )
}

/// Two doctors of shift 0 on call; each of two concurrent transactions sees both and takes a
/// different one off call. Returns the second commit's result and the doctors on call after.
fn doctors_interleaving(
    db: &Db,
    isolation: Isolation,
) -> Result<(Result<(), Error>, usize), Error> {
    db.transaction(|tx| {
        tx.put("oncall", doctor_key(0, 0), "1")?;
        tx.put("oncall", doctor_key(0, 1), "1")?;
        tx.put("oncall", doctor_key(0, 2), "0")?;
        Ok::<_, Error>(())
    })?;
    let mut alice = db.tx().isolation(isolation).label("alice").begin()?;
    let mut bob = db.tx().isolation(isolation).label("bob").begin()?;
    let seen_by_alice = on_call(&alice, 0)?;
    let seen_by_bob = on_call(&bob, 0)?;
    assert_eq!(seen_by_alice.len(), 2);
    assert_eq!(seen_by_bob.len(), 2);
    // Each goes off call, since the other is still on call in its snapshot.
    alice.put("oncall", doctor_key(0, 0), "0")?;
    bob.put("oncall", doctor_key(0, 1), "0")?;
    alice.commit()?;
    let second = bob.commit().map(|_| ());
    let after = on_call(&db.begin_read()?, 0)?.len();
    Ok((second, after))
}

/// Checking and savings at 100 each; two concurrent withdrawals of 150 each check the sum
/// (200) and debit different accounts. Returns the second commit's result and the sum after.
fn bank_interleaving(db: &Db, isolation: Isolation) -> Result<(Result<(), Error>, i64), Error> {
    db.transaction(|tx| {
        tx.put("accounts", account_key(0, false), 100i64.to_le_bytes())?;
        tx.put("accounts", account_key(0, true), 100i64.to_le_bytes())?;
        Ok::<_, Error>(())
    })?;
    let withdraw = |tx: &mut Transaction, from_savings: bool, key: &str| -> Result<(), Error> {
        let checking = balance(tx, 0, false)?;
        let savings = balance(tx, 0, true)?;
        assert!(checking + savings >= 150);
        let from = if from_savings { savings } else { checking };
        tx.put(
            "accounts",
            account_key(0, from_savings),
            (from - 150).to_le_bytes(),
        )?;
        tx.put("ledger", key, (-150i64).to_le_bytes())
    };
    let mut first = db.tx().isolation(isolation).begin()?;
    let mut second = db.tx().isolation(isolation).begin()?;
    withdraw(&mut first, false, &format!("{isolation:?}-w1"))?;
    withdraw(&mut second, true, &format!("{isolation:?}-w2"))?;
    first.commit()?;
    let second = second.commit().map(|_| ());
    let tx = db.begin_read()?;
    let sum = balance(&tx, 0, false)? + balance(&tx, 0, true)?;
    Ok((second, sum))
}

#[test]
fn snapshot_isolation_allows_the_write_skew_that_serializable_refuses() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = open_small(&dir.path().join("skew"))?;
    db.create_table("oncall")?;
    db.create_table("accounts")?;
    db.create_table("ledger")?;

    // Snapshot: both commit, and nobody is on call.
    let (second, on) = doctors_interleaving(&db, Isolation::Snapshot)?;
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(
        on, 0,
        "write skew under Snapshot: the shift is left without a doctor"
    );

    // Serializable: the second commit is refused because the shift it scanned changed.
    let (second, on) = doctors_interleaving(&db, Isolation::Serializable)?;
    assert!(
        matches!(&second, Err(Error::Conflict(r))
            if r.kind == ConflictKind::Phantom && r.table == "oncall"
                && r.label.as_deref() == Some("bob")),
        "{second:?}"
    );
    assert_eq!(on, 1);

    // The bank: under Snapshot the customer ends overdrawn; Serializable refuses.
    let (second, sum) = bank_interleaving(&db, Isolation::Snapshot)?;
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(
        sum, -100,
        "write skew under Snapshot: the constraint is broken"
    );
    let (second, sum) = bank_interleaving(&db, Isolation::Serializable)?;
    assert!(
        matches!(&second, Err(Error::Conflict(r))
            if r.kind == ConflictKind::ReadWrite && r.table == "accounts"
                && r.key.as_deref() == Some(account_key(0, false).as_bytes())),
        "{second:?}"
    );
    assert_eq!(sum, 50);
    // The refused withdrawal logged nothing; the others did.
    let tx = db.begin_read()?;
    assert_eq!(tx.get("ledger", "Serializable-w2")?, None);
    for key in ["Snapshot-w1", "Snapshot-w2", "Serializable-w1"] {
        assert_eq!(
            tx.get("ledger", key)?,
            Some((-150i64).to_le_bytes().to_vec())
        );
    }
    Ok(())
}
