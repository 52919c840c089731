//! Two-phase commit as a participant, on the simulated file system.
//!
//! A transaction writing two tables (`orders` and `stock`: one insert, one update, one delete)
//! is prepared under a global id with `Durability::Immediate`, and then:
//! * the machine crashes (no clean close); after reopening, [`Db::prepared`] lists it, none of
//!   its writes is visible, its keys stay reserved (other commits touching them fail with
//!   `ConflictKind::Reserved`), and `commit_prepared` makes all of its writes visible at once,
//!   durably;
//! * the same with a checkpoint between prepare and crash that released the log segment holding
//!   the prepare record (so the transaction comes back from checkpoint metadata alone), and
//!   with a checkpoint after `commit_prepared`;
//! * a crash-point sweep crashes at every mutating file-system operation of
//!   prepare → (filler commits) → (checkpoint) → commit_prepared → (checkpoint), under several
//!   crash behaviours, and checks that after recovery the transaction is prepared (and can be
//!   committed), committed whole, or — only if prepare never returned `Ok` — absent; never
//!   partly visible.
//!
//! Also: rollback, duplicate and unknown global ids, reservations of a serializable
//! transaction's reads, `drop_table` against a prepared writer, argument checks, and writers
//! hammering reserved keys while `commit_prepared` still succeeds.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use vellum::fs::{SimFs, SimOptions};
use vellum::{
    ConflictKind, Db, Error, Isolation, PreparedInfo, Transaction, Version, GLOBAL_ID_MAX,
};

/// Small log segments, so a few commits rotate the log and a checkpoint can release segments.
const SEGMENT: u64 = 8 << 10;
const GID: &str = "xa:order-17";
const LABEL: &str = "order-17";

fn open(fs: &SimFs) -> Result<Db, Error> {
    Db::open_with(db_path(), sim_options(fs, SEGMENT))
}

/// A power cut with the database open: no clean close, unsynced data lost, then a reopen.
fn crash_and_reopen(fs: &SimFs, db: Db) -> Result<Db, Error> {
    fs.crash_now();
    fs.restart();
    drop(db); // its handles are fenced off by the restart: dropping it writes nothing
    open(fs)
}

fn rows(pairs: &[(&str, &str)]) -> Rows {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// `orders` and `stock` before the prepared transaction.
fn before_state() -> (Rows, Rows) {
    (
        rows(&[("o-1", "shipped")]),
        rows(&[("gadget", "5"), ("widget", "10")]),
    )
}

/// `orders` and `stock` after it.
fn after_state() -> (Rows, Rows) {
    (
        rows(&[("o-1", "shipped"), ("o-17", "placed")]),
        rows(&[("widget", "9")]),
    )
}

fn setup(db: &Db) -> Result<(), Error> {
    db.transaction(|tx| {
        tx.create_table("orders")?;
        tx.create_table("stock")?;
        tx.create_table("filler")?;
        tx.put("orders", "o-1", "shipped")?;
        tx.put("stock", "widget", "10")?;
        tx.put("stock", "gadget", "5")?;
        Ok::<_, Error>(())
    })
}

/// The transaction under test: an insert into `orders`, an update and a delete in `stock`.
fn prepare_order(db: &Db) -> Result<(), Error> {
    let mut tx = db.tx().label(LABEL).begin()?;
    tx.put("orders", "o-17", "placed")?;
    tx.put("stock", "widget", "9")?;
    tx.delete("stock", "gadget")?;
    tx.prepare(GID)
}

fn expected_info() -> PreparedInfo {
    PreparedInfo {
        global_id: GID.to_string(),
        label: Some(LABEL.to_string()),
        changes: 3,
    }
}

/// What a transaction sees of the prepared transaction's writes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// None of them.
    None,
    /// All of them.
    All,
    /// Anything else (a partial commit or damage): the tables as read.
    Other(Rows, Rows),
}

fn seen(tx: &Transaction) -> Result<Seen, Error> {
    let orders = tx.scan_all("orders")?.collect::<Result<Rows, Error>>()?;
    let stock = tx.scan_all("stock")?.collect::<Result<Rows, Error>>()?;
    // Point reads must agree with the scans.
    let gets = (
        tx.get("orders", "o-17")?,
        tx.get("stock", "widget")?,
        tx.get("stock", "gadget")?,
    );
    let from_scan = (
        orders.get(&b"o-17"[..]).cloned(),
        stock.get(&b"widget"[..]).cloned(),
        stock.get(&b"gadget"[..]).cloned(),
    );
    if gets != from_scan {
        return Ok(Seen::Other(orders, stock));
    }
    let state = (orders, stock);
    Ok(if state == before_state() {
        Seen::None
    } else if state == after_state() {
        Seen::All
    } else {
        Seen::Other(state.0, state.1)
    })
}

fn seen_now(db: &Db) -> Result<Seen, Error> {
    seen(&db.begin_read()?)
}

/// Commits one write (a put, or a delete if `value` is `None`) in its own transaction.
fn write_one(db: &Db, table: &str, key: &str, value: Option<&str>) -> Result<Version, Error> {
    let mut tx = db.begin()?;
    match value {
        Some(v) => tx.put(table, key, v)?,
        None => tx.delete(table, key)?,
    }
    tx.commit()
}

/// True if `r` is a `Reserved` conflict naming `gid`, `table` and (if given) `key`.
fn is_reserved<T>(r: &Result<T, Error>, gid: &str, table: &str, key: Option<&str>) -> bool {
    match r {
        Err(Error::Conflict(report)) => {
            report.kind
                == ConflictKind::Reserved {
                    global_id: gid.to_string(),
                }
                && report.table == table
                && report.key.as_deref() == key.map(str::as_bytes)
        }
        _ => false,
    }
}

/// Other commits touching any key of the prepared order fail with `Reserved`.
fn check_order_reserved(db: &Db) -> TestResult {
    for (table, key, value) in [
        ("orders", "o-17", Some("other")),
        ("stock", "widget", Some("100")),
        ("stock", "widget", None),
        ("stock", "gadget", Some("6")),
    ] {
        let r = write_one(db, table, key, value);
        assert!(
            is_reserved(&r, GID, table, Some(key)),
            "writing {table}/{key}: {r:?}"
        );
    }
    Ok(())
}

