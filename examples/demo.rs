//! A tour of vellum: `cargo run --release --example demo [DIR]`.
//!
//! 1. Creates a database (in a temporary directory, or in `DIR/db` if `DIR` is given) with two
//!    tables, `accounts` (balances as `u64` little-endian) and `ledger` (one row per transfer).
//! 2. Runs 8 threads of concurrent multi-table transfers with durable commits
//!    (`Durability::Immediate`, the default), retrying on conflicts, and prints a few conflict
//!    reports. Meanwhile one more thread exports a consistent snapshot of both tables, at one
//!    version, to `DIR/export/<table>.jsonl`.
//! 3. Drops the database without calling `close()` and reopens it: the write-ahead log is
//!    replayed.
//! 4. Simulates a crash with `vellum::fs::SimFs` in the middle of commits, restarts the
//!    simulated machine, reopens, and checks that every acknowledged transfer survived.
//! 5. Checks that money was neither created nor lost and that every transfer left exactly one
//!    ledger row, prints a summary, and fails (exit code 1) if any check failed.
//!
//! Running it twice on the same `DIR` continues the same bank: the checks are relative to
//! what the directory already held.

use std::collections::{BTreeMap, HashSet};
use std::error::Error as StdError;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vellum::fs::{SimFs, SimOptions};
use vellum::{Db, Error, Options, Transaction, Version};

type BoxError = Box<dyn StdError + Send + Sync>;

const ACCOUNTS_TABLE: &str = "accounts";
const LEDGER_TABLE: &str = "ledger";
const ACCOUNTS: usize = 20;
const INITIAL_BALANCE: u64 = 1_000;
const MAX_AMOUNT: u64 = 100;

const THREADS: usize = 8;
const TRANSFERS_PER_THREAD: usize = 300;
/// A transfer that conflicts this many times in a row is reported as a failure.
const MAX_ATTEMPTS: u32 = 10_000;
const CONFLICT_REPORTS_SHOWN: usize = 3;

const SIM_THREADS: usize = 4;
const SIM_TRANSFERS_BEFORE_CRASH: usize = 50;
const SIM_TRANSFERS_DURING_CRASH: usize = 200;
/// The simulated file system fails at this mutating operation (write, sync, ...) after the
/// crash is armed; every operation after it fails too, until the restart.
const SIM_CRASH_AFTER_OPS: u64 = 40;

fn main() -> Result<(), Box<dyn StdError>> {
    run().map_err(|e| -> Box<dyn StdError> { e })
}

