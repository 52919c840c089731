//! The workloads. Every write workload runs on a fresh store, time-boxed (`--secs` per phase,
//! after a short warm-up on the same store); the read workload runs on a bulk-loaded store that
//! was closed and reopened. Every measured phase is repeated `--reps` times and the median rate
//! is reported (its latencies with it), with every repetition's rate in the notes.

use crate::engine::{self, decode_balance, Outcome, Res, Transfer};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

pub const KEY_BYTES: usize = 16;
pub const VALUE_BYTES: usize = 100;
pub const SCAN_ROWS: usize = 100;
pub const INITIAL_BALANCE: i64 = 1_000_000;

/// Sizes and phases, from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    pub secs: f64,
    pub warmup_secs: f64,
    pub commit_threads: Vec<usize>,
    pub transfer_threads: Vec<usize>,
    pub read_threads: Vec<usize>,
    pub accounts: u64,
    pub bulk_keys: usize,
    pub zipf_theta: f64,
    /// Measured repetitions of every phase; the median is reported.
    pub reps: usize,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Row {
    /// "idle" or "busy" (CPU mode the row was measured in).
    pub mode: String,
    pub engine: String,
    pub workload: String,
    /// The headline rate (commits/s, keys/s, reads/s, scans/s, syncs/s).
    pub rate: f64,
    pub unit: &'static str,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub notes: String,
    pub extra: serde_json::Value,
}

impl Row {
    fn new(engine: &str, workload: String, rate: f64, unit: &'static str) -> Row {
        Row {
            mode: String::new(),
            engine: engine.to_string(),
            workload,
            rate,
            unit,
            p50_ms: None,
            p99_ms: None,
            notes: String::new(),
            extra: json!({}),
        }
    }

    fn latencies(mut self, lat: &mut [u64]) -> Row {
        lat.sort_unstable();
        self.p50_ms = Some(percentile_ms(lat, 0.50));
        self.p99_ms = Some(percentile_ms(lat, 0.99));
        self
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "mode": self.mode,
            "engine": self.engine,
            "workload": self.workload,
            "rate": self.rate,
            "unit": self.unit,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "notes": self.notes,
            "extra": self.extra,
        })
    }
}

/// Runs `reps` phases (`make(i)` gives the operation of repetition `i`) and returns the one
/// with the median rate, and every repetition's rate.
fn median_of<F>(
    reps: usize,
    threads: usize,
    secs: f64,
    record: bool,
    make: impl Fn(u32) -> F,
) -> Res<(Phase, Vec<f64>)>
where
    F: Fn(usize, u64, &mut SmallRng) -> Res<bool> + Send + Sync,
{
    let mut phases = Vec::new();
    for i in 0..reps.max(1) {
        phases.push(timed(threads, secs, record, make(i as u32))?);
    }
    let rates: Vec<f64> = phases.iter().map(|p| p.rate()).collect();
    phases.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let mid = phases.len() / 2;
    Ok((phases.swap_remove(mid), rates))
}

/// "median of 3: 1200/1180/1250".
fn reps_note(rates: &[f64]) -> String {
    let list: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    format!("median of {}: {}", rates.len(), list.join("/"))
}

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1e6
}

