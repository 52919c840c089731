//! The change feed: `Db::changes_since`.
//!
//! * It yields exactly the transactions committed after the given version, in commit order,
//!   each whole: a multi-table transaction is one `CommittedTransaction` with its commit
//!   version; deletes are `Delete`; table creations and drops are `CreateTable` / `DropTable`
//!   and come before the row changes. Rolled-back, dropped, failed, conflicted and
//!   savepoint-undone work never appears; nor do read-only or empty commits; a two-phase
//!   commit appears at its `commit_prepared` version, a rolled-back prepared one never.
//! * Applying the feed from version 0 to an empty model reproduces the database, and the
//!   model after each transaction equals a snapshot taken right after that commit.
//! * After `Db::checkpoint` with no live snapshot, history before the checkpoint's horizon is
//!   gone: `changes_since(0)` is `Error::NotRetained` whose `oldest` is that horizon (and whose
//!   message says so), while `changes_since(oldest)` works. A live snapshot holds the horizon.
//! * After reopening, history after the checkpoint version is retained: the feed from it
//!   yields the commits replayed from the log, exactly as before the reopen (also after a
//!   power cut).
//! * Concurrent writers (conflicting on a shared counter) never make the feed split or lose a
//!   transaction: successive feeds are contiguous and each transaction matches its commit.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use vellum::{Change, CommittedTransaction, Db, Error, Transaction, Version};

const SEGMENT: u64 = 64 << 10;

fn open(fs: &vellum::fs::SimFs) -> Result<Db, Error> {
    Db::open_with(db_path(), sim_options(fs, SEGMENT))
}

fn put(table: &str, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Change {
    Change::Put {
        table: table.to_string(),
        key: key.as_ref().to_vec(),
        value: value.as_ref().to_vec(),
    }
}

fn del(table: &str, key: impl AsRef<[u8]>) -> Change {
    Change::Delete {
        table: table.to_string(),
        key: key.as_ref().to_vec(),
    }
}

fn create(table: &str) -> Change {
    Change::CreateTable {
        table: table.to_string(),
    }
}

fn drop_t(table: &str) -> Change {
    Change::DropTable {
        table: table.to_string(),
    }
}

/// A total order on changes, to compare a transaction's changes as a multiset.
fn sort_key(c: &Change) -> (u8, String, Vec<u8>, Vec<u8>) {
    match c {
        Change::CreateTable { table } => (0, table.clone(), Vec::new(), Vec::new()),
        Change::DropTable { table } => (1, table.clone(), Vec::new(), Vec::new()),
        Change::Put { table, key, value } => (2, table.clone(), key.clone(), value.clone()),
        Change::Delete { table, key } => (3, table.clone(), key.clone(), Vec::new()),
        #[allow(unreachable_patterns)]
        _ => (9, String::new(), Vec::new(), Vec::new()),
    }
}

fn sorted(changes: &[Change]) -> Vec<Change> {
    let mut v = changes.to_vec();
    v.sort_by_key(sort_key);
    v
}

fn is_catalog(c: &Change) -> bool {
    match c {
        Change::CreateTable { .. } | Change::DropTable { .. } => true,
        Change::Put { .. } | Change::Delete { .. } => false,
    }
}

/// Checks one fed transaction against what was committed: same version, same changes (as a
/// multiset), catalog changes first.
fn check_tx(got: &CommittedTransaction, version: Version, want: &[Change]) -> Result<(), String> {
    if got.version != version {
        return Err(format!("fed version {}, expected {version}", got.version));
    }
    if sorted(&got.changes) != sorted(want) {
        return Err(format!(
            "version {version}: fed changes\n  {:?}\nexpected\n  {:?}",
            got.changes, want
        ));
    }
    if let Some(first_row) = got.changes.iter().position(|c| !is_catalog(c)) {
        if got.changes[first_row..].iter().any(is_catalog) {
            return Err(format!(
                "version {version}: a table creation or drop after row changes: {:?}",
                got.changes
            ));
        }
    }
    Ok(())
}

/// Applies a fed transaction to a model. `CreateTable` of an existing table means it was
/// dropped and recreated in that transaction: it starts empty.
fn apply(model: &mut Model, tx: &CommittedTransaction) -> Result<(), String> {
    for c in &tx.changes {
        match c {
            Change::CreateTable { table } => {
                model.insert(table.clone(), Rows::new());
            }
            Change::DropTable { table } => {
                if model.remove(table).is_none() {
                    return Err(format!(
                        "version {}: drop of missing table {table}",
                        tx.version
                    ));
                }
            }
            Change::Put { table, key, value } => {
                model
                    .get_mut(table)
                    .ok_or_else(|| {
                        format!("version {}: put into missing table {table}", tx.version)
                    })?
                    .insert(key.clone(), value.clone());
            }
            Change::Delete { table, key } => {
                model
                    .get_mut(table)
                    .ok_or_else(|| {
                        format!("version {}: delete in missing table {table}", tx.version)
                    })?
                    .remove(key);
            }
            #[allow(unreachable_patterns)]
            other => return Err(format!("unknown change {other:?}")),
        }
    }
    Ok(())
}

fn collect(db: &Db, after: Version) -> Result<Vec<CommittedTransaction>, Error> {
    Ok(db.changes_since(after)?.collect())
}

fn expect_not_retained(db: &Db, requested: Version, oldest: Version) -> TestResult {
    let err = db.changes_since(requested).err();
    assert!(
        matches!(
            &err,
            Some(Error::NotRetained { requested: r, oldest: o }) if *r == requested && *o == oldest
        ),
        "changes_since({requested}): expected NotRetained with oldest {oldest}, got {err:?}"
    );
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("no longer retained")
            && text.contains(&format!("after version {requested}"))
            && text.contains(&format!("only after version {oldest}")),
        "message does not name the versions: {text}"
    );
    Ok(())
}

