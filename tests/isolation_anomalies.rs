//! Isolation anomalies, Hermitage style: each test is one interleaving of two or three
//! transactions (T1, T2, T3) on a small table, run at one isolation level, asserting exactly
//! what every read saw and which commit failed with which conflict.
//!
//! The table is Hermitage's: `test` holds rows `1 => 10` and `2 => 20` (values are decimal
//! strings). The predicate tests add rows under the prefix `x`.
//!
//! Anomalies (Adya's names, as in Hermitage): G0 dirty write, G1a aborted read, G1b
//! intermediate read, G1c circular information flow, P4 lost update, G-single read skew,
//! G2-item write skew, G2 anti-dependency cycles over a predicate (phantoms), and PMP
//! (predicate many preceders). `docs/isolation.md` tabulates the outcomes.
//!
//! Where PostgreSQL blocks a statement on a row lock, vellum does not: writes are buffered
//! until commit and conflicts are found when the commit validates (except in pessimistic
//! mode, see `p4_lost_update_with_locking_reads_is_prevented_at_every_level`). Every
//! transaction begins before the first step of its interleaving, so snapshots are taken there.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::time::Duration;
use vellum::Isolation::{self, ReadCommitted, Serializable, Snapshot};
use vellum::{ConflictKind, ConflictReport, Db, Durability, Error, Options, Transaction, Version};

type BoxError = Box<dyn StdError + Send + Sync>;
type TestResult = Result<(), BoxError>;

/// The table every interleaving runs on.
const T: &str = "test";

/// A fresh database holding Hermitage's table: `test` with `1 => 10` and `2 => 20`.
fn hermitage() -> Result<(tempfile::TempDir, Db), BoxError> {
    let dir = tempfile::tempdir()?;
    let db = Db::open_with(dir.path(), Options::default().durability(Durability::None))?;
    db.create_table(T)?;
    db.transaction(|tx| {
        tx.put(T, "1", "10")?;
        tx.put(T, "2", "20")
    })?;
    Ok((dir, db))
}

/// [`hermitage`] plus the rows the predicate tests scan: `x1 => 10` and `x2 => 20`.
fn hermitage_with_prefix() -> Result<(tempfile::TempDir, Db), BoxError> {
    let (dir, db) = hermitage()?;
    db.transaction(|tx| {
        tx.put(T, "x1", "10")?;
        tx.put(T, "x2", "20")
    })?;
    Ok((dir, db))
}

fn begin(db: &Db, level: Isolation) -> Result<Transaction, Error> {
    db.tx().isolation(level).begin()
}

fn parse(value: Option<Vec<u8>>) -> Result<Option<i64>, BoxError> {
    match value {
        None => Ok(None),
        Some(v) => Ok(Some(String::from_utf8(v)?.parse()?)),
    }
}

/// Reads row `key` of `test` as a number.
fn read(tx: &Transaction, key: &str) -> Result<Option<i64>, BoxError> {
    parse(tx.get(T, key)?)
}

/// Reads row `key` of `test` as a number with `get_for_update`.
fn read_for_update(tx: &mut Transaction, key: &str) -> Result<Option<i64>, BoxError> {
    parse(tx.get_for_update(T, key)?)
}

fn write(tx: &mut Transaction, key: &str, value: i64) -> Result<(), Error> {
    tx.put(T, key, value.to_string())
}

/// Sum of the rows of `test` whose key starts with `x`: the predicate of the G2 tests.
fn sum_x(tx: &Transaction) -> Result<i64, BoxError> {
    let mut sum = 0;
    for row in tx.scan_prefix(T, "x")? {
        let (_, value) = row?;
        sum += String::from_utf8(value)?.parse::<i64>()?;
    }
    Ok(sum)
}

/// Every row of `test` as committed now, as `key=value` pairs in key order.
fn committed(db: &Db) -> Result<String, BoxError> {
    let tx = db.begin_read()?;
    let mut rows = BTreeMap::new();
    for row in tx.scan_all(T)? {
        let (key, value) = row?;
        rows.insert(String::from_utf8(key)?, String::from_utf8(value)?);
    }
    let pairs: Vec<String> = rows.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(pairs.join(" "))
}

