//! `peers`: vellum against redb, fjall, sled, LMDB (and RocksDB with `--features rocksdb`) on
//! the same machine and the same workloads. See `--help`.

mod engine;
mod engines;
mod workloads;

use engine::Res;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use workloads::{Config, Row};

/// Cache budget given to every engine that has a knob (redb, fjall, sled; RocksDB block cache).
pub const CACHE_BYTES: usize = 64 << 20;
/// LMDB's map size (address space reserved, not disk).
pub const LMDB_MAP_BYTES: usize = 8 << 30;

const WORKLOADS: &[&str] = &["put", "commit", "transfer", "bulk", "read"];

const HELP: &str = "\
peers: compare vellum with peer embedded engines on durable workloads.

USAGE: cargo run --release --manifest-path benches/peers/Cargo.toml -- [OPTIONS]

OPTIONS
  --engines LIST           comma-separated (default: all built: vellum,redb,fjall,sled,lmdb
                           [,rocksdb-opt,rocksdb-pess with --features rocksdb])
  --workloads LIST         put,commit,transfer,bulk,read (default: all); the disk probe always runs
                           first unless --no-probe
  --modes LIST             idle,busy (default: both, busy first). busy = one SCHED_IDLE
                           busy-looping thread per CPU (no CPU idles, so fdatasync waiters wake
                           at once instead of at the next timer tick); idle = nothing else runs
  --busy-cpus              same as --modes busy
  --json PATH              write the results as JSON
  --secs F                 seconds per measured phase (default 2)
  --warmup-secs F          warm-up seconds before each phase group (default 0.3)
  --commit-threads LIST    default 1,2,4,8
  --transfer-threads LIST  default 1,2,4,8
  --reps N                 measured repetitions of every phase, median reported (default 3)
  --read-threads LIST      default 1,2
  --accounts N             accounts in the transfer workload (default 1000)
  --zipf-theta F           default 0.99
  --bulk-keys N            keys in the bulk load, also the read workload's store (default 100000)
  --dir PATH               where stores are created (default: $TMPDIR/vellum-peers-<pid>)
  --no-probe               skip the raw disk probe
";

struct Args {
    engines: Vec<String>,
    workloads: Vec<String>,
    modes: Vec<String>,
    json: Option<PathBuf>,
    dir: PathBuf,
    probe: bool,
    cfg: Config,
}

fn list<T: std::str::FromStr>(s: &str) -> Res<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.trim()
                .parse::<T>()
                .map_err(|e| format!("{x:?}: {e}").into())
        })
        .collect()
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        engines: engine::ALL.iter().map(|s| s.to_string()).collect(),
        workloads: WORKLOADS.iter().map(|s| s.to_string()).collect(),
        modes: vec!["busy".into(), "idle".into()],
        json: None,
        dir: std::env::temp_dir().join(format!("vellum-peers-{}", std::process::id())),
        probe: true,
        cfg: Config {
            secs: 2.0,
            warmup_secs: 0.3,
            commit_threads: vec![1, 2, 4, 8],
            transfer_threads: vec![1, 2, 4, 8],
            read_threads: vec![1, 2],
            accounts: 1000,
            bulk_keys: 100_000,
            zipf_theta: 0.99,
            reps: 3,
        },
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--help" | "-h" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--engines" => a.engines = list(&val()?)?,
            "--workloads" => a.workloads = list(&val()?)?,
            "--busy-cpus" => a.modes = vec!["busy".into()],
            "--modes" => a.modes = list(&val()?)?,
            "--reps" => a.cfg.reps = val()?.parse()?,
            "--no-probe" => a.probe = false,
            "--json" => a.json = Some(val()?.into()),
            "--dir" => a.dir = val()?.into(),
            "--secs" => a.cfg.secs = val()?.parse()?,
            "--warmup-secs" => a.cfg.warmup_secs = val()?.parse()?,
            "--commit-threads" => a.cfg.commit_threads = list(&val()?)?,
            "--transfer-threads" => a.cfg.transfer_threads = list(&val()?)?,
            "--read-threads" => a.cfg.read_threads = list(&val()?)?,
            "--accounts" => a.cfg.accounts = val()?.parse()?,
            "--zipf-theta" => a.cfg.zipf_theta = val()?.parse()?,
            "--bulk-keys" => a.cfg.bulk_keys = val()?.parse()?,
            // `cargo bench`-style harness flags are ignored.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}; see --help").into()),
        }
    }
    for e in &a.engines {
        if !engine::ALL.contains(&e.as_str()) {
            return Err(format!(
                "unknown or not built engine {e:?} (built: {})",
                engine::ALL.join(",")
            )
            .into());
        }
    }
    for w in &a.workloads {
        if !WORKLOADS.contains(&w.as_str()) {
            return Err(format!("unknown workload {w:?} (known: {})", WORKLOADS.join(",")).into());
        }
    }
    if a.modes.is_empty() || a.modes.iter().any(|m| m != "idle" && m != "busy") {
        return Err("--modes takes idle and/or busy".into());
    }
    if a.cfg.accounts < 2 {
        return Err("--accounts must be at least 2".into());
    }
    if a.cfg.bulk_keys == 0 {
        return Err("--bulk-keys must be at least 1".into());
    }
    Ok(a)
}

/// Busy-looping threads at `SCHED_IDLE` priority, one per CPU; stopped by `stop`.
struct BusyCpus {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<bool>>,
}

