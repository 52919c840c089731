//! Crashes during an export, on the simulated file system.
//!
//! Acceptance: a crash during an export never leaves a directory that `LATEST` points to, or
//! that has a manifest, while being incomplete.
//!
//! The database lives at `/db` and exports go to `/export` on one [`SimFs`]. The number of
//! mutating file-system operations of a crash-free export is measured first; then, for every
//! `n` in `1..=count` and several crash behaviours (unsynced operations dropped or a random
//! prefix kept, torn writes or not, several seeds), the export runs with `crash_after(n)`, the
//! file system restarts, and:
//! * every directory under `/export` holding a `manifest.json` is complete: the manifest parses,
//!   names exactly the tables of the database at its commit version, and every file it lists
//!   exists with exactly the listed size and CRC-32C and holds exactly the expected rows;
//! * every `export-` directory has a manifest; `LATEST`, if present, names one of them;
//! * the database reopens with its data intact, and a new export succeeds, removes every stale
//!   `.staging-` directory and survives a power cut right after it.
//!
//! A second sweep crashes an export that follows a complete one (and a leftover staging
//! directory, so the cleanup is crashed too): the previous export and `LATEST` always survive
//! (`LATEST` names the old export or the new one, both complete).

mod common;

use base64::Engine;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use vellum::export::Manifest;
use vellum::fs::{FileSystem, SimFs};
use vellum::{Db, Error, ExportFormat, ExportOptions, ExportReport, Options, Transaction};

const TARGET: &str = "/export";
/// Log segments large enough for the big row below.
const SEGMENT: u64 = 4 << 20;
/// A binary value whose base64 line exceeds the 1 MiB write buffer of an export file, so that
/// file takes more than one write (and a crash can keep part of it).
const BIG_VALUE: usize = 800 << 10;

/// Crash behaviours swept: (keep_unsynced, tear, seeds).
const CONFIGS: &[(bool, bool, &[u64])] = &[
    (false, false, &[1]),
    (false, true, &[2]),
    (true, false, &[1, 2, 3]),
    (true, true, &[1, 2, 3, 4, 5, 6]),
];

fn target() -> PathBuf {
    PathBuf::from(TARGET)
}

fn options(fs: &SimFs) -> Options {
    sim_options(fs, SEGMENT)
}

fn jsonl() -> ExportOptions {
    ExportOptions::new(ExportFormat::JsonLines)
}

fn binary(seed: u8, len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(seed);
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i == 0 {
                0xff
            } else {
                x as u8
            }
        })
        .collect()
}

fn populate(db: &Db) -> Result<(), Error> {
    db.transaction(|tx: &mut Transaction| -> Result<(), Error> {
        for t in ["users", "bin", "empty", "a/b c"] {
            tx.create_table(t)?;
        }
        tx.put("users", "alice", "Alice")?;
        tx.put("users", "bob", "line\nbreak \"q\" \\")?;
        tx.put("users", "zoë", "ünïcödé")?;
        tx.put("bin", [0x00u8], binary(1, BIG_VALUE))?;
        tx.put("bin", [0xffu8, 0x01], binary(2, 40))?;
        tx.put("bin", "text-key", binary(3, 5))?;
        tx.put("a/b c", "k", "v")?;
        Ok(())
    })
}