#[test]
fn the_feed_yields_exactly_the_committed_transactions_each_whole_in_order() -> TestResult {
    let fs = sim(1, false, false);
    let db = open(&fs)?;
    let start = db.version();
    let mut expected: Vec<(Version, Vec<Change>)> = Vec::new();

    // A multi-table transaction with table creations.
    let mut tx = db.begin()?;
    tx.create_table("a")?;
    tx.create_table("b/with space")?;
    tx.put("a", "k1", "v1")?;
    tx.put("a", "k2", "v2")?;
    tx.put("b/with space", [0xffu8, 0x00], [0x80u8, 0x81])?;
    let v = tx.commit()?;
    expected.push((
        v,
        vec![
            create("a"),
            create("b/with space"),
            put("a", "k1", "v1"),
            put("a", "k2", "v2"),
            put("b/with space", [0xff, 0x00], [0x80, 0x81]),
        ],
    ));

    // Work that never commits.
    let mut tx = db.begin()?;
    tx.put("a", "rolled back", "x")?;
    tx.rollback()?;
    let mut tx = db.begin()?;
    tx.put("a", "dropped", "x")?;
    drop(tx);
    let failed: Result<(), Error> = db.transaction(|tx: &mut Transaction| {
        tx.put("a", "failed", "x")?;
        Err(Error::InvalidArgument("the closure gives up".into()))
    });
    assert!(matches!(failed, Err(Error::InvalidArgument(_))));
    // Read-only and empty commits write nothing.
    let ro = db.begin_read()?;
    assert!(ro.get("a", "k1")?.is_some());
    ro.commit()?;
    db.begin()?.commit()?;

    // Overwrite, delete, delete of a key that never existed.
    let mut tx = db.begin()?;
    tx.put("a", "k1", "v1b")?;
    tx.delete("b/with space", [0xffu8, 0x00])?;
    tx.delete("a", "ghost")?;
    let v = tx.commit()?;
    expected.push((
        v,
        vec![
            put("a", "k1", "v1b"),
            del("b/with space", [0xff, 0x00]),
            del("a", "ghost"),
        ],
    ));

    // A write-write conflict: the first committer appears, the loser never does.
    let mut x = db.begin()?;
    let mut y = db.begin()?;
    x.put("a", "k2", "from x")?;
    y.put("a", "k2", "from y")?;
    y.put("a", "only y", "y")?;
    let v = x.commit()?;
    expected.push((v, vec![put("a", "k2", "from x")]));
    let lost = y.commit();
    assert!(
        matches!(lost, Err(Error::Conflict(_))),
        "expected a conflict, got {lost:?}"
    );

    // A savepoint rolled back: only the work before it commits.
    let mut tx = db.begin()?;
    tx.put("a", "s1", "kept")?;
    tx.savepoint("sp")?;
    tx.put("a", "s2", "undone")?;
    tx.create_table("undone table")?;
    tx.rollback_to("sp")?;
    let v = tx.commit()?;
    expected.push((v, vec![put("a", "s1", "kept")]));

    // Create a table, write it, drop another, in one transaction.
    let mut tx = db.begin()?;
    tx.create_table("c")?;
    tx.put("c", "x", "1")?;
    tx.drop_table("b/with space")?;
    let v = tx.commit()?;
    expected.push((
        v,
        vec![create("c"), drop_t("b/with space"), put("c", "x", "1")],
    ));

    // Drop alone (its rows are not listed), then recreate under the same name.
    let mut tx = db.begin()?;
    tx.drop_table("c")?;
    let v = tx.commit()?;
    expected.push((v, vec![drop_t("c")]));
    let mut tx = db.begin()?;
    tx.create_table("c")?;
    tx.put("c", "y", "2")?;
    let v = tx.commit()?;
    expected.push((v, vec![create("c"), put("c", "y", "2")]));

    // Two-phase commit: the committed one appears at its commit version, the other never.
    let mut tx = db.begin()?;
    tx.put("a", "2pc", "committed")?;
    tx.put("c", "2pc", "committed")?;
    tx.prepare("gid-commit")?;
    let mut tx = db.begin()?;
    tx.put("a", "2pc-rolled-back", "x")?;
    tx.prepare("gid-rollback")?;
    db.rollback_prepared("gid-rollback")?;
    let v = db.commit_prepared("gid-commit")?;
    expected.push((
        v,
        vec![put("a", "2pc", "committed"), put("c", "2pc", "committed")],
    ));

    let feed = db.changes_since(start)?;
    assert_eq!(feed.upto(), db.version());
    let fed: Vec<CommittedTransaction> = feed.collect();
    let fed_versions: Vec<Version> = fed.iter().map(|t| t.version).collect();
    let want_versions: Vec<Version> = expected.iter().map(|(v, _)| *v).collect();
    assert_eq!(fed_versions, want_versions, "fed versions");
    for (got, (v, want)) in fed.iter().zip(&expected) {
        check_tx(got, *v, want)?;
    }

    // Every suffix: the feed after each commit version holds exactly the later ones.
    for (i, (v, _)) in expected.iter().enumerate() {
        let later = collect(&db, *v)?;
        assert_eq!(later, fed[i + 1..].to_vec(), "feed after version {v}");
    }
    assert!(collect(&db, db.version())?.is_empty());

    // Applying the feed reproduces the database.
    let mut model = Model::new();
    for tx in &fed {
        apply(&mut model, tx)?;
    }
    assert!(
        model == read_state(&db)?,
        "{}",
        describe_diff(&model, &read_state(&db)?)
    );
    Ok(())
}

