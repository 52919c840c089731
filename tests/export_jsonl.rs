//! JSON Lines exports on the real file system.
//!
//! * An export of several tables (text and binary keys and values, JSON-special characters,
//!   an empty table, a dropped table, names with `/`, spaces, `%` and non-ASCII letters) holds
//!   exactly the rows of the snapshot it was taken from, with the versions `get_versioned`
//!   reports; its manifest describes it exactly (commit version, rows, table versions, file
//!   sizes and CRC-32C of the files as they are on disk); `LATEST` names it.
//! * A second export after more commits gets a new directory, `LATEST` moves to it, and the
//!   first export is untouched byte for byte.
//! * Online: writer threads keep committing bank transfers (and background checkpoints run)
//!   while a snapshot is exported; the progress callback blocks until more transfers have
//!   committed, so the export provably overlaps commits. The exported balances sum to the
//!   invariant total, match the ledger exported with them, and equal what the snapshot read.
//! * The progress callback is called after every table and every `PROGRESS_EVERY_ROWS` rows,
//!   and its final call reports the report's rows and bytes.

use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vellum::export::{latest_export, Manifest, MANIFEST_VERSION, PROGRESS_EVERY_ROWS};
use vellum::{
    Db, Durability, Error, ExportFormat, ExportOptions, ExportProgress, ExportReport, Options,
    Snapshot, Transaction, Version,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// One row of an exported `.jsonl` file, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    key: Vec<u8>,
    value: Vec<u8>,
    version: u64,
}

/// Decodes `field` of a row object using `<field>_encoding`; base64 is only allowed for bytes
/// that are not valid UTF-8 (the format writes UTF-8 text wherever it can).
fn decode_field(obj: &serde_json::Map<String, Value>, field: &str) -> Result<Vec<u8>, String> {
    let text = obj
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{field}` missing or not a string"))?;
    let encoding = obj
        .get(&format!("{field}_encoding"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{field}_encoding` missing or not a string"))?;
    match encoding {
        "utf8" => Ok(text.as_bytes().to_vec()),
        "base64" => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("`{field}` is not base64: {e}"))?;
            if std::str::from_utf8(&bytes).is_ok() {
                return Err(format!(
                    "`{field}` is valid UTF-8 but was written as base64"
                ));
            }
            Ok(bytes)
        }
        other => Err(format!("unknown encoding `{other}` for `{field}`")),
    }
}

/// Parses a whole `.jsonl` file: one object per line, each line ending in `\n`, keys strictly
/// increasing.
fn parse_jsonl(data: &[u8]) -> Result<Vec<Row>, String> {
    let mut rows: Vec<Row> = Vec::new();
    if data.is_empty() {
        return Ok(rows);
    }
    let body = data
        .strip_suffix(b"\n")
        .ok_or("the file does not end with a newline")?;
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let parsed: Value =
            serde_json::from_slice(line).map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
        let obj = parsed
            .as_object()
            .ok_or_else(|| format!("line {}: not an object", i + 1))?;
        if obj.len() != 5 {
            return Err(format!(
                "line {}: {} fields, expected 5: {obj:?}",
                i + 1,
                obj.len()
            ));
        }
        let key = decode_field(obj, "key").map_err(|e| format!("line {}: {e}", i + 1))?;
        let value = decode_field(obj, "value").map_err(|e| format!("line {}: {e}", i + 1))?;
        let version = obj
            .get("version")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("line {}: `version` missing or not a u64", i + 1))?;
        if let Some(prev) = rows.last() {
            if prev.key >= key {
                return Err(format!("line {}: keys not strictly increasing", i + 1));
            }
        }
        rows.push(Row {
            key,
            value,
            version,
        });
    }
    Ok(rows)
}

/// Every regular file directly in `dir`: name -> bytes.
fn dir_contents(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>, Box<dyn std::error::Error>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            entry.file_type()?.is_file(),
            "{}: unexpected non-file entry {name}",
            dir.display()
        );
        out.insert(name, std::fs::read(entry.path())?);
    }
    Ok(out)
}

/// Entry names directly in `dir`, sorted.
fn names_in(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        out.push(entry?.file_name().to_string_lossy().into_owned());
    }
    out.sort();
    Ok(out)
}