/// Changes made between the two exports of the second sweep.
fn more_changes(db: &Db) -> Result<(), Error> {
    db.transaction(|tx: &mut Transaction| -> Result<(), Error> {
        tx.create_table("later")?;
        tx.put("later", "k", "new table")?;
        tx.put("users", "alice", "Alice, updated")?;
        tx.delete("bin", [0x00u8])?;
        tx.drop_table("a/b c")?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Reading an export back.

fn decode_field(obj: &serde_json::Map<String, Value>, field: &str) -> Result<Vec<u8>, String> {
    let text = obj
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{field}` missing"))?;
    match obj
        .get(&format!("{field}_encoding"))
        .and_then(Value::as_str)
    {
        Some("utf8") => Ok(text.as_bytes().to_vec()),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("`{field}` is not base64: {e}")),
        other => Err(format!("bad `{field}_encoding`: {other:?}")),
    }
}

/// The rows of a `.jsonl` file, in file order.
/// A key and its value.
type KeyValue = (Vec<u8>, Vec<u8>);

fn parse_jsonl(data: &[u8]) -> Result<Vec<KeyValue>, String> {
    let mut rows = Vec::new();
    if data.is_empty() {
        return Ok(rows);
    }
    let body = data.strip_suffix(b"\n").ok_or("no final newline")?;
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let v: Value =
            serde_json::from_slice(line).map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
        let obj = v
            .as_object()
            .ok_or_else(|| format!("line {}: not an object", i + 1))?;
        if obj.get("version").and_then(Value::as_u64).is_none() {
            return Err(format!("line {}: no version", i + 1));
        }
        rows.push((decode_field(obj, "key")?, decode_field(obj, "value")?));
    }
    Ok(rows)
}

/// What a target directory holds after a crash, once checked.
#[derive(Debug, Default)]
struct TargetState {
    /// Complete export directories (every directory with a manifest): name -> manifest.
    complete: BTreeMap<String, Manifest>,
    /// The directory `LATEST` names, if `LATEST` exists.
    latest: Option<String>,
    /// `.staging-` directories present.
    staging: Vec<String>,
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Checks every directory under `/export` that holds a `manifest.json` (published or not),
/// every `export-` directory, and `LATEST`, against `expected` (the database's state by commit
/// version). `staging_manifests` says whether manifests inside `.staging-` directories are held
/// to the same standard.
fn check_target(
    fs: &SimFs,
    expected: &BTreeMap<u64, Model>,
    staging_manifests: bool,
) -> Result<TargetState, String> {
    let target = target();
    let files: BTreeSet<PathBuf> = fs
        .file_paths()
        .into_iter()
        .filter(|p| p.starts_with(&target))
        .collect();
    let dirs: Vec<PathBuf> = fs
        .dir_paths()
        .into_iter()
        .filter(|p| p.starts_with(&target) && *p != target)
        .collect();
    let mut state = TargetState::default();
    for dir in &dirs {
        if dir.parent() == Some(target.as_path()) && name_of(dir).starts_with(".staging-") {
            state.staging.push(name_of(dir));
        }
    }
    let read = |p: &Path| fs.read(p).map_err(|e| format!("{}: {e}", p.display()));
    for manifest_path in files.iter().filter(|p| name_of(p) == "manifest.json") {
        let dir = manifest_path
            .parent()
            .ok_or("manifest without a directory")?;
        let dir_name = name_of(dir);
        if !staging_manifests && dir_name.starts_with(".staging-") {
            continue;
        }
        let bytes = read(manifest_path)?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{} has a manifest.json that does not parse ({} bytes: {:?}): {e}",
                dir.display(),
                bytes.len(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
            )
        })?;
        let model = expected.get(&manifest.commit_version).ok_or_else(|| {
            format!(
                "{}: manifest names commit version {}, not one exported",
                dir.display(),
                manifest.commit_version
            )
        })?;
        let names: Vec<&String> = manifest.tables.iter().map(|t| &t.name).collect();
        let want: Vec<&String> = model.keys().collect();
        if names != want {
            return Err(format!(
                "{}: tables {names:?}, expected {want:?}",
                dir.display()
            ));
        }
        for entry in &manifest.tables {
            for file in &entry.files {
                let path = dir.join(&file.path);
                if !files.contains(&path) {
                    return Err(format!(
                        "{}: listed file {} is missing",
                        dir.display(),
                        file.path
                    ));
                }
                let data = read(&path)?;
                if data.len() as u64 != file.bytes {
                    return Err(format!(
                        "{}: {} has {} bytes, the manifest says {}",
                        dir.display(),
                        file.path,
                        data.len(),
                        file.bytes
                    ));
                }
                let crc = format!("{:08x}", crc32c::crc32c(&data));
                if crc != file.crc32c {
                    return Err(format!(
                        "{}: {} has crc32c {crc}, the manifest says {}",
                        dir.display(),
                        file.path,
                        file.crc32c
                    ));
                }
                let rows = parse_jsonl(&data)
                    .map_err(|e| format!("{}: {}: {e}", dir.display(), file.path))?;
                if rows.len() as u64 != entry.rows {
                    return Err(format!(
                        "{}: {} has {} rows, the manifest says {}",
                        dir.display(),
                        file.path,
                        rows.len(),
                        entry.rows
                    ));
                }
                let want: Vec<(Vec<u8>, Vec<u8>)> = model
                    .get(&entry.name)
                    .map(|r| r.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                if rows != want {
                    return Err(format!(
                        "{}: rows of table {} differ from the database's at version {}",
                        dir.display(),
                        entry.name,
                        manifest.commit_version
                    ));
                }
            }
        }
        state.complete.insert(dir_name, manifest);
    }
    for dir in &dirs {
        let name = name_of(dir);
        if name.starts_with("export-") && !state.complete.contains_key(&name) {
            return Err(format!(
                "{} is published but has no manifest",
                dir.display()
            ));
        }
    }
    let latest = target.join("LATEST");
    if files.contains(&latest) {
        let raw = read(&latest)?;
        let text = String::from_utf8(raw).map_err(|_| "LATEST is not UTF-8".to_string())?;
        let name = text
            .strip_suffix('\n')
            .ok_or_else(|| format!("LATEST {text:?} does not end with a newline"))?;
        if !name.starts_with("export-") || !state.complete.contains_key(name) {
            return Err(format!(
                "LATEST names {name:?}, not a complete export (complete: {:?})",
                state.complete.keys().collect::<Vec<_>>()
            ));
        }
        state.latest = Some(name.to_string());
    }
    Ok(state)
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

/// A database ready for the export under test, and what its exports must hold.
struct Setup {
    db: Db,
    /// Database state by commit version, for every version an export may have.
    expected: BTreeMap<u64, Model>,
    /// The complete export that precedes the one under test, if any.
    previous: Option<ExportReport>,
}

/// Fresh target: a database and nothing exported yet.
fn setup_fresh(fs: &SimFs) -> Result<Setup, Box<dyn std::error::Error>> {
    let db = Db::open_with(db_path(), options(fs))?;
    populate(&db)?;
    let expected = BTreeMap::from([(db.version().get(), read_state(&db)?)]);
    Ok(Setup {
        db,
        expected,
        previous: None,
    })
}

/// A complete export, then a crashed one that leaves a staging directory behind, then more
/// commits: the export under test must clean up, and must never disturb the first export.
fn setup_after_export(fs: &SimFs) -> Result<Setup, Box<dyn std::error::Error>> {
    let db = Db::open_with(db_path(), options(fs))?;
    populate(&db)?;
    let mut expected = BTreeMap::from([(db.version().get(), read_state(&db)?)]);
    let previous = db.export(TARGET, jsonl())?;
    // The target exists: operation 1 creates the staging directory, 2 syncs the target, 3
    // creates the first data file. Crashing at 3 leaves a durable, empty-ish staging directory.
    fs.crash_after(Some(3));
    let crashed = db.export(TARGET, jsonl());
    assert!(
        crashed.is_err() && fs.has_crashed(),
        "setup crash: {crashed:?}"
    );
    drop(db);
    fs.restart();
    let state = check_target(fs, &expected, true)?;
    assert_eq!(
        state.staging.len(),
        1,
        "setup leaves one staging directory: {state:?}"
    );
    let db = Db::open_with(db_path(), options(fs))?;
    more_changes(&db)?;
    expected.insert(db.version().get(), read_state(&db)?);
    Ok(Setup {
        db,
        expected,
        previous: Some(previous),
    })
}

/// Mutating operations of a crash-free export after `setup`.
fn export_op_count(
    setup: fn(&SimFs) -> Result<Setup, Box<dyn std::error::Error>>,
) -> Result<u64, Box<dyn std::error::Error>> {
    let fs = sim(99, true, true);
    let s = setup(&fs)?;
    let before = fs.op_count();
    s.db.export(TARGET, jsonl())?;
    Ok(fs.op_count() - before)
}

/// Crashes the export after `setup` at operation `n`, restarts, and checks everything.
/// Returns what the target held right after the restart, and the newest commit version.
fn crash_case(
    setup: fn(&SimFs) -> Result<Setup, Box<dyn std::error::Error>>,
    keep: bool,
    tear: bool,
    seed: u64,
    n: u64,
    staging_manifests: bool,
) -> Result<(TargetState, u64), String> {
    let ctx = format!("keep_unsynced={keep} tear={tear} seed={seed} crash at op {n}");
    let fail = |e: &dyn std::fmt::Display| format!("{ctx}: {e}");
    let fs = sim(seed, keep, tear);
    let Setup {
        db,
        expected,
        previous,
    } = setup(&fs).map_err(|e| fail(&e))?;
    let newest = *expected.keys().last().ok_or("no expected state")?;
    fs.crash_after(Some(n));
    let result = db.export(TARGET, jsonl());
    if !(result.is_err() && fs.has_crashed()) {
        return Err(format!(
            "{ctx}: the export did not fail at the crash: {result:?}"
        ));
    }
    drop(db);
    fs.restart();

    let state = check_target(&fs, &expected, staging_manifests).map_err(|e| fail(&e))?;
    if let Some(prev) = &previous {
        let prev_name = name_of(&prev.path);
        if state.complete.get(&prev_name) != Some(&prev.manifest) {
            return Err(format!(
                "{ctx}: the previous export {prev_name} is gone or changed"
            ));
        }
        let latest = state
            .latest
            .as_deref()
            .ok_or_else(|| format!("{ctx}: LATEST vanished"))?;
        let new_version = state.complete.get(latest).map(|m| m.commit_version);
        if latest != prev_name && new_version != Some(newest) {
            return Err(format!(
                "{ctx}: LATEST names {latest}, neither the old nor the new export"
            ));
        }
    }

    // The database is intact, and a new export cleans up and publishes.
    let db = Db::open_with(db_path(), options(&fs)).map_err(|e| fail(&e))?;
    let now = read_state(&db).map_err(|e| fail(&e))?;
    if Some(&now) != expected.get(&newest) || db.version().get() != newest {
        return Err(format!("{ctx}: the database changed across the crash"));
    }
    let report = db
        .export(TARGET, jsonl())
        .map_err(|e| fail(&format!("export after restart: {e}")))?;
    drop(db);
    for round in [
        "after the recovery export",
        "after a power cut following it",
    ] {
        let after =
            check_target(&fs, &expected, true).map_err(|e| fail(&format!("{round}: {e}")))?;
        if !after.staging.is_empty() {
            return Err(format!(
                "{ctx}: {round}: staging directories remain: {:?}",
                after.staging
            ));
        }
        if after.latest.as_deref() != Some(name_of(&report.path).as_str()) {
            return Err(format!(
                "{ctx}: {round}: LATEST is {:?}, not the new export",
                after.latest
            ));
        }
        if after.complete.get(&name_of(&report.path)) != Some(&report.manifest) {
            return Err(format!("{ctx}: {round}: the new export is not as reported"));
        }
        if let Some(prev) = &previous {
            if after.complete.get(&name_of(&prev.path)) != Some(&prev.manifest) {
                return Err(format!(
                    "{ctx}: {round}: the previous export is gone or changed"
                ));
            }
        }
        fs.restart();
    }
    Ok((state, newest))
}

/// What a sweep saw.
#[derive(Debug, Default)]
struct SweepResult {
    /// Operations of the crash-free export (crash points per configuration).
    ops: u64,
    cases: u64,
    /// Outcome kind -> cases.
    outcomes: BTreeMap<String, u64>,
    failures: Vec<String>,
}

impl SweepResult {
    fn saw(&self, prefix: &str) -> bool {
        self.outcomes.keys().any(|k| k.starts_with(prefix))
    }

    fn into_result(self) -> Result<SweepResult, String> {
        if self.failures.is_empty() {
            return Ok(self);
        }
        Err(format!(
            "{} of {} crash cases failed (export of {} operations); first ones:\n{}",
            self.failures.len(),
            self.cases,
            self.ops,
            self.failures
                .iter()
                .take(8)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        ))
    }
}

/// Runs every crash point of every configuration.
fn sweep(
    setup: fn(&SimFs) -> Result<Setup, Box<dyn std::error::Error>>,
    staging_manifests: bool,
) -> Result<SweepResult, Box<dyn std::error::Error>> {
    let mut result = SweepResult {
        ops: export_op_count(setup)?,
        ..SweepResult::default()
    };
    assert!(
        result.ops >= 20,
        "an export takes at least 20 operations, measured {}",
        result.ops
    );
    for &(keep, tear, seeds) in CONFIGS {
        for &seed in seeds {
            for n in 1..=result.ops {
                result.cases += 1;
                match crash_case(setup, keep, tear, seed, n, staging_manifests) {
                    Ok((state, newest)) => {
                        let latest = match state.latest.as_ref().and_then(|l| state.complete.get(l))
                        {
                            None => "no LATEST",
                            Some(m) if m.commit_version == newest => "LATEST names the new export",
                            Some(_) => "LATEST names the previous export",
                        };
                        let kind = format!(
                            "{latest}; {} complete directories, {} staging directories",
                            state.complete.len(),
                            state.staging.len()
                        );
                        *result.outcomes.entry(kind).or_default() += 1;
                    }
                    Err(e) => result.failures.push(e),
                }
            }
        }
    }
    Ok(result)
}

#[test]
fn a_crash_at_any_operation_of_an_export_leaves_published_exports_complete() -> TestResult {
    let r = sweep(setup_fresh, false)?.into_result()?;
    // Both ends are reached: crashes that leave nothing, and crashes after publication.
    assert!(r.saw("no LATEST"), "{:?}", r.outcomes);
    assert!(r.saw("LATEST names the new export"), "{:?}", r.outcomes);
    println!(
        "{} crash cases over {} operations: {:#?}",
        r.cases, r.ops, r.outcomes
    );
    Ok(())
}

#[test]
fn a_crash_during_a_later_export_keeps_the_previous_export_and_latest() -> TestResult {
    let r = sweep(setup_after_export, false)?.into_result()?;
    assert!(
        r.saw("LATEST names the previous export"),
        "{:?}",
        r.outcomes
    );
    assert!(r.saw("LATEST names the new export"), "{:?}", r.outcomes);
    println!(
        "{} crash cases over {} operations: {:#?}",
        r.cases, r.ops, r.outcomes
    );
    Ok(())
}

/// The acceptance criterion taken literally: no directory with a `manifest.json`, staging
/// directories included, is ever incomplete.
#[test]
fn a_crash_never_leaves_any_directory_with_an_incomplete_manifest() -> TestResult {
    let mut failures = Vec::new();
    let mut cases = 0;
    for setup in [setup_fresh, setup_after_export] {
        let r = sweep(setup, true)?;
        cases += r.cases;
        println!(
            "{} crash cases over {} operations: {:#?}",
            r.cases, r.ops, r.outcomes
        );
        if let Err(e) = r.into_result() {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{cases} cases in all:\n{}",
        failures.join("\n")
    );
    Ok(())
}

#[test]
fn an_export_without_a_crash_survives_a_power_cut() -> TestResult {
    for &(keep, tear, seeds) in CONFIGS {
        for &seed in seeds {
            let fs = sim(seed, keep, tear);
            let s = setup_fresh(&fs)?;
            let report = s.db.export(TARGET, jsonl())?;
            drop(s.db);
            fs.restart();
            let state = check_target(&fs, &s.expected, true)?;
            assert_eq!(
                state.latest.as_deref(),
                Some(name_of(&report.path).as_str())
            );
            assert!(state.complete.get(&name_of(&report.path)) == Some(&report.manifest));
            assert!(state.staging.is_empty());
        }
    }
    Ok(())
}
