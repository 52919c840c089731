//! Damaged and missing database files: flipped bits and truncations at many offsets of the
//! write-ahead-log segments, the manifest (`data/manifest`), the segment files
//! (`data/seg-*.sst`) and the identity file, and deleted files. Reopening must either recover
//! every acknowledged commit exactly (the damage hit bytes that hold nothing durable) or fail
//! with [`Error::Corruption`] naming the damaged file (for a log segment, the log directory may
//! be named instead) — never panic, never answer wrongly.
//!
//! Segment data blocks are checked when they are read, not at open (header, footer, index and
//! bloom blocks are checked at open). Damage in a data block may therefore let the open
//! succeed; then the read that hits the block must fail with [`Error::Corruption`] naming the
//! segment, and [`Db::verify`] must list the same file.
//!
//! The database is written once per [`Ending`] on a [`SimFs`] (commits, a checkpoint, more
//! commits, then a clean close or a drop of the handle); every case copies its files into a
//! fresh `SimFs`, damages one of them and reopens.

mod common;

use common::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use vellum::fs::{FileSystem, SimFs};
use vellum::{Db, Error, Options};

/// The smallest segment size the log accepts: the workload spans several segments.
const SEGMENT: u64 = 4096;

/// Keys that point reads probe besides those of the model (absent unless the model has them).
const PROBES: [&[u8]; 2] = [b"k0", b"k6"];

type Files = Vec<(PathBuf, Vec<u8>)>;

/// How the database written by [`build`] was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// [`Db::close`]: the commits after the checkpoint are flushed to a segment too, and the
    /// log is released up to them (only its tail segment, ending in the close mark, is left).
    Close,
    /// The handle dropped without [`Db::close`]: the log keeps the commits after the checkpoint
    /// in several segments, ended by the close mark, and the next open replays them.
    Drop,
}

const ENDINGS: [Ending; 2] = [Ending::Close, Ending::Drop];

/// One commit of the workload: puts and deletes over tables `a` and `b`.
fn commit_round(db: &Db, model: &mut Model, i: u64) -> Result<(), Error> {
    let mut tx = db.begin()?;
    let (ka, kb) = (format!("k{}", i % 7), format!("k{}", i % 5));
    let va = value(&format!("a{i}"), 40 + (i as usize * 37) % 150);
    let vb = value(&format!("b{i}"), 20 + (i as usize * 53) % 120);
    tx.put("a", &ka, &va)?;
    tx.put("b", &kb, &vb)?;
    model
        .entry("a".into())
        .or_default()
        .insert(ka.into_bytes(), va);
    model
        .entry("b".into())
        .or_default()
        .insert(kb.into_bytes(), vb);
    if i % 4 == 3 {
        let kd = format!("k{}", (i + 3) % 7);
        tx.delete("a", &kd)?;
        model.entry("a".into()).or_default().remove(kd.as_bytes());
    }
    tx.commit()?;
    Ok(())
}

/// Writes the database (two tables, 20 commits, a checkpoint, 20 more commits, then `ending`)
/// and returns its files and the model of its contents.
fn build(ending: Ending) -> Result<(Files, Model), Box<dyn std::error::Error>> {
    let fs = sim(1, false, false);
    let mut model = Model::new();
    {
        let db = Db::open_with(db_path(), sim_options(&fs, SEGMENT))?;
        db.create_table("a")?;
        db.create_table("b")?;
        model.insert("a".into(), Rows::new());
        model.insert("b".into(), Rows::new());
        for i in 0..20 {
            commit_round(&db, &mut model, i)?;
        }
        db.checkpoint()?;
        for i in 20..40 {
            commit_round(&db, &mut model, i)?;
        }
        match ending {
            Ending::Close => db.close()?,
            Ending::Drop => drop(db),
        }
    }
    let mut files = Vec::new();
    for path in fs.file_paths() {
        let bytes = fs.read(&path)?;
        files.push((path, bytes));
    }
    let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    let has = |part: &str| names.iter().filter(|n| n.contains(part)).count();
    let log_segments = match ending {
        Ending::Close => 1,
        Ending::Drop => 2,
    };
    if has("/wal/wal-") < log_segments
        || has("/data/manifest") != 1
        || has("/data/seg-") < 1
        || has("/data/checkpoint-") != 0
        || has(".tmp") != 0
        || has("/VELLUM") != 1
        || names.iter().any(|n| kind_of(Path::new(n)) == "other")
    {
        return Err(format!("unexpected database files after {ending:?}: {names:?}").into());
    }
    Ok((files, model))
}

