//! Mirrors follow the change feed: whole transactions, in order, exactly once, across sink
//! failures and runner restarts.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;
use vellum::mirror::{DirectoryMirror, Mirror, MirrorError, MirrorOptions, MirrorRunner};
use vellum::{Change, CommittedTransaction, Db, Durability, Error, Options, Snapshot, Version};

type TestResult = Result<(), Box<dyn StdError>>;

/// The durable state of a test sink: it outlives any runner, like a database would.
#[derive(Default)]
struct SinkState {
    calls: u64,
    rows: AllRows,
    position: Option<Version>,
    applied: Vec<Version>,
    snapshots: u64,
    violations: Vec<String>,
}

/// A sink that fails (before doing anything) on every third call.
struct FlakySink(Arc<Mutex<SinkState>>);

impl FlakySink {
    fn fail_every_third(s: &mut SinkState) -> Result<(), MirrorError> {
        s.calls += 1;
        if s.calls.is_multiple_of(3) {
            return Err("injected sink failure".into());
        }
        Ok(())
    }
}

impl Mirror for FlakySink {
    fn position(&mut self) -> Result<Option<Version>, MirrorError> {
        Ok(self.0.lock().position)
    }

    fn load_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), MirrorError> {
        let mut s = self.0.lock();
        Self::fail_every_third(&mut s)?;
        let mut rows = BTreeMap::new();
        for table in snapshot.list_tables()? {
            for row in snapshot.scan_all(&table)? {
                let (k, v) = row?;
                rows.insert((table.clone(), k), v);
            }
        }
        s.rows = rows;
        s.position = Some(snapshot.version());
        s.snapshots += 1;
        Ok(())
    }

    fn apply(&mut self, tx: &CommittedTransaction) -> Result<(), MirrorError> {
        let mut s = self.0.lock();
        Self::fail_every_third(&mut s)?;
        if s.position.is_some_and(|p| tx.version <= p) {
            let msg = format!(
                "version {} applied at position {:?}",
                tx.version, s.position
            );
            s.violations.push(msg);
        }
        let puts = tx
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Put { .. }))
            .count();
        let is_transfer = tx
            .changes
            .iter()
            .any(|c| matches!(c, Change::Put { table, .. } if table == "ledger"));
        if is_transfer && puts != 3 {
            s.violations
                .push(format!("transaction {} split: {} puts", tx.version, puts));
        }
        for c in &tx.changes {
            match c {
                Change::Put { table, key, value } => {
                    s.rows.insert((table.clone(), key.clone()), value.clone());
                }
                Change::Delete { table, key } => {
                    s.rows.remove(&(table.clone(), key.clone()));
                }
                Change::DropTable { table } => s.rows.retain(|(t, _), _| t != table),
                Change::CreateTable { .. } => {}
            }
        }
        s.position = Some(tx.version);
        s.applied.push(tx.version);
        Ok(())
    }
}

/// Every row of every table: (table, key) → value.
type AllRows = BTreeMap<(String, Vec<u8>), Vec<u8>>;

fn db_rows(db: &Db) -> Result<(Version, AllRows), Error> {
    let snap = db.snapshot()?;
    let mut rows = BTreeMap::new();
    for table in snap.list_tables()? {
        for row in snap.scan_all(&table)? {
            let (k, v) = row?;
            rows.insert((table.clone(), k), v);
        }
    }
    Ok((snap.version(), rows))
}

fn transfer(db: &Db, thread: u64, n: u64) -> Result<(), Error> {
    let from = format!("acct-{}", (thread * 7 + n) % 10);
    let to = format!("acct-{}", (thread * 3 + n * 5 + 1) % 10);
    db.run(|tx| {
        let a = tx.get("accounts", &from)?.map_or(0, |v| v.len() as u64);
        tx.put("accounts", &from, vec![b'x'; (a % 7 + 1) as usize])?;
        tx.put("accounts", &to, format!("{thread}-{n}"))?;
        tx.put(
            "ledger",
            format!("{thread:02}-{n:06}"),
            format!("{from}->{to}"),
        )?;
        Ok(())
    })
}

fn fast() -> MirrorOptions {
    MirrorOptions {
        poll_interval: Duration::from_millis(2),
        retry_base: Duration::from_micros(200),
        retry_max: Duration::from_millis(5),
        batch_max: 50,
    }
}