/// One step of the random workload.
fn random_tx(
    db: &Db,
    rng: &mut XorShift,
    names: &[&str],
    i: usize,
    kinds: &mut BTreeMap<&'static str, u64>,
) -> Result<Option<Version>, Box<dyn std::error::Error>> {
    let mut saw = |k: &'static str| *kinds.entry(k).or_default() += 1;
    let key = |rng: &mut XorShift| -> Vec<u8> {
        if rng.chance(1, 4) {
            vec![0xff, rng.below(4) as u8]
        } else {
            format!("k{}", rng.below(6)).into_bytes()
        }
    };
    let mut tx = db.begin()?;
    for j in 0..1 + rng.below(5) {
        let name = names[rng.below(names.len() as u64) as usize];
        let exists = tx.table_exists(name)?;
        match rng.below(20) {
            0 if exists => {
                saw("drop");
                tx.drop_table(name)?;
            }
            1 if exists => {
                // Drop and recreate in one transaction.
                saw("drop and recreate");
                tx.drop_table(name)?;
                tx.create_table(name)?;
                tx.put(name, "fresh", format!("tx{i}"))?;
            }
            _ if !exists => {
                saw("create");
                tx.create_table(name)?;
            }
            2..=5 => {
                saw("delete");
                tx.delete(name, key(rng))?;
            }
            _ => {
                let v = if rng.chance(1, 3) {
                    vec![0x80, i as u8, j as u8]
                } else {
                    format!("tx{i}.{j}").into_bytes()
                };
                tx.put(name, key(rng), v)?;
            }
        }
    }
    match rng.below(10) {
        0 => {
            saw("rollback");
            tx.rollback()?;
            Ok(None)
        }
        1 => {
            // Instead: a loser and a winner writing the same key of a committed table; the
            // winner commits first, the loser conflicts.
            tx.rollback()?;
            let Some(table) = db.list_tables()?.into_iter().next() else {
                return Ok(None);
            };
            let mut loser = db.begin()?;
            loser.put(&table, "contended", format!("loser {i}"))?;
            let mut winner = db.begin()?;
            winner.put(&table, "contended", format!("winner {i}"))?;
            winner.commit()?;
            let lost = loser.commit();
            assert!(
                matches!(lost, Err(Error::Conflict(_))),
                "expected a conflict: {lost:?}"
            );
            saw("conflict");
            Ok(None)
        }
        _ => Ok(Some(tx.commit()?)),
    }
}