/// A fresh simulated file system holding exactly `files`, all durable.
fn restore(files: &Files) -> std::io::Result<SimFs> {
    let fs = sim(3, false, false);
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (path, bytes) in files {
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        fs.create_dir_all(&dir)?;
        let mut f = fs.open_write(path)?;
        f.write_at(0, bytes)?;
        f.sync_data()?;
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in &dirs {
        fs.sync_dir(dir)?;
    }
    Ok(fs)
}

/// What reopening a damaged copy gave.
#[derive(Debug, Default)]
struct Tally {
    recovered: usize,
    /// Corruption naming the damaged file, at open or from a read.
    corruption: usize,
    /// Of `corruption`: reported by a read after the open succeeded.
    on_read: usize,
}

/// Reads every row (a scan of every table) and every key of `model` plus [`PROBES`] (point
/// reads) and compares them with `model`. `Err` is a failed read; `Ok(Err(why))` a wrong
/// answer.
fn read_and_compare(db: &Db, model: &Model) -> Result<Result<(), String>, Error> {
    let got = read_state(db)?;
    if &got != model {
        return Ok(Err(format!(
            "other contents:\n{}",
            describe_diff(&got, model)
        )));
    }
    let tx = db.begin_read()?;
    for (table, rows) in model {
        let probes = PROBES.iter().map(|k| k.to_vec());
        for key in rows.keys().cloned().chain(probes) {
            let got = tx.get(table, &key)?;
            let want = rows.get(&key);
            if got.as_ref() != want {
                return Ok(Err(format!(
                    "get({table}, {}) = {:?}, expected {:?}",
                    show(&key),
                    got.as_deref().map(show),
                    want.map(|v| show(v))
                )));
            }
        }
    }
    Ok(Ok(()))
}

/// Checks that [`Db::verify`] reports damage in `damaged`, and in no other file.
fn check_verify_names(db: &Db, damaged: &Path, ctx: &str) -> TestResult {
    let report = catch_unwind(AssertUnwindSafe(|| db.verify()))
        .map_err(|_| format!("{ctx}: verify panicked"))?;
    let names_damaged = |e: &vellum_storage::Error| matches!(e, vellum_storage::Error::Corruption { file, .. } if file == damaged);
    if report.is_ok() || !report.problems.iter().all(names_damaged) {
        return Err(format!(
            "{ctx}: verify should list only {}, it reports {:?}",
            damaged.display(),
            report.problems
        )
        .into());
    }
    Ok(())
}

/// Reopens the damaged database on `fs` and checks the outcome (see the module documentation).
/// After a clean recovery the database must also pass [`Db::verify`], take a new commit and
/// reopen with it.
fn check_reopen(
    fs: &SimFs,
    model: &Model,
    damaged: &Path,
    len: usize,
    ctx: &str,
    tally: &mut Tally,
) -> TestResult {
    let opts = sim_options(fs, SEGMENT);
    let opened = catch_unwind(AssertUnwindSafe(|| Db::open_with(db_path(), opts.clone())))
        .map_err(|_| format!("{ctx}: reopen panicked"))?;
    let db = match opened {
        Err(Error::Corruption { file, offset, .. }) => {
            let names_it = file == damaged
                || (file == wal_dir() && damaged.parent() == Some(wal_dir().as_path()));
            if !names_it {
                return Err(format!(
                    "{ctx}: corruption reported in {} instead of {}",
                    file.display(),
                    damaged.display()
                )
                .into());
            }
            if file == damaged && offset > len as u64 {
                return Err(format!("{ctx}: corruption offset {offset} past the end {len}").into());
            }
            tally.corruption += 1;
            return Ok(());
        }
        Err(e) => return Err(format!("{ctx}: reopen failed with {e:?}, not Corruption").into()),
        Ok(db) => db,
    };
    let read = catch_unwind(AssertUnwindSafe(|| read_and_compare(&db, model)))
        .map_err(|_| format!("{ctx}: a read panicked"))?;
    match read {
        // Only segment data blocks are checked when read; everything else is checked at open.
        Err(Error::Corruption { file, offset, .. })
            if file == damaged && kind_of(damaged) == "segment" =>
        {
            if offset > len as u64 {
                return Err(format!(
                    "{ctx}: read reports corruption at offset {offset}, past the end {len}"
                )
                .into());
            }
            check_verify_names(&db, damaged, ctx)?;
            tally.corruption += 1;
            tally.on_read += 1;
            return Ok(());
        }
        Err(e) => {
            return Err(format!(
                "{ctx}: reopened, but a read failed with {e:?}, not Corruption naming {}",
                damaged.display()
            )
            .into())
        }
        Ok(Err(wrong)) => {
            return Err(format!("{ctx}: reopened without an error but with {wrong}").into())
        }
        Ok(Ok(())) => {}
    }
    let report = db.verify();
    if !report.is_ok() {
        return Err(format!(
            "{ctx}: every read was right, but verify reports {:?}",
            report.problems
        )
        .into());
    }
    db.transaction(|tx| {
        tx.put("a", "after", "damage")?;
        tx.put("b", "after", "damage")
    })
    .map_err(|e| format!("{ctx}: commit after recovery failed: {e:?}"))?;
    drop(db);
    let db = Db::open_with(db_path(), opts)
        .map_err(|e| format!("{ctx}: second reopen failed: {e:?}"))?;
    let mut expected = model.clone();
    for t in ["a", "b"] {
        expected
            .entry(t.into())
            .or_default()
            .insert(b"after".to_vec(), b"damage".to_vec());
    }
    let got = read_state(&db)?;
    if got != expected {
        return Err(format!(
            "{ctx}: second reopen after recovery differs:\n{}",
            describe_diff(&got, &expected)
        )
        .into());
    }
    tally.recovered += 1;
    Ok(())
}

/// Offsets to damage in a file of `len` bytes: every `step`-th one, the first and last 64, and
/// `random` more drawn from `rng`.
fn offsets(len: usize, step: usize, random: usize, rng: &mut XorShift) -> Vec<usize> {
    let mut out: Vec<usize> = (0..len).step_by(step).collect();
    out.extend(0..len.min(64));
    out.extend(len.saturating_sub(64)..len);
    out.extend((0..random).map(|_| rng.below(len as u64) as usize));
    out.sort_unstable();
    out.dedup();
    out
}

fn kind_of(path: &Path) -> &'static str {
    let name = path.to_string_lossy();
    if name.contains("/wal/wal-") {
        "wal segment"
    } else if name.contains("/wal/spare-") {
        "spare segment"
    } else if name.contains("/data/seg-") && name.ends_with(".sst") {
        "segment"
    } else if name.ends_with("/data/manifest") {
        "manifest"
    } else if name.contains("/data/checkpoint-") {
        "checkpoint"
    } else if name.ends_with("/VELLUM") {
        "identity"
    } else {
        "other"
    }
}

