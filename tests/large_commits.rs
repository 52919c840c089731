//! Large commits (records over 1 MiB are written and synced on another thread while they are
//! applied to the memtable in parallel) are atomic and durable like small ones: a simulated
//! crash at every file-system operation of the commit leaves all of it or none of it after
//! recovery, and all of it whenever the commit returned success.

mod common;

use common::*;
use vellum::{Db, Error};

const KEYS: u64 = 12_000;

fn key(i: u64) -> String {
    format!("bulk-{i:08}")
}

/// Opens the database on `fs`, with table `t` and one committed marker row.
fn open(fs: &vellum::fs::SimFs) -> Result<Db, Error> {
    let db = Db::open_with(db_path(), sim_options(fs, 8 << 20))?;
    if !db.list_tables()?.iter().any(|t| t == "t") {
        db.create_table("t")?;
        db.transaction(|tx| tx.put("t", "marker", "m"))?;
    }
    Ok(db)
}

fn big_commit(db: &Db) -> Result<vellum::Version, Error> {
    let mut tx = db.begin()?;
    for i in 0..KEYS {
        tx.put("t", key(i), value(&key(i), 100))?;
    }
    tx.commit()
}

/// How many of the big commit's rows a fresh reader sees (checking each value).
fn rows_present(db: &Db) -> Result<u64, String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    if tx.get("t", "marker").map_err(|e| e.to_string())? != Some(b"m".to_vec()) {
        return Err("the marker row committed before is missing".into());
    }
    let mut n = 0;
    for i in 0..KEYS {
        match tx.get("t", key(i)).map_err(|e| e.to_string())? {
            Some(v) if v == value(&key(i), 100) => n += 1,
            Some(_) => return Err(format!("row {i} has a wrong value")),
            None => {}
        }
    }
    Ok(n)
}

#[test]
fn a_large_commit_is_all_or_nothing_at_every_crash_point() -> Result<(), String> {
    // The commit's file-system operations, counted on a run without a crash.
    let ops = {
        let fs = sim(1, false, false);
        let db = open(&fs).map_err(|e| e.to_string())?;
        let before = fs.op_count();
        big_commit(&db).map_err(|e| e.to_string())?;
        let n = fs.op_count() - before;
        drop(db);
        n
    };
    assert!(ops > 0);
    let mut outcomes = [0u32; 2];
    for n in 1..=ops + 2 {
        for keep_unsynced in [false, true] {
            let fs = sim(n, keep_unsynced, true);
            let db = open(&fs).map_err(|e| e.to_string())?;
            fs.crash_after(Some(n));
            let result = big_commit(&db);
            if let Err(e) = &result {
                assert!(is_crash_error(e), "crash point {n}: unexpected error {e}");
            }
            drop(db);
            fs.restart();
            let db = open(&fs).map_err(|e| format!("crash point {n}: reopen: {e}"))?;
            let present = rows_present(&db).map_err(|e| format!("crash point {n}: {e}"))?;
            assert!(
                present == 0 || present == KEYS,
                "crash point {n}: {present} of {KEYS} rows survived (torn commit)"
            );
            if result.is_ok() {
                assert_eq!(present, KEYS, "crash point {n}: a durable commit was lost");
            }
            outcomes[usize::from(present == KEYS)] += 1;
        }
    }
    assert!(
        outcomes[0] > 0 && outcomes[1] > 0,
        "both outcomes occur: {outcomes:?}"
    );
    Ok(())
}

#[test]
fn a_large_commit_reads_back_before_and_after_reopen() -> Result<(), String> {
    let fs = sim(7, false, false);
    {
        let db = open(&fs).map_err(|e| e.to_string())?;
        big_commit(&db).map_err(|e| e.to_string())?;
        assert_eq!(rows_present(&db)?, KEYS);
        let mut rows = 0;
        let tx = db.begin_read().map_err(|e| e.to_string())?;
        let mut cursor = tx.cursor("t", "bulk-"..).map_err(|e| e.to_string())?;
        while let Some((k, _)) = cursor.next_row().map_err(|e| e.to_string())? {
            assert!(k.starts_with(b"bulk-") || k == b"marker");
            rows += 1;
        }
        assert_eq!(rows, KEYS + 1, "the bulk rows and the marker");
    }
    fs.restart();
    let db = open(&fs).map_err(|e| e.to_string())?;
    assert_eq!(rows_present(&db)?, KEYS);
    Ok(())
}