#[test]
fn applying_the_feed_to_an_empty_model_reproduces_every_committed_state() -> TestResult {
    let fs = sim(2, false, false);
    let db = open(&fs)?;
    let names = ["t0", "t1", "t/2 x", "t3"];
    let mut rng = XorShift::new(42);
    // State after every commit, read through a snapshot right after it.
    let mut states: BTreeMap<Version, Model> = BTreeMap::from([(Version::ZERO, Model::new())]);
    let mut incremental = Model::new();
    let mut last = Version::ZERO;
    let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
    for i in 0..300 {
        let before = db.version();
        let committed = random_tx(&db, &mut rng, &names, i, &mut kinds)?;
        if committed.is_some() || db.version() != before {
            // The committed transaction (and, for conflicts, the winner) are visible now.
            let snap = db.snapshot()?;
            let mut state = Model::new();
            for t in snap.list_tables()? {
                let rows = snap.scan_all(&t)?.collect::<Result<Rows, Error>>()?;
                state.insert(t, rows);
            }
            states.insert(snap.version(), state);
        }
        if i % 25 == 24 {
            for tx in db.changes_since(last)? {
                apply(&mut incremental, &tx)?;
                last = tx.version;
            }
        }
    }
    for kind in [
        "create",
        "drop",
        "drop and recreate",
        "delete",
        "rollback",
        "conflict",
    ] {
        assert!(
            kinds.get(kind).is_some_and(|&n| n > 0),
            "the workload never did {kind}: {kinds:?}"
        );
    }
    println!("workload: {kinds:?}, {} commits", db.version());
    // Every version in between is a commit, each followed by a state read (single thread).
    assert_eq!(states.len() as u64, db.version().get() + 1);

    let mut model = Model::new();
    let mut fed = 0;
    for tx in db.changes_since(Version::ZERO)? {
        apply(&mut model, &tx)?;
        let want = states
            .get(&tx.version)
            .ok_or_else(|| format!("fed version {} was not committed", tx.version))?;
        assert!(
            &model == want,
            "after version {}:\n{}",
            tx.version,
            describe_diff(&model, want)
        );
        fed += 1;
    }
    assert_eq!(fed, states.len() - 1, "one fed transaction per commit");
    for tx in db.changes_since(last)? {
        apply(&mut incremental, &tx)?;
    }
    let now = read_state(&db)?;
    assert!(model == now, "{}", describe_diff(&model, &now));
    assert!(incremental == now, "{}", describe_diff(&incremental, &now));
    Ok(())
}

