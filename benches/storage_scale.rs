//! Storage at scale: bounded memory, bounded reopen time, disk space after compaction.
//!
//! Three measurements, each on a fresh database in a temporary directory (`VELLUM_BENCH_DIR`,
//! else the system's):
//!
//! 1. **Memory.** Loads `VELLUM_SCALE_KEYS` keys (default 5,000,000) of 16 random bytes with
//!    100-byte values, 10,000 keys per transaction, `Durability::None` (the load is not what is
//!    measured), then reads 100,000 random keys back. Reports the data size, the process's
//!    peak resident set (`VmHWM` of `/proc/self/status`), their ratio, the largest memtable
//!    size seen after any commit against its budget, and flush/compaction/stall counters.
//! 2. **Reopen time.** Two databases holding the same data (`VELLUM_SCALE_REOPEN_KEYS` keys,
//!    default 50,000, 100-byte values): one written by that many commits, one by
//!    `VELLUM_SCALE_REOPEN_COMMITS` commits (default 1,000,000) overwriting the same keys.
//!    Each is closed cleanly, then reopened five times; reports the median reopen time of each
//!    and their ratio.
//! 3. **Disk space.** The second database's directory size (1 MiB log segments) before and
//!    after `Db::compact`, against the live data size.
//!
//! Run: `cargo bench --bench storage_scale` (`VELLUM_SCALE_KEYS=500000` for a quick run).
//! Prints ratios measured in this one run; no timing is asserted.

use rand::Rng;
use std::error::Error as StdError;
use std::path::Path;
use std::time::{Duration, Instant};
use vellum::{Db, Durability, Options};

type BenchResult<T> = Result<T, Box<dyn StdError + Send + Sync>>;

const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 100;
const KEYS_PER_TRANSACTION: u64 = 10_000;

fn main() {
    if let Err(e) = run() {
        eprintln!("storage_scale failed: {e}");
        std::process::exit(1);
    }
}

fn env_u64(name: &str, default: u64) -> BenchResult<u64> {
    match std::env::var(name) {
        Ok(v) => Ok(v.replace('_', "").parse()?),
        Err(_) => Ok(default),
    }
}