/// Checks the export in `dir` against `snap`: the manifest (as reported and as on disk), every
/// file's size and CRC-32C, every row and its version, and that the directory holds exactly the
/// manifest and the listed files. Returns the total rows.
fn check_export(
    dir: &Path,
    manifest: &Manifest,
    snap: &Snapshot,
) -> Result<u64, Box<dyn std::error::Error>> {
    let on_disk: Manifest = serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?)?;
    assert_eq!(
        &on_disk, manifest,
        "manifest on disk differs from the report's"
    );
    assert_eq!(manifest.manifest_version, MANIFEST_VERSION);
    assert_eq!(manifest.format, "jsonl");
    assert_eq!(manifest.commit_version, snap.version().get());
    let tables = snap.list_tables()?;
    let listed: Vec<String> = manifest.tables.iter().map(|t| t.name.clone()).collect();
    assert_eq!(listed, tables, "manifest tables differ from the snapshot's");

    let mut expected_files = vec!["manifest.json".to_string()];
    let mut total = 0;
    for entry in &manifest.tables {
        assert_eq!(
            entry.files.len(),
            1,
            "table {}: one file expected",
            entry.name
        );
        let file = &entry.files[0];
        assert!(
            !file.path.contains('/')
                && !file.path.starts_with('.')
                && file.path.ends_with(".jsonl"),
            "table {}: file name {:?} is not a plain .jsonl name",
            entry.name,
            file.path
        );
        expected_files.push(file.path.clone());
        let data = std::fs::read(dir.join(&file.path))?;
        assert_eq!(data.len() as u64, file.bytes, "table {}: size", entry.name);
        assert_eq!(
            format!("{:08x}", crc32c::crc32c(&data)),
            file.crc32c,
            "table {}: crc32c",
            entry.name
        );
        let rows = parse_jsonl(&data).map_err(|e| format!("table {}: {e}", entry.name))?;
        assert_eq!(
            rows.len() as u64,
            entry.rows,
            "table {}: row count",
            entry.name
        );
        assert_eq!(
            entry.table_version,
            snap.table_version(&entry.name)?.get(),
            "table {}: table version",
            entry.name
        );
        let want = snap
            .scan_all(&entry.name)?
            .collect::<Result<Vec<(Vec<u8>, Vec<u8>)>, Error>>()?;
        let got: Vec<(Vec<u8>, Vec<u8>)> = rows
            .iter()
            .map(|r| (r.key.clone(), r.value.clone()))
            .collect();
        assert!(
            got == want,
            "table {}: exported rows differ from the snapshot's",
            entry.name
        );
        for row in &rows {
            let versioned = snap.get_versioned(&entry.name, &row.key)?.ok_or_else(|| {
                format!("table {}: exported row missing in the snapshot", entry.name)
            })?;
            assert_eq!(
                versioned.version,
                Some(Version(row.version)),
                "table {}: row version",
                entry.name
            );
            assert!(row.version <= manifest.commit_version);
        }
        total += entry.rows;
    }
    expected_files.sort();
    assert_eq!(
        names_in(dir)?,
        expected_files,
        "{}: unexpected entries",
        dir.display()
    );
    Ok(total)
}

/// Checks the report's own fields against the export it describes.
fn check_report(report: &ExportReport, target: &Path, snap: &Snapshot) -> TestResult {
    assert_eq!(report.version, snap.version());
    assert_eq!(report.manifest.commit_version, report.version.get());
    assert_eq!(report.path.parent(), Some(target));
    let name = report
        .path
        .file_name()
        .ok_or("report path has no name")?
        .to_string_lossy()
        .into_owned();
    let prefix = format!("export-{:020}-", report.version.get());
    assert!(
        name.starts_with(&prefix),
        "directory name {name}, expected {prefix}<id>"
    );
    let rows = check_export(&report.path, &report.manifest, snap)?;
    assert_eq!(report.rows, rows);
    let bytes: u64 = report
        .manifest
        .tables
        .iter()
        .flat_map(|t| t.files.iter())
        .map(|f| f.bytes)
        .sum();
    assert_eq!(report.bytes, bytes);
    Ok(())
}

