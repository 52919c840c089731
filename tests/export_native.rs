//! The native export format: opened read-only, and restored into a new database.

use std::error::Error as StdError;
use vellum::{Db, Durability, Error, ExportFormat, ExportOptions, Options};

type TestResult = Result<(), Box<dyn StdError>>;

/// A key and its value.
type KeyValue = (Vec<u8>, Vec<u8>);

fn rows(snap: &vellum::Snapshot, table: &str) -> Result<Vec<KeyValue>, Error> {
    snap.scan_all(table)?.collect()
}

#[test]
fn a_native_export_opens_read_only_and_restores_into_a_working_database() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open_with(
        dir.path().join("db"),
        Options::default().durability(Durability::None),
    )?;
    db.create_table("a")?;
    db.create_table("b")?;
    for i in 0..100u32 {
        db.transaction(|tx| {
            tx.put("a", i.to_be_bytes(), [0xff, i as u8])?;
            tx.put("b", format!("k{i}"), format!("v{i}"))?;
            if i % 10 == 0 {
                tx.delete("a", (i / 2).to_be_bytes())?;
            }
            Ok::<_, Error>(())
        })?;
    }
    let snapshot = db.snapshot()?;
    let report = snapshot.export(
        dir.path().join("exports"),
        ExportOptions::new(ExportFormat::Native),
    )?;
    // Later commits do not reach the export.
    db.transaction(|tx| tx.put("a", "late", "x"))?;
    assert_eq!(report.manifest.format, "native");
    assert_eq!(
        report.rows,
        (rows(&snapshot, "a")?.len() + rows(&snapshot, "b")?.len()) as u64
    );

    let opened = Db::open_export(&report.path)?;
    assert_eq!(opened.version(), snapshot.version());
    assert_eq!(opened.list_tables()?, snapshot.list_tables()?);
    for t in ["a", "b"] {
        assert_eq!(rows(&opened, t)?, rows(&snapshot, t)?, "table {t}");
        assert_eq!(opened.table_version(t)?, snapshot.table_version(t)?);
    }

    let restored = Db::restore_export(
        &report.path,
        dir.path().join("restored"),
        Options::default(),
    )?;
    assert_eq!(restored.version(), snapshot.version());
    restored.transaction(|tx| tx.put("b", "new", "row"))?;
    let v = restored.version();
    assert!(
        v > snapshot.version(),
        "commits continue after the export's version"
    );
    drop(restored);
    let reopened = Db::open(dir.path().join("restored"))?;
    let r = reopened.snapshot()?;
    assert_eq!(r.get("b", "new")?, Some(b"row".to_vec()));
    assert_eq!(rows(&r, "a")?, rows(&snapshot, "a")?);
    assert!(
        matches!(
            Db::restore_export(
                &report.path,
                dir.path().join("restored"),
                Options::default()
            ),
            Err(Error::InvalidArgument(_))
        ),
        "restoring over an existing database is refused"
    );
    Ok(())
}

#[test]
fn a_damaged_native_export_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path().join("db"))?;
    db.create_table("t")?;
    db.transaction(|tx| tx.put("t", "k", "v"))?;
    let report = db.export(
        dir.path().join("x"),
        ExportOptions::new(ExportFormat::Native),
    )?;
    let file = report.path.join(&report.manifest.tables[0].files[0].path);
    let mut bytes = std::fs::read(&file)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&file, bytes)?;
    assert!(matches!(
        Db::open_export(&report.path),
        Err(Error::Corruption { .. })
    ));
    let json = dir.path().join("x").join("not-native");
    std::fs::create_dir_all(&json)?;
    let other = db.export(&json, ExportOptions::new(ExportFormat::JsonLines))?;
    assert!(matches!(
        Db::open_export(&other.path),
        Err(Error::InvalidArgument(_))
    ));
    Ok(())
}