fn temp() -> BenchResult<tempfile::TempDir> {
    Ok(match std::env::var_os("VELLUM_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    })
}

fn run() -> BenchResult<()> {
    if let Some(arg) = std::env::args().skip(1).find(|a| a != "--bench") {
        return Err(format!("unexpected argument {arg:?} (configure with VELLUM_SCALE_*)").into());
    }
    memory(env_u64("VELLUM_SCALE_KEYS", 5_000_000)?)?;
    reopen_and_disk(
        env_u64("VELLUM_SCALE_REOPEN_KEYS", 50_000)?,
        env_u64("VELLUM_SCALE_REOPEN_COMMITS", 1_000_000)?,
    )?;
    Ok(())
}

/// `VmHWM` (peak resident set) of this process, in bytes.
fn peak_rss() -> BenchResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmHWM")?
        .parse()?;
    Ok(kb * 1024)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn memory(keys: u64) -> BenchResult<()> {
    let dir = temp()?;
    let opts = Options::default().durability(Durability::None);
    let budget = opts.memtable_bytes;
    let cache = opts.block_cache_bytes;
    let db = Db::open_with(dir.path().join("db"), opts)?;
    db.create_table("t")?;
    let mut rng = rand::rng();
    let mut sample: Vec<[u8; KEY_BYTES]> = Vec::new();
    let rss_before = peak_rss()?;
    let started = Instant::now();
    let mut max_memtable = 0u64;
    let mut loaded = 0u64;
    while loaded < keys {
        let n = KEYS_PER_TRANSACTION.min(keys - loaded);
        let mut tx = db.begin()?;
        for _ in 0..n {
            let key: [u8; KEY_BYTES] = rng.random();
            let value: [u8; VALUE_BYTES] = std::array::from_fn(|_| rng.random());
            if sample.len() < 100_000 && rng.random_range(0..keys.div_ceil(100_000)) == 0 {
                sample.push(key);
            }
            tx.put("t", key, value)?;
        }
        tx.commit()?;
        loaded += n;
        max_memtable = max_memtable.max(db.stats().storage.memtable_bytes);
    }
    let load_secs = started.elapsed().as_secs_f64();
    let tx = db.begin_read()?;
    let started = Instant::now();
    let mut found = 0;
    for k in &sample {
        found += usize::from(tx.get("t", k)?.is_some());
    }
    let read_secs = started.elapsed().as_secs_f64();
    drop(tx);
    if found != sample.len() {
        return Err(format!(
            "{} of {} sampled keys missing",
            sample.len() - found,
            sample.len()
        )
        .into());
    }
    let stats = db.stats().storage;
    let peak = peak_rss()?;
    let data = keys * (KEY_BYTES + VALUE_BYTES) as u64;
    println!("== memory: {keys} keys, 16-byte keys, 100-byte values ==");
    println!("data size              {:>10.1} MiB", mib(data));
    println!(
        "peak RSS               {:>10.1} MiB (before the load: {:.1} MiB)",
        mib(peak),
        mib(rss_before)
    );
    println!("peak RSS / data size   {:>10.3}", peak as f64 / data as f64);
    println!(
        "largest memtable seen  {:>10.1} MiB (budget {:.1} MiB; writers stall at twice it)",
        mib(max_memtable),
        mib(budget)
    );
    println!("block cache budget     {:>10.1} MiB", mib(cache));
    println!(
        "load                   {:>10.0} keys/s ({load_secs:.1} s)",
        keys as f64 / load_secs
    );
    println!(
        "random reads           {:>10.0} reads/s ({} keys)",
        sample.len() as f64 / read_secs,
        sample.len()
    );
    println!(
        "flushes {} | compactions {} | segments {} in {} runs ({:.1} MiB) | write stalls {} ({:.2} s)",
        stats.flushes,
        stats.compactions,
        stats.segments,
        stats.runs,
        mib(stats.segment_bytes),
        stats.write_stalls,
        stats.write_stall_micros as f64 / 1e6
    );
    println!(
        "memtable budget holds: {}",
        if max_memtable <= 2 * budget {
            "yes"
        } else {
            "NO"
        }
    );
    db.close()?;
    Ok(())
}

/// 1 MiB log segments, so the preallocated log does not dwarf the few MB of data.
fn small_log() -> Options {
    Options::default().wal_segment_bytes(1 << 20)
}

fn write_commits(path: &Path, keys: u64, commits: u64) -> BenchResult<()> {
    let db = Db::open_with(path, small_log().durability(Durability::None))?;
    db.create_table("t")?;
    for i in 0..commits {
        let k = (i % keys).to_be_bytes();
        let mut value = [0u8; VALUE_BYTES];
        value[..8].copy_from_slice(&i.to_le_bytes());
        let mut tx = db.begin()?;
        tx.put("t", k, value)?;
        tx.commit()?;
    }
    db.close()?;
    Ok(())
}

fn median_reopen(path: &Path, keys: u64) -> BenchResult<Duration> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let db = Db::open_with(path, small_log())?;
        let tx = db.begin_read()?;
        if tx.get("t", (keys - 1).to_be_bytes())?.is_none() {
            return Err("a key is missing after reopen".into());
        }
        times.push(started.elapsed());
        drop(tx);
        db.close()?;
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn dir_size(path: &Path) -> BenchResult<u64> {
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

fn reopen_and_disk(keys: u64, commits: u64) -> BenchResult<()> {
    let dir = temp()?;
    let few = dir.path().join("few");
    let many = dir.path().join("many");
    let started = Instant::now();
    write_commits(&few, keys, keys)?;
    write_commits(&many, keys, commits)?;
    let write_secs = started.elapsed().as_secs_f64();
    let t_few = median_reopen(&few, keys)?;
    let t_many = median_reopen(&many, keys)?;
    println!(
        "== reopen: {keys} keys, written by {keys} vs {commits} commits ({write_secs:.1} s) =="
    );
    println!(
        "reopen after {keys:>9} commits  {:>9.2} ms (median of 5)",
        t_few.as_secs_f64() * 1e3
    );
    println!(
        "reopen after {commits:>9} commits  {:>9.2} ms (median of 5)",
        t_many.as_secs_f64() * 1e3
    );
    println!(
        "ratio                           {:>9.2}x",
        t_many.as_secs_f64() / t_few.as_secs_f64()
    );
    let live = keys * (8 + VALUE_BYTES) as u64;
    let before = dir_size(&many)?;
    let db = Db::open_with(&many, small_log())?;
    db.compact()?;
    db.close()?;
    let after = dir_size(&many)?;
    let data_after = dir_size(&many.join("data"))?;
    println!("== disk: {commits} overwrites of {keys} keys ==");
    println!("live data              {:>10.2} MiB", mib(live));
    println!(
        "directory before compact {:>8.2} MiB ({:.2}x live)",
        mib(before),
        before as f64 / live as f64
    );
    println!(
        "directory after compact  {:>8.2} MiB ({:.2}x live)",
        mib(after),
        after as f64 / live as f64
    );
    println!(
        "  of which segments and manifest {:.2} MiB ({:.2}x live); the rest is preallocated log",
        mib(data_after),
        data_after as f64 / live as f64
    );
    Ok(())
}
