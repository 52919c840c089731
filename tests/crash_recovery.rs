//! Crash recovery of whole databases on the simulated file system.
//!
//! A workload of multi-table transactions (puts, deletes, table creates and drops, some
//! rolled back, explicit checkpoints in between) runs single-threaded on a [`SimFs`] that
//! crashes at a chosen mutating operation. The crash is followed by a restart (unsynced data
//! lost, possibly a torn prefix kept) and a reopen, which must succeed at the first attempt
//! (no retry papers over a failure), must not panic, and must show
//! * under `Durability::Immediate`: every acknowledged commit, and of the one commit in flight
//!   at the crash all of it or none of it;
//! * under `Durability::None`: the state after some prefix of the acknowledged commits, no
//!   older than the last checkpoint (never a gap, never part of a transaction).
//!
//! After that the database must accept new commits (with versions above the recovered ones)
//! and give the same state after a power cut and after a clean reopen.
//!
//! The op count of a workload is measured by a crash-free dry run first, so every case crashes
//! at a real operation. Crash points per run: 1,000 from the two property tests, about 640 from
//! the deterministic sweeps (every operation of a fixed workload, five combinations of
//! file-system behaviour and durability), about 360 from crashes during recovery, and 100
//! timing-dependent ones (background checkpoints, `Buffered` durability, concurrent
//! committers).

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use vellum::fs::{SimFs, SimOptions};
use vellum::{Db, Durability, Error, Options, Version};

/// Log segments small enough that workloads rotate, release and recycle them.
const SEGMENT: u64 = 8 << 10;
const TABLES: [&str; 3] = ["t0", "t1", "t2"];
/// Keys per table: few, so overwrites and deletes of existing rows are common.
const KEYS: u8 = 6;

#[derive(Debug, Clone)]
enum Op {
    Put { table: u8, key: u8, len: u16 },
    Delete { table: u8, key: u8 },
    Create { table: u8 },
    Drop { table: u8 },
}

#[derive(Debug, Clone)]
struct TxPlan {
    ops: Vec<Op>,
    /// Roll back instead of committing.
    abort: bool,
    /// Call `Db::checkpoint` (a flush to a segment) after this transaction.
    checkpoint_after: bool,
    /// Call `Db::compact` (flush, then merge every segment, dropping old versions) after it.
    compact_after: bool,
}

fn key(k: u8) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

fn probe_keys() -> Vec<Vec<u8>> {
    (0..KEYS).map(key).collect()
}

/// The transaction every workload starts with: two tables and a row in each.
fn setup_tx() -> TxPlan {
    TxPlan {
        ops: vec![
            Op::Create { table: 0 },
            Op::Create { table: 1 },
            Op::Put {
                table: 0,
                key: 0,
                len: 10,
            },
            Op::Put {
                table: 1,
                key: 0,
                len: 10,
            },
        ],
        abort: false,
        checkpoint_after: false,
        compact_after: false,
    }
}

/// How a run ended.
#[derive(Debug)]
struct Outcome {
    /// `history[k]` is the state after the first `k` acknowledged commits.
    history: Vec<Model>,
    /// `versions[k]`: the commit version of `history[k]`.
    versions: Vec<Version>,
    /// The oldest state recovery may return: every commit up to it is durable (under
    /// `Immediate` the newest acknowledged one, else the last checkpoint or clean close).
    durable_from: usize,
    /// State after the acknowledged commits plus the commit that was in flight at the crash.
    inflight: Option<Model>,
    /// Where the crash surfaced (for messages).
    crashed_in: String,
    /// Mutating file-system operations done by the first open.
    open_ops: u64,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            history: vec![Model::new()],
            versions: vec![Version::ZERO],
            durable_from: 0,
            inflight: None,
            crashed_in: String::new(),
            open_ops: 0,
        }
    }

    /// State after every acknowledged commit.
    fn model(&self) -> &Model {
        &self.history[self.history.len() - 1]
    }

    fn all_durable(&mut self) {
        self.durable_from = self.history.len() - 1;
    }
}

