//! Export throughput: one snapshot exported as JSON Lines, Parquet and Delta Lake.
//!
//! Loads `VELLUM_EXPORT_ROWS` rows (default 1,000,000) into a fresh database in a temporary
//! directory (`VELLUM_BENCH_DIR`, else the system's temporary directory): 16-byte keys and
//! 100-byte values spread round-robin over a few tables, committed with `Durability::None` in
//! big transactions (the load is not what is measured). Then it pins one [`vellum::Snapshot`]
//! and exports that same snapshot once per format, each to its own target directory, and
//! prints one table: rows, data bytes, seconds, rows/s and MB/s (10^6 bytes of data files per
//! second, from [`vellum::ExportReport`]) per format.
//!
//! Keys are 16 lowercase hex digits of a bijective scramble of the row number (unique, not
//! written in key order); values are 100 pseudo-random alphanumeric bytes, so they are valid
//! UTF-8 (JSON Lines writes them as text, not base64) and Snappy finds little to compress.
//! Every export's row count is checked against the rows loaded.
//!
//! Run: `cargo bench --bench export_rate` (`VELLUM_EXPORT_ROWS=100000` for a quick run).

use std::error::Error as StdError;
use std::time::Instant;
use vellum::{Db, Durability, ExportFormat, ExportOptions, ExportReport, Options};

type BenchResult<T> = Result<T, Box<dyn StdError + Send + Sync>>;

const ROWS_DEFAULT: u64 = 1_000_000;
const KEY_BYTES: usize = 16;
const VALUE_BYTES: usize = 100;
const TABLES: usize = 4;
/// Rows per load transaction: about 13 MB of writes, far below `TRANSACTION_BYTES_MAX`.
const ROWS_PER_TRANSACTION: u64 = 100_000;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

fn main() {
    if let Err(e) = run() {
        eprintln!("export_rate failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    if let Some(arg) = std::env::args().skip(1).find(|a| a != "--bench") {
        return Err(
            format!("unexpected argument {arg:?} (configure with VELLUM_EXPORT_ROWS)").into(),
        );
    }
    let rows = rows_from_env()?;
    let base = match std::env::var_os("VELLUM_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let db = Db::open_with(
        base.path().join("db"),
        Options::default().durability(Durability::None),
    )?;
    let tables: Vec<String> = (0..TABLES).map(|t| format!("table_{t}")).collect();
    for name in &tables {
        db.create_table(name)?;
    }

    let started = Instant::now();
    load(&db, &tables, rows)?;
    let load_secs = started.elapsed().as_secs_f64();
    println!(
        "loaded {rows} rows ({KEY_BYTES}-byte keys, {VALUE_BYTES}-byte values, {TABLES} tables) \
         with Durability::None in {load_secs:.2} s ({:.0} rows/s)",
        rows as f64 / load_secs.max(1e-9)
    );

    let snapshot = db.snapshot()?;
    println!(
        "exporting snapshot version {} in {}",
        snapshot.version(),
        base.path().display()
    );
    let mut results = Vec::new();
    for format in [
        ExportFormat::JsonLines,
        ExportFormat::Parquet,
        ExportFormat::Delta,
    ] {
        let target = base.path().join(format!("export-{}", format.name()));
        let report = snapshot.export(&target, ExportOptions::new(format))?;
        if report.rows != rows {
            return Err(format!(
                "{} export wrote {} rows, expected {rows}",
                format.name(),
                report.rows
            )
            .into());
        }
        results.push((format, report));
    }
    print_table(&results);
    drop(snapshot);
    db.close()?;
    Ok(())
}

fn rows_from_env() -> BenchResult<u64> {
    match std::env::var("VELLUM_EXPORT_ROWS") {
        Err(std::env::VarError::NotPresent) => Ok(ROWS_DEFAULT),
        Err(e) => Err(format!("VELLUM_EXPORT_ROWS: {e}").into()),
        Ok(s) => {
            let cleaned: String = s.chars().filter(|c| *c != '_' && *c != ',').collect();
            match cleaned.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => {
                    Err(format!("VELLUM_EXPORT_ROWS must be a positive integer, got {s:?}").into())
                }
            }
        }
    }
}

/// Writes `rows` rows, round-robin over `tables`, in transactions of `ROWS_PER_TRANSACTION`.
fn load(db: &Db, tables: &[String], rows: u64) -> BenchResult<()> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut value = [0u8; VALUE_BYTES];
    let mut next = 0u64;
    while next < rows {
        let end = (next + ROWS_PER_TRANSACTION).min(rows);
        let mut tx = db.begin()?;
        for i in next..end {
            let table = &tables[(i % tables.len() as u64) as usize];
            for b in value.iter_mut() {
                *b = ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize];
            }
            tx.put(table, key(i), value)?;
        }
        tx.commit()?;
        next = end;
    }
    Ok(())
}

/// 16 hex digits of `i` times an odd constant (a bijection on u64, so keys are unique).
fn key(i: u64) -> [u8; KEY_BYTES] {
    let mut out = [0u8; KEY_BYTES];
    let s = format!("{:016x}", i.wrapping_mul(0x2545_f491_4f6c_dd1d));
    out.copy_from_slice(s.as_bytes());
    out
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn print_table(results: &[(ExportFormat, ExportReport)]) {
    let header = ["format", "rows", "data bytes", "seconds", "rows/s", "MB/s"];
    let body: Vec<[String; 6]> = results
        .iter()
        .map(|(format, r)| {
            [
                format.name().to_string(),
                r.rows.to_string(),
                r.bytes.to_string(),
                format!("{:.3}", r.elapsed.as_secs_f64()),
                format!("{:.0}", r.rows_per_second()),
                format!("{:.1}", r.megabytes_per_second()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 0 {
                s.push_str(&format!("| {cell:<w$} "));
            } else {
                s.push_str(&format!("| {cell:>w$} "));
            }
        }
        s.push('|');
        s
    };
    let rule: String = {
        let mut s = String::new();
        for w in widths {
            s.push('+');
            s.push_str(&"-".repeat(w + 2));
        }
        s.push('+');
        s
    };
    println!("{rule}");
    println!("{}", line(&header.map(String::from)));
    println!("{rule}");
    for row in &body {
        println!("{}", line(row));
    }
    println!("{rule}");
}