/// Checks that `LATEST` (raw, and through `latest_export`) names `report`'s directory.
fn check_latest(target: &Path, report: &ExportReport) -> TestResult {
    let name = report
        .path
        .file_name()
        .ok_or("report path has no name")?
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        std::fs::read_to_string(target.join("LATEST"))?,
        format!("{name}\n")
    );
    let latest = latest_export(target)?;
    assert!(
        latest == Some((report.path.clone(), report.manifest.clone())),
        "latest_export returned {latest:?}"
    );
    Ok(())
}

const BLOB_VALUE_LEN: usize = 70_000;

fn binary_value(seed: u8, len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed);
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Guarantee invalid UTF-8 early on.
            if i == 1 {
                0xff
            } else {
                x as u8
            }
        })
        .collect()
}

/// Several tables of text and binary rows, in three transactions so rows carry different
/// versions; one table is dropped, one ends up empty.
fn populate(db: &Db) -> Result<(), Error> {
    db.transaction(|tx: &mut Transaction| -> Result<(), Error> {
        for t in [
            "users",
            "blobs",
            "empty",
            "a/b c",
            "a%2Fb%20c",
            "a_2Fb_20c",
            "naïve ✓ table",
            "gone",
        ] {
            tx.create_table(t)?;
        }
        tx.put("users", "alice", "Alice Liddell")?;
        tx.put(
            "users",
            "bob",
            "line\nbreak \"quoted\" \\ back\tslash \u{1} ctrl",
        )?;
        tx.put("users", "carol", "")?;
        tx.put("users", "", "the empty key")?;
        tx.put("users", "zoë", "ünïcödé ✓ 😀")?;
        tx.put("blobs", [0xffu8, 0x00, 0x01], binary_value(1, 64))?;
        tx.put("blobs", [0x80u8], "text value under a binary key")?;
        tx.put("blobs", [0x00u8], binary_value(2, 3))?;
        tx.put("blobs", "big", binary_value(3, BLOB_VALUE_LEN))?;
        tx.put("blobs", "valid-utf8-bytes", [0x00u8, 0x7f, b'x'])?;
        tx.put("a/b c", "k1", "slash and space")?;
        tx.put("a/b c", "k2", [0xc3u8, 0x28])?;
        tx.put("a%2Fb%20c", "k1", "looks escaped but is not")?;
        tx.put("a_2Fb_20c", "k1", "looks escaped too")?;
        tx.put("naïve ✓ table", "ключ", "значение")?;
        tx.put("empty", "temp", "deleted later")?;
        tx.put("gone", "x", "dropped later")?;
        Ok(())
    })?;
    db.transaction(|tx: &mut Transaction| -> Result<(), Error> {
        tx.put("users", "alice", "Alice, updated")?;
        tx.delete("users", "carol")?;
        tx.delete("empty", "temp")?;
        tx.put("blobs", [0x80u8], binary_value(4, 10))?;
        tx.drop_table("gone")?;
        Ok(())
    })?;
    db.transaction(|tx: &mut Transaction| -> Result<(), Error> {
        tx.put("a/b c", "k3", "third version")?;
        Ok(())
    })?;
    Ok(())
}

fn quiet_options() -> Options {
    Options::default().checkpoint_after_wal_bytes(u64::MAX)
}