/// Stages `plan` in `tx`, mirroring each staged change in `view` (the model as the
/// transaction sees it). Ops that do not apply to `view` (a put into a missing table, a create
/// of an existing one...) are skipped, so every staged operation is expected to succeed.
fn stage(tx: &mut vellum::Transaction, view: &mut Model, plan: &TxPlan, txn: usize) -> TestResult {
    for (j, op) in plan.ops.iter().enumerate() {
        match *op {
            Op::Put { table, key: k, len } => {
                let name = TABLES[table as usize];
                if let Some(rows) = view.get_mut(name) {
                    let v = value(&format!("tx{txn}.op{j}"), len as usize);
                    tx.put(name, key(k), &v)?;
                    rows.insert(key(k), v);
                }
            }
            Op::Delete { table, key: k } => {
                let name = TABLES[table as usize];
                if let Some(rows) = view.get_mut(name) {
                    tx.delete(name, key(k))?;
                    rows.remove(&key(k));
                }
            }
            Op::Create { table } => {
                let name = TABLES[table as usize];
                if !view.contains_key(name) {
                    tx.create_table(name)?;
                    view.insert(name.to_string(), Rows::new());
                }
            }
            Op::Drop { table } => {
                let name = TABLES[table as usize];
                if view.remove(name).is_some() {
                    tx.drop_table(name)?;
                }
            }
        }
    }
    Ok(())
}

/// Fails unless `err` came from the simulated crash.
fn expect_crash(fs: &SimFs, err: &Error, what: &str) -> Result<(), String> {
    if fs.has_crashed() && is_crash_error(err) {
        Ok(())
    } else {
        Err(format!(
            "{what} failed without a crash (crashed: {}): {err:?}",
            fs.has_crashed()
        ))
    }
}

/// Opens the database on `fs` and runs `plans` until the first failure (which must come from
/// the crash), then drops the database (a clean close if nothing crashed).
fn run_workload(
    fs: &SimFs,
    opts: &Options,
    plans: &[TxPlan],
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let immediate = opts.durability == Durability::Immediate;
    let mut out = Outcome::new();
    let db = match Db::open_with(db_path(), opts.clone()) {
        Ok(db) => db,
        Err(e) => {
            expect_crash(fs, &e, "open")?;
            out.crashed_in = "open".into();
            return Ok(out);
        }
    };
    out.open_ops = fs.op_count();
    for (i, plan) in plans.iter().enumerate() {
        let mut tx = db.begin()?;
        let mut view = out.model().clone();
        stage(&mut tx, &mut view, plan, i)?;
        if plan.abort {
            tx.rollback()?;
            continue;
        }
        match tx.commit() {
            Ok(v) => {
                out.history.push(view);
                out.versions.push(v);
                if immediate {
                    out.all_durable();
                }
            }
            Err(e) => {
                expect_crash(fs, &e, &format!("commit of transaction {i}"))?;
                // Before the restart, the failed commit is invisible and every later commit
                // is refused (fail-stop), so nothing can publish it. (The refusal may be a
                // conflict with the failed commit: see
                // `after_a_log_failure_commits_are_refused_as_poisoned_not_as_retryable_conflicts`.)
                let seen = read_state(&db)?;
                if &seen != out.model() {
                    return Err(format!(
                        "transaction {i}: the failed commit is visible before the restart:\n{}",
                        describe_diff(&seen, out.model())
                    )
                    .into());
                }
                let mut later = db.begin()?;
                later.put(TABLES[0], "later", "x").or_else(|e| match e {
                    Error::TableNotFound(_) => later.create_table(TABLES[0]),
                    e => Err(e),
                })?;
                let r = later.commit();
                if !matches!(&r, Err(e) if is_crash_error(e) || e.is_retryable()) {
                    return Err(format!("a commit after the failed one returned {r:?}").into());
                }
                out.inflight = Some(view);
                out.crashed_in = format!("commit of transaction {i}");
                return Ok(out);
            }
        }
        if fs.has_crashed() {
            out.crashed_in = format!("after the acknowledged commit of transaction {i}");
            return Ok(out);
        }
        if plan.checkpoint_after {
            if let Err(e) = db.checkpoint() {
                expect_crash(fs, &e, &format!("checkpoint after transaction {i}"))?;
                out.crashed_in = format!("checkpoint after transaction {i}");
                return Ok(out);
            }
            out.all_durable();
            if fs.has_crashed() {
                out.crashed_in = format!("after the checkpoint after transaction {i}");
                return Ok(out);
            }
        }
        if plan.compact_after {
            if let Err(e) = db.compact() {
                expect_crash(fs, &e, &format!("compaction after transaction {i}"))?;
                out.crashed_in = format!("compaction after transaction {i}");
                return Ok(out);
            }
            out.all_durable();
            if fs.has_crashed() {
                out.crashed_in = format!("after the compaction after transaction {i}");
                return Ok(out);
            }
        }
    }
    drop(db);
    if !fs.has_crashed() {
        out.all_durable();
    }
    out.crashed_in = "close".into();
    Ok(out)
}