/// Live `wal-*.log` segment names.
fn wal_segments(fs: &SimFs) -> Vec<PathBuf> {
    fs.file_paths()
        .into_iter()
        .filter(|p| p.starts_with(wal_dir()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("wal-") && n.ends_with(".log"))
        })
        .collect()
}

/// The segment being written now (the newest live one).
fn current_segment(fs: &SimFs) -> Result<PathBuf, String> {
    wal_segments(fs)
        .into_iter()
        .max()
        .ok_or_else(|| "no live log segment".to_string())
}

fn filler_value(i: usize) -> Vec<u8> {
    value(&format!("filler-{i}"), 1024)
}

/// Commits `n` filler rows (1 KiB each) starting at `from`.
fn fill(db: &Db, from: usize, n: usize) -> Result<(), Error> {
    for i in from..from + n {
        let mut tx = db.begin()?;
        tx.put("filler", format!("f-{i:04}"), filler_value(i))?;
        tx.commit()?;
    }
    Ok(())
}

/// Commits `commit_prepared(GID)` while a reader thread checks that no snapshot ever sees part
/// of it; checks that a transaction begun before sees none of it and one begun after sees all.
fn commit_prepared_atomically(db: &Db) -> TestResult {
    let before = db.begin_read()?;
    assert_eq!(seen(&before)?, Seen::None);
    let done = AtomicBool::new(false);
    let (committed, snapshots) = std::thread::scope(|s| {
        let reader = s.spawn(|| -> Result<u64, String> {
            let mut count = 0;
            loop {
                let finished = done.load(Ordering::Acquire);
                let got = seen_now(db).map_err(|e| e.to_string())?;
                if let Seen::Other(o, st) = got {
                    return Err(format!("a snapshot saw part of the commit: {o:?} {st:?}"));
                }
                count += 1;
                if finished {
                    return Ok(count);
                }
                std::thread::yield_now();
            }
        });
        let committed = db.commit_prepared(GID);
        done.store(true, Ordering::Release);
        let snapshots = reader
            .join()
            .unwrap_or_else(|_| Err("the reader panicked".into()));
        (committed, snapshots)
    });
    let version = committed?;
    assert!(snapshots? > 0);
    let after = db.begin_read()?;
    assert!(
        version > before.snapshot_version(),
        "commit version {version} not above the earlier snapshot {}",
        before.snapshot_version()
    );
    assert!(after.snapshot_version() >= version);
    assert_eq!(seen(&before)?, Seen::None, "the earlier snapshot changed");
    assert_eq!(seen(&after)?, Seen::All);
    assert!(db.prepared().is_empty());
    let again = db.commit_prepared(GID);
    assert!(
        matches!(&again, Err(Error::PreparedNotFound(g)) if g == GID),
        "{again:?}"
    );
    Ok(())
}

/// After the order committed: its keys are free again; the data survives another power cut.
fn check_committed_and_durable(fs: &SimFs, db: Db) -> TestResult {
    let db = crash_and_reopen(fs, db)?;
    assert!(db.prepared().is_empty(), "{:?}", db.prepared());
    assert_eq!(seen_now(&db)?, Seen::All);
    // Reservations are gone: these writes now commit.
    write_one(&db, "stock", "widget", Some("8"))?;
    write_one(&db, "stock", "gadget", Some("1"))?;
    let tx = db.begin_read()?;
    assert_eq!(tx.get("stock", "widget")?.as_deref(), Some(&b"8"[..]));
    assert_eq!(tx.get("orders", "o-17")?.as_deref(), Some(&b"placed"[..]));
    Ok(())
}

#[test]
fn a_prepared_transaction_survives_a_crash_keeps_its_reservations_and_commits_atomically(
) -> TestResult {
    let fs = sim(1, true, true);
    let db = open(&fs)?;
    setup(&db)?;
    prepare_order(&db)?;
    assert_eq!(db.prepared(), vec![expected_info()]);
    assert_eq!(seen_now(&db)?, Seen::None, "prepared writes are visible");

    let db = crash_and_reopen(&fs, db)?;
    assert_eq!(db.prepared(), vec![expected_info()]);
    assert_eq!(
        seen_now(&db)?,
        Seen::None,
        "prepared writes visible after recovery"
    );
    check_order_reserved(&db)?;
    // Keys it does not touch are free, in both tables.
    write_one(&db, "orders", "o-18", Some("placed"))?;
    write_one(&db, "stock", "gizmo", Some("3"))?;
    write_one(&db, "orders", "o-18", None)?;
    write_one(&db, "stock", "gizmo", None)?;
    assert_eq!(seen_now(&db)?, Seen::None);

    commit_prepared_atomically(&db)?;
    check_committed_and_durable(&fs, db)
}

#[test]
fn a_prepared_transaction_comes_back_from_checkpoint_metadata_after_its_log_was_released(
) -> TestResult {
    let fs = sim(2, true, true);
    let db = open(&fs)?;
    setup(&db)?;
    prepare_order(&db)?;
    let prepare_segment = current_segment(&fs)?;
    // Enough later commits to move the log past the prepare's segment, then a checkpoint that
    // covers (and releases) it.
    fill(&db, 0, 24)?;
    db.checkpoint()?;
    assert!(
        !wal_segments(&fs).contains(&prepare_segment),
        "the checkpoint did not release {prepare_segment:?}: {:?}",
        wal_segments(&fs)
    );
    assert_eq!(db.prepared(), vec![expected_info()]);

    let db = crash_and_reopen(&fs, db)?;
    assert_eq!(db.prepared(), vec![expected_info()]);
    assert_eq!(seen_now(&db)?, Seen::None);
    check_order_reserved(&db)?;
    let fillers = db.begin_read()?.scan_all("filler")?.count();
    assert_eq!(fillers, 24);

    // A second checkpoint while it is prepared (now it exists only in metadata), and a crash.
    fill(&db, 24, 4)?;
    db.checkpoint()?;
    let db = crash_and_reopen(&fs, db)?;
    assert_eq!(db.prepared(), vec![expected_info()]);
    assert_eq!(seen_now(&db)?, Seen::None);
    check_order_reserved(&db)?;

    commit_prepared_atomically(&db)?;
    check_committed_and_durable(&fs, db)
}