/// The conflict a commit failed with; an error if it committed or failed some other way.
fn conflict(result: Result<Version, Error>) -> Result<ConflictReport, BoxError> {
    match result {
        Err(Error::Conflict(report)) => Ok(*report),
        Ok(v) => Err(format!("expected a conflict, but it committed at version {v}").into()),
        Err(e) => Err(format!("expected a conflict, got: {e}").into()),
    }
}

/// Asserts that a commit failed with a conflict of `kind` on row `key` of `test`, against the
/// commit at version `winner`.
fn assert_conflict(
    result: Result<Version, Error>,
    kind: ConflictKind,
    key: &str,
    winner: Version,
) -> TestResult {
    let report = conflict(result)?;
    assert_eq!(report.kind, kind, "{report}");
    assert_eq!(report.table, T, "{report}");
    assert_eq!(report.key.as_deref(), Some(key.as_bytes()), "{report}");
    assert_eq!(report.winner, winner, "{report}");
    assert!(report.snapshot < winner, "{report}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// G0: dirty write (write cycles). Two transactions write the same two rows. A dirty write
// would let the final state mix them (1 => 11 with 2 => 22, or 1 => 12 with 2 => 21).

fn g0_dirty_write(level: Isolation) -> TestResult {
    let (_dir, db) = hermitage()?;
    let mut t1 = begin(&db, level)?;
    let mut t2 = begin(&db, level)?;
    write(&mut t1, "1", 11)?;
    write(&mut t2, "1", 12)?; // PostgreSQL blocks here; vellum buffers the write
    assert_eq!(read(&t1, "1")?, Some(11), "T2's write does not touch T1's");
    assert_eq!(read(&t2, "1")?, Some(12));
    write(&mut t1, "2", 21)?;
    write(&mut t2, "2", 22)?;
    assert_eq!(
        committed(&db)?,
        "1=10 2=20",
        "nothing visible before commit"
    );
    let v1 = t1.commit()?;
    assert_eq!(committed(&db)?, "1=11 2=21");
    let r2 = t2.commit();
    match level {
        ReadCommitted => {
            // Last committer wins, on both rows: T2's writes replace T1's as a whole.
            assert!(r2? > v1);
            assert_eq!(committed(&db)?, "1=12 2=22");
        }
        Snapshot | Serializable => {
            assert_conflict(r2, ConflictKind::WriteWrite, "1", v1)?;
            assert_eq!(committed(&db)?, "1=11 2=21");
        }
    }
    Ok(())
}

#[test]
fn g0_dirty_write_is_prevented_under_read_committed() -> TestResult {
    g0_dirty_write(ReadCommitted)
}

#[test]
fn g0_dirty_write_is_prevented_under_snapshot() -> TestResult {
    g0_dirty_write(Snapshot)
}

#[test]
fn g0_dirty_write_is_prevented_under_serializable() -> TestResult {
    g0_dirty_write(Serializable)
}

// ---------------------------------------------------------------------------------------------
// G1a: aborted read. T2 must never see a write of T1, which rolls back.

fn g1a_aborted_read(level: Isolation) -> TestResult {
    let (_dir, db) = hermitage()?;
    let mut t1 = begin(&db, level)?;
    let mut t2 = begin(&db, level)?;
    write(&mut t1, "1", 101)?;
    assert_eq!(read(&t2, "1")?, Some(10));
    t1.rollback()?;
    let seen = read(&t2, "1")?;
    assert_eq!(seen, Some(10));
    // T2 acts on what it read (so the serializable commit validates its read of row 1).
    write(&mut t2, "3", seen.unwrap_or_default())?;
    t2.commit()?;
    assert_eq!(committed(&db)?, "1=10 2=20 3=10");
    Ok(())
}

#[test]
fn g1a_aborted_read_is_prevented_under_read_committed() -> TestResult {
    g1a_aborted_read(ReadCommitted)
}

#[test]
fn g1a_aborted_read_is_prevented_under_snapshot() -> TestResult {
    g1a_aborted_read(Snapshot)
}

#[test]
fn g1a_aborted_read_is_prevented_under_serializable() -> TestResult {
    g1a_aborted_read(Serializable)
}

// ---------------------------------------------------------------------------------------------
// G1b: intermediate read. T1 writes 101, then 11, then commits; T2 must never see 101.

fn g1b_intermediate_read(level: Isolation) -> TestResult {
    let (_dir, db) = hermitage()?;
    let mut t1 = begin(&db, level)?;
    let t2 = begin(&db, level)?;
    let snapshot = t2.snapshot_version();
    write(&mut t1, "1", 101)?;
    assert_eq!(read(&t2, "1")?, Some(10));
    write(&mut t1, "1", 11)?;
    t1.commit()?;
    let expected = match level {
        ReadCommitted => 11, // the newest committed value: T1's final one
        Snapshot | Serializable => 10,
    };
    assert_eq!(read(&t2, "1")?, Some(expected));
    assert_eq!(t2.commit()?, snapshot, "read-only: commits at its snapshot");
    assert_eq!(committed(&db)?, "1=11 2=20");
    Ok(())
}

#[test]
fn g1b_intermediate_read_is_prevented_under_read_committed() -> TestResult {
    g1b_intermediate_read(ReadCommitted)
}

#[test]
fn g1b_intermediate_read_is_prevented_under_snapshot() -> TestResult {
    g1b_intermediate_read(Snapshot)
}

#[test]
fn g1b_intermediate_read_is_prevented_under_serializable() -> TestResult {
    g1b_intermediate_read(Serializable)
}

// ---------------------------------------------------------------------------------------------
// G1c: circular information flow. Each transaction writes one row and reads the other's; a
// cycle of write-read dependencies would need each to see the other's uncommitted write.

fn g1c_circular_information_flow(level: Isolation) -> TestResult {
    let (_dir, db) = hermitage()?;
    let mut t1 = begin(&db, level)?;
    let mut t2 = begin(&db, level)?;
    write(&mut t1, "1", 11)?;
    write(&mut t2, "2", 22)?;
    assert_eq!(read(&t1, "2")?, Some(20));
    assert_eq!(read(&t2, "1")?, Some(10));
    let v1 = t1.commit()?;
    let r2 = t2.commit();
    match level {
        ReadCommitted | Snapshot => {
            r2?;
            assert_eq!(committed(&db)?, "1=11 2=22");
        }
        Serializable => {
            // No G1c either way; but each read a row the other wrote, which is a cycle of
            // anti-dependencies (G2): T2 read row 1 before T1 changed it, so it cannot commit
            // after T1.
            assert_conflict(r2, ConflictKind::ReadWrite, "1", v1)?;
            assert_eq!(committed(&db)?, "1=11 2=20");
        }
    }
    Ok(())
}

#[test]
fn g1c_circular_information_flow_is_prevented_under_read_committed() -> TestResult {
    g1c_circular_information_flow(ReadCommitted)
}

#[test]
fn g1c_circular_information_flow_is_prevented_under_snapshot() -> TestResult {
    g1c_circular_information_flow(Snapshot)
}

#[test]
fn g1c_circular_information_flow_is_prevented_under_serializable() -> TestResult {
    g1c_circular_information_flow(Serializable)
}

// ---------------------------------------------------------------------------------------------
// P4: lost update. Both read row 1 = 10; T1 adds 1, T2 adds 2. Run one after the other the
// row would end at 13.

fn p4_lost_update(level: Isolation) -> TestResult {
    let (_dir, db) = hermitage()?;
    let mut t1 = begin(&db, level)?;
    let mut t2 = begin(&db, level)?;
    let a = read(&t1, "1")?.ok_or("row 1 missing")?;
    let b = read(&t2, "1")?.ok_or("row 1 missing")?;
    assert_eq!((a, b), (10, 10));
    write(&mut t1, "1", a + 1)?;
    write(&mut t2, "1", b + 2)?;
    let v1 = t1.commit()?;
    let r2 = t2.commit();
    match level {
        ReadCommitted => {
            r2?;
            assert_eq!(committed(&db)?, "1=12 2=20", "T1's +1 is lost");
        }
        Snapshot | Serializable => {
            // Serializable reports WriteWrite too: write-write conflicts are checked before
            // the read set.
            assert_conflict(r2, ConflictKind::WriteWrite, "1", v1)?;
            assert_eq!(committed(&db)?, "1=11 2=20");
        }
    }
    Ok(())
}

#[test]
fn p4_lost_update_is_possible_under_read_committed() -> TestResult {
    p4_lost_update(ReadCommitted)
}

#[test]
fn p4_lost_update_is_prevented_under_snapshot() -> TestResult {
    p4_lost_update(Snapshot)
}

#[test]
fn p4_lost_update_is_prevented_under_serializable() -> TestResult {
    p4_lost_update(Serializable)
}

/// P4 with optimistic `get_for_update`: the commit fails if the key changed after the read, at
/// every level, so read committed loses no update either.
#[test]
fn p4_lost_update_with_get_for_update_is_prevented_at_every_level() -> TestResult {
    for level in [ReadCommitted, Snapshot, Serializable] {
        let (_dir, db) = hermitage()?;
        let mut t1 = begin(&db, level)?;
        let mut t2 = begin(&db, level)?;
        let a = read_for_update(&mut t1, "1")?.ok_or("row 1 missing")?;
        let b = read_for_update(&mut t2, "1")?.ok_or("row 1 missing")?;
        assert_eq!((a, b), (10, 10), "{level:?}");
        write(&mut t1, "1", a + 1)?;
        write(&mut t2, "1", b + 2)?;
        let v1 = t1.commit()?;
        // Read committed has no write-write check: the read-for-update check catches it.
        let kind = match level {
            ReadCommitted => ConflictKind::ReadWrite,
            Snapshot | Serializable => ConflictKind::WriteWrite,
        };
        assert_conflict(t2.commit(), kind, "1", v1)?;
        assert_eq!(committed(&db)?, "1=11 2=20", "{level:?}");
    }
    Ok(())
}

/// P4 in pessimistic mode: `get_for_update` locks the row, so T2's locking read waits for T1
/// to finish and then reads T1's committed value (the newest, even under snapshot isolation);
/// both commit and neither update is lost.
#[test]
fn p4_lost_update_with_locking_reads_is_prevented_at_every_level() -> TestResult {
    for level in [ReadCommitted, Snapshot, Serializable] {
        let (_dir, db) = hermitage()?;
        let mut t1 = db.tx().isolation(level).pessimistic().begin()?;
        assert_eq!(read_for_update(&mut t1, "1")?, Some(10));
        std::thread::scope(|s| -> TestResult {
            let t2 = s.spawn(|| -> Result<(i64, Version), BoxError> {
                let mut t2 = db.tx().isolation(level).pessimistic().begin()?;
                let b = read_for_update(&mut t2, "1")?.ok_or("row 1 missing")?;
                write(&mut t2, "1", b + 2)?;
                Ok((b, t2.commit()?))
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(!t2.is_finished(), "{level:?}: T2 waits for T1's lock");
            write(&mut t1, "1", 11)?;
            let v1 = t1.commit()?;
            let (seen, v2) = t2.join().map_err(|_| "T2 panicked")??;
            assert_eq!(seen, 11, "{level:?}: the locking read sees T1's commit");
            assert!(v2 > v1);
            Ok(())
        })?;
        assert_eq!(committed(&db)?, "1=13 2=20", "{level:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// G-single: read skew. T1 reads row 1, T2 moves 2 from row 2 to row 1 (sum stays 30) and
// commits, T1 reads row 2. Seeing 10 and 18 is a view no serial order produces.

fn g_single_read_skew(level: Isolation) -> TestResult {
    let (_dir, db) = hermitage()?;
    let t1 = begin(&db, level)?;
    let mut t2 = begin(&db, level)?;
    let snapshot = t1.snapshot_version();
    assert_eq!(read(&t1, "1")?, Some(10));
    assert_eq!(read(&t2, "1")?, Some(10));
    assert_eq!(read(&t2, "2")?, Some(20));
    write(&mut t2, "1", 12)?;
    write(&mut t2, "2", 18)?;
    t2.commit()?;
    let expected = match level {
        ReadCommitted => 18, // skew: 10 + 18 = 28
        Snapshot | Serializable => 20,
    };
    assert_eq!(read(&t1, "2")?, Some(expected));
    assert_eq!(t1.commit()?, snapshot, "read-only: commits at its snapshot");
    assert_eq!(committed(&db)?, "1=12 2=18");
    Ok(())
}

#[test]
fn g_single_read_skew_is_possible_under_read_committed() -> TestResult {
    g_single_read_skew(ReadCommitted)
}

#[test]
fn g_single_read_skew_is_prevented_under_snapshot() -> TestResult {
    g_single_read_skew(Snapshot)
}

#[test]
fn g_single_read_skew_is_prevented_under_serializable() -> TestResult {
    g_single_read_skew(Serializable)
}

/// G-single with a write: T1 acts on its skewed view, moving the whole total into row 2.
fn g_single_read_skew_with_a_write(level: Isolation) -> TestResult {
    let (_dir, db) = hermitage()?;
    let mut t1 = begin(&db, level)?;
    let mut t2 = begin(&db, level)?;
    let a = read(&t1, "1")?.ok_or("row 1 missing")?;
    assert_eq!(a, 10);
    write(&mut t2, "1", 12)?;
    write(&mut t2, "2", 18)?;
    let v2 = t2.commit()?;
    let b = read(&t1, "2")?.ok_or("row 2 missing")?;
    write(&mut t1, "1", 0)?;
    write(&mut t1, "2", a + b)?;
    let r1 = t1.commit();
    match level {
        ReadCommitted => {
            assert_eq!(b, 18);
            r1?;
            assert_eq!(committed(&db)?, "1=0 2=28", "the total fell from 30 to 28");
        }
        Snapshot | Serializable => {
            assert_eq!(b, 20);
            assert_conflict(r1, ConflictKind::WriteWrite, "1", v2)?;
            assert_eq!(committed(&db)?, "1=12 2=18");
        }
    }
    Ok(())
}

#[test]
fn g_single_read_skew_with_a_write_is_possible_under_read_committed() -> TestResult {
    g_single_read_skew_with_a_write(ReadCommitted)
}

#[test]
fn g_single_read_skew_with_a_write_is_prevented_under_snapshot() -> TestResult {
    g_single_read_skew_with_a_write(Snapshot)
}

#[test]
fn g_single_read_skew_with_a_write_is_prevented_under_serializable() -> TestResult {
    g_single_read_skew_with_a_write(Serializable)
}

// ---------------------------------------------------------------------------------------------
// G2-item: write skew. Invariant: row 1 + row 2 >= 0. Each transaction checks it on both rows
// and withdraws the whole sum, T1 from row 1 and T2 from row 2. Either alone leaves sum 0.

fn g2_item_write_skew(level: Isolation) -> TestResult {
    let (_dir, db) = hermitage()?;
    let mut t1 = begin(&db, level)?;
    let mut t2 = begin(&db, level)?;
    let a1 = read(&t1, "1")?.ok_or("row 1 missing")?;
    let a2 = read(&t1, "2")?.ok_or("row 2 missing")?;
    let b1 = read(&t2, "1")?.ok_or("row 1 missing")?;
    let b2 = read(&t2, "2")?.ok_or("row 2 missing")?;
    assert_eq!((a1, a2, b1, b2), (10, 20, 10, 20));
    write(&mut t1, "1", a1 - (a1 + a2))?;
    write(&mut t2, "2", b2 - (b1 + b2))?;
    let v1 = t1.commit()?;
    let r2 = t2.commit();
    match level {
        ReadCommitted | Snapshot => {
            r2?;
            assert_eq!(
                committed(&db)?,
                "1=-20 2=-10",
                "sum -30: the invariant is broken"
            );
        }
        Serializable => {
            assert_conflict(r2, ConflictKind::ReadWrite, "1", v1)?;
            assert_eq!(committed(&db)?, "1=-20 2=20", "sum 0: the invariant holds");
        }
    }
    Ok(())
}

#[test]
fn g2_item_write_skew_is_possible_under_read_committed() -> TestResult {
    g2_item_write_skew(ReadCommitted)
}

#[test]
fn g2_item_write_skew_is_possible_under_snapshot() -> TestResult {
    g2_item_write_skew(Snapshot)
}

#[test]
fn g2_item_write_skew_is_prevented_under_serializable() -> TestResult {
    g2_item_write_skew(Serializable)
}

/// G2-item with three transactions (Hermitage's "G2 with two anti-dependency edges"): T1
/// reads both rows; T2 adds 5 to row 2 and commits; T3 then sees T2's change but not T1's;
/// T1 zeroes row 1. T1 -rw-> T2 -wr-> T3 -rw-> T1 is a cycle: no serial order explains it.
fn g2_item_two_anti_dependency_edges(level: Isolation) -> TestResult {
    let (_dir, db) = hermitage()?;
    let mut t1 = begin(&db, level)?;
    assert_eq!(read(&t1, "1")?, Some(10));
    assert_eq!(read(&t1, "2")?, Some(20));
    let mut t2 = begin(&db, level)?;
    let b = read(&t2, "2")?.ok_or("row 2 missing")?;
    write(&mut t2, "2", b + 5)?;
    let v2 = t2.commit()?;
    let t3 = begin(&db, level)?;
    assert_eq!(read(&t3, "1")?, Some(10));
    assert_eq!(read(&t3, "2")?, Some(25));
    t3.commit()?;
    write(&mut t1, "1", 0)?;
    let r1 = t1.commit();
    match level {
        ReadCommitted | Snapshot => {
            r1?;
            assert_eq!(committed(&db)?, "1=0 2=25");
        }
        Serializable => {
            assert_conflict(r1, ConflictKind::ReadWrite, "2", v2)?;
            assert_eq!(committed(&db)?, "1=10 2=25");
        }
    }
    Ok(())
}

#[test]
fn g2_item_two_anti_dependency_edges_are_possible_under_read_committed() -> TestResult {
    g2_item_two_anti_dependency_edges(ReadCommitted)
}

#[test]
fn g2_item_two_anti_dependency_edges_are_possible_under_snapshot() -> TestResult {
    g2_item_two_anti_dependency_edges(Snapshot)
}

#[test]
fn g2_item_two_anti_dependency_edges_are_prevented_under_serializable() -> TestResult {
    g2_item_two_anti_dependency_edges(Serializable)
}

// ---------------------------------------------------------------------------------------------
// G2: anti-dependency cycles over a predicate (phantoms). Invariant: the rows whose key starts
// with `x` sum to at most 100. Each transaction sums them (30), then inserts a new `x` row of
// 70 (T1 `x3`, T2 `x4`): either alone leaves 100. T3 inserts `y1`, outside the predicate, and
// commits in between; it conflicts with nobody.

fn g2_predicate_write_skew(level: Isolation) -> TestResult {
    let (_dir, db) = hermitage_with_prefix()?;
    let mut t1 = begin(&db, level)?;
    let mut t2 = begin(&db, level)?;
    let mut t3 = begin(&db, level)?;
    assert_eq!(sum_x(&t1)?, 30);
    assert_eq!(sum_x(&t2)?, 30);
    write(&mut t1, "x3", 70)?;
    write(&mut t2, "x4", 70)?;
    write(&mut t3, "y1", 1)?;
    t3.commit()?;
    let v1 = t1.commit()?;
    let r2 = t2.commit();
    match level {
        ReadCommitted | Snapshot => {
            r2?;
            assert_eq!(
                committed(&db)?,
                "1=10 2=20 x1=10 x2=20 x3=70 x4=70 y1=1",
                "the x rows sum to 170: the invariant is broken"
            );
        }
        Serializable => {
            assert_conflict(r2, ConflictKind::Phantom, "x3", v1)?;
            assert_eq!(committed(&db)?, "1=10 2=20 x1=10 x2=20 x3=70 y1=1");
        }
    }
    Ok(())
}

#[test]
fn g2_predicate_write_skew_is_possible_under_read_committed() -> TestResult {
    g2_predicate_write_skew(ReadCommitted)
}

#[test]
fn g2_predicate_write_skew_is_possible_under_snapshot() -> TestResult {
    g2_predicate_write_skew(Snapshot)
}

#[test]
fn g2_predicate_write_skew_is_prevented_under_serializable() -> TestResult {
    g2_predicate_write_skew(Serializable)
}

/// PMP, predicate many preceders: T1 evaluates a range predicate (`x` ..< `y`) twice while
/// T2 inserts a matching row and commits in between. Seeing the new row only the second time
/// is a phantom read.
fn pmp_predicate_many_preceders(level: Isolation) -> TestResult {
    let (_dir, db) = hermitage_with_prefix()?;
    let t1 = begin(&db, level)?;
    let mut t2 = begin(&db, level)?;
    let keys = |tx: &Transaction| -> Result<Vec<Vec<u8>>, Error> {
        tx.scan(T, "x".."y")?.map(|r| r.map(|(k, _)| k)).collect()
    };
    assert_eq!(keys(&t1)?, [b"x1".to_vec(), b"x2".to_vec()]);
    write(&mut t2, "x3", 30)?;
    t2.commit()?;
    let second = keys(&t1)?;
    match level {
        ReadCommitted => assert_eq!(second, [b"x1".to_vec(), b"x2".to_vec(), b"x3".to_vec()]),
        Snapshot | Serializable => assert_eq!(second, [b"x1".to_vec(), b"x2".to_vec()]),
    }
    t1.commit()?;
    Ok(())
}

#[test]
fn pmp_predicate_many_preceders_is_possible_under_read_committed() -> TestResult {
    pmp_predicate_many_preceders(ReadCommitted)
}

#[test]
fn pmp_predicate_many_preceders_is_prevented_under_snapshot() -> TestResult {
    pmp_predicate_many_preceders(Snapshot)
}

#[test]
fn pmp_predicate_many_preceders_is_prevented_under_serializable() -> TestResult {
    pmp_predicate_many_preceders(Serializable)
}

// ---------------------------------------------------------------------------------------------
// Read-only transactions, and what the serializable read set covers.

/// A transaction that writes nothing is never validated: under snapshot and serializable it
/// commits at its snapshot even when every row, range and table name it read has changed.
/// That holds for one begun read-only and for a read-write one that happened to write nothing.
#[test]
fn read_only_transactions_never_abort_under_snapshot_and_serializable() -> TestResult {
    for level in [Snapshot, Serializable] {
        for read_only in [true, false] {
            let (_dir, db) = hermitage_with_prefix()?;
            let builder = db.tx().isolation(level);
            let reader = if read_only {
                builder.read_only().begin()?
            } else {
                builder.begin()?
            };
            let snapshot = reader.snapshot_version();
            let look = |tx: &Transaction| -> Result<String, BoxError> {
                Ok(format!(
                    "1={:?} 2={:?} 3={:?} sum_x={} other={} tables={:?}",
                    read(tx, "1")?,
                    read(tx, "2")?,
                    read(tx, "3")?,
                    sum_x(tx)?,
                    tx.table_exists("other")?,
                    tx.list_tables()?,
                ))
            };
            let before = look(&reader)?;
            assert_eq!(
                before,
                "1=Some(10) 2=Some(20) 3=None sum_x=30 other=false tables=[\"test\"]"
            );
            let mut writer = begin(&db, Serializable)?;
            write(&mut writer, "1", 11)?;
            writer.delete(T, "2")?;
            write(&mut writer, "3", 33)?;
            write(&mut writer, "x9", 99)?;
            writer.create_table("other")?;
            writer.commit()?;
            assert_eq!(look(&reader)?, before, "{level:?}: still its snapshot");
            assert_eq!(
                reader.commit()?,
                snapshot,
                "{level:?}, read-only {read_only}"
            );
            assert_eq!(db.stats().conflicts, 0);
            assert_eq!(db.stats().live_transactions, 0);
        }
    }
    Ok(())
}

/// T1 reads a row of `test` and writes a row of another table; T2 changes the row T1 read and
/// commits first. Serializable refuses T1's commit, naming the table and key it read: its
/// serial order is the commit order, where T1 comes after T2 and should have read 11.
/// Snapshot commits it (that history is serializable, in the order T1, T2).
#[test]
fn serializable_catches_a_read_write_dependency_across_two_tables() -> TestResult {
    for level in [Snapshot, Serializable] {
        let (_dir, db) = hermitage()?;
        db.create_table("copies")?;
        let mut t1 = begin(&db, level)?;
        let mut t2 = begin(&db, level)?;
        let a = read(&t1, "1")?.ok_or("row 1 missing")?;
        t1.put("copies", "1", a.to_string())?;
        write(&mut t2, "1", 11)?;
        let v2 = t2.commit()?;
        let r1 = t1.commit();
        match level {
            Snapshot => assert!(r1? > v2),
            _ => assert_conflict(r1, ConflictKind::ReadWrite, "1", v2)?,
        }
    }
    Ok(())
}

/// The same across tables with a range: T1 scans `x` rows of `test` and writes their sum into
/// another table; T2 inserts an `x` row.
#[test]
fn serializable_catches_a_phantom_across_two_tables() -> TestResult {
    let (_dir, db) = hermitage_with_prefix()?;
    db.create_table("totals")?;
    let mut t1 = begin(&db, Serializable)?;
    let mut t2 = begin(&db, Serializable)?;
    let sum = sum_x(&t1)?;
    t1.put("totals", "x", sum.to_string())?;
    write(&mut t2, "x3", 30)?;
    let v2 = t2.commit()?;
    assert_conflict(t1.commit(), ConflictKind::Phantom, "x3", v2)?;
    assert!(db.begin_read()?.get("totals", "x")?.is_none());
    Ok(())
}

/// Table-name lookups join the read set: T1 finds that table `late` does not exist and writes
/// elsewhere; T2 creates `late`. T1's commit fails with a read-write conflict on that table.
#[test]
fn serializable_catches_a_table_name_lookup_changed_by_a_later_commit() -> TestResult {
    let (_dir, db) = hermitage()?;
    let mut t1 = begin(&db, Serializable)?;
    let mut t2 = begin(&db, Serializable)?;
    assert!(!t1.table_exists("late")?);
    write(&mut t1, "late_exists", 0)?;
    t2.create_table("late")?;
    let v2 = t2.commit()?;
    let report = conflict(t1.commit())?;
    assert_eq!(report.kind, ConflictKind::ReadWrite, "{report}");
    assert_eq!(report.table, "late", "{report}");
    assert_eq!(report.key, None, "{report}");
    assert_eq!(report.winner, v2, "{report}");
    Ok(())
}

/// `table_version` is a read too: T1 copies the version of `test` into another table while T2
/// writes to `test` and commits first. In commit order T2 comes first, so T1 should have seen
/// T2's version, and a serializable commit of T1 should fail.
#[test]
fn serializable_catches_a_table_version_read_changed_by_a_later_commit() -> TestResult {
    let (_dir, db) = hermitage()?;
    db.create_table("seen")?;
    let mut t1 = begin(&db, Serializable)?;
    let mut t2 = begin(&db, Serializable)?;
    let version = t1.table_version(T)?;
    t1.put("seen", "test", version.to_string())?;
    write(&mut t2, "3", 30)?;
    t2.commit()?;
    assert!(
        matches!(t1.commit(), Err(Error::Conflict(_))),
        "T1 committed a table version that was already stale"
    );
    Ok(())
}