fn run() -> Result<(), BoxError> {
    let mut args = std::env::args_os().skip(1);
    let dir_arg = args.next();
    if args.next().is_some()
        || dir_arg
            .as_deref()
            .is_some_and(|a| a == "-h" || a == "--help")
    {
        println!("usage: cargo run --release --example demo [DIR]");
        println!("  DIR: where to keep the database (DIR/db) and the export (DIR/export);");
        println!("       default: a temporary directory removed on exit");
        return Ok(());
    }
    // Keeps the temporary directory alive until the end of `run`.
    let mut _temp = None;
    let base: PathBuf = match dir_arg {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir)?;
            dir
        }
        None => {
            let t = tempfile::tempdir()?;
            let path = t.path().to_path_buf();
            _temp = Some(t);
            path
        }
    };
    let db_path = base.join("db");
    let export_dir = base.join("export");
    let mut checks = Checks::default();

    section("1. open and set up");
    let db = Db::open(&db_path)?;
    let created = set_up(&db)?;
    let start = read_state(&db.begin_read()?)?;
    println!(
        "database {} ({}), version {}",
        db_path.display(),
        if created {
            "new: created tables `accounts` and `ledger` and 20 accounts in one transaction"
        } else {
            "existing: continuing its bank"
        },
        start.version
    );
    checks.check(
        audit(&start).is_empty(),
        format!(
            "starting state is consistent ({} accounts, {} ledger rows)",
            start.balances.len(),
            start.ledger.len()
        ),
    );

    section("2. concurrent transfers");
    println!(
        "{THREADS} threads x {TRANSFERS_PER_THREAD} transfers; each reads two balances, writes \
         both and inserts a ledger row, committing durably (fdatasync before commit returns)"
    );
    let next_id = AtomicU64::new(start.ledger.keys().next_back().map_or(1, |last| last + 1));
    let shared = Shared::default();
    let wal_before = db.stats().wal;
    let conflicts_before = db.stats().conflicts;
    let began = Instant::now();
    let (reports, export, elapsed) = std::thread::scope(|s| -> Result<_, BoxError> {
        let (db, shared, next_id) = (&db, &shared, &next_id);
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || run_worker(db, t, TRANSFERS_PER_THREAD, 0x5eed, next_id, shared))
            })
            .collect();
        let export_dir = &export_dir;
        let exporter = s.spawn(move || -> Result<ExportReport, BoxError> {
            // Export while the writers are half done: the snapshot must still be consistent.
            let half = (THREADS * TRANSFERS_PER_THREAD / 2) as u64;
            while shared.done.load(Ordering::Relaxed) < half
                && shared.finished.load(Ordering::Relaxed) < THREADS
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            export_snapshot(db, export_dir)
        });
        let mut reports = Vec::new();
        for w in workers {
            reports.push(w.join().map_err(|_| "a transfer thread panicked")?);
        }
        let elapsed = began.elapsed();
        let export = exporter
            .join()
            .map_err(|_| "the export thread panicked")??;
        Ok((reports, export, elapsed))
    })?;
    let stats = db.stats();
    let wal = WalDelta {
        records: stats.wal.records - wal_before.records,
        batches: stats.wal.batches - wal_before.batches,
        syncs: stats.wal.syncs - wal_before.syncs,
    };
    let committed: usize = reports.iter().map(|r| r.acked.len()).sum();
    let retried: u64 = reports.iter().map(|r| r.retried).sum();
    let conflicts = shared.conflicts.load(Ordering::Relaxed);
    let rate = committed as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "{committed} transfers committed in {:.2} s ({rate:.0} commits/s), {conflicts} conflicts \
         retried",
        elapsed.as_secs_f64()
    );
    println!("first conflict reports (each names table, key, snapshot and the winning version):");
    for report in lock(&shared.samples).iter() {
        println!("  - {report}");
    }
    println!(
        "write-ahead log: {} commit records, {} write batches, {} fdatasyncs \
         ({:.1} commits per sync: group commit)",
        wal.records,
        wal.batches,
        wal.syncs,
        wal.records as f64 / wal.syncs.max(1) as f64
    );
    for r in &reports {
        if let Some((id, why)) = &r.failure {
            println!("transfer {id} failed: {why}");
        }
    }
    checks.check(
        reports.iter().all(|r| r.failure.is_none()),
        "no transfer failed with a non-retryable error",
    );
    checks.check(
        committed == THREADS * TRANSFERS_PER_THREAD,
        format!("all {} transfers committed", THREADS * TRANSFERS_PER_THREAD),
    );
    checks.check(
        stats.conflicts - conflicts_before == conflicts,
        format!("db.stats().conflicts counted the same {conflicts} conflicts the threads retried"),
    );

    let after = read_state(&db.begin_read()?)?;
    report_audit(&mut checks, &after, "after the transfers");
    let acked: Vec<u64> = reports
        .iter()
        .flat_map(|r| r.acked.iter().copied())
        .collect();
    checks.check(
        after.ledger.len() == start.ledger.len() + committed
            && acked.iter().all(|id| after.ledger.contains_key(id)),
        format!(
            "ledger rows == successful transfers ({} new rows, {committed} transfers)",
            after.ledger.len().saturating_sub(start.ledger.len())
        ),
    );

    section("3. drop and reopen");
    drop(db);
    let reopen_began = Instant::now();
    let db = Db::open(&db_path)?;
    let reopened = read_state(&db.begin_read()?)?;
    println!(
        "dropped the Db without close() and reopened it in {:.1} ms: recovery loaded the newest \
         checkpoint ({}) and replayed the write-ahead log after it, back to version {}",
        reopen_began.elapsed().as_secs_f64() * 1e3,
        if stats.checkpoints == 0 {
            "none was written: the log is far below checkpoint_after_wal_bytes"
        } else {
            "written in the background"
        },
        reopened.version
    );
    checks.check(
        reopened.version == after.version
            && reopened.balances == after.balances
            && reopened.ledger == after.ledger,
        format!(
            "reopen shows exactly the state at version {}",
            after.version
        ),
    );
    let final_version = db.version();
    drop(db);

    section("4. simulated crash (vellum::fs::SimFs)");
    let crash = crash_demo(&mut checks)?;

    section("5. export");
    println!(
        "one begin_read() transaction at version {} (taken while the writers were running; they \
         finished at version {}) wrote {}",
        export.version,
        after.version,
        export_dir.display()
    );
    for (table, rows) in &export.rows {
        println!("  {table}.jsonl: {rows} rows");
    }
    if let Some(line) = &export.sample {
        println!("  e.g. {line}");
    }
    report_audit(&mut checks, &export.state, "in the exported snapshot");
    checks.check(
        export.rows.get(ACCOUNTS_TABLE) == Some(&export.state.balances.len())
            && export.rows.get(LEDGER_TABLE) == Some(&export.state.ledger.len()),
        "the export holds every row of the snapshot",
    );

    section("summary");
    let total: u64 = after.balances.iter().sum();
    println!(
        "commits     {committed} transfers ({THREADS} threads x {TRANSFERS_PER_THREAD}) in \
         {:.2} s = {rate:.0} commits/s, each durable before commit returned",
        elapsed.as_secs_f64()
    );
    println!("conflicts   {conflicts} write-write conflicts reported");
    println!("retries     {conflicts} ({retried} transfers needed at least one)");
    println!(
        "wal         {} records in {} write batches with {} fdatasyncs -> {:.1} commits per \
         sync (group commit)",
        wal.records,
        wal.batches,
        wal.syncs,
        wal.records as f64 / wal.syncs.max(1) as f64
    );
    println!("version     {final_version}");
    println!(
        "money       {total} in {} accounts (expected {})",
        after.balances.len(),
        expected_total()
    );
    println!(
        "ledger      {} rows ({committed} added by this run)",
        after.ledger.len()
    );
    println!(
        "crash       {} of {} acknowledged transfers survived the simulated crash \
         ({} of {} failed in-flight commits turned out durable)",
        crash.acked - crash.missing,
        crash.acked,
        crash.in_flight_recovered,
        crash.in_flight
    );
    println!(
        "export      version {}, {} rows in {}",
        export.version,
        export.rows.values().sum::<usize>(),
        export_dir.display()
    );
    if _temp.is_some() {
        println!("            (temporary directory, removed on exit; pass DIR to keep it)");
    }
    println!(
        "checks      {} passed, {} failed",
        checks.passed,
        checks.failed.len()
    );
    if checks.failed.is_empty() {
        Ok(())
    } else {
        for f in &checks.failed {
            eprintln!("FAILED: {f}");
        }
        Err(format!("{} check(s) failed", checks.failed.len()).into())
    }
}