#[test]
fn a_checkpoint_after_commit_prepared_keeps_the_writes_and_forgets_the_prepared_transaction(
) -> TestResult {
    let fs = sim(3, true, true);
    let db = open(&fs)?;
    setup(&db)?;
    prepare_order(&db)?;
    let db = crash_and_reopen(&fs, db)?;
    assert_eq!(db.prepared(), vec![expected_info()]);
    commit_prepared_atomically(&db)?;
    // Move the log past both the prepare and the commit-prepared records, then checkpoint.
    let segment = current_segment(&fs)?;
    fill(&db, 0, 24)?;
    db.checkpoint()?;
    assert!(!wal_segments(&fs).contains(&segment));

    let db = crash_and_reopen(&fs, db)?;
    assert!(db.prepared().is_empty(), "{:?}", db.prepared());
    assert_eq!(seen_now(&db)?, Seen::All);
    assert_eq!(db.begin_read()?.scan_all("filler")?.count(), 24);
    // A clean close and reopen agrees.
    db.close()?;
    let db = open(&fs)?;
    assert!(db.prepared().is_empty());
    assert_eq!(seen_now(&db)?, Seen::All);
    check_committed_and_durable(&fs, db)
}

// ---------------------------------------------------------------------------------------------
// Crash-point sweep.

#[derive(Debug, Clone, Copy)]
struct Plan {
    name: &'static str,
    /// Filler commits between prepare and the checkpoint (enough rotate the log past the
    /// prepare record, so the checkpoint releases it).
    fillers_between: usize,
    checkpoint_between: bool,
    fillers_after: usize,
    checkpoint_after: bool,
}

const PLANS: [Plan; 5] = [
    Plan {
        name: "prepare, commit",
        fillers_between: 0,
        checkpoint_between: false,
        fillers_after: 0,
        checkpoint_after: false,
    },
    Plan {
        name: "prepare, checkpoint, commit",
        fillers_between: 0,
        checkpoint_between: true,
        fillers_after: 0,
        checkpoint_after: false,
    },
    Plan {
        name: "prepare, fillers, checkpoint releasing the prepare, commit",
        fillers_between: 20,
        checkpoint_between: true,
        fillers_after: 0,
        checkpoint_after: false,
    },
    Plan {
        name: "prepare, commit, checkpoint",
        fillers_between: 0,
        checkpoint_between: false,
        fillers_after: 0,
        checkpoint_after: true,
    },
    Plan {
        name: "prepare, fillers, checkpoint, commit, fillers, checkpoint",
        fillers_between: 12,
        checkpoint_between: true,
        fillers_after: 12,
        checkpoint_after: true,
    },
];

/// What the sequence acknowledged before the crash.
#[derive(Debug, Default)]
struct Progress {
    prepared: bool,
    committed: bool,
    /// Filler commits acknowledged (they are numbered from 0 in commit order).
    fillers_acked: usize,
    /// Filler commits attempted (the last one may have been in flight at the crash).
    fillers_tried: usize,
    crashed_in: String,
    /// Segment the prepare record went to.
    prepare_segment: Option<PathBuf>,
    /// Whether a checkpoint released that segment.
    prepare_segment_released: bool,
}

/// Stops the sequence if `r` failed; the failure must come from the simulated crash.
fn step<T>(fs: &SimFs, r: Result<T, Error>, what: &str, p: &mut Progress) -> Result<bool, String> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if fs.has_crashed() && is_crash_error(&e) => {
            p.crashed_in = what.to_string();
            Ok(false)
        }
        Err(e) => Err(format!(
            "{what} failed (crashed: {}): {e:?}",
            fs.has_crashed()
        )),
    }
}

/// Runs `plan` on an open database until the first failure.
fn run_plan(fs: &SimFs, db: &Db, plan: Plan) -> Result<Progress, String> {
    let mut p = Progress::default();
    if !step(fs, prepare_order(db), "prepare", &mut p)? {
        return Ok(p);
    }
    p.prepared = true;
    p.prepare_segment = current_segment(fs).ok();
    let fillers = |p: &mut Progress, n: usize| -> Result<bool, String> {
        for _ in 0..n {
            let i = p.fillers_tried;
            p.fillers_tried += 1;
            if !step(fs, fill(db, i, 1), &format!("filler commit {i}"), p)? {
                return Ok(false);
            }
            p.fillers_acked += 1;
        }
        Ok(true)
    };
    if !fillers(&mut p, plan.fillers_between)? {
        return Ok(p);
    }
    if plan.checkpoint_between {
        if !step(
            fs,
            db.checkpoint(),
            "checkpoint before commit_prepared",
            &mut p,
        )? {
            return Ok(p);
        }
        p.prepare_segment_released = p
            .prepare_segment
            .as_ref()
            .is_some_and(|s| !wal_segments(fs).contains(s));
    }
    if !step(fs, db.commit_prepared(GID), "commit_prepared", &mut p)? {
        return Ok(p);
    }
    p.committed = true;
    if !fillers(&mut p, plan.fillers_after)? {
        return Ok(p);
    }
    if plan.checkpoint_after
        && !step(
            fs,
            db.checkpoint(),
            "checkpoint after commit_prepared",
            &mut p,
        )?
    {
        return Ok(p);
    }
    p.crashed_in = "after the sequence".into();
    Ok(p)
}

/// Checks the filler rows: a prefix of those attempted, at least the acknowledged ones.
fn check_fillers(db: &Db, p: &Progress) -> Result<usize, String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let got: BTreeMap<Vec<u8>, Vec<u8>> = tx
        .scan_all("filler")
        .map_err(|e| e.to_string())?
        .collect::<Result<_, Error>>()
        .map_err(|e| e.to_string())?;
    let n = got.len();
    for (i, (k, v)) in got.iter().enumerate() {
        if k != format!("f-{i:04}").as_bytes() || *v != filler_value(i) {
            return Err(format!(
                "filler rows are not a prefix: row {i} is {}",
                show(k)
            ));
        }
    }
    if n < p.fillers_acked || n > p.fillers_tried {
        return Err(format!(
            "{n} filler rows recovered; {} acknowledged, {} attempted",
            p.fillers_acked, p.fillers_tried
        ));
    }
    Ok(n)
}

/// How the prepared transaction came out of a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    Absent,
    Prepared,
    Committed,
}

fn open_checked(fs: &SimFs, ctx: &str) -> Result<Db, String> {
    match catch_unwind(AssertUnwindSafe(|| open(fs))) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(format!("{ctx}: reopen failed: {e:?}")),
        Err(_) => Err(format!("{ctx}: reopen panicked")),
    }
}