/// Commits `n` small transactions touching `table` (created if needed); returns their versions.
fn commits(db: &Db, table: &str, tag: &str, n: usize) -> Result<Vec<Version>, Error> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut tx = db.begin()?;
        if !tx.table_exists(table)? {
            tx.create_table(table)?;
        }
        tx.put(table, format!("{tag}-{i}"), format!("{tag} value {i}"))?;
        if i > 0 {
            tx.delete(table, format!("{tag}-{}", i - 1))?;
        }
        out.push(tx.commit()?);
    }
    Ok(out)
}

#[test]
fn after_a_checkpoint_older_history_is_not_retained_and_says_where_it_starts() -> TestResult {
    let fs = sim(3, false, false);
    let db = open(&fs)?;
    commits(&db, "t", "a", 5)?;
    assert_eq!(
        collect(&db, Version::ZERO)?.len(),
        5,
        "full history before any checkpoint"
    );
    assert_eq!(db.stats().live_transactions, 0);
    db.checkpoint()?;
    let horizon = db.version();
    let at_horizon = read_state(&db)?;
    expect_not_retained(&db, Version::ZERO, horizon)?;
    expect_not_retained(&db, Version(horizon.get() - 1), horizon)?;
    let feed = db.changes_since(horizon)?;
    assert_eq!(feed.upto(), horizon);
    assert_eq!(feed.count(), 0);

    // History after the horizon is kept and replays onto the state at the horizon.
    let later = commits(&db, "u", "b", 3)?;
    let fed = collect(&db, horizon)?;
    assert_eq!(fed.iter().map(|t| t.version).collect::<Vec<_>>(), later);
    let mut model = at_horizon.clone();
    for tx in &fed {
        apply(&mut model, tx)?;
    }
    assert!(model == read_state(&db)?);
    expect_not_retained(&db, Version::ZERO, horizon)?;

    // A live snapshot holds the horizon of the next checkpoint at its version.
    let snap = db.snapshot()?;
    let s = snap.version();
    let mut at_snapshot = Model::new();
    for t in snap.list_tables()? {
        at_snapshot.insert(
            t.clone(),
            snap.scan_all(&t)?.collect::<Result<Rows, Error>>()?,
        );
    }
    let after_snapshot = commits(&db, "t", "c", 4)?;
    db.checkpoint()?;
    expect_not_retained(&db, Version(s.get() - 1), s)?;
    let fed = collect(&db, s)?;
    assert_eq!(
        fed.iter().map(|t| t.version).collect::<Vec<_>>(),
        after_snapshot
    );
    let mut model = at_snapshot;
    for tx in &fed {
        apply(&mut model, tx)?;
    }
    assert!(model == read_state(&db)?);

    // Once the snapshot is gone, the next checkpoint moves the horizon up to the newest version.
    drop(snap);
    db.checkpoint()?;
    let newest = db.version();
    expect_not_retained(&db, s, newest)?;
    assert_eq!(collect(&db, newest)?.len(), 0);
    Ok(())
}