// ---------------------------------------------------------------------------------------------
// The bank: keys, values and the transfer transaction.

fn account_key(i: usize) -> String {
    format!("acct-{i:02}")
}

fn ledger_key(id: u64) -> String {
    // Zero-padded so that key order is id order.
    format!("{id:016}")
}

/// One ledger row: `from=acct-03 to=acct-17 amount=42`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    from: usize,
    to: usize,
    amount: u64,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "from={} to={} amount={}",
            account_key(self.from),
            account_key(self.to),
            self.amount
        )
    }
}

fn parse_account(key: &str) -> Option<usize> {
    key.strip_prefix("acct-")?.parse().ok()
}

fn parse_entry(value: &[u8]) -> Option<Entry> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split(' ');
    let from = parse_account(parts.next()?.strip_prefix("from=")?)?;
    let to = parse_account(parts.next()?.strip_prefix("to=")?)?;
    let amount = parts.next()?.strip_prefix("amount=")?.parse().ok()?;
    match parts.next() {
        None => Some(Entry { from, to, amount }),
        Some(_) => None,
    }
}

fn decode_balance(value: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(value.try_into().ok()?))
}

/// What can fail inside a transfer: the database, or data that is not what the demo wrote.
#[derive(Debug)]
enum TxError {
    Db(Error),
    Data(String),
}

impl From<Error> for TxError {
    fn from(e: Error) -> Self {
        TxError::Db(e)
    }
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Db(e) => write!(f, "{e}"),
            TxError::Data(why) => write!(f, "bad data: {why}"),
        }
    }
}

