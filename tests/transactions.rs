//! Transaction semantics through the public API: the closure form, rollback, transactional
//! table creation and dropping, snapshot isolation across tables, read-only transactions,
//! size limits, and opening paths that hold no database.
//!
//! Not tested: [`Error::TransactionClosed`]. `commit` and `rollback` take the transaction by
//! value and `Db::transaction` hands out `&mut Transaction`, so no finished transaction can be
//! reached through the public API; the error is unreachable for callers.

mod common;

use common::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use vellum::fs::{FileSystem, SimFs};
use vellum::{ConflictKind, Db, Error, Options, Version, TRANSACTION_BYTES_MAX, VALUE_SIZE_MAX};

fn temp_db() -> Result<(tempfile::TempDir, Db), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path().join("db"))?;
    Ok((dir, db))
}

fn get(db: &Db, table: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
    db.begin_read()?.get(table, key)
}

fn conflict_kind(r: Result<Version, Error>) -> Option<(ConflictKind, String)> {
    match r {
        Err(Error::Conflict(report)) => Some((report.kind, report.table)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The closure form and rollback

#[test]
fn the_closure_form_commits_when_the_closure_returns_ok() -> TestResult {
    let (_dir, db) = temp_db()?;
    db.create_table("t")?;
    let before = db.version();
    let out = db.transaction(|tx| {
        tx.put("t", "k", "v")?;
        Ok::<_, Error>(42)
    })?;
    assert_eq!(out, 42, "the closure's value is returned");
    assert_eq!(get(&db, "t", "k")?, Some(b"v".to_vec()));
    assert!(db.version() > before);
    assert_eq!(db.stats().live_transactions, 0);
    Ok(())
}

#[derive(Debug)]
enum AppError {
    Db(Error),
    Refused(&'static str),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Db(e)
    }
}

#[test]
fn the_closure_form_rolls_back_and_returns_the_closures_error() -> TestResult {
    let (_dir, db) = temp_db()?;
    db.create_table("t")?;
    let before = db.version();
    let r: Result<(), AppError> = db.transaction(|tx| {
        tx.put("t", "k", "v")?;
        tx.create_table("made-inside")?;
        Err(AppError::Refused("business rule"))
    });
    assert!(
        matches!(r, Err(AppError::Refused("business rule"))),
        "{r:?}"
    );
    assert_eq!(get(&db, "t", "k")?, None);
    assert!(!db.begin_read()?.table_exists("made-inside")?);
    assert_eq!(db.version(), before, "nothing was committed");
    assert_eq!(db.stats().live_transactions, 0);
    // Errors of the database inside the closure come back through `From`.
    let r: Result<(), AppError> = db.transaction(|tx| {
        tx.put("missing", "k", "v")?;
        Ok(())
    });
    assert!(
        matches!(r, Err(AppError::Db(Error::TableNotFound(_)))),
        "{r:?}"
    );
    Ok(())
}

#[test]
fn the_closure_form_rolls_back_when_the_closure_panics() -> TestResult {
    let (_dir, db) = temp_db()?;
    db.create_table("t")?;
    let before = db.version();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let _: Result<(), Error> = db.transaction(|tx| {
            tx.put("t", "k", "written before the panic")?;
            panic!("closure panics mid-transaction");
        });
    }));
    assert!(caught.is_err(), "the panic continues");
    assert_eq!(get(&db, "t", "k")?, None);
    assert_eq!(db.version(), before);
    assert_eq!(db.stats().live_transactions, 0, "the snapshot was released");
    // The database is still fully usable.
    db.transaction(|tx| tx.put("t", "k", "after"))?;
    assert_eq!(get(&db, "t", "k")?, Some(b"after".to_vec()));
    Ok(())
}

#[test]
fn dropping_an_unfinished_transaction_rolls_it_back() -> TestResult {
    let (_dir, db) = temp_db()?;
    db.create_table("t")?;
    {
        let mut tx = db.begin()?;
        tx.put("t", "k", "v")?;
        tx.drop_table("t")?;
        assert_eq!(db.stats().live_transactions, 1);
    }
    assert_eq!(db.stats().live_transactions, 0);
    assert!(
        db.begin_read()?.table_exists("t")?,
        "the staged drop was discarded"
    );
    assert_eq!(get(&db, "t", "k")?, None);
    Ok(())
}