#[test]
fn export_holds_the_snapshot_rows_versions_and_an_exact_manifest() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open_with(dir.path().join("db"), quiet_options())?;
    populate(&db)?;
    let target = dir.path().join("exports");

    assert!(latest_export(&target)?.is_none(), "no export yet");
    let snap = db.snapshot()?;
    let first = snap.export(&target, ExportOptions::new(ExportFormat::JsonLines))?;
    check_report(&first, &target, &snap)?;
    check_latest(&target, &first)?;

    // Spot checks of what the manifest says, beyond equality with the snapshot.
    let names: Vec<&str> = first
        .manifest
        .tables
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "a%2Fb%20c",
            "a/b c",
            "a_2Fb_20c",
            "blobs",
            "empty",
            "naïve ✓ table",
            "users"
        ],
        "dropped tables are not exported, the rest sorted by name"
    );
    let files: Vec<&str> = first
        .manifest
        .tables
        .iter()
        .map(|t| t.files[0].path.as_str())
        .collect();
    let mut distinct = files.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), files.len(), "file names collide: {files:?}");
    let empty = first
        .manifest
        .tables
        .iter()
        .find(|t| t.name == "empty")
        .ok_or("no entry for the empty table")?;
    assert_eq!((empty.rows, empty.files[0].bytes), (0, 0));
    assert_eq!(
        empty.files[0].crc32c,
        format!("{:08x}", crc32c::crc32c(b"")),
        "crc of an empty file"
    );
    assert_eq!(first.rows, 5 - 1 + 5 + 3 + 1 + 1 + 1);
    assert!(
        first.bytes > BLOB_VALUE_LEN as u64,
        "the big blob is in the bytes count"
    );
    let first_files = dir_contents(&first.path)?;

    // More commits, a second export (through `Db::export`): a new directory, LATEST moves.
    db.transaction(|tx: &mut Transaction| -> Result<(), Error> {
        tx.create_table("later")?;
        tx.put("later", "k", "v")?;
        tx.put("users", "alice", "Alice, again")?;
        tx.delete("blobs", "big")?;
        tx.drop_table("a%2Fb%20c")?;
        Ok(())
    })?;
    let second = db.export(&target, ExportOptions::new(ExportFormat::JsonLines))?;
    let snap2 = db.snapshot()?;
    assert_eq!(snap2.version(), second.version, "no commit ran in between");
    assert!(second.version > first.version);
    assert_ne!(second.path, first.path);
    check_report(&second, &target, &snap2)?;
    check_latest(&target, &second)?;

    // The first export is untouched and still matches its snapshot.
    assert!(
        dir_contents(&first.path)? == first_files,
        "the first export changed"
    );
    check_export(&first.path, &first.manifest, &snap)?;

    // Exporting the same version again also gets its own directory.
    let third = snap2.export(&target, ExportOptions::default())?;
    assert_eq!(third.version, second.version);
    assert_ne!(third.path, second.path);
    check_report(&third, &target, &snap2)?;
    check_latest(&target, &third)?;

    // Nothing but LATEST and the three published directories is left in the target.
    let mut want: Vec<String> = [&first, &second, &third]
        .iter()
        .map(|r| r.path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect::<Option<Vec<String>>>()
        .ok_or("unnamed export path")?;
    want.push("LATEST".into());
    want.sort();
    assert_eq!(names_in(&target)?, want);
    Ok(())
}

#[test]
fn an_empty_database_exports_an_empty_manifest() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open_with(dir.path().join("db"), quiet_options())?;
    let target = dir.path().join("nested").join("target");
    let snap = db.snapshot()?;
    let report = snap.export(&target, ExportOptions::new(ExportFormat::JsonLines))?;
    check_report(&report, &target, &snap)?;
    check_latest(&target, &report)?;
    assert!(report.manifest.tables.is_empty());
    assert_eq!((report.rows, report.bytes), (0, 0));
    Ok(())
}

#[test]
fn tables_with_the_longest_valid_names_export() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open_with(dir.path().join("db"), quiet_options())?;
    let plain = "x".repeat(vellum::TABLE_NAME_MAX);
    let escaped = " ".repeat(vellum::TABLE_NAME_MAX);
    db.transaction(|tx: &mut Transaction| -> Result<(), Error> {
        tx.create_table(&plain)?;
        tx.create_table(&escaped)?;
        tx.put(&plain, "k", "v")?;
        tx.put(&escaped, "k", "w")?;
        Ok(())
    })?;
    let target = dir.path().join("exports");
    let snap = db.snapshot()?;
    let report = snap.export(&target, ExportOptions::default())?;
    check_report(&report, &target, &snap)?;
    Ok(())
}

