//! Persistent segment storage seen through the database: data many times the memtable budget,
//! overwrites and deletes, reads at the newest version and at older versions inside the
//! retention window (before and after a reopen), the errors outside it, and disk space after
//! compaction.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use vellum::fs::SimFs;
use vellum::{Db, Error, Options, Version};

const TABLES: [&str; 3] = ["alpha", "beta", "gamma"];
const BUDGET: u64 = 32 << 10;

fn key(i: u64) -> String {
    format!("key-{i:05}")
}

/// Reads every table of a snapshot into a model.
fn snapshot_state(s: &vellum::Snapshot) -> Result<Model, Error> {
    let mut m = Model::new();
    for t in s.list_tables()? {
        let rows = s.scan_all(&t)?.collect::<Result<Vec<_>, _>>()?;
        m.insert(t, rows.into_iter().collect());
    }
    Ok(m)
}

/// Commits `n` transactions of puts (overwrites) and deletes over the three tables, keeping
/// `model` and, every `every` commits, a copy of it by version in `kept`.
fn churn(
    db: &Db,
    model: &mut Model,
    kept: &mut BTreeMap<Version, Model>,
    rng: &mut XorShift,
    n: u64,
    keys: u64,
    every: u64,
) -> Result<(), Error> {
    for i in 0..n {
        let mut tx = db.begin()?;
        let mut view = model.clone();
        for _ in 0..4 {
            let t = TABLES[rng.below(3) as usize];
            let k = key(rng.below(keys));
            if rng.chance(1, 5) {
                tx.delete(t, &k)?;
                view.entry(t.into()).or_default().remove(k.as_bytes());
            } else {
                let v = value(&format!("{t}{i}"), 100 + rng.below(300) as usize);
                tx.put(t, &k, &v)?;
                view.entry(t.into()).or_default().insert(k.into_bytes(), v);
            }
        }
        let v = tx.commit()?;
        *model = view;
        if i % every == 0 {
            kept.insert(v, model.clone());
        }
    }
    Ok(())
}

fn options(fs: &SimFs) -> Options {
    sim_options(fs, 64 << 10)
        .memtable_bytes(BUDGET)
        .block_cache_bytes(64 << 10)
        .retain_versions(400)
        .background_compaction(true)
}

#[test]
fn data_ten_times_the_memtable_reads_back_exactly_at_the_newest_and_retained_versions() -> TestResult
{
    let fs = sim(7, false, false);
    let mut model = Model::new();
    let mut kept = BTreeMap::new();
    let mut rng = XorShift::new(99);
    {
        let db = Db::open_with(db_path(), options(&fs))?;
        for t in TABLES {
            db.create_table(t)?;
            model.insert(t.into(), Rows::new());
        }
        churn(&db, &mut model, &mut kept, &mut rng, 3000, 1500, 25)?;
        // Let the worker flush, then compact in the foreground too.
        db.checkpoint()?;
        let stats = db.stats().storage;
        eprintln!("{stats:?}");
        let live: usize = model
            .values()
            .flat_map(|r| r.iter())
            .map(|(k, v)| k.len() + v.len())
            .sum();
        assert!(
            live as u64 >= 10 * BUDGET,
            "live data {live} bytes is not 10 times the {BUDGET}-byte memtable"
        );
        assert!(stats.flushes >= 10, "{stats:?}");
        assert!(stats.segments >= 1, "{stats:?}");
        assert_eq!(read_state(&db)?, model, "newest version");
        check_retained(&db, &kept, &model)?;
        db.compact()?;
        let stats = db.stats().storage;
        assert!(
            stats.compactions >= 1 && stats.cells_dropped > 0,
            "{stats:?}"
        );
        assert_eq!(read_state(&db)?, model, "newest version after compaction");
        check_retained(&db, &kept, &model)?;
        let report = db.verify();
        assert!(
            report.is_ok() && report.segments >= 1 && report.cells > 0,
            "{report:?}"
        );
        db.close()?;
    }
    // After a reopen: the same, from segments and the log.
    let db = Db::open_with(db_path(), options(&fs))?;
    assert_eq!(read_state(&db)?, model, "newest version after reopen");
    check_retained(&db, &kept, &model)?;
    Ok(())
}