#[test]
fn after_reopen_history_after_the_checkpoint_is_retained_from_the_log() -> TestResult {
    let fs = sim(4, false, false);
    let db = open(&fs)?;
    commits(&db, "t", "a", 4)?;
    db.checkpoint()?;
    let ckpt = db.version();
    let at_ckpt = read_state(&db)?;
    // Logged after the checkpoint: a multi-table transaction, a drop, a create.
    let mut logged = commits(&db, "t", "b", 2)?;
    let mut tx = db.begin()?;
    tx.create_table("u")?;
    tx.put("u", "x", [0xffu8])?;
    tx.put("t", "b-1", "changed with u")?;
    logged.push(tx.commit()?);
    logged.extend(commits(&db, "v", "c", 1)?);
    let mut tx = db.begin()?;
    tx.drop_table("v")?;
    logged.push(tx.commit()?);
    let before = collect(&db, ckpt)?;
    assert_eq!(before.iter().map(|t| t.version).collect::<Vec<_>>(), logged);
    drop(db);

    // Clean reopen: the checkpoint is loaded, the rest replayed from the log.
    let db = open(&fs)?;
    assert_eq!(
        collect(&db, ckpt)?,
        before,
        "feed after the checkpoint differs after reopen"
    );
    expect_not_retained(&db, Version(ckpt.get() - 1), ckpt)?;
    expect_not_retained(&db, Version::ZERO, ckpt)?;
    let mut model = at_ckpt;
    for tx in &before {
        apply(&mut model, tx)?;
    }
    assert!(model == read_state(&db)?);

    // More commits, then a power cut (Immediate durability: every commit is durable).
    let more = commits(&db, "u", "d", 3)?;
    let full = collect(&db, ckpt)?;
    assert_eq!(full.len(), before.len() + more.len());
    fs.restart();
    drop(db);
    let db = open(&fs)?;
    assert_eq!(collect(&db, ckpt)?, full, "feed differs after a power cut");
    for tx in &full[before.len()..] {
        apply(&mut model, tx)?;
    }
    assert!(model == read_state(&db)?);
    Ok(())
}

#[test]
fn without_a_checkpoint_the_whole_history_survives_reopen() -> TestResult {
    let fs = sim(5, false, false);
    let db = open(&fs)?;
    commits(&db, "t", "a", 3)?;
    let mut tx = db.begin()?;
    tx.create_table("u")?;
    tx.put("u", "k", "v")?;
    tx.delete("t", "a-2")?;
    tx.commit()?;
    db.drop_table("u")?;
    let before = collect(&db, Version::ZERO)?;
    assert_eq!(before.len(), 5);
    drop(db);
    let db = open(&fs)?;
    assert_eq!(collect(&db, Version::ZERO)?, before);
    Ok(())
}

const WRITERS: u64 = 4;
const TXS_PER_WRITER: u64 = 120;

/// A commit's version and its changes.
type Commit = (Version, Vec<Change>);

/// One writer: transactions over tables `a`, `b` and a shared counter in `meta` (so writers
/// conflict), retried on conflict. Returns (version, changes) of every commit.
/// Every writer's first attempt reads the counter and then waits at `barrier` for the others,
/// so all but one of those first attempts conflict.
fn writer(db: &Db, t: u64, barrier: &Barrier) -> Result<(Vec<Commit>, u64), String> {
    let mut out = Vec::new();
    let mut conflicts = 0;
    let mut first = true;
    for i in 0..TXS_PER_WRITER {
        loop {
            let mut attempt = || -> Result<(Version, Vec<Change>), Error> {
                let mut tx = db.begin()?;
                let raw = tx
                    .get("meta", "count")?
                    .ok_or_else(|| Error::InvalidArgument("no counter".into()))?;
                let count = u64::from_le_bytes(
                    raw.as_slice()
                        .try_into()
                        .map_err(|_| Error::InvalidArgument("bad counter".into()))?,
                );
                if std::mem::take(&mut first) {
                    barrier.wait();
                } else {
                    std::thread::yield_now();
                }
                let tag = format!("w{t}-tx{i}");
                let mut changes = vec![
                    put("meta", "count", (count + 1).to_le_bytes()),
                    put("a", format!("w{t}-{}", i % 4), &tag),
                    put("b", format!("w{t}-{}", i % 3), &tag),
                ];
                if i % 5 == 4 {
                    changes.push(del("a", format!("w{t}-{}", (i + 1) % 4)));
                }
                for c in &changes {
                    match c {
                        Change::Put { table, key, value } => tx.put(table, key, value)?,
                        Change::Delete { table, key } => tx.delete(table, key)?,
                        _ => {}
                    }
                }
                Ok((tx.commit()?, changes))
            };
            match attempt() {
                Ok(done) => {
                    out.push(done);
                    break;
                }
                Err(e) if e.is_retryable() => conflicts += 1,
                Err(e) => return Err(format!("writer {t}, transaction {i}: {e}")),
            }
        }
    }
    Ok((out, conflicts))
}