#[test]
fn flipped_bits_anywhere_give_clean_recovery_or_corruption_naming_the_file() -> TestResult {
    for ending in ENDINGS {
        let (files, model) = build(ending)?;
        let mut rng = XorShift::new(0xf11b);
        for (idx, (path, bytes)) in files.iter().enumerate() {
            let mut tally = Tally::default();
            for at in offsets(bytes.len(), 5, 200, &mut rng) {
                let mask = 1u8 << rng.below(8);
                let fs = restore(&files)?;
                fs.corrupt(path, at as u64, mask)?;
                let ctx = format!("{ending:?}: {} byte {at} ^= {mask:#04x}", path.display());
                check_reopen(&fs, &model, path, bytes.len(), &ctx, &mut tally)?;
            }
            let kind = kind_of(path);
            if kind != "spare segment" {
                assert!(
                    tally.corruption > 0,
                    "{ending:?}: {kind} {idx}: no flip was detected: {tally:?}"
                );
            }
            if kind == "wal segment" {
                // Flips in the zeroed space after the last frame damage nothing durable.
                assert!(
                    tally.recovered > 0,
                    "{ending:?}: {kind} {idx}: no flip was harmless: {tally:?}"
                );
            }
            if ["segment", "manifest", "checkpoint", "identity"].contains(&kind) {
                assert_eq!(
                    tally.recovered, 0,
                    "{ending:?}: {kind} {idx}: a flip went unnoticed: {tally:?}"
                );
            }
            if kind == "segment" {
                // Most of a segment is data blocks, checked when read; the rest at open.
                assert!(
                    tally.on_read > 0 && tally.on_read < tally.corruption,
                    "{ending:?}: {kind} {idx}: {tally:?}"
                );
            } else {
                assert_eq!(tally.on_read, 0, "{ending:?}: {kind} {idx}: {tally:?}");
            }
        }
    }
    Ok(())
}