#[test]
fn progress_is_reported_per_table_and_every_progress_interval() -> TestResult {
    const BIG: u64 = 2 * PROGRESS_EVERY_ROWS + 500;
    let dir = tempfile::tempdir()?;
    let db = Db::open_with(dir.path().join("db"), quiet_options())?;
    db.create_table("big")?;
    db.create_table("empty")?;
    db.create_table("small")?;
    for chunk in 0..5 {
        db.transaction(|tx: &mut Transaction| -> Result<(), Error> {
            for i in (chunk * BIG / 5)..((chunk + 1) * BIG / 5) {
                tx.put("big", format!("row-{i:08}"), format!("value {i}"))?;
            }
            Ok(())
        })?;
    }
    db.transaction(|tx: &mut Transaction| -> Result<(), Error> {
        for i in 0..3 {
            tx.put("small", [0xfe, i], [i, 0xff])?;
        }
        Ok(())
    })?;

    let seen: Arc<Mutex<Vec<ExportProgress>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let options = ExportOptions::new(ExportFormat::JsonLines).progress(move |p| {
        if let Ok(mut v) = sink.lock() {
            v.push(p.clone());
        }
    });
    let target = dir.path().join("exports");
    let snap = db.snapshot()?;
    let report = snap.export(&target, options)?;
    check_report(&report, &target, &snap)?;
    assert_eq!(report.rows, BIG + 3);

    let seen = seen.lock().map_err(|_| "progress lock poisoned")?.clone();
    let last = seen
        .last()
        .ok_or("the progress callback was never called")?;
    assert_eq!(last.rows, report.rows, "final progress rows");
    assert_eq!(last.bytes, report.bytes, "final progress bytes");
    assert_eq!((last.tables_done, last.tables_total), (3, 3));
    for pair in seen.windows(2) {
        assert!(pair[0].rows <= pair[1].rows && pair[0].bytes <= pair[1].bytes);
        assert!(pair[0].tables_done <= pair[1].tables_done);
    }
    // Documented cadence: once after each table, and every PROGRESS_EVERY_ROWS rows inside one.
    let within: Vec<&ExportProgress> = seen
        .iter()
        .filter(|p| p.table == "big" && p.tables_done == 0)
        .collect();
    assert_eq!(
        within.iter().map(|p| p.rows).collect::<Vec<u64>>(),
        [PROGRESS_EVERY_ROWS, 2 * PROGRESS_EVERY_ROWS]
    );
    assert!(within.iter().all(|p| p.bytes > 0 && p.tables_total == 3));
    assert_eq!(seen.len(), 3 + within.len());
    let after_tables: Vec<(String, usize, u64)> = seen
        .iter()
        .filter(|p| !(p.table == "big" && p.tables_done == 0))
        .map(|p| (p.table.clone(), p.tables_done, p.rows))
        .collect();
    assert_eq!(
        after_tables,
        [
            ("big".to_string(), 1, BIG),
            ("empty".to_string(), 2, BIG),
            ("small".to_string(), 3, BIG + 3)
        ]
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Online export while bank transfers commit.

const ACCOUNTS: u64 = 40;
const INITIAL: u64 = 1_000;
const TOTAL: u64 = ACCOUNTS * INITIAL;
const WRITERS: u64 = 4;
/// Rows of a filler table, so the export spends time inside a table too.
const FILLER: u64 = 12_000;

fn account(i: u64) -> String {
    format!("acct-{i:03}")
}

fn decode_u64(raw: &[u8]) -> Result<u64, String> {
    let bytes: [u8; 8] = raw
        .try_into()
        .map_err(|_| format!("bad balance encoding {raw:?}"))?;
    Ok(u64::from_le_bytes(bytes))
}

/// One transfer: moves `amount` from `from` to `to` and logs it under `ledger_key`.
fn transfer(
    tx: &mut Transaction,
    from: u64,
    to: u64,
    amount: u64,
    ledger_key: &[u8],
) -> Result<(), Error> {
    let read = |tx: &Transaction, i: u64| -> Result<u64, Error> {
        let raw = tx
            .get("accounts", account(i))?
            .ok_or_else(|| Error::InvalidArgument(format!("account {i} missing")))?;
        decode_u64(&raw).map_err(Error::InvalidArgument)
    };
    let a = read(tx, from)?;
    let b = read(tx, to)?;
    let amount = amount.min(a);
    tx.put("accounts", account(from), (a - amount).to_le_bytes())?;
    tx.put("accounts", account(to), (b + amount).to_le_bytes())?;
    let mut row = Vec::with_capacity(10);
    row.push(from as u8);
    row.push(to as u8);
    row.extend_from_slice(&amount.to_le_bytes());
    tx.put("ledger", ledger_key, row)?;
    Ok(())
}

/// Balances and the ledger-implied balances of exported (or snapshot) tables.
fn audit(accounts: &[(Vec<u8>, Vec<u8>)], ledger: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
    let mut balances = BTreeMap::new();
    for (k, v) in accounts {
        balances.insert(k.clone(), decode_u64(v)?);
    }
    if balances.len() as u64 != ACCOUNTS {
        return Err(format!("{} accounts, expected {ACCOUNTS}", balances.len()));
    }
    let sum: u64 = balances.values().sum();
    if sum != TOTAL {
        return Err(format!("balances sum to {sum}, expected {TOTAL}"));
    }
    let mut implied: BTreeMap<Vec<u8>, i128> = (0..ACCOUNTS)
        .map(|i| (account(i).into_bytes(), INITIAL as i128))
        .collect();
    for (_, row) in ledger {
        if row.len() != 10 {
            return Err(format!("bad ledger row {row:?}"));
        }
        let amount = decode_u64(&row[2..])? as i128;
        *implied
            .entry(account(u64::from(row[0])).into_bytes())
            .or_default() -= amount;
        *implied
            .entry(account(u64::from(row[1])).into_bytes())
            .or_default() += amount;
    }
    for (k, b) in &balances {
        if implied.get(k) != Some(&(*b as i128)) {
            return Err(format!(
                "account {}: balance {b}, ledger implies {:?}",
                String::from_utf8_lossy(k),
                implied.get(k)
            ));
        }
    }
    Ok(())
}

/// A key and its value.
type KeyValue = (Vec<u8>, Vec<u8>);

/// The exported rows of `table` from the export in `dir`, after verifying size and checksum.
fn exported_rows(
    dir: &Path,
    manifest: &Manifest,
    table: &str,
) -> Result<Vec<KeyValue>, Box<dyn std::error::Error>> {
    let entry = manifest
        .tables
        .iter()
        .find(|t| t.name == table)
        .ok_or_else(|| format!("table {table} not in the manifest"))?;
    let file = &entry.files[0];
    let data = std::fs::read(dir.join(&file.path))?;
    assert_eq!(data.len() as u64, file.bytes);
    assert_eq!(format!("{:08x}", crc32c::crc32c(&data)), file.crc32c);
    let rows = parse_jsonl(&data)?;
    assert_eq!(rows.len() as u64, entry.rows);
    Ok(rows.into_iter().map(|r| (r.key, r.value)).collect())
}

struct Writers {
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<Result<u64, String>>>,
}

fn start_writers(db: &Db) -> Writers {
    let stop = Arc::new(AtomicBool::new(false));
    let handles = (0..WRITERS)
        .map(|t| {
            let db = db.clone();
            let stop = stop.clone();
            std::thread::spawn(move || -> Result<u64, String> {
                let mut x = 0x2545_F491_4F6C_DD1Du64.wrapping_mul(t + 1) | 1;
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let from = x % ACCOUNTS;
                    let to = (from + 1 + (x >> 8) % (ACCOUNTS - 1)) % ACCOUNTS;
                    let amount = 1 + (x >> 20) % 50;
                    let key = format!("t{t}-{seq:08}").into_bytes();
                    db.run(|tx| transfer(tx, from, to, amount, &key))
                        .map_err(|e| format!("writer {t}: transfer failed: {e}"))?;
                    seq += 1;
                }
                Ok(seq)
            })
        })
        .collect();
    Writers { stop, handles }
}

impl Writers {
    fn finish(self) -> Result<u64, String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for h in self.handles {
            total += h.join().map_err(|_| "a writer panicked".to_string())??;
        }
        Ok(total)
    }
}