#[test]
fn a_flaky_sink_and_a_restarted_runner_mirror_5000_transactions_exactly_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open_with(dir.path(), Options::default().durability(Durability::None))?;
    db.create_table("accounts")?;
    db.create_table("ledger")?;
    let state = Arc::new(Mutex::new(SinkState::default()));
    let first = MirrorRunner::start(&db, "flaky", FlakySink(state.clone()), fast())?;
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 1250;
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || -> Result<(), Error> {
                for n in 0..PER_THREAD {
                    transfer(&db, t, n)?;
                }
                Ok(())
            })
        })
        .collect();
    // Restart the runner mid-stream: the new one resumes from the sink's durable position.
    // (Mid-stream: half the transactions committed and the first runner has applied some.)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (db.stats().commits < 2 + THREADS * PER_THREAD / 2 || first.status().applied == 0)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped = first.stop();
    assert!(
        stopped.applied > 0,
        "the first runner mirrored something: {stopped:?}"
    );
    let second = MirrorRunner::start(&db, "flaky", FlakySink(state.clone()), fast())?;
    for w in writers {
        w.join().map_err(|_| "writer panicked")??;
    }
    let end = db.version();
    assert!(
        second.wait_for(end, Duration::from_secs(60)),
        "mirror caught up: {:?}",
        second.status()
    );
    let status = second.stop();
    assert_eq!(status.mirrored_version, end);
    assert_eq!(status.lag_versions, 0);

    let s = state.lock();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert!(
        s.applied.windows(2).all(|w| w[0] < w[1]),
        "applied in commit order, once each"
    );
    assert!(
        stopped.failures + status.failures > 0,
        "the sink did fail and was retried"
    );
    let ledger = s.rows.keys().filter(|(t, _)| t == "ledger").count() as u64;
    assert_eq!(
        ledger,
        THREADS * PER_THREAD,
        "every transfer mirrored exactly once"
    );
    let (version, rows) = db_rows(&db)?;
    assert_eq!(version, end);
    assert_eq!(s.position, Some(end));
    assert!(
        s.rows == rows,
        "the mirror equals the database at its mirrored version"
    );
    assert!(
        dir.path().join("mirrors/flaky.progress").exists(),
        "progress is persisted"
    );
    Ok(())
}

#[test]
fn a_mirror_behind_the_retained_history_reloads_a_snapshot() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = Db::open_with(dir.path(), Options::default().durability(Durability::None))?;
    db.create_table("t")?;
    for i in 0..20 {
        db.transaction(|tx| tx.put("t", format!("k{i}"), "v"))?;
    }
    // The sink says it is at version 1, but a checkpoint collapsed history since.
    db.checkpoint()?;
    let state = Arc::new(Mutex::new(SinkState {
        position: Some(Version(1)),
        ..SinkState::default()
    }));
    let runner = MirrorRunner::start(&db, "behind", FlakySink(state.clone()), fast())?;
    assert!(runner.wait_for(db.version(), Duration::from_secs(30)));
    let status = runner.stop();
    assert!(status.snapshots_loaded >= 1, "{status:?}");
    let (_, rows) = db_rows(&db)?;
    assert!(state.lock().rows == rows);
    Ok(())
}

#[test]
fn the_directory_mirror_publishes_whole_transactions_and_resumes_after_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let target = dir.path().join("mirror");
    let db = Db::open_with(
        dir.path().join("db"),
        Options::default().durability(Durability::None),
    )?;
    db.create_table("accounts")?;
    db.create_table("ledger")?;
    for n in 0..200 {
        transfer(&db, 0, n)?;
    }
    let runner = MirrorRunner::start(&db, "dir", DirectoryMirror::open(&target)?, fast())?;
    assert!(runner.wait_for(db.version(), Duration::from_secs(30)));
    drop(runner);
    for n in 200..300 {
        transfer(&db, 1, n)?;
    }
    // A new runner over a reopened directory mirror resumes from what it published.
    let runner = MirrorRunner::start(&db, "dir", DirectoryMirror::open(&target)?, fast())?;
    assert!(runner.wait_for(db.version(), Duration::from_secs(30)));
    let status = runner.stop();
    assert_eq!(
        status.snapshots_loaded, 0,
        "resumed from the published position: {status:?}"
    );
    let (path, manifest) = vellum::export::latest_export(&target)?.ok_or("nothing published")?;
    assert_eq!(manifest.commit_version, db.version().get());
    let ledger = manifest
        .tables
        .iter()
        .find(|t| t.name == "ledger")
        .ok_or("no ledger")?;
    assert_eq!(ledger.rows, 300, "{}", path.display());
    let published = std::fs::read_dir(&target)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("export-"))
        .count();
    assert!(published <= 2, "old states are pruned: {published}");
    Ok(())
}
