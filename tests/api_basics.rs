//! Black-box behaviour of the basic API: tables, reads, writes, scans, versions, reopen.

use std::error::Error as StdError;
use vellum::{ConflictKind, Db, Error, Version};

type TestResult = Result<(), Box<dyn StdError>>;

#[test]
fn writes_are_visible_after_commit_and_survive_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    {
        let db = Db::open(&path)?;
        db.create_table("a")?;
        db.create_table("b")?;
        let mut tx = db.begin()?;
        tx.put("a", "k1", "v1")?;
        tx.put("b", "k2", "v2")?;
        assert_eq!(
            tx.get("a", "k1")?,
            Some(b"v1".to_vec()),
            "read your own writes"
        );
        let other = db.begin_read()?;
        assert_eq!(other.get("a", "k1")?, None, "not visible before commit");
        let v = tx.commit()?;
        assert_eq!(db.version(), v);
        assert_eq!(other.get("a", "k1")?, None, "old snapshot stays old");
        assert_eq!(db.begin_read()?.get("b", "k2")?, Some(b"v2".to_vec()));
    }
    let db = Db::open(&path)?;
    assert_eq!(db.list_tables()?, vec!["a".to_string(), "b".to_string()]);
    let tx = db.begin_read()?;
    assert_eq!(tx.get("a", "k1")?, Some(b"v1".to_vec()));
    assert_eq!(tx.get("b", "k2")?, Some(b"v2".to_vec()));
    Ok(())
}

#[test]
fn scans_merge_own_writes_and_respect_bounds() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    db.create_table("t")?;
    db.transaction(|tx| {
        for k in ["a1", "a2", "a3", "b1"] {
            tx.put("t", k, k)?;
        }
        Ok::<_, Error>(())
    })?;
    let mut tx = db.begin()?;
    tx.delete("t", "a2")?;
    tx.put("t", "a25", "new")?;
    let keys = |it: vellum::Scan<'_>| -> Result<Vec<String>, Error> {
        it.map(|r| r.map(|(k, _)| String::from_utf8_lossy(&k).into_owned()))
            .collect()
    };
    assert_eq!(keys(tx.scan_prefix("t", "a")?)?, vec!["a1", "a25", "a3"]);
    assert_eq!(keys(tx.scan("t", "a2".."b1")?)?, vec!["a25", "a3"]);
    assert_eq!(keys(tx.scan("t", "b".."a")?)?, Vec::<String>::new());
    assert_eq!(keys(tx.scan_all("t")?)?.len(), 4);
    Ok(())
}

#[test]
fn first_committer_wins_with_a_report() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    db.create_table("t")?;
    let mut t1 = db.begin()?;
    let mut t2 = db.begin()?;
    t1.put("t", "k", "1")?;
    t2.put("t", "k", "2")?;
    let won = t1.commit()?;
    let err = t2.commit().err().ok_or("second commit must fail")?;
    assert!(err.is_retryable());
    let report = err.conflict().ok_or("expected a conflict")?;
    assert_eq!(report.kind, ConflictKind::WriteWrite);
    assert_eq!(report.table, "t");
    assert_eq!(report.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(report.winner, won);
    assert!(report.snapshot < won);
    Ok(())
}

#[test]
fn version_counters_and_compare_and_swap() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    db.create_table("t")?;
    let created = db.version();
    let mut tx = db.begin()?;
    assert_eq!(tx.table_version("t")?, created);
    tx.put_if_version("t", "k", "v", Version::ZERO)?;
    let v1 = tx.commit()?;
    let tx = db.begin_read()?;
    let got = tx.get_versioned("t", "k")?.ok_or("missing")?;
    assert_eq!(got.version, Some(v1));
    assert_eq!(tx.table_version("t")?, v1);
    drop(tx);
    let mut stale = db.begin()?;
    stale.put_if_version("t", "k", "w", Version::ZERO)?;
    let err = stale
        .commit()
        .err()
        .ok_or("CAS on a stale version must fail")?;
    assert!(matches!(
        err.conflict().map(|r| &r.kind),
        Some(ConflictKind::KeyVersion { .. })
    ));
    let mut tv = db.begin()?;
    tv.expect_table_version("t", created)?;
    tv.put("t", "other", "x")?;
    assert!(matches!(
        tv.commit()
            .err()
            .and_then(|e| e.conflict().map(|r| r.kind.clone())),
        Some(ConflictKind::TableVersion { .. })
    ));
    assert_eq!(db.stats().live_transactions, 0);
    Ok(())
}

#[test]
fn bad_input_gets_typed_errors() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    db.create_table("t")?;
    assert!(matches!(db.create_table("t"), Err(Error::TableExists(_))));
    assert!(matches!(
        db.create_table(""),
        Err(Error::InvalidArgument(_))
    ));
    let mut tx = db.begin()?;
    assert!(matches!(
        tx.put("nope", "k", "v"),
        Err(Error::TableNotFound(_))
    ));
    let big_key = vec![0u8; vellum::KEY_SIZE_MAX + 1];
    assert!(matches!(
        tx.put("t", &big_key, "v"),
        Err(Error::KeyTooLarge { .. })
    ));
    let mut ro = db.begin_read()?;
    assert!(matches!(ro.put("t", "k", "v"), Err(Error::ReadOnly)));
    assert!(matches!(Db::open(dir.path()), Err(Error::Locked(_))));
    let other = tempfile::tempdir()?;
    std::fs::write(other.path().join("notes.txt"), "hello")?;
    assert!(matches!(
        Db::open(other.path()),
        Err(Error::NotADatabase(_))
    ));
    Ok(())
}