#[test]
fn rollback_discards_every_staged_write_and_releases_the_snapshot() -> TestResult {
    let (_dir, db) = temp_db()?;
    db.create_table("a")?;
    db.create_table("b")?;
    let before = db.version();
    let mut tx = db.begin()?;
    tx.put("a", "k", "1")?;
    tx.put("b", "k", "2")?;
    tx.create_table("c")?;
    tx.put("c", "k", "3")?;
    assert_eq!(db.stats().live_transactions, 1);
    tx.rollback()?;
    assert_eq!(db.stats().live_transactions, 0);
    assert_eq!(db.version(), before);
    assert_eq!(db.list_tables()?, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(get(&db, "a", "k")?, None);
    assert_eq!(get(&db, "b", "k")?, None);
    Ok(())
}

#[test]
fn a_commit_that_loses_a_conflict_writes_none_of_its_changes() -> TestResult {
    let (_dir, db) = temp_db()?;
    db.create_table("a")?;
    db.create_table("b")?;
    let mut loser = db.begin()?;
    loser.put("a", "other", "x")?;
    loser.put("b", "also", "y")?;
    loser.put("a", "contended", "loser")?;
    db.transaction(|tx| tx.put("a", "contended", "winner"))?;
    let r = loser.commit();
    assert!(matches!(&r, Err(e) if e.is_retryable()), "{r:?}");
    let tx = db.begin_read()?;
    assert_eq!(tx.get("a", "contended")?, Some(b"winner".to_vec()));
    assert_eq!(tx.get("a", "other")?, None);
    assert_eq!(tx.get("b", "also")?, None);
    assert_eq!(db.stats().conflicts, 1);
    // The closure form returns the conflict instead of retrying.
    let closure = db.transaction(|tx| {
        db.transaction(|inner| inner.put("a", "contended", "sneaky"))?;
        tx.put("a", "contended", "closure")
    });
    assert!(matches!(closure, Err(Error::Conflict(_))), "{closure:?}");
    assert_eq!(get(&db, "a", "contended")?, Some(b"sneaky".to_vec()));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tables are transactional

#[test]
fn a_table_created_in_an_uncommitted_transaction_is_invisible_to_others() -> TestResult {
    let (_dir, db) = temp_db()?;
    let mut creator = db.begin()?;
    creator.create_table("new")?;
    creator.put("new", "k", "v")?;
    assert!(creator.table_exists("new")?);
    assert_eq!(creator.get("new", "k")?, Some(b"v".to_vec()));

    let before = db.begin_read()?;
    assert!(!before.table_exists("new")?);
    assert!(matches!(
        before.get("new", "k"),
        Err(Error::TableNotFound(_))
    ));
    assert!(db.list_tables()?.is_empty());
    let mut writer = db.begin()?;
    assert!(matches!(
        writer.put("new", "k", "x"),
        Err(Error::TableNotFound(_))
    ));

    creator.commit()?;
    assert!(
        !before.table_exists("new")?,
        "an older snapshot keeps not seeing it"
    );
    assert!(matches!(
        before.scan_all("new"),
        Err(Error::TableNotFound(_))
    ));
    let after = db.begin_read()?;
    assert_eq!(after.get("new", "k")?, Some(b"v".to_vec()));
    assert_eq!(db.list_tables()?, vec!["new".to_string()]);
    Ok(())
}

#[test]
fn concurrent_creates_of_one_table_name_let_exactly_one_commit() -> TestResult {
    let (_dir, db) = temp_db()?;
    let mut first = db.begin()?;
    let mut second = db.begin()?;
    first.create_table("dup")?;
    second.create_table("dup")?;
    first.put("dup", "from", "first")?;
    second.put("dup", "from", "second")?;
    first.commit()?;
    let lost = conflict_kind(second.commit());
    assert_eq!(lost, Some((ConflictKind::TableChanged, "dup".to_string())));
    assert_eq!(get(&db, "dup", "from")?, Some(b"first".to_vec()));
    assert_eq!(db.list_tables()?, vec!["dup".to_string()]);
    assert!(matches!(db.create_table("dup"), Err(Error::TableExists(_))));
    Ok(())
}

#[test]
fn writing_to_a_table_that_another_transaction_dropped_meanwhile_conflicts() -> TestResult {
    let (_dir, db) = temp_db()?;
    db.create_table("t")?;
    db.transaction(|tx| tx.put("t", "row", "old"))?;
    let mut writer = db.begin()?;
    writer.put("t", "fresh-key", "v")?;
    db.drop_table("t")?;
    assert_eq!(
        conflict_kind(writer.commit()),
        Some((ConflictKind::TableChanged, "t".to_string()))
    );
    assert!(db.list_tables()?.is_empty());

    // Same when the table was dropped and recreated under the same name meanwhile.
    db.create_table("t")?;
    let mut writer = db.begin()?;
    writer.put("t", "k", "into the old incarnation")?;
    db.transaction(|tx| {
        tx.drop_table("t")?;
        tx.create_table("t")
    })?;
    assert_eq!(
        conflict_kind(writer.commit()),
        Some((ConflictKind::TableChanged, "t".to_string()))
    );
    assert_eq!(db.begin_read()?.scan_all("t")?.count(), 0);
    Ok(())
}

#[test]
fn a_dropped_then_recreated_table_is_empty() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    {
        let db = Db::open(&path)?;
        db.create_table("t")?;
        db.transaction(|tx| {
            for i in 0..20 {
                tx.put("t", format!("k{i:02}"), "old")?;
            }
            Ok::<_, Error>(())
        })?;
        db.drop_table("t")?;
        db.create_table("t")?;
        let tx = db.begin_read()?;
        assert_eq!(tx.scan_all("t")?.count(), 0);
        assert_eq!(tx.get("t", "k00")?, None);
        drop(tx);

        // Dropped and recreated inside one transaction, with a write to the new table.
        db.transaction(|tx| {
            for i in 0..5 {
                tx.put("t", format!("k{i:02}"), "second")?;
            }
            Ok::<_, Error>(())
        })?;
        db.transaction(|tx| {
            tx.drop_table("t")?;
            tx.create_table("t")?;
            tx.put("t", "only", "third")?;
            assert_eq!(tx.scan_all("t")?.count(), 1, "inside the transaction");
            Ok::<_, Error>(())
        })?;
        let rows: Vec<_> = db.begin_read()?.scan_all("t")?.collect::<Result<_, _>>()?;
        assert_eq!(rows, vec![(b"only".to_vec(), b"third".to_vec())]);

        // Once more across a checkpoint: the dropped table's rows stay in storage but must not
        // come back under a recreated name after reopening.
        db.transaction(|tx| tx.put("t", "k00", "fourth"))?;
        db.drop_table("t")?;
        db.checkpoint()?;
        db.close()?;
    }
    for round in 0..2 {
        let db = Db::open(&path)?;
        assert!(db.list_tables()?.is_empty(), "round {round}");
        db.create_table("t")?;
        let rows = db.begin_read()?.scan_all("t")?.count();
        assert_eq!(rows, 0, "round {round}: a recreated table shows old rows");
        db.drop_table("t")?;
        db.close()?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Snapshot isolation and read-only transactions

#[test]
fn a_snapshot_sees_a_multi_table_commit_entirely_or_not_at_all() -> TestResult {
    let (_dir, db) = temp_db()?;
    for t in ["a", "b", "c"] {
        db.create_table(t)?;
    }
    db.transaction(|tx| {
        tx.put("a", "x", "0")?;
        tx.put("c", "gone", "0")
    })?;
    let before = db.begin_read()?;
    let mut writer = db.begin()?;
    writer.put("a", "x", "1")?;
    writer.put("b", "y", "1")?;
    writer.delete("c", "gone")?;
    writer.create_table("d")?;
    writer.put("d", "z", "1")?;
    let during = db.begin_read()?;
    let v = writer.commit()?;
    let after = db.begin_read()?;

    for snap in [&before, &during] {
        assert!(snap.snapshot_version() < v);
        assert_eq!(snap.get("a", "x")?, Some(b"0".to_vec()));
        assert_eq!(snap.get("b", "y")?, None);
        assert_eq!(snap.get("c", "gone")?, Some(b"0".to_vec()));
        assert!(!snap.table_exists("d")?);
    }
    assert_eq!(after.snapshot_version(), v);
    assert_eq!(after.get("a", "x")?, Some(b"1".to_vec()));
    assert_eq!(after.get("b", "y")?, Some(b"1".to_vec()));
    assert_eq!(after.get("c", "gone")?, None);
    assert_eq!(after.get("d", "z")?, Some(b"1".to_vec()));
    for (t, k) in [("a", "x"), ("b", "y"), ("d", "z")] {
        let found = after.get_versioned(t, k)?.map(|f| f.version);
        assert_eq!(found, Some(Some(v)), "{t}.{k} carries the commit's version");
    }
    assert_eq!(after.table_version("a")?, v);
    assert_eq!(after.table_version("d")?, v);
    Ok(())
}

#[test]
fn a_read_write_transaction_keeps_reading_its_snapshot() -> TestResult {
    let (_dir, db) = temp_db()?;
    db.create_table("t")?;
    db.transaction(|tx| tx.put("t", "k", "old"))?;
    let mut tx = db.begin()?;
    assert_eq!(tx.get("t", "k")?, Some(b"old".to_vec()));
    db.transaction(|other| {
        other.put("t", "k", "new")?;
        other.put("t", "k2", "new")
    })?;
    assert_eq!(tx.get("t", "k")?, Some(b"old".to_vec()), "repeatable read");
    assert_eq!(tx.scan_all("t")?.count(), 1, "no phantom rows");
    tx.put("t", "unrelated", "mine")?;
    tx.commit()?; // disjoint write set: no conflict
    assert_eq!(get(&db, "t", "unrelated")?, Some(b"mine".to_vec()));
    Ok(())
}

#[test]
fn a_snapshot_keeps_reading_its_versions_across_checkpoints_and_garbage_collection() -> TestResult {
    let (_dir, db) = temp_db()?;
    db.create_table("a")?;
    db.create_table("b")?;
    db.transaction(|tx| {
        for i in 0..10 {
            tx.put("a", format!("k{i}"), "v0")?;
            tx.put("b", format!("k{i}"), "v0")?;
        }
        Ok::<_, Error>(())
    })?;
    let old = db.begin_read()?;
    for round in 1..=5 {
        db.transaction(|tx| {
            for i in 0..10 {
                if i % 3 == 0 {
                    tx.delete("a", format!("k{i}"))?;
                } else {
                    tx.put("a", format!("k{i}"), format!("v{round}"))?;
                }
                tx.put("b", format!("k{i}"), format!("v{round}"))?;
            }
            Ok::<_, Error>(())
        })?;
        db.checkpoint()?; // collects every version no live snapshot can read
    }
    db.drop_table("b")?;
    db.checkpoint()?;
    for t in ["a", "b"] {
        let rows: Vec<_> = old.scan_all(t)?.collect::<Result<_, _>>()?;
        assert_eq!(rows.len(), 10, "{t}");
        assert!(rows.iter().all(|(_, v)| v == b"v0"), "{t}: {rows:?}");
    }
    let new = db.begin_read()?;
    assert_eq!(new.scan_all("a")?.count(), 6);
    assert!(!new.table_exists("b")?);
    assert_eq!(new.get("a", "k1")?, Some(b"v5".to_vec()));
    drop(old);
    db.checkpoint()?;
    assert_eq!(new.get("a", "k1")?, Some(b"v5".to_vec()));
    Ok(())
}

#[test]
fn snapshot_isolation_lets_disjoint_writes_based_on_overlapping_reads_both_commit() -> TestResult {
    // Write skew: each transaction reads both rows and writes a different one. Snapshot
    // isolation checks write-write conflicts only, so both commit.
    let (_dir, db) = temp_db()?;
    db.create_table("oncall")?;
    db.transaction(|tx| {
        tx.put("oncall", "alice", "yes")?;
        tx.put("oncall", "bob", "yes")
    })?;
    let mut t1 = db.begin()?;
    let mut t2 = db.begin()?;
    assert_eq!(t1.scan_all("oncall")?.count(), 2);
    assert_eq!(t2.scan_all("oncall")?.count(), 2);
    t1.put("oncall", "alice", "no")?;
    t2.put("oncall", "bob", "no")?;
    t1.commit()?;
    t2.commit()?;
    assert_eq!(get(&db, "oncall", "alice")?, Some(b"no".to_vec()));
    assert_eq!(get(&db, "oncall", "bob")?, Some(b"no".to_vec()));
    Ok(())
}

#[test]
fn a_read_only_transaction_never_aborts_and_refuses_writes() -> TestResult {
    let (_dir, db) = temp_db()?;
    db.create_table("t")?;
    db.transaction(|tx| tx.put("t", "k", "0"))?;
    let mut ro = db.begin_read()?;
    assert!(ro.is_read_only());
    let snap = ro.snapshot_version();
    assert_eq!(ro.get("t", "k")?, Some(b"0".to_vec()));
    for i in 1..=5 {
        db.transaction(|tx| {
            tx.put("t", "k", i.to_string())?;
            tx.drop_table("t")?;
            tx.create_table("t")?;
            tx.put("t", "k", i.to_string())
        })?;
    }
    assert!(matches!(ro.put("t", "k", "x"), Err(Error::ReadOnly)));
    assert!(matches!(ro.delete("t", "k"), Err(Error::ReadOnly)));
    assert!(matches!(ro.create_table("u"), Err(Error::ReadOnly)));
    assert!(matches!(ro.drop_table("t"), Err(Error::ReadOnly)));
    assert_eq!(ro.get("t", "k")?, Some(b"0".to_vec()), "still its snapshot");
    assert_eq!(
        ro.commit()?,
        snap,
        "commits at its snapshot, never conflicts"
    );
    assert_eq!(db.stats().conflicts, 0);
    assert_eq!(db.stats().live_transactions, 0);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Limits

#[test]
fn a_value_over_the_limit_is_refused_and_the_transaction_goes_on() -> TestResult {
    let (_dir, db) = temp_db()?;
    db.create_table("t")?;
    let mut tx = db.begin()?;
    let big = vec![0u8; VALUE_SIZE_MAX + 1];
    let r = tx.put("t", "big", &big);
    assert!(
        matches!(r, Err(Error::ValueTooLarge { size, max }) if size == VALUE_SIZE_MAX + 1 && max == VALUE_SIZE_MAX),
        "{r:?}"
    );
    drop(big);
    assert_eq!(tx.get("t", "big")?, None, "nothing was staged");
    tx.put("t", "small", "ok")?;
    tx.commit()?;
    assert_eq!(get(&db, "t", "small")?, Some(b"ok".to_vec()));
    assert_eq!(get(&db, "t", "big")?, None);
    Ok(())
}

#[test]
fn a_transaction_staging_more_than_the_limit_is_refused() -> TestResult {
    // The limit counts one entry per key (an overwrite replaces the old size), so it takes
    // distinct keys to reach it; overwriting one key never does.
    let (_dir, db) = temp_db()?;
    db.create_table("t")?;
    let mut tx = db.begin()?;
    let value = vec![7u8; VALUE_SIZE_MAX];
    for _ in 0..(TRANSACTION_BYTES_MAX / VALUE_SIZE_MAX + 2) {
        tx.put("t", "same", &value)?;
    }
    let key_len = 4;
    let puts_allowed = (TRANSACTION_BYTES_MAX - (VALUE_SIZE_MAX + 4)) / (VALUE_SIZE_MAX + key_len);
    for i in 0..puts_allowed {
        tx.put("t", format!("k{i:03}"), &value)?;
    }
    let r = tx.put("t", "next", &value);
    assert!(
        matches!(r, Err(Error::TransactionTooLarge { size, max }) if size > max && max == TRANSACTION_BYTES_MAX),
        "{r:?}"
    );
    assert!(
        matches!(tx.delete("t", "same"), Ok(())),
        "replacing a large value by a delete shrinks the transaction"
    );
    assert!(
        matches!(tx.put("t", "next", &value), Ok(())),
        "and makes room again"
    );
    tx.rollback()?;
    assert_eq!(db.stats().live_transactions, 0);
    assert_eq!(get(&db, "t", "same")?, None);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Opening paths that hold no database

#[test]
fn opening_a_missing_database_without_create_if_missing_is_not_found() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("missing");
    let r = Db::open_with(&path, Options::default().create_if_missing(false));
    assert!(matches!(&r, Err(Error::NotFound(p)) if *p == path), "{r:?}");
    assert!(!path.exists(), "nothing was created");

    let sim = SimFs::default();
    let opts = Options::default()
        .file_system(Arc::new(sim.clone()))
        .create_if_missing(false);
    let r = Db::open_with("/nowhere", opts.clone());
    assert!(matches!(&r, Err(Error::NotFound(_))), "{r:?}");
    assert!(sim.file_paths().is_empty());
    // An empty existing directory holds no database either.
    sim.create_dir_all(Path::new("/empty"))?;
    assert!(matches!(
        Db::open_with("/empty", opts),
        Err(Error::NotFound(_))
    ));
    Ok(())
}

#[test]
fn opening_a_regular_file_as_a_database_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("plain.txt");
    std::fs::write(&file, "not a database")?;
    let r = catch_unwind(|| Db::open(&file)).map_err(|_| "open panicked")?;
    assert!(
        matches!(&r, Err(Error::NotADatabase(_)) | Err(Error::Io { .. })),
        "{r:?}"
    );
    assert_eq!(
        std::fs::read(&file)?,
        b"not a database",
        "the file is untouched"
    );
    let r = Db::open_with(&file, Options::default().create_if_missing(false));
    assert!(
        matches!(&r, Err(Error::NotADatabase(_)) | Err(Error::Io { .. })),
        "{r:?}"
    );

    let sim = SimFs::default();
    sim.create_dir_all(Path::new("/d"))?;
    sim.open_write(Path::new("/d/file"))?.write_at(0, b"x")?;
    let r = Db::open_with("/d/file", Options::default().file_system(Arc::new(sim)));
    assert!(
        matches!(&r, Err(Error::NotADatabase(_)) | Err(Error::Io { .. })),
        "{r:?}"
    );
    Ok(())
}
