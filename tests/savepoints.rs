//! Savepoints through the public API: `rollback_to` undoes exactly the writes (puts, deletes,
//! overwrites, table creation and dropping) and preconditions made after the savepoint, keeps
//! the earlier ones, nests, can be repeated; `release` keeps writes; a commit after
//! `rollback_to` writes exactly the surviving writes; the transaction-size accounting follows.

mod common;

use common::{read_state, Model, Rows, TestResult};
use std::time::Duration;
use vellum::{
    ConflictKind, Db, Durability, Error, Options, Transaction, Version, CHANGE_OVERHEAD_BYTES,
    TRANSACTION_BYTES_MAX, VALUE_SIZE_MAX,
};

fn open_db() -> Result<(tempfile::TempDir, Db), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let opts = Options::default().durability(Durability::None);
    let db = Db::open_with(dir.path().join("db"), opts)?;
    db.create_table("t")?;
    Ok((dir, db))
}

/// A model built from `(table, [(key, value)])`.
fn model(tables: &[(&str, &[(&str, &str)])]) -> Model {
    tables
        .iter()
        .map(|(name, rows)| {
            let rows: Rows = rows
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
            (name.to_string(), rows)
        })
        .collect()
}

/// Every row of `table` as the transaction sees it (snapshot plus own writes).
fn rows(tx: &Transaction, table: &str) -> Result<Vec<(String, String)>, Error> {
    tx.scan_all(table)?
        .map(|r| {
            r.map(|(k, v)| {
                (
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn get(tx: &Transaction, table: &str, key: &str) -> Result<Option<String>, Error> {
    Ok(tx
        .get(table, key)?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

fn not_found(r: Result<(), Error>, name: &str) -> bool {
    matches!(r, Err(Error::SavepointNotFound(n)) if n == name)
}

#[test]
fn rollback_to_undoes_every_kind_of_write_after_the_savepoint_and_keeps_earlier_ones() -> TestResult
{
    let (_dir, db) = open_db()?;
    db.transaction(|tx| {
        for k in ["keep", "gone", "over"] {
            tx.put("t", k, "0")?;
        }
        Ok::<_, Error>(())
    })?;

    let mut tx = db.begin()?;
    // Before the savepoint: a new key, an overwrite of a committed key, a delete.
    tx.put("t", "early", "e")?;
    tx.put("t", "over", "early-over")?;
    tx.delete("t", "keep")?;
    tx.savepoint("sp")?;
    // After it: every kind of change.
    tx.put("t", "late", "l")?; // new key
    tx.delete("t", "gone")?; // delete of a committed key
    tx.put("t", "over", "late-over")?; // overwrite of an earlier own write
    tx.delete("t", "early")?; // delete of an earlier own write
    tx.put("t", "keep", "revived")?; // put over an earlier own delete
    tx.create_table("fresh")?; // a table created in the transaction
    tx.put("fresh", "x", "y")?; // and written
    assert_eq!(
        rows(&tx, "t")?,
        pairs(&[("keep", "revived"), ("late", "l"), ("over", "late-over")])
    );
    assert!(tx.table_exists("fresh")?);

    tx.rollback_to("sp")?;
    assert_eq!(get(&tx, "t", "late")?, None);
    assert_eq!(get(&tx, "t", "gone")?.as_deref(), Some("0"));
    assert_eq!(get(&tx, "t", "over")?.as_deref(), Some("early-over"));
    assert_eq!(get(&tx, "t", "early")?.as_deref(), Some("e"));
    assert_eq!(get(&tx, "t", "keep")?, None, "the earlier delete stays");
    assert_eq!(
        rows(&tx, "t")?,
        pairs(&[("early", "e"), ("gone", "0"), ("over", "early-over")])
    );
    assert!(!tx.table_exists("fresh")?);
    assert_eq!(tx.list_tables()?, vec!["t".to_string()]);
    assert!(matches!(tx.get("fresh", "x"), Err(Error::TableNotFound(_))));

    let before = db.version();
    tx.commit()?;
    assert!(db.version() > before);
    assert_eq!(
        read_state(&db)?,
        model(&[(
            "t",
            &[("early", "e"), ("gone", "0"), ("over", "early-over")]
        )]),
        "the commit wrote exactly the surviving writes"
    );
    assert_eq!(db.stats().live_transactions, 0);
    Ok(())
}

#[test]
fn a_table_created_after_a_savepoint_can_be_created_again_after_rolling_back() -> TestResult {
    let (_dir, db) = open_db()?;
    let mut tx = db.begin()?;
    tx.savepoint("sp")?;
    tx.create_table("fresh")?;
    tx.put("fresh", "a", "first")?;
    tx.rollback_to("sp")?;
    tx.create_table("fresh")?;
    tx.put("fresh", "b", "second")?;
    assert_eq!(rows(&tx, "fresh")?, pairs(&[("b", "second")]));
    tx.commit()?;
    assert_eq!(
        read_state(&db)?,
        model(&[("fresh", &[("b", "second")]), ("t", &[])])
    );
    Ok(())
}

#[test]
fn rolling_back_a_table_drop_restores_the_table_and_the_rows_staged_in_it() -> TestResult {
    let (_dir, db) = open_db()?;
    db.transaction(|tx| tx.put("t", "committed", "c"))?;
    let mut tx = db.begin()?;
    tx.put("t", "staged", "s")?;
    tx.savepoint("sp")?;
    tx.drop_table("t")?;
    assert!(!tx.table_exists("t")?);
    tx.rollback_to("sp")?;
    assert!(tx.table_exists("t")?);
    assert_eq!(
        rows(&tx, "t")?,
        pairs(&[("committed", "c"), ("staged", "s")])
    );
    tx.commit()?;
    assert_eq!(
        read_state(&db)?,
        model(&[("t", &[("committed", "c"), ("staged", "s")])])
    );
    Ok(())
}

#[test]
fn nested_savepoints_rolling_back_to_an_outer_one_discards_the_inner_ones() -> TestResult {
    let (_dir, db) = open_db()?;
    let mut tx = db.begin()?;
    tx.put("t", "base", "0")?;
    tx.savepoint("sp1")?;
    tx.put("t", "a", "1")?;
    tx.savepoint("sp2")?;
    tx.put("t", "b", "2")?;
    tx.savepoint("sp3")?;
    tx.put("t", "c", "3")?;

    // To the middle one: sp3 is discarded, sp2 stays.
    tx.rollback_to("sp2")?;
    assert_eq!(rows(&tx, "t")?, pairs(&[("a", "1"), ("base", "0")]));
    assert!(not_found(tx.rollback_to("sp3"), "sp3"));
    tx.put("t", "d", "4")?;
    tx.rollback_to("sp2")?;
    assert_eq!(rows(&tx, "t")?, pairs(&[("a", "1"), ("base", "0")]));

    // To the outer one: sp2 is discarded, sp1 stays.
    tx.rollback_to("sp1")?;
    assert_eq!(rows(&tx, "t")?, pairs(&[("base", "0")]));
    let r = tx.rollback_to("sp2");
    assert!(not_found(r, "sp2"));
    let r = tx.release("sp2");
    assert!(not_found(r, "sp2"));

    // The failed calls changed nothing, and sp1 still works.
    tx.put("t", "e", "5")?;
    tx.savepoint("sp2")?;
    tx.put("t", "f", "6")?;
    tx.rollback_to("sp1")?;
    assert_eq!(rows(&tx, "t")?, pairs(&[("base", "0")]));
    tx.put("t", "g", "7")?;
    tx.commit()?;
    assert_eq!(
        read_state(&db)?,
        model(&[("t", &[("base", "0"), ("g", "7")])])
    );
    Ok(())
}

#[test]
fn rollback_to_the_same_savepoint_twice_works() -> TestResult {
    let (_dir, db) = open_db()?;
    db.transaction(|tx| tx.put("t", "k", "committed"))?;
    let mut tx = db.begin()?;
    tx.savepoint("sp")?;
    tx.put("t", "k", "one")?;
    tx.put("t", "a", "one")?;
    tx.rollback_to("sp")?;
    assert_eq!(get(&tx, "t", "k")?.as_deref(), Some("committed"));
    tx.rollback_to("sp")?; // nothing to undo: a no-op
    tx.put("t", "k", "two")?;
    tx.delete("t", "k")?;
    tx.put("t", "b", "two")?;
    tx.rollback_to("sp")?;
    assert_eq!(rows(&tx, "t")?, pairs(&[("k", "committed")]));
    tx.put("t", "c", "three")?;
    tx.commit()?;
    assert_eq!(
        read_state(&db)?,
        model(&[("t", &[("c", "three"), ("k", "committed")])])
    );
    Ok(())
}

#[test]
fn release_keeps_the_writes_and_forgets_the_savepoint_and_later_ones() -> TestResult {
    let (_dir, db) = open_db()?;
    let mut tx = db.begin()?;
    tx.savepoint("sp1")?;
    tx.put("t", "a", "1")?;
    tx.savepoint("sp2")?;
    tx.put("t", "b", "2")?;
    tx.release("sp1")?;
    assert!(not_found(tx.rollback_to("sp1"), "sp1"));
    assert!(not_found(tx.rollback_to("sp2"), "sp2"), "released with sp1");
    assert_eq!(rows(&tx, "t")?, pairs(&[("a", "1"), ("b", "2")]));
    tx.commit()?;
    assert_eq!(read_state(&db)?, model(&[("t", &[("a", "1"), ("b", "2")])]));

    // Releasing an inner savepoint keeps the outer one, which still undoes everything after it.
    let mut tx = db.begin()?;
    tx.savepoint("outer")?;
    tx.put("t", "c", "3")?;
    tx.savepoint("inner")?;
    tx.put("t", "d", "4")?;
    tx.release("inner")?;
    assert!(not_found(tx.release("inner"), "inner"));
    assert_eq!(get(&tx, "t", "d")?.as_deref(), Some("4"));
    tx.rollback_to("outer")?;
    assert_eq!(rows(&tx, "t")?, pairs(&[("a", "1"), ("b", "2")]));
    tx.commit()?;
    assert_eq!(read_state(&db)?, model(&[("t", &[("a", "1"), ("b", "2")])]));
    Ok(())
}

#[test]
fn a_reused_name_hides_the_earlier_savepoint_until_released() -> TestResult {
    let (_dir, db) = open_db()?;
    let mut tx = db.begin()?;
    tx.savepoint("x")?;
    tx.put("t", "a", "1")?;
    tx.savepoint("x")?;
    tx.put("t", "b", "2")?;
    tx.rollback_to("x")?; // the later one
    assert_eq!(rows(&tx, "t")?, pairs(&[("a", "1")]));
    tx.release("x")?; // releases the later one only
    tx.put("t", "c", "3")?;
    tx.rollback_to("x")?; // the earlier one
    assert_eq!(rows(&tx, "t")?, Vec::new());
    tx.release("x")?;
    assert!(not_found(tx.rollback_to("x"), "x"));
    Ok(())
}

#[test]
fn an_unknown_savepoint_is_an_error_that_leaves_the_transaction_usable() -> TestResult {
    let (_dir, db) = open_db()?;
    let mut tx = db.begin()?;
    tx.put("t", "a", "1")?;
    let r = tx.rollback_to("nope");
    assert!(not_found(r, "nope"));
    let err = tx
        .release("nope")
        .err()
        .ok_or("release of an unknown name")?;
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("nope"), "{err}");
    tx.put("t", "b", "2")?;
    tx.commit()?;
    assert_eq!(read_state(&db)?, model(&[("t", &[("a", "1"), ("b", "2")])]));
    Ok(())
}

#[test]
fn a_rolled_back_precondition_no_longer_fails_the_commit() -> TestResult {
    let (_dir, db) = open_db()?;
    db.transaction(|tx| tx.put("t", "k", "v1"))?;
    let v1 = db
        .begin_read()?
        .get_versioned("t", "k")?
        .and_then(|v| v.version)
        .ok_or("k was committed")?;

    // Without the rollback, the stale precondition fails the commit.
    let mut tx = db.begin()?;
    tx.put_if_version("t", "k", "cas", Version::ZERO)?;
    let r = tx.commit();
    assert!(
        matches!(&r, Err(Error::Conflict(c)) if matches!(c.kind, ConflictKind::KeyVersion { .. })),
        "{r:?}"
    );

    let mut tx = db.begin()?;
    tx.put("t", "other", "kept")?;
    tx.put_if_version("t", "k", "good-cas", v1)?; // holds: kept
    tx.savepoint("sp")?;
    tx.put_if_version("t", "k2", "bad-cas", Version(v1.0 + 1000))?; // fails: rolled back
    tx.expect_table_version("t", Version::ZERO)?; // fails: rolled back
    tx.rollback_to("sp")?;
    tx.commit()?;
    assert_eq!(
        read_state(&db)?,
        model(&[("t", &[("k", "good-cas"), ("other", "kept")])])
    );

    // The precondition made before the savepoint still counts.
    let mut tx = db.begin()?;
    tx.put_if_version("t", "k", "stale", v1)?; // k is newer than v1 now
    tx.savepoint("sp")?;
    tx.put("t", "z", "z")?;
    tx.rollback_to("sp")?;
    let r = tx.commit();
    assert!(
        matches!(&r, Err(Error::Conflict(c)) if matches!(c.kind, ConflictKind::KeyVersion { .. })),
        "{r:?}"
    );
    Ok(())
}

#[test]
fn rolling_back_every_write_makes_the_commit_write_nothing() -> TestResult {
    let (_dir, db) = open_db()?;
    db.transaction(|tx| tx.put("t", "k", "v"))?;
    let before = db.version();
    let mut tx = db.begin()?;
    tx.savepoint("start")?;
    tx.put("t", "k", "changed")?;
    tx.delete("t", "k")?;
    tx.create_table("fresh")?;
    tx.rollback_to("start")?;
    let v = tx.commit()?;
    assert_eq!(
        v, before,
        "nothing to write: the commit returns the snapshot version"
    );
    assert_eq!(db.version(), before);
    assert_eq!(read_state(&db)?, model(&[("t", &[("k", "v")])]));
    Ok(())
}

#[test]
fn rolled_back_writes_of_a_pessimistic_transaction_keep_their_locks() -> TestResult {
    // Documented: savepoints undo writes, not locks.
    let (_dir, db) = open_db()?;
    let mut tx = db.tx().pessimistic().begin()?;
    tx.savepoint("sp")?;
    tx.put("t", "k", "v")?;
    tx.rollback_to("sp")?;
    let mut probe = db
        .tx()
        .pessimistic()
        .lock_timeout(Duration::from_millis(50))
        .begin()?;
    let r = probe.put("t", "k", "probe");
    assert!(matches!(r, Err(Error::LockTimeout { .. })), "{r:?}");
    tx.commit()?;
    probe.put("t", "k", "probe")?;
    probe.commit()?;
    assert_eq!(read_state(&db)?, model(&[("t", &[("k", "probe")])]));
    Ok(())
}

/// Bytes a change counts toward the transaction limit.
fn change(key: &str, value_len: usize) -> usize {
    CHANGE_OVERHEAD_BYTES + key.len() + value_len
}

/// Stages puts of `value` (64 MiB) under 4-byte keys from `first` on, then one put under `rest`
/// that brings the staged total to exactly the limit, given `used` bytes already staged.
fn fill_to_limit(
    tx: &mut Transaction,
    value: &[u8],
    mut used: usize,
    first: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut i = first;
    while used + change("k000", value.len()) + change("rest", 0) <= TRANSACTION_BYTES_MAX {
        let key = format!("k{i:03}");
        tx.put("t", &key, value)?;
        used += change(&key, value.len());
        i += 1;
    }
    let rest = TRANSACTION_BYTES_MAX - used - change("rest", 0);
    let last = value.get(..rest).ok_or("the remainder exceeds one value")?;
    tx.put("t", "rest", last)?;
    Ok(())
}

/// True if the transaction is staged to exactly the limit: one more (14-byte) change is
/// refused with a size of exactly limit + 14.
fn at_limit(tx: &mut Transaction) -> bool {
    let r = tx.put("t", "x", "");
    matches!(r, Err(Error::TransactionTooLarge { size, max })
        if size == TRANSACTION_BYTES_MAX + change("x", 0) && max == TRANSACTION_BYTES_MAX)
}

#[test]
fn rollback_to_restores_the_transaction_size_accounting() -> TestResult {
    // Stages about 512 MiB (like the size-limit test of tests/transactions.rs), several times.
    let (_dir, db) = open_db()?;
    let value = vec![7u8; VALUE_SIZE_MAX];
    let mut tx = db.begin()?;
    tx.put("t", "base", "b")?;
    let base = change("base", 1);
    tx.savepoint("sp")?;

    // To the limit, roll back, and to the limit again: the same budget both times.
    fill_to_limit(&mut tx, &value, base, 0)?;
    assert!(at_limit(&mut tx), "filled to exactly the limit");
    tx.rollback_to("sp")?;
    fill_to_limit(&mut tx, &value, base, 0)?;
    assert!(
        at_limit(&mut tx),
        "rolling back gave back exactly what was staged"
    );
    tx.rollback_to("sp")?;

    // An overwrite after a savepoint, rolled back, counts the overwritten value again.
    tx.put("t", "k000", &value)?;
    tx.savepoint("sp2")?;
    tx.put("t", "k000", "")?; // shrinks the transaction by almost 64 MiB
    tx.delete("t", "k000")?;
    tx.rollback_to("sp2")?;
    fill_to_limit(&mut tx, &value, base + change("k000", value.len()), 1)?;
    assert!(at_limit(&mut tx), "the 64 MiB value counts again");
    tx.rollback_to("sp")?;

    // A dropped table's staged rows, restored by a rollback, count again.
    tx.put("t", "k000", &value)?;
    tx.savepoint("sp3")?;
    tx.drop_table("t")?;
    tx.rollback_to("sp3")?;
    fill_to_limit(&mut tx, &value, base + change("k000", value.len()), 1)?;
    assert!(
        at_limit(&mut tx),
        "the rows staged before the drop count again"
    );
    drop(value);

    // Back to the first savepoint: only `base` commits.
    tx.rollback_to("sp")?;
    tx.commit()?;
    assert_eq!(read_state(&db)?, model(&[("t", &[("base", "b")])]));
    Ok(())
}
