//! Pessimistic transactions release their locks once their commit is applied and queued in the
//! log, before it is synced, so a waiter reads a commit that may not be durable yet. These tests
//! check what makes that safe: a transaction that read such a commit is never durable without
//! it, whatever the crash point, and a locking read that commits no change does not report
//! success before what it read is durable.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use vellum::fs::SimFs;
use vellum::{Db, Error};

const THREADS: usize = 4;

fn open(fs: &SimFs) -> Result<Db, Error> {
    let db = Db::open_with(db_path(), sim_options(fs, 64 << 10))?;
    if !db.list_tables()?.iter().any(|t| t == "counter") {
        db.create_table("counter")?;
        db.create_table("ledger")?;
        db.transaction(|tx| tx.put("counter", "n", 0u64.to_le_bytes()))?;
    }
    Ok(db)
}

fn decode(v: Option<Vec<u8>>) -> Result<u64, String> {
    let v = v.ok_or("counter missing")?;
    let bytes: [u8; 8] = v.as_slice().try_into().map_err(|_| "counter malformed")?;
    Ok(u64::from_le_bytes(bytes))
}

/// One pessimistic increment with its ledger row.
fn increment(db: &Db, row: &str) -> Result<(), Error> {
    let mut tx = db.tx().pessimistic().begin()?;
    let n = decode(tx.get_for_update("counter", "n")?).map_err(Error::InvalidArgument)?;
    tx.put("counter", "n", (n + 1).to_le_bytes())?;
    tx.put("ledger", row, n.to_le_bytes())?;
    tx.commit()?;
    Ok(())
}

/// Threads increment until the simulated crash stops them; returns the acknowledged rows.
fn run_until_crash(db: &Arc<Db>) -> Result<Vec<String>, String> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let (db, acked) = (db.clone(), acked.clone());
        handles.push(std::thread::spawn(move || -> Result<(), String> {
            for i in 0..10_000 {
                let row = format!("t{t}-{i:05}");
                match increment(&db, &row) {
                    Ok(()) => acked.lock().map_err(|e| e.to_string())?.push(row),
                    Err(e) if is_crash_error(&e) => return Ok(()),
                    Err(e) => return Err(format!("thread {t}: unexpected error {e}")),
                }
            }
            Ok(())
        }));
    }
    for h in handles {
        h.join().map_err(|_| "a thread panicked")??;
    }
    let rows = acked.lock().map_err(|e| e.to_string())?.clone();
    Ok(rows)
}

#[test]
fn no_increment_survives_a_crash_without_the_one_it_read() -> Result<(), String> {
    let mut total_acked = 0;
    for (i, n) in (40..1_240u64).step_by(60).enumerate() {
        let fs = sim(n, i % 2 == 0, true);
        let db = Arc::new(open(&fs).map_err(|e| e.to_string())?);
        fs.crash_after(Some(n));
        let acked = run_until_crash(&db)?;
        drop(db);
        fs.restart();
        let db = open(&fs).map_err(|e| format!("crash point {n}: reopen: {e}"))?;
        let tx = db.begin_read().map_err(|e| e.to_string())?;
        let counter = decode(tx.get("counter", "n").map_err(|e| e.to_string())?)?;
        let mut seen = Vec::new();
        for row in tx.scan_all("ledger").map_err(|e| e.to_string())? {
            let (k, v) = row.map_err(|e| e.to_string())?;
            seen.push((decode(Some(v))?, String::from_utf8_lossy(&k).into_owned()));
        }
        seen.sort();
        // Every surviving increment read the value the previous surviving one wrote: the
        // ledger holds 0, 1, 2, ... with no gap, and the counter is one past the last.
        for (want, (got, row)) in seen.iter().enumerate() {
            assert_eq!(
                *got, want as u64,
                "crash point {n}: row {row} read {got}, but {want} increments survived before it"
            );
        }
        assert_eq!(
            counter,
            seen.len() as u64,
            "crash point {n}: counter vs ledger"
        );
        for row in &acked {
            assert!(
                seen.iter().any(|(_, r)| r == row),
                "crash point {n}: acknowledged increment {row} was lost"
            );
        }
        total_acked += acked.len();
    }
    assert!(total_acked > 0, "some increments were acknowledged");
    Ok(())
}

/// A locking read that changes nothing commits only once what it read is durable: after its
/// commit returns, a crash cannot take that value away.
#[test]
fn a_locking_read_without_changes_commits_only_what_is_durable() -> Result<(), String> {
    let fs = sim(3, false, false);
    let db = Arc::new(open(&fs).map_err(|e| e.to_string())?);
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || -> Result<(), String> {
            for i in 0..300 {
                increment(&db, &format!("w-{i:04}")).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    };
    let mut observed = 0;
    for _ in 0..300 {
        let mut tx = db.tx().pessimistic().begin().map_err(|e| e.to_string())?;
        let n = decode(
            tx.get_for_update("counter", "n")
                .map_err(|e| e.to_string())?,
        )?;
        tx.commit().map_err(|e| e.to_string())?;
        // Committed: the value read is durable, so it is visible to every new reader.
        let visible = decode(
            db.begin_read()
                .and_then(|t| t.get("counter", "n"))
                .map_err(|e| e.to_string())?,
        )?;
        assert!(
            visible >= n,
            "read {n} but only {visible} is durable and visible"
        );
        observed = observed.max(n);
    }
    writer.join().map_err(|_| "writer panicked")??;
    drop(db);
    fs.restart();
    let db = open(&fs).map_err(|e| e.to_string())?;
    let after = decode(
        db.begin_read()
            .and_then(|t| t.get("counter", "n"))
            .map_err(|e| e.to_string())?,
    )?;
    assert!(after >= observed, "observed {observed}, {after} survived");
    Ok(())
}