/// Opens the database, turning an error or a panic into a message.
fn open_checked(opts: &Options, ctx: &str) -> Result<Db, String> {
    match catch_unwind(AssertUnwindSafe(|| Db::open_with(db_path(), opts.clone()))) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(format!("{ctx}: reopen failed: {e:?}")),
        Err(_) => Err(format!("{ctx}: reopen panicked")),
    }
}

fn state_of(db: &Db, ctx: &str) -> Result<Model, String> {
    read_state(db).map_err(|e| format!("{ctx}: reading the database failed: {e:?}"))
}

/// After `fs.restart()`: reopens once and checks the recovered state against `out`, then
/// checks that the database works on (new commit, power cut, clean reopen).
fn verify_recovery(fs: &SimFs, opts: &Options, out: &Outcome, ctx: &str) -> Result<(), String> {
    let ctx = format!("{ctx}, crash in {}", out.crashed_in);
    let db = open_checked(opts, &ctx)?;
    let got = state_of(&db, &ctx)?;
    let matched = (out.durable_from..out.history.len()).find(|&k| out.history[k] == got);
    let (mut expected, below) = match matched {
        Some(k) => (got, out.versions[k]),
        None if out.inflight.as_ref() == Some(&got) => (got, out.versions[out.versions.len() - 1]),
        None => {
            let mut msg = format!(
                "{ctx}: recovered state is neither the acknowledged commits nor them plus the \
                 in-flight transaction\nversus acknowledged:\n{}",
                describe_diff(&got, out.model())
            );
            if let Some(inflight) = &out.inflight {
                msg.push_str("versus acknowledged + in-flight:\n");
                msg.push_str(&describe_diff(&got, inflight));
            }
            if out.durable_from + 1 < out.history.len() {
                msg.push_str(&format!(
                    "nor the state after any of the commits {}..{} (not yet durable)\n",
                    out.durable_from,
                    out.history.len() - 1
                ));
            }
            return Err(msg);
        }
    };
    check_gets(&db, &expected, &probe_keys()).map_err(|e| format!("{ctx}: {e}"))?;

    // New commits work after recovery, across an existing table and a new one.
    let before_commit = expected.clone();
    let existing = expected.keys().next().cloned();
    let commit_after = || -> Result<Version, Error> {
        let mut tx = db.begin()?;
        tx.create_table("after")?;
        tx.put("after", "k", "recovered")?;
        if let Some(t) = &existing {
            tx.put(t, "key-after", "x")?;
        }
        tx.commit()
    };
    let v = commit_after().map_err(|e| format!("{ctx}: commit after recovery failed: {e:?}"))?;
    if v <= below {
        return Err(format!(
            "{ctx}: commit after recovery got version {v}, not above the recovered {below}"
        ));
    }
    expected.insert(
        "after".into(),
        Rows::from([(b"k".to_vec(), b"recovered".to_vec())]),
    );
    if let Some(t) = &existing {
        if let Some(rows) = expected.get_mut(t) {
            rows.insert(b"key-after".to_vec(), b"x".to_vec());
        }
    }

    // A power cut right after that acknowledged commit loses nothing (under `Immediate`; else
    // it may lose that commit, whole).
    let recovered = before_commit;
    fs.restart();
    drop(db);
    let db = open_checked(opts, &format!("{ctx}, after a power cut"))?;
    let got = state_of(&db, &ctx)?;
    let immediate = opts.durability == Durability::Immediate;
    if !immediate && got == recovered {
        expected = recovered;
    }
    if got != expected {
        return Err(format!(
            "{ctx}: state after a power cut that followed recovery differs:\n{}",
            describe_diff(&got, &expected)
        ));
    }
    // A clean close and reopen gives the same state again.
    drop(db);
    let db = open_checked(opts, &format!("{ctx}, clean reopen"))?;
    let got = state_of(&db, &ctx)?;
    if got != expected {
        return Err(format!(
            "{ctx}: state after a clean reopen differs:\n{}",
            describe_diff(&got, &expected)
        ));
    }
    Ok(())
}