#[test]
fn concurrent_writers_never_split_or_lose_a_transaction_in_the_feed() -> TestResult {
    let fs = sim(6, false, false);
    let db = open(&fs)?;
    db.transaction(|tx: &mut Transaction| -> Result<(), Error> {
        tx.create_table("a")?;
        tx.create_table("b")?;
        tx.create_table("meta")?;
        tx.put("meta", "count", 0u64.to_le_bytes())?;
        Ok(())
    })?;
    let start = db.version();
    let finished = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(WRITERS as usize));
    let handles: Vec<_> = (0..WRITERS)
        .map(|t| {
            let db = db.clone();
            let finished = finished.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let r = writer(&db, t, &barrier);
                finished.fetch_add(1, Ordering::SeqCst);
                r
            })
        })
        .collect();

    // Follow the feed while the writers run; stop after a read that began once all finished.
    let mut seen: BTreeMap<Version, CommittedTransaction> = BTreeMap::new();
    let mut last = start;
    let mut reads = 0u64;
    let outcome = (|| -> Result<(), String> {
        loop {
            let done = finished.load(Ordering::SeqCst) == WRITERS as usize;
            let feed = db.changes_since(last).map_err(|e| e.to_string())?;
            let upto = feed.upto();
            for tx in feed {
                // Every version is a commit: successive feeds are contiguous.
                if tx.version != Version(last.get() + 1) || tx.version > upto {
                    return Err(format!(
                        "read {reads}: version {} after {last} (upto {upto})",
                        tx.version
                    ));
                }
                last = tx.version;
                seen.insert(tx.version, tx);
            }
            if last < upto {
                return Err(format!("read {reads}: feed ended at {last}, upto {upto}"));
            }
            reads += 1;
            if done {
                return Ok(());
            }
            std::thread::yield_now();
        }
    })();
    let mut committed: BTreeMap<Version, Vec<Change>> = BTreeMap::new();
    let mut conflicts = 0;
    for h in handles {
        let (list, c) = h.join().map_err(|_| "a writer panicked")??;
        conflicts += c;
        for (v, changes) in list {
            assert!(
                committed.insert(v, changes).is_none(),
                "version {v} committed twice"
            );
        }
    }
    outcome?;
    println!(
        "{} commits, {conflicts} conflicts retried, {reads} feed reads",
        committed.len()
    );
    assert_eq!(committed.len() as u64, WRITERS * TXS_PER_WRITER);
    assert!(conflicts >= WRITERS - 1, "the first attempts conflict");
    assert_eq!(last, db.version());
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        committed.keys().collect::<Vec<_>>(),
        "fed versions differ from committed versions"
    );
    for (v, changes) in &committed {
        let got = seen.get(v).ok_or_else(|| format!("version {v} not fed"))?;
        check_tx(got, *v, changes)?;
    }
    // The counter saw every commit exactly once, and the feed agrees with a fresh read.
    let count = db.begin_read()?.get("meta", "count")?.ok_or("no counter")?;
    assert_eq!(count, (WRITERS * TXS_PER_WRITER).to_le_bytes());
    // The state at `start`: three tables and the counter at 0.
    let mut model = Model::from([
        ("a".to_string(), Rows::new()),
        ("b".to_string(), Rows::new()),
        (
            "meta".to_string(),
            Rows::from([(b"count".to_vec(), 0u64.to_le_bytes().to_vec())]),
        ),
    ]);
    for tx in seen.values() {
        apply(&mut model, tx)?;
    }
    assert!(model == read_state(&db)?);
    Ok(())
}

/// Every row of every table of `snap`.
fn snapshot_state(snap: &vellum::Snapshot) -> Result<Model, Error> {
    let mut out = Model::new();
    for t in snap.list_tables()? {
        let rows = snap.scan_all(&t)?.collect::<Result<Rows, Error>>()?;
        out.insert(t, rows);
    }
    Ok(out)
}