/// After the restart: reopens, classifies and checks the outcome, resolves the transaction if
/// it is still prepared, and checks that the result survives another power cut.
fn verify_after_crash(fs: &SimFs, p: &Progress, ctx: &str) -> Result<Fate, String> {
    let err = |e: Error| format!("{ctx}: {e:?}");
    let db = open_checked(fs, ctx)?;
    let listed = db.prepared();
    let state = seen_now(&db).map_err(err)?;
    let fate = match (listed.as_slice(), &state) {
        ([info], Seen::None) if *info == expected_info() => Fate::Prepared,
        ([], Seen::All) => Fate::Committed,
        ([], Seen::None) => Fate::Absent,
        _ => {
            return Err(format!(
                "{ctx}: prepared list {listed:?} with state {state:?}: neither prepared, \
                 committed whole, nor absent"
            ))
        }
    };
    if fate == Fate::Absent && p.prepared {
        return Err(format!(
            "{ctx}: prepare returned Ok but the transaction is gone"
        ));
    }
    if fate != Fate::Committed && p.committed {
        return Err(format!(
            "{ctx}: commit_prepared returned Ok but the transaction is {fate:?}"
        ));
    }
    let fillers = check_fillers(&db, p).map_err(|e| format!("{ctx}: {e}"))?;
    if fate == Fate::Prepared {
        let r = write_one(&db, "stock", "widget", Some("100"));
        if !is_reserved(&r, GID, "stock", Some("widget")) {
            return Err(format!("{ctx}: a reserved key was writable: {r:?}"));
        }
        let before = db.begin_read().map_err(err)?;
        db.commit_prepared(GID)
            .map_err(|e| format!("{ctx}: commit_prepared after recovery: {e:?}"))?;
        if seen(&before).map_err(err)? != Seen::None || seen_now(&db).map_err(err)? != Seen::All {
            return Err(format!(
                "{ctx}: commit_prepared after recovery was not atomic"
            ));
        }
        drop(before);
    }
    if !db.prepared().is_empty() {
        return Err(format!("{ctx}: still listed: {:?}", db.prepared()));
    }
    // A second power cut changes nothing.
    fs.crash_now();
    fs.restart();
    drop(db);
    let db = open_checked(fs, &format!("{ctx}, second reopen"))?;
    let want = if fate == Fate::Absent {
        Seen::None
    } else {
        Seen::All
    };
    let again = seen_now(&db).map_err(err)?;
    if again != want || !db.prepared().is_empty() {
        return Err(format!(
            "{ctx}: after a second power cut: {again:?}, listed {:?}; expected {want:?}",
            db.prepared()
        ));
    }
    let fillers_again = check_fillers(&db, p).map_err(|e| format!("{ctx}: {e}"))?;
    if fillers_again != fillers {
        return Err(format!(
            "{ctx}: {fillers} filler rows, then {fillers_again} after a second power cut"
        ));
    }
    // The database takes new commits.
    write_one(&db, "stock", "widget", Some("42")).map_err(err)?;
    Ok(fate)
}

/// Opens a fresh database on `fs` and sets it up (no crash scheduled yet).
fn fresh(sim_opts: SimOptions) -> Result<(SimFs, Db), Error> {
    let fs = SimFs::new(sim_opts);
    let db = open(&fs)?;
    setup(&db)?;
    Ok((fs, db))
}

/// Mutating file-system operations of `plan` (from just before prepare), measured without a
/// crash; also checks the crash-free outcome.
fn dry_run(sim_opts: SimOptions, plan: Plan) -> Result<u64, Box<dyn std::error::Error>> {
    let (fs, db) = fresh(sim_opts)?;
    let start = fs.op_count();
    let p = run_plan(&fs, &db, plan)?;
    if !p.committed || fs.has_crashed() {
        return Err(format!("{}: dry run failed in {}", plan.name, p.crashed_in).into());
    }
    if plan.fillers_between >= 8 && plan.checkpoint_between {
        assert!(
            p.prepare_segment_released,
            "{}: the checkpoint did not release the prepare's segment",
            plan.name
        );
    }
    Ok(fs.op_count() - start)
}