/// Every kept version inside the retention window reads back as it was; older ones fail with
/// `NotRetained` naming the oldest readable version, which then works.
fn check_retained(db: &Db, kept: &BTreeMap<Version, Model>, newest: &Model) -> TestResult {
    let now = db.version();
    let mut inside = 0;
    for (v, m) in kept {
        match db.read_at(*v) {
            Ok(s) => {
                assert_eq!(s.version(), *v);
                assert!(snapshot_state(&s)? == *m, "state at version {v} differs");
                inside += 1;
            }
            Err(Error::NotRetained { requested, oldest }) => {
                assert_eq!(requested, *v);
                assert!(oldest > *v && oldest <= now, "oldest {oldest}, asked {v}");
                assert!(
                    now.get() - v.get() > 400,
                    "version {v} is inside the 400-version retention window (newest {now})"
                );
                db.read_at(oldest)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    assert!(inside >= 10, "only {inside} kept versions readable");
    assert_eq!(snapshot_state(&db.read_at(now)?)?, *newest);
    assert!(matches!(
        db.read_at(Version(now.get() + 1)),
        Err(Error::InvalidArgument(_))
    ));
    Ok(())
}

#[test]
fn a_version_outside_the_retention_window_is_refused_with_the_oldest_readable_one() -> TestResult {
    let fs = sim(8, false, false);
    let db = Db::open_with(db_path(), sim_options(&fs, 64 << 10).retain_versions(5))?;
    db.create_table("t")?;
    let first = db
        .run(|tx| tx.put("t", "k", "first"))
        .map(|_| db.version())?;
    for i in 0..20 {
        db.run(|tx| tx.put("t", "k", format!("v{i}")))?;
    }
    db.checkpoint()?;
    let err = db.read_at(first).err();
    let Some(Error::NotRetained { requested, oldest }) = err else {
        return Err(format!("expected NotRetained, got {err:?}").into());
    };
    assert_eq!(requested, first);
    assert_eq!(oldest, Version(db.version().get() - 5));
    assert_eq!(db.read_at(oldest)?.get("t", "k")?, Some(b"v14".to_vec()));
    Ok(())
}

#[test]
fn a_time_window_keeps_every_version_since_it_began() -> TestResult {
    let fs = sim(9, false, false);
    let opts = sim_options(&fs, 64 << 10).retain_versions_for(Duration::from_secs(3600));
    let db = Db::open_with(db_path(), opts)?;
    db.create_table("t")?;
    let mut versions = Vec::new();
    for i in 0..30 {
        db.run(|tx| tx.put("t", "k", format!("v{i}")))?;
        versions.push(db.version());
    }
    db.compact()?;
    for (i, v) in versions.iter().enumerate() {
        assert_eq!(
            db.read_at(*v)?.get("t", "k")?,
            Some(format!("v{i}").into_bytes())
        );
    }
    Ok(())
}

fn dir_size(path: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[test]
fn after_many_overwrites_and_a_compaction_the_directory_is_within_twice_the_live_data() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let opts = Options::default()
        .wal_segment_bytes(64 << 10)
        .memtable_bytes(256 << 10)
        .durability(vellum::Durability::None);
    let db = Db::open_with(&path, opts)?;
    db.create_table("t")?;
    let mut live = BTreeMap::new();
    for round in 0..20u64 {
        for chunk in 0..10u64 {
            db.run(|tx| {
                for i in 0..100u64 {
                    let k = key(chunk * 100 + i);
                    tx.put("t", &k, value(&format!("{round}"), 1000))?;
                }
                Ok(())
            })?;
        }
    }
    for i in 0..1000u64 {
        live.insert(key(i), value("19", 1000));
    }
    let live_bytes: u64 = live.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
    let written = 20 * live_bytes;
    db.compact()?;
    let size = dir_size(&path)?;
    eprintln!("directory {size} bytes, live data {live_bytes} bytes, written {written} bytes");
    assert!(size >= live_bytes, "the data is not on disk: {size} bytes");
    assert!(
        size <= 2 * live_bytes,
        "directory holds {size} bytes for {live_bytes} bytes of live data ({written} written)"
    );
    let got = db.begin_read()?.scan_all("t")?.count();
    assert_eq!(got, live.len());
    Ok(())
}