impl BusyCpus {
    fn start(count: usize) -> BusyCpus {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..count)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    // SAFETY: `sched_param` is plain data; pid 0 is the calling thread.
                    let idle = unsafe {
                        let param: libc::sched_param = std::mem::zeroed();
                        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0
                    };
                    let mut x = 1u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..1024 {
                            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                        }
                    }
                    idle
                })
            })
            .collect();
        BusyCpus { stop, handles }
    }

    /// Stops the threads; returns how many got `SCHED_IDLE`.
    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.handles
            .into_iter()
            .filter_map(|h| h.join().ok())
            .filter(|&i| i)
            .count()
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{:.0}", r)
    } else {
        format!("{:.1}", r)
    }
}

fn print_rows(rows: &[Row]) {
    println!(
        "{:<12} {:<26} {:>12} {:<10} {:>8} {:>8}  notes",
        "engine", "workload", "rate", "unit", "p50 ms", "p99 ms"
    );
    for r in rows {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        println!(
            "{:<12} {:<26} {:>12} {:<10} {:>8} {:>8}  {}",
            r.engine,
            r.workload,
            fmt_rate(r.rate),
            r.unit,
            ms(r.p50_ms),
            ms(r.p99_ms),
            r.notes
        );
    }
}

/// Engine × workload matrix of the headline rates.
fn print_matrix(rows: &[Row], engines: &[String]) {
    let mut cols: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.engine != "(disk)") {
        if !cols.contains(&r.workload) {
            cols.push(r.workload.clone());
        }
    }
    let width = cols.iter().map(|c| c.len().max(10)).collect::<Vec<_>>();
    print!("{:<12}", "engine");
    for (c, w) in cols.iter().zip(&width) {
        print!(" {:>w$}", c, w = *w);
    }
    println!();
    for e in engines {
        print!("{:<12}", e);
        for (c, w) in cols.iter().zip(&width) {
            let cell = rows
                .iter()
                .find(|r| &r.engine == e && &r.workload == c)
                .map_or("-".to_string(), |r| {
                    let pass = match r.extra.get("pass").and_then(|p| p.as_bool()) {
                        Some(true) => "",
                        Some(false) => "!",
                        None => "",
                    };
                    format!("{}{}", fmt_rate(r.rate), pass)
                });
            print!(" {:>w$}", cell, w = *w);
        }
        println!();
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let args = parse_args()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "peers: {cpus} CPUs, modes {}, dir {}",
        args.modes.join(","),
        args.dir.display()
    );
    println!("config: {:?}", args.cfg);
    std::fs::create_dir_all(&args.dir)?;
    let mut rows: Vec<Row> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut summaries = Vec::new();
    for mode in &args.modes {
        let busy = mode == "busy";
        let spinners = busy.then(|| BusyCpus::start(cpus));
        let load_before = loadavg();
        eprintln!("== mode {mode}, loadavg {load_before}");
        let mut mode_rows = Vec::new();
        run_mode(&args, &mut mode_rows, &mut failures);
        let load_after = loadavg();
        let idle_threads = spinners.map(|s| s.stop());
        for r in &mut mode_rows {
            r.mode = mode.clone();
        }
        let desc = if busy {
            format!(
                "busy-cpus ({} of {cpus} SCHED_IDLE busy threads)",
                idle_threads.unwrap_or(0)
            )
        } else {
            "idle CPUs".to_string()
        };
        println!();
        println!("mode {desc}; loadavg before {load_before}, after {load_after}");
        print_rows(&mode_rows);
        println!();
        print_matrix(&mode_rows, &args.engines);
        summaries.push(json!({
            "mode": mode,
            "description": desc,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        }));
        rows.extend(mode_rows);
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    let any_fail = rows
        .iter()
        .any(|r| r.extra.get("pass").and_then(|p| p.as_bool()) == Some(false));
    if !failures.is_empty() {
        println!("errors:");
        for f in &failures {
            println!("  {f}");
        }
    }
    if let Some(path) = &args.json {
        let out = json!({
            "cpus": cpus,
            "modes": summaries,
            "config": format!("{:?}", args.cfg),
            "rows": rows.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
            "errors": failures,
        });
        std::fs::write(path, serde_json::to_string_pretty(&out)?)?;
        println!("wrote {}", path.display());
    }
    if any_fail {
        return Err("a correctness check FAILED".into());
    }
    Ok(())
}

/// Every selected workload of every selected engine, in one CPU mode.
fn run_mode(args: &Args, rows: &mut Vec<Row>, failures: &mut Vec<String>) {
    if args.probe {
        match workloads::disk_probe(&args.dir, &args.cfg) {
            Ok(r) => rows.extend(r),
            Err(e) => failures.push(format!("disk probe: {e}")),
        }
    }
    let has = |w: &str| args.workloads.iter().any(|x| x == w);
    for name in &args.engines {
        let mut run_one = |w: &str, f: &dyn Fn() -> Res<Vec<Row>>| {
            eprintln!("[{}] {name} {w} (loadavg {})", now_secs(), loadavg());
            match f() {
                Ok(r) => rows.extend(r),
                Err(e) => {
                    eprintln!("  {name} {w} FAILED: {e}");
                    failures.push(format!("{name} {w}: {e}"));
                }
            }
        };
        let (dir, cfg) = (&args.dir, &args.cfg);
        if has("put") {
            run_one("put", &|| workloads::put(name, dir, cfg));
        }
        if has("commit") {
            run_one("commit", &|| workloads::commit(name, dir, cfg));
        }
        if has("transfer") {
            run_one("transfer", &|| workloads::transfer(name, dir, cfg));
        }
        if has("bulk") || has("read") {
            run_one("bulk/read", &|| {
                workloads::bulk_and_read(name, dir, cfg, has("bulk"), has("read"))
            });
        }
    }
}

fn now_secs() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() % 86400)
        .unwrap_or(0);
    format!("{:02}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60)
}