/// Runs `plans` once without a crash (checking the result) and returns the number of mutating
/// file-system operations of the open and of the whole run, clean close included.
fn dry_run(
    sim_opts: SimOptions,
    plans: &[TxPlan],
) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    dry_run_with(sim_opts, Durability::Immediate, plans)
}

fn dry_run_with(
    sim_opts: SimOptions,
    durability: Durability,
    plans: &[TxPlan],
) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    let fs = SimFs::new(sim_opts);
    let opts = sim_options(&fs, SEGMENT).durability(durability);
    let out = run_workload(&fs, &opts, plans)?;
    if fs.has_crashed() || out.inflight.is_some() || out.durable_from + 1 != out.history.len() {
        return Err(format!("the dry run failed: {}", out.crashed_in).into());
    }
    let ops = fs.op_count();
    let db = Db::open_with(db_path(), opts)?;
    let got = read_state(&db)?;
    if &got != out.model() {
        return Err(format!(
            "crash-free run, reopened state differs:\n{}",
            describe_diff(&got, out.model())
        )
        .into());
    }
    Ok((out.open_ops, ops))
}

/// Runs `plans` crashing at mutating operation `crash_at` (1-based), restarts and verifies.
fn crash_case(sim_opts: SimOptions, plans: &[TxPlan], crash_at: u64) -> TestResult {
    crash_case_with(sim_opts, Durability::Immediate, plans, crash_at)
}