impl StdError for TxError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            TxError::Db(e) => Some(e),
            TxError::Data(_) => None,
        }
    }
}

fn read_balance(tx: &Transaction, account: usize) -> Result<u64, TxError> {
    let key = account_key(account);
    let value = tx
        .get(ACCOUNTS_TABLE, &key)?
        .ok_or_else(|| TxError::Data(format!("account {key} is missing")))?;
    decode_balance(&value).ok_or_else(|| TxError::Data(format!("balance of {key} is malformed")))
}

#[derive(Debug, Clone, Copy)]
struct Transfer {
    id: u64,
    from: usize,
    to: usize,
    amount: u64,
}

/// The body of one transfer transaction (moves at most what `from` holds).
fn transfer_once(tx: &mut Transaction, t: &Transfer) -> Result<(), TxError> {
    let from = read_balance(tx, t.from)?;
    let to = read_balance(tx, t.to)?;
    let amount = t.amount.min(from);
    let new_to = to
        .checked_add(amount)
        .ok_or_else(|| TxError::Data(format!("balance of {} overflows", account_key(t.to))))?;
    tx.put(
        ACCOUNTS_TABLE,
        account_key(t.from),
        (from - amount).to_le_bytes(),
    )?;
    tx.put(ACCOUNTS_TABLE, account_key(t.to), new_to.to_le_bytes())?;
    let entry = Entry {
        from: t.from,
        to: t.to,
        amount,
    };
    tx.put(LEDGER_TABLE, ledger_key(t.id), entry.to_string())?;
    Ok(())
}