/// Waits (bounded) until `db`'s version reaches `v`; returns whether it did.
fn wait_for_commits(db: &Db, v: Version) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.version() < v {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

#[test]
fn online_export_of_a_snapshot_while_transfers_commit_is_consistent() -> TestResult {
    let dir = tempfile::tempdir()?;
    // Small checkpoint trigger: background checkpoints (and garbage collection) run during the
    // export; the snapshot must keep every version it reads.
    let opts = Options::default()
        .durability(Durability::None)
        .checkpoint_after_wal_bytes(64 << 10);
    let db = Db::open_with(dir.path().join("db"), opts)?;
    db.transaction(|tx: &mut Transaction| -> Result<(), Error> {
        tx.create_table("accounts")?;
        tx.create_table("filler")?;
        tx.create_table("ledger")?;
        for i in 0..ACCOUNTS {
            tx.put("accounts", account(i), INITIAL.to_le_bytes())?;
        }
        for i in 0..FILLER {
            tx.put("filler", format!("f{i:06}"), [i as u8, 0xff])?;
        }
        Ok(())
    })?;
    let writers = start_writers(&db);
    let outcome = (|| -> TestResult {
        // Let some transfers commit first.
        assert!(
            wait_for_commits(&db, Version(db.version().get() + 20)),
            "writers stalled"
        );
        let snap = db.snapshot()?;
        let snap_accounts = snap
            .scan_all("accounts")?
            .collect::<Result<Vec<(Vec<u8>, Vec<u8>)>, Error>>()?;
        let snap_ledger = snap
            .scan_all("ledger")?
            .collect::<Result<Vec<(Vec<u8>, Vec<u8>)>, Error>>()?;
        audit(&snap_accounts, &snap_ledger)?;
        assert!(!snap_ledger.is_empty());

        // Each progress call waits for more commits: the export provably overlaps them.
        let watcher = db.clone();
        let progress_versions: Arc<Mutex<Vec<Version>>> = Arc::new(Mutex::new(Vec::new()));
        let pv = progress_versions.clone();
        let options = ExportOptions::new(ExportFormat::JsonLines).progress(move |_p| {
            let now = watcher.version();
            wait_for_commits(&watcher, Version(now.get() + 10));
            if let Ok(mut v) = pv.lock() {
                v.push(watcher.version());
            }
        });
        let target = dir.path().join("exports");
        let report = snap.export(&target, options)?;
        let after = db.version();
        let progress_versions = progress_versions
            .lock()
            .map_err(|_| "progress lock poisoned")?
            .clone();
        assert!(
            progress_versions.len() >= 4,
            "3 tables + 1 inside the filler table"
        );
        assert!(
            after.get() >= snap.version().get() + 10 * progress_versions.len() as u64,
            "transfers committed while the export ran (snapshot {}, now {after})",
            snap.version()
        );

        assert_eq!(report.manifest.commit_version, snap.version().get());
        check_report(&report, &target, &snap)?;
        let accounts = exported_rows(&report.path, &report.manifest, "accounts")?;
        let ledger = exported_rows(&report.path, &report.manifest, "ledger")?;
        audit(&accounts, &ledger)?;
        assert!(
            accounts == snap_accounts,
            "exported balances differ from the snapshot's"
        );
        assert!(
            ledger == snap_ledger,
            "exported ledger differs from the snapshot's"
        );
        check_latest(&target, &report)?;

        // `Db::export` while writers run: consistent at whatever version it picked.
        let live = db.export(&target, ExportOptions::default())?;
        assert!(live.version > snap.version());
        let accounts = exported_rows(&live.path, &live.manifest, "accounts")?;
        let ledger = exported_rows(&live.path, &live.manifest, "ledger")?;
        audit(&accounts, &ledger)?;
        check_latest(&target, &live)?;
        // The snapshot is still readable and unchanged after the second export.
        let again = snap
            .scan_all("accounts")?
            .collect::<Result<Vec<(Vec<u8>, Vec<u8>)>, Error>>()?;
        assert!(again == snap_accounts);
        Ok(())
    })();
    let transfers = writers.finish()?;
    outcome?;
    assert!(transfers > 0);

    // Final state: still consistent, and an export of it matches.
    let target = dir.path().join("final");
    let snap = db.snapshot()?;
    let report = snap.export(&target, ExportOptions::default())?;
    check_report(&report, &target, &snap)?;
    let accounts = exported_rows(&report.path, &report.manifest, "accounts")?;
    let ledger = exported_rows(&report.path, &report.manifest, "ledger")?;
    audit(&accounts, &ledger)?;
    assert_eq!(
        ledger.len() as u64,
        transfers,
        "one ledger row per transfer"
    );
    Ok(())
}