#[test]
fn truncation_at_any_length_gives_clean_recovery_or_corruption_naming_the_file() -> TestResult {
    for ending in ENDINGS {
        let (files, model) = build(ending)?;
        let mut rng = XorShift::new(0x7a11);
        for (path, bytes) in &files {
            let mut tally = Tally::default();
            for len in offsets(bytes.len(), 41, 40, &mut rng) {
                let fs = restore(&files)?;
                fs.truncate(path, len as u64)?;
                let ctx = format!(
                    "{ending:?}: {} cut to {len} of {} bytes",
                    path.display(),
                    bytes.len()
                );
                check_reopen(&fs, &model, path, bytes.len(), &ctx, &mut tally)?;
            }
            let kind = kind_of(path);
            if kind != "spare segment" {
                // Log segments are preallocated, segment files end with a footer and the
                // manifest with its checksum: any cut shows.
                assert_eq!(
                    tally.recovered,
                    0,
                    "{ending:?}: {}: a cut went unnoticed",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// Frames of a log segment, from its documented layout (44-byte header; frames of a 25-byte
/// header holding the payload length at bytes 4..8 and the lsn at 8..16): (offset, length).
fn frames(segment: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 44;
    while at + 25 <= segment.len() {
        let head = &segment[at..at + 25];
        if head.iter().all(|&b| b == 0) {
            break;
        }
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        out.push((at, 25 + len));
        at += 25 + len;
    }
    out
}

/// The newest segment: the one the close mark was written to.
fn last_segment(files: &Files) -> Result<&(PathBuf, Vec<u8>), String> {
    files
        .iter()
        .filter(|(p, _)| kind_of(p) == "wal segment")
        .max_by_key(|(p, _)| p.clone())
        .ok_or_else(|| "no log segment".to_string())
}

#[test]
fn several_damaged_bytes_in_a_segment_never_give_a_wrong_answer_while_the_close_mark_is_intact(
) -> TestResult {
    for ending in ENDINGS {
        let (files, model) = build(ending)?;
        let (last_path, last_bytes) = last_segment(&files)?;
        let close_mark = frames(last_bytes)
            .last()
            .copied()
            .ok_or("empty last segment")?;
        let mut rng = XorShift::new(0x5eed);
        for (path, bytes) in files.iter().filter(|(p, _)| kind_of(p) == "wal segment") {
            let mut tally = Tally::default();
            for case in 0..150 {
                let fs = restore(&files)?;
                let burst = 1 + rng.below(8) as usize;
                let start = rng.below(bytes.len() as u64) as usize;
                let mut hit = Vec::new();
                for k in 0..burst {
                    let at = (start + k * (1 + rng.below(40) as usize)) % bytes.len();
                    let in_mark = path == last_path
                        && (close_mark.0..close_mark.0 + close_mark.1).contains(&at);
                    if !in_mark {
                        fs.corrupt(path, at as u64, 1 + rng.below(255) as u8)?;
                        hit.push(at);
                    }
                }
                let ctx = format!("{ending:?}: {} case {case}: bytes {hit:?}", path.display());
                check_reopen(&fs, &model, path, bytes.len(), &ctx, &mut tally)?;
            }
            assert!(
                tally.corruption > 0 && tally.recovered > 0,
                "{ending:?}: {}: {tally:?}",
                path.display()
            );
        }
    }
    Ok(())
}

/// Deleting the manifest after the log it covers was released must not reopen as an empty or
/// partial database; neither must deleting a segment file the manifest lists (that is an
/// error naming the missing file, at every attempt, until the file is back).
#[test]
fn a_missing_manifest_or_segment_is_an_error_not_a_partial_database() -> TestResult {
    for ending in ENDINGS {
        let (files, model) = build(ending)?;
        let first_log_segment_kept = files
            .iter()
            .any(|(p, _)| p.ends_with("wal-00000000000000000001.log"));

        // The manifest.
        let (manifest, _) = files
            .iter()
            .find(|(p, _)| kind_of(p) == "manifest")
            .ok_or("no manifest")?;
        let fs = restore(&files)?;
        fs.remove_file(manifest)?;
        fs.sync_dir(Path::new("/db/data"))?;
        match Db::open_with(db_path(), sim_options(&fs, SEGMENT)) {
            Err(Error::Corruption { file, .. }) => {
                assert!(
                    file.starts_with(wal_dir()),
                    "{ending:?}: corruption named {}",
                    file.display()
                );
            }
            Err(e) => return Err(format!("{ending:?}: expected Corruption, got {e:?}").into()),
            // Only a log that still starts at its first record can rebuild everything.
            Ok(db) => {
                assert!(
                    first_log_segment_kept,
                    "{ending:?}: the released log start went unnoticed"
                );
                assert_eq!(
                    read_state(&db)?,
                    model,
                    "{ending:?}: reopened with other contents"
                );
            }
        }

        // Each segment file.
        let segments = files.iter().filter(|(p, _)| kind_of(p) == "segment");
        for (segment, bytes) in segments {
            let fs = restore(&files)?;
            fs.remove_file(segment)?;
            fs.sync_dir(Path::new("/db/data"))?;
            // `Store::open_with` opens every segment the manifest lists.
            for attempt in 0..2 {
                let r = Db::open_with(db_path(), sim_options(&fs, SEGMENT));
                assert!(
                    matches!(&r, Err(Error::Io { path, source })
                        if path == segment && source.kind() == std::io::ErrorKind::NotFound),
                    "{ending:?}: {} missing, attempt {attempt}: {r:?}",
                    segment.display()
                );
            }
            // The failed opens changed nothing: with the file back, everything is there.
            put_back(&fs, segment, bytes)?;
            let db = Db::open_with(db_path(), sim_options(&fs, SEGMENT))?;
            assert_eq!(
                read_and_compare(&db, &model)?,
                Ok(()),
                "{ending:?}: {} put back",
                segment.display()
            );
        }
    }
    Ok(())
}

/// Writes `bytes` back as `path`, durably.
fn put_back(fs: &SimFs, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs.open_write(path)?;
    f.write_at(0, bytes)?;
    f.sync_data()?;
    fs.sync_dir(path.parent().unwrap_or(Path::new("/")))
}

/// An open refused because the manifest is missing must not delete anything either: with the
/// manifest back, the whole database is there again.
#[test]
fn an_open_refused_for_a_missing_manifest_deletes_no_segment() -> TestResult {
    for ending in ENDINGS {
        let (files, model) = build(ending)?;
        let (manifest, bytes) = files
            .iter()
            .find(|(p, _)| kind_of(p) == "manifest")
            .ok_or("no manifest")?;
        let fs = restore(&files)?;
        fs.remove_file(manifest)?;
        fs.sync_dir(Path::new("/db/data"))?;
        let r = Db::open_with(db_path(), sim_options(&fs, SEGMENT));
        assert!(
            matches!(&r, Err(Error::Corruption { .. })),
            "{ending:?}: {r:?}"
        );
        for (path, _) in files.iter().filter(|(p, _)| kind_of(p) == "segment") {
            assert!(
                fs.file_len(path).is_ok(),
                "{ending:?}: the refused open deleted {}",
                path.display()
            );
        }
        put_back(&fs, manifest, bytes)?;
        let db = Db::open_with(db_path(), sim_options(&fs, SEGMENT))?;
        assert_eq!(
            read_and_compare(&db, &model)?,
            Ok(()),
            "{ending:?}: manifest put back"
        );
    }
    Ok(())
}

/// A removed log (every segment gone) must not reopen as an empty database either.
#[test]
fn a_database_whose_log_segments_are_gone_is_corruption() -> TestResult {
    for ending in ENDINGS {
        let (files, _) = build(ending)?;
        let fs = restore(&files)?;
        for (path, _) in &files {
            if path.starts_with(wal_dir()) {
                fs.remove_file(path)?;
            }
        }
        fs.sync_dir(&wal_dir())?;
        let r = Db::open_with(db_path(), sim_options(&fs, SEGMENT));
        assert!(
            matches!(&r, Err(Error::Corruption { file, .. }) if *file == wal_dir()),
            "{ending:?}: {r:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The same on the real file system.

fn real_db(path: &Path) -> Result<Model, Box<dyn std::error::Error>> {
    let mut model = Model::new();
    let db = Db::open_with(path, Options::default().wal_segment_bytes(SEGMENT))?;
    db.create_table("a")?;
    db.create_table("b")?;
    model.insert("a".into(), Rows::new());
    model.insert("b".into(), Rows::new());
    for i in 0..10 {
        commit_round(&db, &mut model, i)?;
    }
    db.checkpoint()?;
    for i in 10..15 {
        commit_round(&db, &mut model, i)?;
    }
    db.close()?;
    Ok(model)
}

/// The files in `dir` whose names start with `prefix`, sorted.
fn files_named(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn flip_byte(path: &Path, at: usize) -> std::io::Result<()> {
    let mut bytes = std::fs::read(path)?;
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes)
}

/// The byte range of a segment file's data blocks, from its documented layout: they follow the
/// 32-byte header and end where the index block starts (footer bytes 0..8, the footer being
/// the last 80 bytes).
fn data_blocks(segment: &[u8]) -> Result<std::ops::Range<usize>, String> {
    let footer = segment
        .len()
        .checked_sub(80)
        .ok_or("segment shorter than its footer")?;
    let index_at = segment[footer..footer + 8]
        .try_into()
        .map(u64::from_le_bytes)
        .map_err(|e| e.to_string())? as usize;
    if index_at <= 32 || index_at > footer {
        return Err(format!(
            "index offset {index_at} in a {}-byte segment",
            segment.len()
        ));
    }
    Ok(32..index_at)
}

#[test]
fn a_flipped_byte_in_the_middle_of_a_segment_on_disk_is_corruption_naming_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let model = real_db(&path)?;
    {
        let db = Db::open(&path)?;
        assert_eq!(read_state(&db)?, model, "intact database");
        assert!(db.verify().is_ok(), "intact database: {:?}", db.verify());
    }
    assert_eq!(
        files_named(&path.join("data"), "manifest")?.len(),
        1,
        "no manifest"
    );
    assert_eq!(
        files_named(&path.join("data"), "checkpoint-")?,
        Vec::<PathBuf>::new()
    );
    // The oldest segment holds the rows of the first commits, which no later commit changed.
    let segments = files_named(&path.join("data"), "seg-")?;
    let seg = segments.first().ok_or("no segment file")?;
    let blocks = data_blocks(&std::fs::read(seg)?)?;
    flip_byte(seg, (blocks.start + blocks.end) / 2)?;
    // The error stays until the damage is repaired: a second attempt says the same.
    for attempt in 0..2 {
        let ctx = format!("attempt {attempt}");
        // Data blocks are checked when read: the open succeeds.
        let db = Db::open(&path).map_err(|e| format!("{ctx}: open failed: {e:?}"))?;
        let r = read_state(&db);
        assert!(
            matches!(&r, Err(Error::Corruption { file, .. }) if file == seg),
            "{ctx}: reading every row gave {r:?}"
        );
        // Point reads: each one is right or reports the damaged segment; some do.
        let tx = db.begin_read()?;
        let mut failed = 0;
        for (table, rows) in &model {
            for (key, want) in rows {
                match tx.get(table, key) {
                    Ok(got) => assert_eq!(got.as_ref(), Some(want), "{ctx}: get({table}, {key:?})"),
                    Err(Error::Corruption { file, .. }) if file == *seg => failed += 1,
                    Err(e) => return Err(format!("{ctx}: get({table}, {key:?}): {e:?}").into()),
                }
            }
        }
        assert!(failed > 0, "{ctx}: no point read hit the damaged block");
        check_verify_names(&db, seg, &ctx)?;
    }
    Ok(())
}

#[test]
fn a_damaged_identity_file_on_disk_is_corruption_naming_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    real_db(&path)?;
    let id = path.join("VELLUM");
    let original = std::fs::read(&id)?;
    for at in [0, 5, 9, 13, original.len() - 1] {
        flip_byte(&id, at)?;
        let r = Db::open(&path);
        assert!(
            matches!(&r, Err(Error::Corruption { file, .. }) if *file == id),
            "flip at {at}: {r:?}"
        );
        std::fs::write(&id, &original)?;
    }
    std::fs::write(&id, &original[..8])?;
    let r = Db::open(&path);
    assert!(
        matches!(&r, Err(Error::Corruption { file, .. }) if *file == id),
        "truncated: {r:?}"
    );
    std::fs::write(&id, b"")?;
    assert!(matches!(Db::open(&path), Err(Error::Corruption { .. })));
    std::fs::write(&id, &original)?;
    assert!(Db::open(&path).is_ok(), "repaired identity file");
    Ok(())
}

#[test]
fn an_identity_file_of_a_future_format_is_refused_as_unsupported() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    real_db(&path)?;
    let id = path.join("VELLUM");
    let mut bytes = std::fs::read(&id)?;
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[0..12]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&id, &bytes)?;
    let r = Db::open(&path);
    assert!(
        matches!(&r, Err(Error::UnsupportedFormat { file, found: 2, supported: 1 }) if *file == id),
        "{r:?}"
    );
    Ok(())
}

#[test]
fn a_flipped_byte_in_a_logged_commit_on_disk_is_corruption_naming_its_segment() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    real_db(&path)?;
    let wal = path.join("wal");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&wal)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    segments.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("wal-"))
    });
    segments.sort();
    let first = segments.first().ok_or("no segment")?;
    // Byte 44 + 30 lies in the first frame after the segment header, which later frames prove.
    flip_byte(first, 44 + 30)?;
    let r = Db::open(&path);
    assert!(
        matches!(&r, Err(Error::Corruption { file, .. }) if file == first),
        "{r:?}"
    );
    Ok(())
}