#[test]
fn crash_at_every_operation_of_prepare_checkpoint_commit_prepared_never_shows_part_of_it(
) -> TestResult {
    let behaviours = [
        SimOptions {
            seed: 11,
            keep_unsynced: true,
            tear: true,
        },
        SimOptions {
            seed: 12,
            keep_unsynced: true,
            tear: true,
        },
        SimOptions {
            seed: 13,
            keep_unsynced: false,
            tear: false,
        },
        SimOptions {
            seed: 14,
            keep_unsynced: true,
            tear: false,
        },
    ];
    let mut cases = 0u64;
    let mut fates: BTreeMap<(&str, Fate), u64> = BTreeMap::new();
    let mut released_cases = 0u64;
    for plan in PLANS {
        for sim_opts in behaviours {
            let ops = dry_run(sim_opts, plan)?;
            // n = ops + 1: the whole sequence completes, then the power cut.
            for n in 1..=ops + 1 {
                let (fs, db) = fresh(sim_opts)?;
                fs.crash_after(Some(n));
                let p = run_plan(&fs, &db, plan)
                    .map_err(|e| format!("{}: crash at op {n} of {ops}: {e}", plan.name))?;
                if n <= ops && !fs.has_crashed() {
                    return Err(
                        format!("{}: crash at op {n} of {ops} never came", plan.name).into(),
                    );
                }
                if p.prepare_segment_released {
                    released_cases += 1;
                }
                fs.crash_now();
                fs.restart();
                drop(db);
                let ctx = format!(
                    "{} with {sim_opts:?}: crash at op {n} of {ops}, in {}",
                    plan.name, p.crashed_in
                );
                let fate = verify_after_crash(&fs, &p, &ctx)?;
                *fates.entry((plan.name, fate)).or_default() += 1;
                cases += 1;
            }
        }
    }
    eprintln!("{cases} crash points; {released_cases} with the prepare's segment released");
    for ((plan, fate), count) in &fates {
        eprintln!("  {plan}: {fate:?} x{count}");
    }
    assert!(cases >= 500, "only {cases} crash points");
    // Every outcome occurs somewhere, and a recovery from checkpoint metadata alone happens.
    for fate in [Fate::Absent, Fate::Prepared, Fate::Committed] {
        assert!(fates.keys().any(|(_, f)| *f == fate), "no {fate:?} outcome");
    }
    assert!(released_cases > 0);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rollback, ids, reservations, arguments.

#[test]
fn rollback_prepared_discards_the_writes_and_releases_the_reservations() -> TestResult {
    let fs = sim(4, true, true);
    let db = open(&fs)?;
    setup(&db)?;
    prepare_order(&db)?;
    check_order_reserved(&db)?;
    db.rollback_prepared(GID)?;
    assert!(db.prepared().is_empty());
    assert_eq!(seen_now(&db)?, Seen::None);
    for r in [
        db.rollback_prepared(GID).map(|_| Version::ZERO),
        db.commit_prepared(GID),
    ] {
        assert!(
            matches!(&r, Err(Error::PreparedNotFound(g)) if g == GID),
            "{r:?}"
        );
    }
    // The keys are free: a write to each commits.
    write_one(&db, "stock", "widget", Some("11"))?;
    write_one(&db, "orders", "o-17", Some("cancelled"))?;
    let db = crash_and_reopen(&fs, db)?;
    assert!(
        db.prepared().is_empty(),
        "rolled back, yet {:?}",
        db.prepared()
    );
    let tx = db.begin_read()?;
    assert_eq!(tx.get("stock", "widget")?.as_deref(), Some(&b"11"[..]));
    assert_eq!(tx.get("stock", "gadget")?.as_deref(), Some(&b"5"[..]));
    assert_eq!(
        tx.get("orders", "o-17")?.as_deref(),
        Some(&b"cancelled"[..])
    );
    Ok(())
}

#[test]
fn rollback_prepared_after_a_crash_releases_the_reservations_durably() -> TestResult {
    let fs = sim(5, true, true);
    let db = open(&fs)?;
    setup(&db)?;
    prepare_order(&db)?;
    let db = crash_and_reopen(&fs, db)?;
    assert_eq!(db.prepared(), vec![expected_info()]);
    check_order_reserved(&db)?;
    db.rollback_prepared(GID)?;
    assert!(db.prepared().is_empty());
    assert_eq!(seen_now(&db)?, Seen::None);
    write_one(&db, "stock", "gadget", Some("4"))?;

    let db = crash_and_reopen(&fs, db)?;
    assert!(db.prepared().is_empty(), "{:?}", db.prepared());
    let tx = db.begin_read()?;
    assert_eq!(tx.get("stock", "gadget")?.as_deref(), Some(&b"4"[..]));
    assert_eq!(tx.get("stock", "widget")?.as_deref(), Some(&b"10"[..]));
    assert_eq!(tx.get("orders", "o-17")?, None);
    drop(tx);

    // Rolled back from checkpoint metadata: prepare, checkpoint, crash, rollback, checkpoint,
    // crash.
    prepare_order_2(&db)?;
    db.checkpoint()?;
    let db = crash_and_reopen(&fs, db)?;
    assert_eq!(db.prepared().len(), 1);
    db.rollback_prepared("xa:2")?;
    db.checkpoint()?;
    let db = crash_and_reopen(&fs, db)?;
    assert!(db.prepared().is_empty(), "{:?}", db.prepared());
    assert_eq!(db.begin_read()?.get("orders", "o-2")?, None);
    write_one(&db, "orders", "o-2", Some("free"))?;
    Ok(())
}

fn prepare_order_2(db: &Db) -> Result<(), Error> {
    let mut tx = db.begin()?;
    tx.put("orders", "o-2", "placed")?;
    tx.put("stock", "sprocket", "1")?;
    tx.prepare("xa:2")
}

#[test]
fn duplicate_global_ids_are_refused_while_prepared_and_after_reopen() -> TestResult {
    let fs = sim(6, true, true);
    let db = open(&fs)?;
    setup(&db)?;
    prepare_order(&db)?;
    // A second transaction (disjoint keys) under the same id.
    let second = |db: &Db| -> Result<(), Error> {
        let mut tx = db.begin()?;
        tx.put("orders", "o-99", "other")?;
        tx.prepare(GID)
    };
    let r = second(&db);
    assert!(
        matches!(&r, Err(Error::DuplicateGlobalId(g)) if g == GID),
        "{r:?}"
    );
    // The refused transaction reserved nothing and wrote nothing.
    assert_eq!(db.prepared(), vec![expected_info()]);
    assert_eq!(db.begin_read()?.get("orders", "o-99")?, None);
    write_one(&db, "orders", "o-99", Some("free"))?;
    write_one(&db, "orders", "o-99", None)?;

    let db = crash_and_reopen(&fs, db)?;
    let r = second(&db);
    assert!(
        matches!(&r, Err(Error::DuplicateGlobalId(g)) if g == GID),
        "after reopen: {r:?}"
    );
    // And after a checkpoint (the id now lives in checkpoint metadata) and another reopen.
    db.checkpoint()?;
    let db = crash_and_reopen(&fs, db)?;
    let r = second(&db);
    assert!(
        matches!(&r, Err(Error::DuplicateGlobalId(g)) if g == GID),
        "after checkpoint and reopen: {r:?}"
    );
    assert_eq!(db.prepared(), vec![expected_info()]);
    db.commit_prepared(GID)?;
    assert_eq!(seen_now(&db)?, Seen::All);
    Ok(())
}

#[test]
fn unknown_global_ids_are_reported_as_not_found() -> TestResult {
    let fs = sim(7, true, true);
    let db = open(&fs)?;
    setup(&db)?;
    let r = db.commit_prepared("nope");
    assert!(
        matches!(&r, Err(Error::PreparedNotFound(g)) if g == "nope"),
        "{r:?}"
    );
    let r = db.rollback_prepared("nope");
    assert!(
        matches!(&r, Err(Error::PreparedNotFound(g)) if g == "nope"),
        "{r:?}"
    );
    prepare_order(&db)?;
    // Ids are compared exactly.
    for other in ["xa:order-1", "XA:ORDER-17", "xa:order-17 "] {
        let r = db.commit_prepared(other);
        assert!(
            matches!(&r, Err(Error::PreparedNotFound(g)) if g == other),
            "{other}: {r:?}"
        );
    }
    assert_eq!(db.prepared(), vec![expected_info()]);
    assert_eq!(seen_now(&db)?, Seen::None);
    Ok(())
}

#[test]
fn a_serializable_prepared_transaction_reserves_the_keys_and_ranges_it_read() -> TestResult {
    let fs = sim(8, true, true);
    let db = open(&fs)?;
    db.transaction(|tx| {
        tx.create_table("inv")?;
        tx.create_table("out")?;
        for k in ["a1", "a2", "a3", "b1", "b2", "c1"] {
            tx.put("inv", k, "1")?;
        }
        Ok::<_, Error>(())
    })?;
    let mut tx = db.tx().isolation(Isolation::Serializable).begin()?;
    assert_eq!(tx.scan_prefix("inv", "a")?.count(), 3);
    assert!(tx.get("inv", "b1")?.is_some());
    tx.put("out", "report", "3 a-items")?;
    tx.prepare("ser")?;

    let check = |db: &Db| -> TestResult {
        // Into the scanned range: new keys, existing keys, deletes.
        for (key, value) in [
            ("a9", Some("1")),
            ("a", Some("1")),
            ("a2", Some("2")),
            ("a3", None),
            ("b1", Some("2")),
            ("b1", None),
        ] {
            let r = write_one(db, "inv", key, value);
            assert!(is_reserved(&r, "ser", "inv", Some(key)), "inv/{key}: {r:?}");
        }
        // Outside what it read.
        write_one(db, "inv", "b2", Some("2"))?;
        write_one(db, "inv", "c1", None)?;
        write_one(db, "inv", "b0", Some("new"))?;
        Ok(())
    };
    check(&db)?;
    let db = crash_and_reopen(&fs, db)?;
    assert_eq!(db.prepared().len(), 1);
    check(&db)?;
    db.checkpoint()?;
    let db = crash_and_reopen(&fs, db)?;
    check(&db)?;
    db.commit_prepared("ser")?;
    write_one(&db, "inv", "a9", Some("1"))?;
    write_one(&db, "inv", "b1", Some("2"))?;
    let tx = db.begin_read()?;
    assert_eq!(tx.get("out", "report")?.as_deref(), Some(&b"3 a-items"[..]));
    drop(tx);

    // A snapshot-isolation prepared transaction reserves only what it writes.
    let mut tx = db.begin()?;
    assert_eq!(tx.scan_prefix("inv", "a")?.count(), 4);
    tx.put("out", "report", "4 a-items")?;
    tx.prepare("snap")?;
    write_one(&db, "inv", "a5", Some("1"))?;
    let r = write_one(&db, "out", "report", Some("x"));
    assert!(is_reserved(&r, "snap", "out", Some("report")), "{r:?}");
    db.rollback_prepared("snap")?;
    Ok(())
}

#[test]
fn drop_table_of_a_table_a_prepared_transaction_writes_is_refused() -> TestResult {
    let fs = sim(9, true, true);
    let db = open(&fs)?;
    setup(&db)?;
    prepare_order(&db)?;
    for table in ["orders", "stock"] {
        let r = db.drop_table(table);
        assert!(is_reserved(&r, GID, table, None), "drop {table}: {r:?}");
        // Dropping and recreating in one transaction is refused too.
        let r = db.transaction(|tx| {
            tx.drop_table(table)?;
            tx.create_table(table)
        });
        assert!(is_reserved(&r, GID, table, None), "recreate {table}: {r:?}");
    }
    let db = crash_and_reopen(&fs, db)?;
    let r = db.drop_table("stock");
    assert!(is_reserved(&r, GID, "stock", None), "after reopen: {r:?}");
    assert_eq!(
        db.list_tables()?,
        vec!["filler".to_string(), "orders".into(), "stock".into()]
    );
    // Tables it does not write can be dropped.
    db.drop_table("filler")?;
    db.commit_prepared(GID)?;
    assert_eq!(seen_now(&db)?, Seen::All);
    db.drop_table("stock")?;
    assert_eq!(db.list_tables()?, vec!["orders".to_string()]);
    Ok(())
}

#[test]
fn prepare_refuses_read_only_transactions_and_bad_global_ids() -> TestResult {
    let fs = sim(10, true, true);
    let db = open(&fs)?;
    setup(&db)?;
    let r = db.begin_read()?.prepare("ro");
    assert!(matches!(&r, Err(Error::ReadOnly)), "{r:?}");
    let r = db.tx().read_only().label("ro").begin()?.prepare("ro");
    assert!(matches!(&r, Err(Error::ReadOnly)), "{r:?}");

    let too_long = "g".repeat(GLOBAL_ID_MAX + 1);
    let multibyte_too_long = "é".repeat(GLOBAL_ID_MAX / 2 + 1); // 256 bytes, 128 chars
    for bad in ["", too_long.as_str(), multibyte_too_long.as_str()] {
        let mut tx = db.begin()?;
        tx.put("stock", "widget", "1")?;
        let r = tx.prepare(bad);
        assert!(
            matches!(&r, Err(Error::InvalidArgument(_))),
            "global id of {} bytes: {r:?}",
            bad.len()
        );
    }
    assert!(db.prepared().is_empty());
    // Nothing was reserved by the refused attempts.
    write_one(&db, "stock", "widget", Some("12"))?;

    // The longest id is fine, and survives a crash.
    let longest = "g".repeat(GLOBAL_ID_MAX);
    let mut tx = db.begin()?;
    tx.put("stock", "widget", "13")?;
    tx.prepare(&longest)?;
    let db = crash_and_reopen(&fs, db)?;
    let listed = db.prepared();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].global_id, longest);
    assert_eq!(listed[0].label, None);
    assert_eq!(listed[0].changes, 1);
    db.commit_prepared(&longest)?;
    assert_eq!(
        db.begin_read()?.get("stock", "widget")?.as_deref(),
        Some(&b"13"[..])
    );
    // A prepared transaction without a label, rolled back before any crash.
    let mut tx = db.begin()?;
    tx.put("stock", "widget", "14")?;
    tx.prepare("once")?;
    db.rollback_prepared("once")?;
    Ok(())
}