/// Counters shared by the transfer threads of one phase.
#[derive(Debug, Default)]
struct Shared {
    conflicts: AtomicU64,
    /// The first few conflict reports, rendered with `Display`.
    samples: Mutex<Vec<String>>,
    /// Transfers committed.
    done: AtomicU64,
    /// Threads that have stopped.
    finished: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs one transfer until it commits, retrying the whole transaction on conflicts. Returns
/// the number of attempts.
fn transfer_with_retry(db: &Db, t: &Transfer, shared: &Shared) -> Result<u32, TxError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match db.transaction(|tx| transfer_once(tx, t)) {
            Ok(()) => return Ok(attempts),
            Err(TxError::Db(e)) if e.is_retryable() && attempts < MAX_ATTEMPTS => {
                shared.conflicts.fetch_add(1, Ordering::Relaxed);
                let text = e.to_string();
                let mut samples = lock(&shared.samples);
                if samples.len() < CONFLICT_REPORTS_SHOWN && !samples.contains(&text) {
                    samples.push(text);
                }
                drop(samples);
                // The winner may still be waiting for its fdatasync: until it is visible, a
                // new snapshot would not include it and the retry would conflict again.
                if let Some(report) = e.conflict() {
                    let deadline = Instant::now() + Duration::from_millis(20);
                    while db.version() < report.winner && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_micros(20));
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[derive(Debug, Default)]
struct WorkerReport {
    /// Ledger ids of the transfers whose commit returned `Ok` (acknowledged, durable).
    acked: Vec<u64>,
    /// Transfers that needed more than one attempt.
    retried: u64,
    /// The transfer that failed with a non-retryable error, and why; the thread stops there.
    failure: Option<(u64, String)>,
}

/// xorshift64*: a tiny deterministic generator, so the demo needs no extra dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

fn run_worker(
    db: &Db,
    thread: usize,
    transfers: usize,
    seed: u64,
    next_id: &AtomicU64,
    shared: &Shared,
) -> WorkerReport {
    let mut rng = Rng::new(seed ^ (thread as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut report = WorkerReport::default();
    for _ in 0..transfers {
        let from = rng.below(ACCOUNTS as u64) as usize;
        let to = (from + 1 + rng.below(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
        let t = Transfer {
            id: next_id.fetch_add(1, Ordering::Relaxed),
            from,
            to,
            amount: 1 + rng.below(MAX_AMOUNT),
        };
        match transfer_with_retry(db, &t, shared) {
            Ok(attempts) => {
                report.acked.push(t.id);
                report.retried += u64::from(attempts > 1);
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                report.failure = Some((t.id, e.to_string()));
                break;
            }
        }
    }
    shared.finished.fetch_add(1, Ordering::Relaxed);
    report
}

/// Runs `threads` transfer threads to completion (or to their first hard failure).
fn run_workers(
    db: &Db,
    threads: usize,
    transfers: usize,
    seed: u64,
    next_id: &AtomicU64,
    shared: &Shared,
) -> Result<Vec<WorkerReport>, BoxError> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || run_worker(db, t, transfers, seed, next_id, shared)))
            .collect();
        let mut reports = Vec::new();
        for h in handles {
            reports.push(h.join().map_err(|_| "a transfer thread panicked")?);
        }
        Ok(reports)
    })
}

/// Creates both tables and the accounts in one transaction, unless they exist. Returns true if
/// it created them.
fn set_up(db: &Db) -> Result<bool, BoxError> {
    if db.begin_read()?.table_exists(ACCOUNTS_TABLE)? {
        return Ok(false);
    }
    db.transaction(|tx| {
        tx.create_table(ACCOUNTS_TABLE)?;
        tx.create_table(LEDGER_TABLE)?;
        for i in 0..ACCOUNTS {
            tx.put(
                ACCOUNTS_TABLE,
                account_key(i),
                INITIAL_BALANCE.to_le_bytes(),
            )?;
        }
        Ok::<_, Error>(())
    })?;
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Reading and auditing the whole bank at one snapshot.

#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    version: Version,
    balances: Vec<u64>,
    ledger: BTreeMap<u64, Entry>,
}

fn read_state(tx: &Transaction) -> Result<State, BoxError> {
    let mut balances = Vec::new();
    for row in tx.scan_all(ACCOUNTS_TABLE)? {
        let (key, value) = row?;
        let name = String::from_utf8_lossy(&key);
        if parse_account(&name) != Some(balances.len()) {
            return Err(format!("unexpected account key {name:?}").into());
        }
        balances.push(decode_balance(&value).ok_or_else(|| format!("bad balance of {name}"))?);
    }
    let mut ledger = BTreeMap::new();
    for row in tx.scan_all(LEDGER_TABLE)? {
        let (key, value) = row?;
        let name = String::from_utf8_lossy(&key);
        let id: u64 = name
            .parse()
            .map_err(|_| format!("unexpected ledger key {name:?}"))?;
        let entry = parse_entry(&value).ok_or_else(|| format!("bad ledger row {name}"))?;
        ledger.insert(id, entry);
    }
    Ok(State {
        version: tx.snapshot_version(),
        balances,
        ledger,
    })
}

fn expected_total() -> u64 {
    ACCOUNTS as u64 * INITIAL_BALANCE
}

/// Problems found: money created or lost, or balances that the ledger does not explain
/// (every account started at `INITIAL_BALANCE`; replaying the ledger must give its balance).
fn audit(state: &State) -> Vec<String> {
    let mut problems = Vec::new();
    if state.balances.len() != ACCOUNTS {
        problems.push(format!(
            "{} accounts instead of {ACCOUNTS}",
            state.balances.len()
        ));
    }
    let total: u128 = state.balances.iter().map(|&b| u128::from(b)).sum();
    if total != u128::from(expected_total()) {
        problems.push(format!(
            "money total is {total}, expected {}",
            expected_total()
        ));
    }
    let mut replayed = vec![i128::from(INITIAL_BALANCE); ACCOUNTS];
    for (id, e) in &state.ledger {
        match (replayed.get(e.from), replayed.get(e.to)) {
            (Some(_), Some(_)) if e.from != e.to => {
                replayed[e.from] -= i128::from(e.amount);
                replayed[e.to] += i128::from(e.amount);
            }
            _ => problems.push(format!("ledger row {id} names bad accounts")),
        }
    }
    for (i, (&have, &want)) in state.balances.iter().zip(&replayed).enumerate() {
        if i128::from(have) != want {
            problems.push(format!(
                "{} holds {have} but its ledger rows say {want}",
                account_key(i)
            ));
        }
    }
    problems
}

fn report_audit(checks: &mut Checks, state: &State, when: &str) {
    let problems = audit(state);
    for p in problems.iter().take(5) {
        println!("  problem: {p}");
    }
    checks.check(
        problems.is_empty(),
        format!(
            "{when} (version {}): money total {} unchanged, every balance equals the replay of \
             the {} ledger rows",
            state.version,
            state.balances.iter().sum::<u64>(),
            state.ledger.len()
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// The simulated crash.

struct CrashSummary {
    acked: usize,
    missing: usize,
    in_flight: usize,
    in_flight_recovered: usize,
}

fn crash_demo(checks: &mut Checks) -> Result<CrashSummary, BoxError> {
    let sim = SimFs::new(SimOptions {
        seed: 0xc0ffee,
        ..SimOptions::default()
    });
    let opts = Options::default()
        .file_system(Arc::new(sim.clone()))
        .wal_segment_bytes(1 << 20);
    let path = Path::new("/bank");
    let db = Db::open_with(path, opts.clone())?;
    set_up(&db)?;
    let next_id = AtomicU64::new(1);

    let shared = Shared::default();
    let before = run_workers(
        &db,
        SIM_THREADS,
        SIM_TRANSFERS_BEFORE_CRASH,
        0xbeef,
        &next_id,
        &shared,
    )?;
    db.checkpoint()?;
    let acked_before: usize = before.iter().map(|r| r.acked.len()).sum();
    println!(
        "in-memory SimFs database {}: {acked_before} transfers committed, then a checkpoint",
        path.display()
    );
    checks.check(
        before.iter().all(|r| r.failure.is_none()),
        "simulated database: transfers before the crash all committed",
    );

    sim.crash_after(Some(SIM_CRASH_AFTER_OPS));
    let ops_armed = sim.op_count();
    let shared = Shared::default();
    let during = run_workers(
        &db,
        SIM_THREADS,
        SIM_TRANSFERS_DURING_CRASH,
        0xfeed,
        &next_id,
        &shared,
    )?;
    let crashed = sim.has_crashed();
    if !crashed {
        sim.crash_now(); // the workload ended first: cut the power now instead
    }
    let acked_during: usize = during.iter().map(|r| r.acked.len()).sum();
    let in_flight: Vec<u64> = during
        .iter()
        .filter_map(|r| r.failure.as_ref().map(|(id, _)| *id))
        .collect();
    println!(
        "armed a crash at the {SIM_CRASH_AFTER_OPS}th file-system write/sync from op {ops_armed}: \
         {acked_during} more transfers were acknowledged, then {} commits failed in flight \
         (their outcome is unknown to the caller)",
        in_flight.len()
    );
    if let Some((_, why)) = during.iter().find_map(|r| r.failure.as_ref()) {
        println!("  a failed commit said: {why}");
    }
    checks.check(
        crashed,
        "the simulated crash happened in the middle of commits",
    );

    drop(db);
    sim.restart();
    println!(
        "restarted the simulated machine: every byte that was not fdatasynced may be lost or \
         torn; reopening replays the log after the checkpoint"
    );
    let db = Db::open_with(path, opts)?;
    let state = read_state(&db.begin_read()?)?;
    let acked: HashSet<u64> = before
        .iter()
        .chain(&during)
        .flat_map(|r| r.acked.iter().copied())
        .collect();
    let missing = acked
        .iter()
        .filter(|id| !state.ledger.contains_key(id))
        .count();
    let invented = state
        .ledger
        .keys()
        .filter(|id| !acked.contains(id) && !in_flight.contains(id))
        .count();
    let recovered_in_flight = in_flight
        .iter()
        .filter(|id| state.ledger.contains_key(id))
        .count();
    println!(
        "recovered version {}: {} ledger rows ({} acknowledged + {recovered_in_flight} of the {} \
         failed in-flight commits, whose records had reached the disk after all)",
        state.version,
        state.ledger.len(),
        acked.len(),
        in_flight.len()
    );
    checks.check(
        missing == 0,
        format!(
            "every acknowledged transfer survived the crash ({} of {})",
            acked.len() - missing,
            acked.len()
        ),
    );
    checks.check(
        invented == 0,
        "no transfer appeared that was never attempted",
    );
    report_audit(checks, &state, "after the crash");

    // The recovered database takes new commits.
    let t = Transfer {
        id: state.ledger.keys().next_back().map_or(1, |last| last + 1),
        from: 0,
        to: 1,
        amount: 1,
    };
    let attempts = transfer_with_retry(&db, &t, &Shared::default());
    checks.check(
        attempts.is_ok(),
        "the recovered database accepts new transfers",
    );
    Ok(CrashSummary {
        acked: acked.len(),
        missing,
        in_flight: in_flight.len(),
        in_flight_recovered: recovered_in_flight,
    })
}

// ---------------------------------------------------------------------------------------------
// Export: a consistent snapshot of both tables as JSON Lines, written by hand.

struct ExportReport {
    version: Version,
    rows: BTreeMap<&'static str, usize>,
    sample: Option<String>,
    /// The same snapshot, read for the audit.
    state: State,
}

/// Writes every row of both tables at one version (one read transaction) to
/// `out/<table>.jsonl` plus `out/manifest.json`. The files are written to a sibling directory
/// and renamed into place at the end, so a reader never sees a half-written export.
///
/// Row format: `{"key":"acct-07","value":1234,"version":56}` for `accounts` (balance as a
/// number), `{"key":"0000000000000042","value_hex":"66726f6d...","version":57}` for `ledger`.
/// `version` is the commit that last wrote the row; every row has `version <= ` the export's.
fn export_snapshot(db: &Db, out: &Path) -> Result<ExportReport, BoxError> {
    let tx = db.begin_read()?;
    let version = tx.snapshot_version();
    let tmp = out.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    let mut rows = BTreeMap::new();
    let mut sample = None;
    for table in [ACCOUNTS_TABLE, LEDGER_TABLE] {
        let path = tmp.join(format!("{table}.jsonl"));
        let mut w = BufWriter::new(File::create(&path)?);
        let mut count = 0usize;
        for row in tx.scan_all(table)? {
            let (key, value) = row?;
            // Scans yield no versions; ask for the row's version at the same snapshot.
            let row_version = tx
                .get_versioned(table, &key)?
                .and_then(|v| v.version)
                .ok_or_else(|| format!("row {key:?} of {table} vanished from the snapshot"))?;
            let mut line = String::from("{");
            match std::str::from_utf8(&key) {
                Ok(k) => {
                    line.push_str("\"key\":");
                    push_json_string(&mut line, k);
                }
                Err(_) => line.push_str(&format!("\"key_hex\":\"{}\"", hex(&key))),
            }
            match (table, decode_balance(&value)) {
                (ACCOUNTS_TABLE, Some(balance)) => line.push_str(&format!(",\"value\":{balance}")),
                _ => line.push_str(&format!(",\"value_hex\":\"{}\"", hex(&value))),
            }
            line.push_str(&format!(",\"version\":{row_version}}}"));
            writeln!(w, "{line}")?;
            if sample.is_none() {
                sample = Some(format!("{table}.jsonl: {line}"));
            }
            count += 1;
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        rows.insert(table, count);
    }
    let manifest = format!(
        "{{\"version\":{version},\"tables\":{{\"{ACCOUNTS_TABLE}\":{{\"rows\":{},\"value\":\"u64\"}},\
         \"{LEDGER_TABLE}\":{{\"rows\":{},\"value\":\"hex\"}}}}}}\n",
        rows.get(ACCOUNTS_TABLE).copied().unwrap_or(0),
        rows.get(LEDGER_TABLE).copied().unwrap_or(0),
    );
    let manifest_path = tmp.join("manifest.json");
    std::fs::write(&manifest_path, manifest)?;
    File::open(&manifest_path)?.sync_all()?;
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    std::fs::rename(&tmp, out)?;
    if let Some(parent) = out.parent() {
        File::open(parent)?.sync_all()?;
    }
    let state = read_state(&tx)?;
    Ok(ExportReport {
        version,
        rows,
        sample,
        state,
    })
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Output helpers.

#[derive(Debug, Default)]
struct Checks {
    passed: usize,
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        let what = what.into();
        if ok {
            println!("  [ok]   {what}");
            self.passed += 1;
        } else {
            println!("  [FAIL] {what}");
            self.failed.push(what);
        }
    }
}

struct WalDelta {
    records: u64,
    batches: u64,
    syncs: u64,
}

fn section(title: &str) {
    println!("\n== {title} ==");
}