fn crash_case_with(
    sim_opts: SimOptions,
    durability: Durability,
    plans: &[TxPlan],
    crash_at: u64,
) -> TestResult {
    let fs = SimFs::new(sim_opts);
    let opts = sim_options(&fs, SEGMENT).durability(durability);
    fs.crash_after(Some(crash_at));
    let out = run_workload(&fs, &opts, plans)?;
    let ctx = format!("crash at op {crash_at} with {sim_opts:?}");
    if !fs.has_crashed() {
        return Err(format!("{ctx}: the crash was never reached").into());
    }
    fs.restart();
    verify_recovery(&fs, &opts, &out, &ctx)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Property tests

fn op_strategy() -> impl Strategy<Value = Op> {
    let len = prop_oneof![3 => 1u16..48, 1 => 1000u16..6000];
    prop_oneof![
        6 => (0u8..3, 0..KEYS, len).prop_map(|(table, key, len)| Op::Put { table, key, len }),
        2 => (0u8..3, 0..KEYS).prop_map(|(table, key)| Op::Delete { table, key }),
        1 => (0u8..3).prop_map(|table| Op::Create { table }),
        1 => (0u8..3).prop_map(|table| Op::Drop { table }),
    ]
}

fn tx_strategy() -> impl Strategy<Value = TxPlan> {
    (
        prop::collection::vec(op_strategy(), 1..7),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(ops, abort, checkpoint_after, compact_after)| TxPlan {
            ops,
            abort,
            checkpoint_after,
            compact_after,
        })
}

/// (seed, where to crash as a fraction of the workload's operations, transactions)
fn workload_strategy() -> impl Strategy<Value = (u64, f64, Vec<TxPlan>)> {
    (
        any::<u64>(),
        0.0f64..1.0,
        prop::collection::vec(tx_strategy(), 1..24),
    )
}

fn property_case(seed: u64, frac: f64, txs: Vec<TxPlan>, keep_unsynced: bool) -> TestResult {
    let sim_opts = SimOptions {
        seed,
        keep_unsynced,
        tear: seed & 1 == 0,
    };
    let mut plans = vec![setup_tx()];
    plans.extend(txs);
    let (open_ops, total) = dry_run(sim_opts, &plans)?;
    // One crash in ten hits the creation of the database, the rest the workload after it.
    let crash_at = if frac < 0.1 {
        1 + (frac / 0.1 * open_ops as f64) as u64
    } else {
        open_ops + 1 + ((frac - 0.1) / 0.9 * (total - open_ops) as f64) as u64
    };
    let crash_at = crash_at.min(total);
    crash_case(sim_opts, &plans, crash_at)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(600))]

    /// 600 crash points where a random prefix of the unsynced writes survives (possibly torn).
    #[test]
    fn a_crash_with_partly_kept_unsynced_writes_loses_no_acknowledged_commit_and_splits_none(
        (seed, frac, txs) in workload_strategy()
    ) {
        property_case(seed, frac, txs, true).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

proptest! {
    #![proptest_config(config(400))]

    /// 400 crash points where every unsynced write is lost.
    #[test]
    fn a_crash_that_drops_all_unsynced_writes_loses_no_acknowledged_commit_and_splits_none(
        (seed, frac, txs) in workload_strategy()
    ) {
        property_case(seed, frac, txs, false).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic sweeps

/// A fixed workload: multi-table transactions with overwrites and deletes, values large enough
/// to rotate 16 KiB segments several times, a rolled-back transaction, a drop and recreate of
/// a table, and checkpoints that release (and later recycle) segments.
fn fixed_workload() -> Vec<TxPlan> {
    let mut plans = vec![setup_tx()];
    let mut rng = XorShift::new(42);
    for i in 0..24u64 {
        let mut ops = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let table = rng.below(3) as u8;
            let key = rng.below(KEYS as u64) as u8;
            if rng.chance(1, 4) {
                ops.push(Op::Delete { table, key });
            } else {
                let len = if rng.chance(1, 3) { 2500 } else { 20 } as u16;
                ops.push(Op::Put { table, key, len });
            }
        }
        if i == 3 {
            ops.push(Op::Create { table: 2 });
        }
        if i == 12 {
            ops.insert(0, Op::Drop { table: 1 });
            ops.push(Op::Create { table: 1 });
        }
        if i == 17 {
            ops.push(Op::Drop { table: 2 });
        }
        plans.push(TxPlan {
            ops,
            abort: i == 8,
            checkpoint_after: i % 7 == 6 || i % 5 == 2,
            compact_after: i % 9 == 8,
        });
    }
    plans
}

fn sweep(sim_opts: SimOptions) -> TestResult {
    let plans = fixed_workload();
    let (_, total) = dry_run(sim_opts, &plans)?;
    if total < 50 {
        return Err(format!("the fixed workload does only {total} operations").into());
    }
    for crash_at in 1..=total {
        crash_case(sim_opts, &plans, crash_at)?;
    }
    Ok(())
}

#[test]
fn a_crash_at_every_operation_of_a_fixed_workload_keeps_acknowledged_commits_whole() -> TestResult {
    sweep(SimOptions {
        seed: 7,
        keep_unsynced: true,
        tear: true,
    })
}

#[test]
fn a_crash_at_every_operation_keeps_commits_whole_when_unsynced_writes_vanish_or_survive_untorn(
) -> TestResult {
    sweep(SimOptions {
        seed: 11,
        keep_unsynced: false,
        tear: false,
    })?;
    sweep(SimOptions {
        seed: 13,
        keep_unsynced: true,
        tear: false,
    })
}

/// Without syncs at commit, a crash may lose acknowledged commits since the last checkpoint or
/// segment rotation, but what recovery returns is still the state after some prefix of the
/// acknowledged commits (never a gap, never part of a transaction), and never older than the
/// last checkpoint.
#[test]
fn without_durability_a_crash_recovers_a_whole_prefix_of_the_commits() -> TestResult {
    let plans = fixed_workload();
    for sim_opts in [
        SimOptions {
            seed: 17,
            keep_unsynced: true,
            tear: true,
        },
        SimOptions {
            seed: 19,
            keep_unsynced: false,
            tear: false,
        },
    ] {
        let (_, total) = dry_run_with(sim_opts, Durability::None, &plans)?;
        for crash_at in 1..=total {
            crash_case_with(sim_opts, Durability::None, &plans, crash_at)?;
        }
    }
    Ok(())
}

/// With background checkpoints (and, for odd seeds, the background syncer of `Buffered`) the
/// operation order depends on thread timing, so crash points are drawn at random and a run
/// that ends before its crash gets a power cut instead. Under `Buffered` acknowledged commits
/// since the last checkpoint may be lost, but only as a whole suffix.
#[test]
fn crashes_while_background_checkpoints_run_lose_no_acknowledged_commit() -> TestResult {
    let plans = fixed_workload();
    for seed in 0..60u64 {
        let fs = SimFs::new(SimOptions {
            seed,
            keep_unsynced: seed % 3 != 0,
            tear: seed % 4 < 2,
        });
        let durability = if seed % 2 == 0 {
            Durability::Immediate
        } else {
            Durability::Buffered {
                max_delay: std::time::Duration::from_micros(200),
            }
        };
        let opts = Options::default()
            .file_system(Arc::new(fs.clone()))
            .durability(durability)
            .wal_segment_bytes(SEGMENT)
            .checkpoint_after_wal_bytes(8 << 10);
        let crash_at = 1 + XorShift::new(seed).below(200);
        fs.crash_after(Some(crash_at));
        let out = run_workload(&fs, &opts, &plans)?;
        fs.crash_now();
        fs.restart();
        verify_recovery(
            &fs,
            &opts,
            &out,
            &format!("seed {seed}, crash at op {crash_at}"),
        )?;
    }
    Ok(())
}

/// A second crash, during the recovery that follows the first, still leaves every
/// acknowledged commit and the in-flight one whole or absent: recovery may repair the log (cut
/// a torn tail, remove unfinished files) but must do so crash-safely.
#[test]
fn a_crash_during_recovery_still_recovers_every_acknowledged_commit() -> TestResult {
    let plans = fixed_workload();
    let sim_opts = SimOptions {
        seed: 23,
        keep_unsynced: true,
        tear: true,
    };
    let (_, total) = dry_run(sim_opts, &plans)?;
    // Replays the first crash deterministically (same seed, same operations).
    let crashed = |crash_at: u64| -> Result<(SimFs, Options, Outcome), Box<dyn std::error::Error>> {
        let fs = SimFs::new(sim_opts);
        let opts = sim_options(&fs, SEGMENT);
        fs.crash_after(Some(crash_at));
        let out = run_workload(&fs, &opts, &plans)?;
        fs.restart();
        Ok((fs, opts, out))
    };
    for crash_at in (1..=total).step_by(3) {
        // The restart picks a different surviving prefix on every replay (see
        // `sim_fs_restart_outcome_replays_from_its_seed`), so the recovery's operation count is
        // not known in advance: crash it one operation later each time until it completes.
        let mut completed = false;
        for second in 1..=200u64 {
            let (fs, opts, out) = crashed(crash_at)?;
            fs.crash_after(Some(second));
            let ctx = format!("crash at op {crash_at}, then at op {second} of the recovery");
            match catch_unwind(AssertUnwindSafe(|| Db::open_with(db_path(), opts.clone()))) {
                Ok(Ok(db)) => drop(db),
                Ok(Err(e)) => expect_crash(&fs, &e, &ctx)?,
                Err(_) => return Err(format!("{ctx}: recovery panicked").into()),
            }
            completed = !fs.has_crashed();
            fs.restart();
            verify_recovery(&fs, &opts, &out, &ctx)?;
            if completed {
                break;
            }
        }
        if !completed {
            return Err(format!("crash at op {crash_at}: recovery never completed").into());
        }
    }
    Ok(())
}

/// `SimFs` documents that "randomness comes from a seeded xorshift generator, so a failing case
/// replays from its seed". Two file systems with the same seed and the same operations must
/// therefore keep the same unsynced data at a restart.
#[test]
fn sim_fs_restart_outcome_replays_from_its_seed() -> TestResult {
    use std::path::{Path, PathBuf};
    use vellum::fs::FileSystem;
    let run = || -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error>> {
        let fs = SimFs::new(SimOptions {
            seed: 5,
            keep_unsynced: true,
            tear: true,
        });
        let dir = Path::new("/d");
        fs.create_dir_all(dir)?;
        let mut files = Vec::new();
        for i in 0..8 {
            let path = PathBuf::from(format!("/d/f{i}"));
            let mut f = fs.open_write(&path)?;
            fs.sync_dir(dir)?;
            for j in 0..4u8 {
                f.write_at(u64::from(j) * 4, &[j + 1; 4])?;
            }
            files.push(path);
        }
        fs.restart();
        let mut contents = Vec::new();
        for path in &files {
            contents.push(fs.read(path)?);
        }
        Ok(contents)
    };
    let first = run()?;
    for attempt in 0..10 {
        assert_eq!(run()?, first, "replay {attempt} kept other unsynced data");
    }
    Ok(())
}

/// Concurrent committers share log writes and syncs (group commit), so several commits are in
/// flight at a crash. Recovery must keep every acknowledged one, keep each commit whole across
/// its two tables, and keep each committer's commits a prefix of what it committed (its next
/// commit starts only after the previous one was acknowledged).
#[test]
fn a_crash_among_concurrent_committers_keeps_acknowledged_commits_and_whole_transactions(
) -> TestResult {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 25;
    for seed in 0..40u64 {
        let fs = SimFs::new(SimOptions {
            seed,
            keep_unsynced: seed % 4 != 3,
            tear: seed % 2 == 0,
        });
        let opts = sim_options(&fs, SEGMENT);
        {
            let db = Db::open_with(db_path(), opts.clone())?;
            db.create_table("a")?;
            db.create_table("b")?;
            fs.crash_after(Some(1 + XorShift::new(seed).below(160)));
            let start = std::sync::Barrier::new(THREADS as usize);
            let results: Vec<(u64, bool)> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..THREADS)
                    .map(|t| {
                        let db = db.clone();
                        let fs = fs.clone();
                        let start = &start;
                        s.spawn(move || -> Result<(u64, bool), String> {
                            start.wait();
                            for i in 0..PER_THREAD {
                                let key = format!("t{t}-{i:03}");
                                let v = value(&key, if i % 5 == 0 { 1500 } else { 30 });
                                let commit = (|| {
                                    let mut tx = db.begin()?;
                                    tx.put("a", &key, &v)?;
                                    tx.put("b", &key, &v)?;
                                    tx.put("a", format!("t{t}-last"), i.to_string())?;
                                    tx.commit()
                                })();
                                if let Err(e) = commit {
                                    expect_crash(&fs, &e, &format!("thread {t} commit {i}"))?;
                                    return Ok((i, true));
                                }
                                if t == 0 && i % 8 == 7 {
                                    if let Err(e) = db.checkpoint() {
                                        expect_crash(&fs, &e, "checkpoint")?;
                                        return Ok((i + 1, false));
                                    }
                                }
                            }
                            Ok((PER_THREAD, false))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().map_err(|_| "a committer panicked".to_string())?)
                    .collect::<Result<_, String>>()
            })?;
            // A run that ends before its crash point gets a power cut instead.
            fs.crash_now();
            fs.restart();
            drop(db);
            let ctx = format!("seed {seed}");
            let db = open_checked(&opts, &ctx)?;
            let state = state_of(&db, &ctx)?;
            let (a, b) = match (state.get("a"), state.get("b")) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(format!("{ctx}: tables lost: {:?}", state.keys()).into()),
            };
            for (t, &(acked, inflight)) in results.iter().enumerate() {
                let prefix = format!("t{t}-");
                let in_b: Vec<&Vec<u8>> = b
                    .keys()
                    .filter(|k| k.starts_with(prefix.as_bytes()))
                    .collect();
                let count = in_b.len() as u64;
                let max = acked + u64::from(inflight);
                assert!(
                    count >= acked && count <= max,
                    "{ctx}: thread {t} acknowledged {acked} commits (in flight: {inflight}), {count} recovered"
                );
                for i in 0..count {
                    let key = format!("t{t}-{i:03}");
                    let v = value(&key, if i % 5 == 0 { 1500 } else { 30 });
                    assert_eq!(a.get(key.as_bytes()), Some(&v), "{ctx}: {key} missing in a");
                    assert_eq!(b.get(key.as_bytes()), Some(&v), "{ctx}: {key} missing in b");
                }
                let last = a.get(format!("t{t}-last").as_bytes()).cloned();
                let want = count.checked_sub(1).map(|i| i.to_string().into_bytes());
                assert_eq!(last, want, "{ctx}: thread {t}'s last-written marker");
            }
            let own_rows = b.len() as u64;
            let recovered: u64 = (0..THREADS)
                .map(|t| {
                    b.keys()
                        .filter(|k| k.starts_with(format!("t{t}-").as_bytes()))
                        .count() as u64
                })
                .sum();
            assert_eq!(own_rows, recovered, "{ctx}: stray rows in b");
            let markers = a.keys().filter(|k| k.ends_with(b"-last")).count() as u64;
            assert_eq!(
                a.len() as u64,
                recovered + markers,
                "{ctx}: stray rows in a"
            );
        }
    }
    Ok(())
}

/// After the log failed, `Error::Poisoned` documents the state: "reopen the database". A commit
/// that writes a key (or table) the failed commit wrote is instead refused with a retryable
/// `Conflict` whose winner is the failed, never-published version; it is found by validation
/// before the log is asked, so it never turns into `Poisoned`, and a retry-on-conflict loop
/// spins forever.
#[test]
fn after_a_log_failure_commits_are_refused_as_poisoned_not_as_retryable_conflicts() -> TestResult {
    let fs = sim(1, false, false);
    let db = Db::open_with(db_path(), sim_options(&fs, SEGMENT))?;
    db.create_table("t")?;
    db.transaction(|tx| tx.put("t", "k", "acknowledged"))?;
    fs.crash_after(Some(1));
    let mut tx = db.begin()?;
    tx.put("t", "k", "in flight")?;
    let failed = tx.commit();
    assert!(matches!(&failed, Err(e) if is_crash_error(e)), "{failed:?}");
    // The failed commit stays invisible...
    assert_eq!(
        db.begin_read()?.get("t", "k")?,
        Some(b"acknowledged".to_vec())
    );
    // ...and a retry loop must end with a non-retryable error.
    for attempt in 0..3 {
        let mut retry = db.begin()?;
        retry.put("t", "k", "retry")?;
        let r = retry.commit();
        assert!(
            matches!(&r, Err(Error::Poisoned(_)) | Err(Error::Io { .. })),
            "attempt {attempt}: {r:?}"
        );
    }
    Ok(())
}
