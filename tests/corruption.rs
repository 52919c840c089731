//! Damaged database files: flipped bits and truncations at many offsets of the write-ahead-log
//! segments, the checkpoint and the identity file. Reopening must either recover every
//! acknowledged commit exactly (the damage hit bytes that hold nothing durable) or fail with
//! [`Error::Corruption`] naming the damaged file — never panic, never answer wrongly.
//!
//! The database is written once on a [`SimFs`] (commits, a checkpoint, more commits, a clean
//! close); every case copies its files into a fresh `SimFs`, damages one of them and reopens.

mod common;

use common::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use vellum::fs::{FileSystem, SimFs};
use vellum::{Db, Error, Options};

/// The smallest segment size the log accepts: the workload spans several segments.
const SEGMENT: u64 = 4096;

type Files = Vec<(PathBuf, Vec<u8>)>;

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

/// Writes the database (two tables, 20 commits, a checkpoint, 20 more commits, clean close)
/// and returns its files and the model of its contents.
fn build() -> Result<(Files, Model), Box<dyn std::error::Error>> {
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
        db.close()?;
    }
    let mut files = Vec::new();
    for path in fs.file_paths() {
        let bytes = fs.read(&path)?;
        files.push((path, bytes));
    }
    let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    let has = |part: &str| names.iter().filter(|n| n.contains(part)).count();
    if has("/wal/wal-") < 2 || has("/data/checkpoint-") != 1 || has("/VELLUM") != 1 {
        return Err(format!("unexpected database files: {names:?}").into());
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
    corruption: usize,
}

/// Reopens the damaged database on `fs` and checks the outcome (see the module documentation).
/// After a clean recovery the database must also take a new commit and reopen with it.
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
    match opened {
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
        }
        Err(e) => return Err(format!("{ctx}: reopen failed with {e:?}, not Corruption").into()),
        Ok(db) => {
            let got = read_state(&db)?;
            if &got != model {
                return Err(format!(
                    "{ctx}: reopened without an error but with other contents:\n{}",
                    describe_diff(&got, model)
                )
                .into());
            }
            check_gets(&db, model, &[b"k0".to_vec(), b"k6".to_vec()])
                .map_err(|e| format!("{ctx}: {e}"))?;
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
        }
    }
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
    let (files, model) = build()?;
    let mut rng = XorShift::new(0xf11b);
    for (idx, (path, bytes)) in files.iter().enumerate() {
        let mut tally = Tally::default();
        for at in offsets(bytes.len(), 5, 200, &mut rng) {
            let mask = 1u8 << rng.below(8);
            let fs = restore(&files)?;
            fs.corrupt(path, at as u64, mask)?;
            let ctx = format!("{} byte {at} ^= {mask:#04x}", path.display());
            check_reopen(&fs, &model, path, bytes.len(), &ctx, &mut tally)?;
        }
        let kind = kind_of(path);
        if kind != "spare segment" {
            assert!(
                tally.corruption > 0,
                "{kind} {idx}: no flip was detected: {tally:?}"
            );
        }
        if kind == "wal segment" {
            // Flips in the zeroed space after the last frame damage nothing durable.
            assert!(
                tally.recovered > 0,
                "{kind} {idx}: no flip was harmless: {tally:?}"
            );
        }
        if kind == "checkpoint" || kind == "identity" {
            assert_eq!(
                tally.recovered, 0,
                "{kind}: a flip went unnoticed: {tally:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn truncation_at_any_length_gives_clean_recovery_or_corruption_naming_the_file() -> TestResult {
    let (files, model) = build()?;
    let mut rng = XorShift::new(0x7a11);
    for (path, bytes) in &files {
        let mut tally = Tally::default();
        for len in offsets(bytes.len(), 41, 40, &mut rng) {
            let fs = restore(&files)?;
            fs.truncate(path, len as u64)?;
            let ctx = format!("{} cut to {len} of {} bytes", path.display(), bytes.len());
            check_reopen(&fs, &model, path, bytes.len(), &ctx, &mut tally)?;
        }
        let kind = kind_of(path);
        if kind != "spare segment" {
            // Segments are preallocated and checkpoints end with a footer: any cut shows.
            assert_eq!(
                tally.recovered,
                0,
                "{}: a cut went unnoticed",
                path.display()
            );
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
    let (files, model) = build()?;
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
                let in_mark =
                    path == last_path && (close_mark.0..close_mark.0 + close_mark.1).contains(&at);
                if !in_mark {
                    fs.corrupt(path, at as u64, 1 + rng.below(255) as u8)?;
                    hit.push(at);
                }
            }
            let ctx = format!("{} case {case}: bytes {hit:?}", path.display());
            check_reopen(&fs, &model, path, bytes.len(), &ctx, &mut tally)?;
        }
        assert!(
            tally.corruption > 0 && tally.recovered > 0,
            "{}: {tally:?}",
            path.display()
        );
    }
    Ok(())
}

/// Deleting the checkpoint after the log it covers was released must not reopen as an empty or
/// partial database.
#[test]
fn a_missing_checkpoint_is_corruption_not_a_partial_database() -> TestResult {
    let (files, model) = build()?;
    let (ckpt, _) = files
        .iter()
        .find(|(p, _)| kind_of(p) == "checkpoint")
        .ok_or("no checkpoint")?;
    let first_segment_kept = files
        .iter()
        .any(|(p, _)| p.ends_with("wal-00000000000000000001.log"));
    let fs = restore(&files)?;
    fs.remove_file(ckpt)?;
    fs.sync_dir(Path::new("/db/data"))?;
    match Db::open_with(db_path(), sim_options(&fs, SEGMENT)) {
        Err(Error::Corruption { file, .. }) => {
            assert!(
                file.starts_with(wal_dir()),
                "corruption named {}",
                file.display()
            );
        }
        Err(e) => return Err(format!("expected Corruption, got {e:?}").into()),
        // Only a log that still starts at its first record can rebuild everything.
        Ok(db) => {
            assert!(first_segment_kept, "the released log start went unnoticed");
            assert_eq!(read_state(&db)?, model, "reopened with other contents");
        }
    }
    Ok(())
}

/// A removed log (every segment gone) must not reopen as an empty database either.
#[test]
fn a_database_whose_log_segments_are_gone_is_corruption() -> TestResult {
    let (files, _) = build()?;
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
        "{r:?}"
    );
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

fn only_file(dir: &Path, prefix: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
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
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("expected one {prefix}* in {}: {found:?}", dir.display()).into()),
    }
}

fn flip_byte(path: &Path, at: usize) -> std::io::Result<()> {
    let mut bytes = std::fs::read(path)?;
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes)
}

#[test]
fn a_flipped_byte_in_the_middle_of_a_checkpoint_on_disk_is_corruption_naming_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let model = real_db(&path)?;
    assert_eq!(read_state(&Db::open(&path)?)?, model, "intact database");
    let ckpt = only_file(&path.join("data"), "checkpoint-")?;
    let len = std::fs::metadata(&ckpt)?.len() as usize;
    flip_byte(&ckpt, len / 2)?;
    let r = Db::open(&path);
    assert!(
        matches!(&r, Err(Error::Corruption { file, .. }) if *file == ckpt),
        "{r:?}"
    );
    // The error stays until the damage is repaired: a second attempt says the same.
    assert!(matches!(Db::open(&path), Err(Error::Corruption { .. })));
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