#[test]
fn commit_prepared_succeeds_while_many_writers_hammer_the_reserved_keys() -> TestResult {
    const THREADS: usize = 8;
    const ATTEMPTS: usize = 150;
    let fs = sim(14, true, true);
    let db = open(&fs)?;
    db.transaction(|tx| {
        tx.create_table("hot")?;
        tx.create_table("cold")?;
        for i in 0..4 {
            tx.put("hot", format!("k{i}"), "0")?;
            tx.put("cold", format!("k{i}"), "0")?;
        }
        Ok::<_, Error>(())
    })?;
    let mut tx = db.begin()?;
    for i in 0..4 {
        tx.put("hot", format!("k{i}"), "prepared")?;
        tx.put("cold", format!("k{i}"), "prepared")?;
    }
    tx.put("cold", "new", "prepared")?;
    tx.prepare("hot-gid")?;

    // Phase 1: every writer of a reserved key (alone or with a free key) gets `Reserved`.
    let reserved = AtomicU64::new(0);
    let free_commits = AtomicU64::new(0);
    let start = Barrier::new(THREADS);
    std::thread::scope(|s| -> TestResult {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (db, reserved, free_commits, start) = (&db, &reserved, &free_commits, &start);
                s.spawn(move || -> Result<(), String> {
                    let mut rng = XorShift::new(t as u64 + 100);
                    start.wait();
                    for n in 0..ATTEMPTS {
                        let table = if rng.chance(1, 2) { "hot" } else { "cold" };
                        let key = match rng.below(5) {
                            4 => "new".to_string(),
                            i => format!("k{i}"),
                        };
                        let key = if table == "hot" && key == "new" {
                            "k0".to_string()
                        } else {
                            key
                        };
                        let mut tx = db.begin().map_err(|e| e.to_string())?;
                        tx.put(table, &key, format!("t{t}-{n}"))
                            .map_err(|e| e.to_string())?;
                        let free = format!("free-{t}-{n}");
                        if n % 3 == 0 {
                            tx.put("cold", &free, "x").map_err(|e| e.to_string())?;
                        }
                        let r = tx.commit();
                        if !is_reserved(&r, "hot-gid", table, Some(&key)) {
                            return Err(format!("thread {t}: writing {table}/{key}: {r:?}"));
                        }
                        reserved.fetch_add(1, Ordering::Relaxed);
                        // A free key alone commits.
                        if n % 10 == 0 {
                            write_one(db, "cold", &free, Some("y")).map_err(|e| e.to_string())?;
                            free_commits.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a writer panicked")??;
        }
        Ok(())
    })?;
    assert_eq!(
        reserved.load(Ordering::Relaxed),
        (THREADS * ATTEMPTS) as u64
    );
    assert!(free_commits.load(Ordering::Relaxed) > 0);
    assert!(db.stats().conflicts >= (THREADS * ATTEMPTS) as u64);
    let state = read_state(&db)?;
    for i in 0..4 {
        let k = format!("k{i}").into_bytes();
        assert_eq!(state["hot"][&k], b"0".to_vec());
        assert_eq!(state["cold"][&k], b"0".to_vec());
    }

    // Phase 2: commit_prepared while the writers keep going. Each writer fails with `Reserved`
    // (before), `WriteWrite` (a snapshot from before the commit) or commits (after); the
    // commit itself cannot fail.
    let stop = AtomicBool::new(false);
    let started = Barrier::new(THREADS + 1);
    let committed_at = std::thread::scope(|s| -> Result<Version, Box<dyn std::error::Error>> {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (db, stop, started) = (&db, &stop, &started);
                s.spawn(move || -> Result<Vec<Version>, String> {
                    let mut ok = Vec::new();
                    started.wait();
                    let mut n = 0u64;
                    // Until the commit happened and this writer committed once after it.
                    while (ok.is_empty() || !stop.load(Ordering::Acquire)) && n < 1_000_000 {
                        n += 1;
                        let key = format!("k{}", (t as u64 + n) % 4);
                        let r = write_one(db, "hot", &key, Some(&format!("after-{t}-{n}")));
                        match &r {
                            Ok(v) => ok.push(*v),
                            Err(Error::Conflict(rep)) if rep.kind == ConflictKind::WriteWrite => {}
                            _ if is_reserved(&r, "hot-gid", "hot", Some(&key)) => {}
                            _ => return Err(format!("thread {t}: {r:?}")),
                        }
                    }
                    Ok(ok)
                })
            })
            .collect();
        started.wait();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let v = db.commit_prepared("hot-gid");
        stop.store(true, Ordering::Release);
        let v = v?;
        let mut total_ok = 0;
        for h in handles {
            let ok = h.join().map_err(|_| "a writer panicked")??;
            // Nobody wrote a reserved key before the prepared transaction committed.
            assert!(
                ok.iter().all(|w| *w > v),
                "a write under reservation: {ok:?} vs {v}"
            );
            total_ok += ok.len();
        }
        assert!(
            total_ok > 0,
            "no writer committed after the reservation ended"
        );
        Ok(v)
    })?;
    assert!(db.prepared().is_empty());
    // The prepared writes are in at their version; later writers may have overwritten `hot`.
    let tx = db.begin_read()?;
    for i in 0..4 {
        assert_eq!(
            tx.get_versioned("cold", format!("k{i}"))?
                .map(|v| (v.value, v.version)),
            Some((b"prepared".to_vec(), Some(committed_at)))
        );
    }
    assert_eq!(tx.get("cold", "new")?.as_deref(), Some(&b"prepared"[..]));
    drop(tx);
    let db = crash_and_reopen(&fs, db)?;
    assert!(db.prepared().is_empty());
    assert_eq!(
        db.begin_read()?.get("cold", "new")?.as_deref(),
        Some(&b"prepared"[..])
    );
    Ok(())
}

#[test]
fn a_table_created_by_a_prepared_transaction_keeps_its_identity_across_a_crash() -> TestResult {
    let fs = sim(15, true, true);
    let db = open(&fs)?;
    setup(&db)?;
    let mut tx = db.begin()?;
    tx.create_table("fresh")?;
    tx.put("fresh", "k", "prepared")?;
    tx.put("orders", "o-5", "with fresh table")?;
    tx.prepare("creates")?;
    let db = crash_and_reopen(&fs, db)?;
    assert_eq!(db.prepared().len(), 1);
    // Another table created meanwhile must get its own id, not the prepared table's.
    db.create_table("other")?;
    write_one(&db, "other", "x", Some("other row"))?;
    // The name is reserved.
    let r = db.create_table("fresh");
    assert!(is_reserved(&r, "creates", "fresh", None), "{r:?}");
    db.commit_prepared("creates")?;
    let state = read_state(&db)?;
    assert_eq!(state["fresh"], rows(&[("k", "prepared")]), "{state:?}");
    assert_eq!(state["other"], rows(&[("x", "other row")]), "{state:?}");
    let db = crash_and_reopen(&fs, db)?;
    let state = read_state(&db)?;
    assert_eq!(state["fresh"], rows(&[("k", "prepared")]));
    assert_eq!(state["other"], rows(&[("x", "other row")]));
    Ok(())
}

/// The prepared order is recovered by a reopen that crashes at operation `n`, then by a second
/// reopen that resolves it (commit or rollback) and checkpoints, crashing at operation `m`.
#[test]
fn crashes_during_recovery_and_during_resolution_after_recovery_lose_nothing() -> TestResult {
    let prepared_and_crashed = |seed: u64| -> Result<SimFs, Error> {
        let fs = sim(seed, true, true);
        let db = open(&fs)?;
        setup(&db)?;
        prepare_order(&db)?;
        fill(&db, 0, 16)?;
        db.checkpoint()?; // releases the prepare's segment
        fill(&db, 16, 2)?;
        fs.crash_now();
        fs.restart();
        drop(db);
        Ok(fs)
    };
    let mut cases = 0;
    for commit in [true, false] {
        // Operations of the reopen + resolution + checkpoint, without a crash.
        let count = |fs: &SimFs| -> Result<u64, Error> {
            let start = fs.op_count();
            let db = open(fs)?;
            if commit {
                db.commit_prepared(GID)?;
            } else {
                db.rollback_prepared(GID)?;
            }
            db.checkpoint()?;
            let ops = fs.op_count() - start;
            drop(db);
            Ok(ops)
        };
        let ops = count(&prepared_and_crashed(20)?)?;
        for n in 1..=ops {
            let fs = prepared_and_crashed(20 + n)?;
            fs.crash_after(Some(n));
            let mut resolved = false;
            let attempt = (|| -> Result<(), Error> {
                let db = open(&fs)?;
                assert_eq!(db.prepared(), vec![expected_info()]);
                assert_eq!(seen_now(&db)?, Seen::None);
                if commit {
                    db.commit_prepared(GID)?;
                } else {
                    db.rollback_prepared(GID)?;
                }
                resolved = true;
                db.checkpoint()?;
                fs.crash_now();
                Ok(())
            })();
            if let Err(e) = attempt {
                assert!(
                    fs.has_crashed() && is_crash_error(&e),
                    "commit={commit}, crash at op {n} of {ops}: {e:?}"
                );
            }
            fs.restart();
            let ctx = format!("commit={commit}, crash at op {n} of {ops}");
            let db = open_checked(&fs, &ctx)?;
            let listed = db.prepared();
            let state = seen_now(&db)?;
            let resolved_now = match (listed.as_slice(), &state) {
                ([info], Seen::None) if *info == expected_info() => false,
                ([], Seen::All) if commit => true,
                ([], Seen::None) if !commit => true,
                _ => panic!("{ctx}: listed {listed:?}, state {state:?}"),
            };
            assert!(
                resolved_now || !resolved,
                "{ctx}: the acknowledged resolution was lost"
            );
            assert_eq!(db.begin_read()?.scan_all("filler")?.count(), 18, "{ctx}");
            if !resolved_now {
                if commit {
                    db.commit_prepared(GID)?;
                } else {
                    db.rollback_prepared(GID)?;
                }
            }
            let want = if commit { Seen::All } else { Seen::None };
            assert_eq!(seen_now(&db)?, want, "{ctx}");
            cases += 1;
        }
    }
    eprintln!("{cases} crash points during recovery and resolution");
    assert!(cases >= 20, "only {cases} crash points");
    Ok(())
}

/// A checkpoint that runs while `commit_prepared` is between taking the transaction out of the
/// prepared set and logging its commit record writes metadata without the transaction, and
/// covers the log holding its prepare record; if the commit record is then lost (a power cut
/// before it is synced: `Durability::None` here, or a crash right after the checkpoint under
/// `Immediate`), the transaction is neither prepared nor committed after recovery. Each trial
/// starts the checkpoint at a different moment of a large transaction's `commit_prepared`.
#[test]
fn a_checkpoint_racing_commit_prepared_never_loses_the_transaction() -> TestResult {
    const KEYS: usize = 20_000;
    const TRIALS: u64 = 24;
    let mut lost = Vec::new();
    for trial in 0..TRIALS {
        let fs = sim(100 + trial, false, false);
        let opts = sim_options(&fs, 4 << 20).durability(vellum::Durability::None);
        let db = Db::open_with(db_path(), opts.clone())?;
        db.transaction(|tx| {
            tx.create_table("big")?;
            tx.create_table("filler")?;
            Ok::<_, Error>(())
        })?;
        let mut tx = db.begin()?;
        for i in 0..KEYS {
            tx.put("big", format!("k{i:06}"), "prepared-value")?;
        }
        tx.prepare("big")?;
        // A later commit, so a checkpoint covers the prepare record.
        write_one(&db, "filler", "f", Some("x"))?;
        let start = Barrier::new(2);
        let delay = std::time::Duration::from_micros(trial * 150);
        std::thread::scope(|s| -> TestResult {
            let checkpointer = s.spawn(|| -> Result<(), Error> {
                start.wait();
                let until = std::time::Instant::now() + delay;
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
                db.checkpoint()
            });
            start.wait();
            db.commit_prepared("big")?;
            checkpointer.join().map_err(|_| "checkpointer panicked")??;
            Ok(())
        })?;
        // Power cut: what was never synced is gone.
        fs.crash_now();
        fs.restart();
        drop(db);
        let db = Db::open_with(db_path(), opts)?;
        let listed = !db.prepared().is_empty();
        let rows = db.begin_read()?.scan_all("big")?.count();
        match (listed, rows) {
            (true, 0) | (false, KEYS) => {}
            (false, 0) => lost.push(trial),
            other => return Err(format!("trial {trial}: listed, rows = {other:?}").into()),
        }
    }
    assert!(
        lost.is_empty(),
        "the prepared transaction vanished (neither prepared nor committed) in trials {lost:?}"
    );
    Ok(())
}