/// Bytes allocated on disk under `dir` (st_blocks, so sparse preallocation is not counted).
pub fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            total += disk_usage(&e.path());
        } else {
            total += md.blocks() * 512;
        }
    }
    total
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// What a timed multi-thread phase measured.
struct Phase {
    ops: u64,
    elapsed: Duration,
    latencies_ns: Vec<u64>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `op(thread, seq, rng)` on `threads` threads until `secs` have passed. `op` returns
/// whether the operation counts (a committed transaction); latencies are recorded for counted
/// operations when `record` is set.
fn timed<F>(threads: usize, secs: f64, record: bool, op: F) -> Res<Phase>
where
    F: Fn(usize, u64, &mut SmallRng) -> Res<bool> + Send + Sync,
{
    let start = Barrier::new(threads + 1);
    let dur = Duration::from_secs_f64(secs);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (start, op) = (&start, &op);
                s.spawn(move || -> Res<(u64, Vec<u64>)> {
                    let mut rng = SmallRng::seed_from_u64(0x5EED ^ (t as u64) << 32);
                    let mut lat = Vec::with_capacity(if record { 4096 } else { 0 });
                    let mut ops = 0u64;
                    start.wait();
                    let deadline = Instant::now() + dur;
                    let mut seq = 0u64;
                    loop {
                        let began = Instant::now();
                        if began >= deadline {
                            break;
                        }
                        if op(t, seq, &mut rng)? {
                            ops += 1;
                            if record {
                                lat.push(began.elapsed().as_nanos() as u64);
                            }
                        }
                        seq += 1;
                    }
                    Ok((ops, lat))
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        let mut ops = 0;
        let mut latencies_ns = Vec::new();
        for h in handles {
            let (n, lat) = h.join().map_err(|_| "a worker thread panicked")??;
            ops += n;
            latencies_ns.extend(lat);
        }
        Ok(Phase {
            ops,
            elapsed: began.elapsed(),
            latencies_ns,
        })
    })
}

/// 16-byte key unique to (phase, thread, seq).
fn seq_key(phase: u32, thread: usize, seq: u64) -> [u8; KEY_BYTES] {
    let mut k = [0u8; KEY_BYTES];
    k[0..4].copy_from_slice(&phase.to_be_bytes());
    k[4..8].copy_from_slice(&(thread as u32).to_be_bytes());
    k[8..16].copy_from_slice(&seq.to_be_bytes());
    k
}

fn random_value(rng: &mut impl RngCore) -> [u8; VALUE_BYTES] {
    let mut v = [0u8; VALUE_BYTES];
    rng.fill_bytes(&mut v);
    v
}

fn fresh_dir(base: &Path, engine: &str, workload: &str) -> Res<PathBuf> {
    let dir = base.join(format!("{engine}-{workload}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

// ---------------------------------------------------------------- raw disk probe

/// 4 KiB append + fdatasync and 4 KiB overwrite (offset 0) + fdatasync, one thread.
pub fn disk_probe(base: &Path, cfg: &Config) -> Res<Vec<Row>> {
    use std::os::unix::fs::FileExt;
    std::fs::create_dir_all(base)?;
    let path = base.join("disk-probe");
    let mut rows = Vec::new();
    for (name, append) in [
        ("disk append+fdatasync", true),
        ("disk overwrite+fdatasync", false),
    ] {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let block = [0x5Au8; 4096];
        if !append {
            file.write_all_at(&block, 0)?;
            file.sync_all()?;
        }
        let file = &file;
        let block = &block;
        let (phase, rates) = median_of(cfg.reps, 1, cfg.secs, true, |rep| {
            // Each repetition appends past the end of the previous one's (sparse) region.
            let base = u64::from(rep) << 30;
            move |_: usize, seq: u64, _: &mut SmallRng| -> Res<bool> {
                let offset = if append { base + seq * 4096 } else { 0 };
                file.write_all_at(block, offset)?;
                file.sync_data()?;
                Ok(true)
            }
        })?;
        let mut lat = phase.latencies_ns.clone();
        let mut row =
            Row::new("(disk)", name.to_string(), phase.rate(), "syncs/s").latencies(&mut lat);
        row.notes = reps_note(&rates);
        rows.push(row);
    }
    std::fs::remove_file(&path)?;
    Ok(rows)
}

// ---------------------------------------------------------------- put

/// One durable transaction putting a random 100-byte value under a key unique to
/// (phase, thread, seq) into table `t`: the operation of `put` and `commit`.
fn single_put(
    e: &dyn engine::Engine,
    phase: u32,
) -> impl Fn(usize, u64, &mut SmallRng) -> Res<bool> + Send + Sync + '_ {
    move |t, seq, rng| {
        let v = random_value(rng);
        e.put("t", &[(&seq_key(phase, t, seq), &v)])?;
        Ok(true)
    }
}

/// Single-put durable transactions, one thread.
pub fn put(engine_name: &str, base: &Path, cfg: &Config) -> Res<Vec<Row>> {
    let dir = fresh_dir(base, engine_name, "put")?;
    let e = engine::open(engine_name, &dir, &["t"])?;
    let op = |phase: u32| single_put(e.as_ref(), phase);
    timed(1, cfg.warmup_secs, false, op(0))?;
    let (mut p, rates) = median_of(cfg.reps, 1, cfg.secs, true, |i| op(1 + i))?;
    let mut row = Row::new(engine_name, "put".into(), p.rate(), "commits/s");
    row = row.latencies(&mut p.latencies_ns);
    row.notes = format!("{}; disk {}", reps_note(&rates), mib(disk_usage(&dir)));
    e.close()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(vec![row])
}

// ---------------------------------------------------------------- commit

/// Small durable transactions (one 16-byte key, 100-byte value) on disjoint keys, 1..N threads.
pub fn commit(engine_name: &str, base: &Path, cfg: &Config) -> Res<Vec<Row>> {
    let dir = fresh_dir(base, engine_name, "commit")?;
    let e = engine::open(engine_name, &dir, &["t"])?;
    let op = |phase: u32| single_put(e.as_ref(), phase);
    timed(1, cfg.warmup_secs, false, op(0))?;
    let mut rows = Vec::new();
    for (i, &threads) in cfg.commit_threads.iter().enumerate() {
        let base = 1 + (i * cfg.reps.max(1)) as u32;
        let (mut p, rates) = median_of(cfg.reps, threads, cfg.secs, true, |r| op(base + r))?;
        let mut row = Row::new(
            engine_name,
            format!("commit x{threads}"),
            p.rate(),
            "commits/s",
        )
        .latencies(&mut p.latencies_ns);
        row.notes = reps_note(&rates);
        rows.push(row);
    }
    if let Some(last) = rows.last_mut() {
        last.notes = format!("{}; disk {}", last.notes, mib(disk_usage(&dir)));
    }
    e.close()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(rows)
}

// ---------------------------------------------------------------- transfer

/// YCSB's Zipfian generator (Gray et al., "Quickly generating billion-record synthetic
/// databases"): item 0 is the most popular.
pub struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipf {
    pub fn new(n: u64, theta: f64) -> Zipf {
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(n);
        let zeta2 = zeta(2.min(n));
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Zipf {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        ((self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64).min(self.n - 1)
    }
}

fn account_key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// Bank transfers between two Zipfian-chosen accounts, with a ledger row each; checks that
/// the sum of balances is unchanged and that the ledger has one row per committed transfer.
pub fn transfer(engine_name: &str, base: &Path, cfg: &Config) -> Res<Vec<Row>> {
    let mut rows = Vec::new();
    let zipf = Zipf::new(cfg.accounts, cfg.zipf_theta);
    for &threads in &cfg.transfer_threads {
        let dir = fresh_dir(base, engine_name, &format!("transfer{threads}"))?;
        let e = engine::open(engine_name, &dir, &["accounts", "ledger"])?;
        let keys: Vec<[u8; 8]> = (0..cfg.accounts).map(account_key).collect();
        let bal = INITIAL_BALANCE.to_le_bytes();
        let pairs: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &bal[..])).collect();
        e.put("accounts", &pairs)?;

        let committed = AtomicU64::new(0);
        let aborts = AtomicU64::new(0);
        let op = |phase: u32| {
            let (e, zipf, committed, aborts) = (&e, &zipf, &committed, &aborts);
            move |t: usize, seq: u64, rng: &mut SmallRng| -> Res<bool> {
                let a = zipf.sample(rng);
                let mut b = zipf.sample(rng);
                while b == a {
                    b = zipf.sample(rng);
                }
                let (from, to) = (account_key(a), account_key(b));
                let amount = rng.random_range(1..=100i64);
                let lkey = seq_key(phase, t, seq);
                let mut lval = [0u8; 24];
                lval[0..8].copy_from_slice(&from);
                lval[8..16].copy_from_slice(&to);
                lval[16..24].copy_from_slice(&amount.to_le_bytes());
                let tr = Transfer {
                    from: &from,
                    to: &to,
                    amount,
                    ledger_key: &lkey,
                    ledger_value: &lval,
                };
                let outcome = e.transfer(&tr)?;
                aborts.fetch_add(e.take_internal_retries(), Ordering::Relaxed);
                Ok(match outcome {
                    Outcome::Committed => {
                        committed.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    Outcome::Conflict => {
                        aborts.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                })
            }
        };
        timed(threads, cfg.warmup_secs, false, op(0))?;
        let (c0, a0) = (
            committed.load(Ordering::Relaxed),
            aborts.load(Ordering::Relaxed),
        );
        let (mut p, rates) = median_of(cfg.reps, threads, cfg.secs, true, |r| op(1 + r))?;
        let c = committed.load(Ordering::Relaxed) - c0;
        let a = aborts.load(Ordering::Relaxed) - a0;
        let abort_rate = a as f64 / (a + c).max(1) as f64;

        // The check, on the reopened store: what survived a close must balance too.
        e.close()?;
        let e = engine::open(engine_name, &dir, &["accounts", "ledger"])?;
        let mut sum = 0i64;
        let mut n_accounts = 0u64;
        e.for_each("accounts", &mut |_, v| {
            sum += decode_balance(v)?;
            n_accounts += 1;
            Ok(())
        })?;
        let mut ledger_rows = 0u64;
        e.for_each("ledger", &mut |_, _| {
            ledger_rows += 1;
            Ok(())
        })?;
        let total_committed = committed.load(Ordering::Relaxed);
        let expected = INITIAL_BALANCE * cfg.accounts as i64;
        let pass = sum == expected && n_accounts == cfg.accounts && ledger_rows == total_committed;
        let mut row = Row::new(
            engine_name,
            format!("transfer x{threads}"),
            p.rate(),
            "commits/s",
        )
        .latencies(&mut p.latencies_ns);
        row.notes = format!(
            "{}; aborts {:.1}% {} disk {}",
            reps_note(&rates),
            abort_rate * 100.0,
            if pass { "PASS" } else { "FAIL" },
            mib(disk_usage(&dir))
        );
        row.extra = json!({
            "abort_rate": abort_rate,
            "aborts": a,
            "pass": pass,
            "sum": sum,
            "expected_sum": expected,
            "ledger_rows": ledger_rows,
            "committed_total": total_committed,
        });
        rows.push(row);
        e.close()?;
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(rows)
}

// ---------------------------------------------------------------- bulk and read

/// `bulk` (N random keys, one durable transaction) and/or `read` (point reads and 100-key
/// scans on the bulk-loaded store, reopened).
pub fn bulk_and_read(
    engine_name: &str,
    base: &Path,
    cfg: &Config,
    report_bulk: bool,
    do_read: bool,
) -> Res<Vec<Row>> {
    let dir = fresh_dir(base, engine_name, "bulk")?;
    let mut rng = SmallRng::seed_from_u64(42);
    let mut keys = vec![[0u8; KEY_BYTES]; cfg.bulk_keys];
    let mut values = vec![[0u8; VALUE_BYTES]; cfg.bulk_keys];
    for (k, v) in keys.iter_mut().zip(values.iter_mut()) {
        rng.fill_bytes(k);
        rng.fill_bytes(v);
    }
    let pairs: Vec<(&[u8], &[u8])> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (&k[..], &v[..]))
        .collect();
    let mut rows = Vec::new();
    // Each repetition loads a fresh store; the last one stays for the reads.
    let reps = if report_bulk { cfg.reps.max(1) } else { 1 };
    let mut rates = Vec::new();
    for _ in 0..reps {
        fresh_dir(base, engine_name, "bulk")?;
        let e = engine::open(engine_name, &dir, &["t"])?;
        let began = Instant::now();
        e.put("t", &pairs)?;
        rates.push(cfg.bulk_keys as f64 / began.elapsed().as_secs_f64());
        e.close()?;
    }
    if report_bulk {
        let mut sorted = rates.clone();
        sorted.sort_by(f64::total_cmp);
        let mut row = Row::new(
            engine_name,
            "bulk".into(),
            sorted[sorted.len() / 2],
            "keys/s",
        );
        row.notes = format!(
            "{}; {} keys, disk {}",
            reps_note(&rates),
            cfg.bulk_keys,
            mib(disk_usage(&dir))
        );
        rows.push(row);
    }
    drop(pairs);
    drop(values);
    if do_read {
        let e = engine::open(engine_name, &dir, &["t"])?;
        let keys = Arc::new(keys);
        // Warm-up: touch the store once.
        {
            let (e, keys) = (&e, &keys);
            timed(1, cfg.warmup_secs, false, |_, _, rng| {
                let k = &keys[rng.random_range(0..keys.len())];
                e.get("t", k)?.ok_or("bulk key missing")?;
                Ok(true)
            })?;
        }
        for &threads in &cfg.read_threads {
            let (e, keys) = (&e, &keys);
            let (p, rates) = median_of(cfg.reps, threads, cfg.secs, false, |_| {
                |_: usize, _: u64, rng: &mut SmallRng| -> Res<bool> {
                    let k = &keys[rng.random_range(0..keys.len())];
                    let v = e.get("t", k)?.ok_or("bulk key missing")?;
                    std::hint::black_box(v);
                    Ok(true)
                }
            })?;
            let mut row = Row::new(engine_name, format!("get x{threads}"), p.rate(), "reads/s");
            row.notes = reps_note(&rates);
            rows.push(row);
        }
        {
            let (e, keys) = (&e, &keys);
            let short = AtomicU64::new(0);
            let short_ref = &short;
            let (p, rates) = median_of(cfg.reps, 1, cfg.secs, false, |_| {
                move |_: usize, _: u64, rng: &mut SmallRng| -> Res<bool> {
                    let k = &keys[rng.random_range(0..keys.len())];
                    let n = e.scan("t", k, SCAN_ROWS)?;
                    if n == 0 {
                        return Err("scan from an existing key returned nothing".into());
                    }
                    if n < SCAN_ROWS {
                        short_ref.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(true)
                }
            })?;
            let mut row = Row::new(
                engine_name,
                format!("scan{SCAN_ROWS} x1"),
                p.rate(),
                "scans/s",
            );
            row.notes = format!(
                "{}; {} near the end",
                reps_note(&rates),
                short.load(Ordering::Relaxed)
            );
            rows.push(row);
        }
        e.close()?;
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(rows)
}