#[test]
fn concurrent_checkpoints_never_corrupt_the_feed_only_end_its_history() -> TestResult {
    let fs = sim(7, false, false);
    let db = open(&fs)?;
    db.transaction(|tx: &mut Transaction| -> Result<(), Error> {
        tx.create_table("a")?;
        tx.create_table("b")?;
        tx.create_table("meta")?;
        tx.put("meta", "count", 0u64.to_le_bytes())?;
        Ok(())
    })?;
    let start = db.version();
    let finished = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(WRITERS as usize));
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let db = db.clone();
            let finished = finished.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let r = writer(&db, t, &barrier);
                finished.fetch_add(1, Ordering::SeqCst);
                r
            })
        })
        .collect();
    let checkpointer = {
        let db = db.clone();
        let finished = finished.clone();
        std::thread::spawn(move || -> Result<u64, String> {
            let mut n = 0;
            while finished.load(Ordering::SeqCst) < WRITERS as usize {
                db.checkpoint().map_err(|e| format!("checkpoint: {e}"))?;
                n += 1;
                std::thread::yield_now();
            }
            Ok(n)
        })
    };

    // Follow the feed; when its history is gone, start again from a snapshot, pinned until
    // the next read succeeds (the snapshot holds the horizon at its version).
    let mut model = read_state(&db)?;
    let mut last = start;
    let mut fed: BTreeMap<Version, CommittedTransaction> = BTreeMap::new();
    let mut pin: Option<vellum::Snapshot> = None;
    let (mut reads, mut resyncs) = (0u64, 0u64);
    let outcome = (|| -> Result<(), String> {
        loop {
            let done = finished.load(Ordering::SeqCst) == WRITERS as usize;
            match db.changes_since(last) {
                Ok(feed) => {
                    let upto = feed.upto();
                    for tx in feed {
                        if tx.version != Version(last.get() + 1) {
                            return Err(format!("version {} after {last}", tx.version));
                        }
                        apply(&mut model, &tx)?;
                        last = tx.version;
                        fed.insert(tx.version, tx);
                    }
                    if last < upto {
                        return Err(format!("feed ended at {last}, upto {upto}"));
                    }
                    pin = None;
                    reads += 1;
                    // Lag behind now and then, so checkpoints overtake the reader.
                    while reads % 4 == 0
                        && db.version().get() < last.get() + 10
                        && finished.load(Ordering::SeqCst) < WRITERS as usize
                    {
                        std::thread::yield_now();
                    }
                }
                Err(Error::NotRetained { requested, oldest }) => {
                    if requested != last || oldest <= last {
                        return Err(format!(
                            "NotRetained {{ requested: {requested}, oldest: {oldest} }} after {last}"
                        ));
                    }
                    if pin.is_some() {
                        return Err(format!("history after pinned version {last} was collapsed"));
                    }
                    let snap = db.snapshot().map_err(|e| e.to_string())?;
                    model = snapshot_state(&snap).map_err(|e| e.to_string())?;
                    last = snap.version();
                    pin = Some(snap);
                    resyncs += 1;
                }
                Err(e) => return Err(format!("changes_since({last}): {e}")),
            }
            if done && pin.is_none() {
                return Ok(());
            }
            std::thread::yield_now();
        }
    })();
    let mut committed: BTreeMap<Version, Vec<Change>> = BTreeMap::new();
    for h in writers {
        let (list, _) = h.join().map_err(|_| "a writer panicked")??;
        committed.extend(list);
    }
    let checkpoints = checkpointer
        .join()
        .map_err(|_| "the checkpointer panicked")??;
    outcome?;
    println!("{checkpoints} checkpoints, {reads} feed reads, {resyncs} resyncs from a snapshot");
    assert!(checkpoints > 0);
    assert_eq!(last, db.version());
    for (v, tx) in &fed {
        let want = committed
            .get(v)
            .ok_or_else(|| format!("fed version {v} was not committed by a writer"))?;
        check_tx(tx, *v, want)?;
    }
    let now = read_state(&db)?;
    assert!(model == now, "{}", describe_diff(&model, &now));
    Ok(())
}
