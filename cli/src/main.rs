//! `vellum`: a command-line tool for vellum databases.
//!
//! ```text
//! vellum export --format jsonl|parquet|delta|native <DB_DIR> <TARGET_DIR>
//! vellum tables <DB_DIR>
//! vellum changes <DB_DIR> [--since N]
//! ```
//!
//! - `export` pins a snapshot of every table and exports it into a new directory under
//!   `TARGET_DIR` (published atomically, `TARGET_DIR/LATEST` names it), showing a progress bar
//!   on standard error (tables done of total, rows and bytes written), then prints the report:
//!   the commit version, rows, bytes, rows/s, MB/s and the published path.
//! - `tables` lists every table with its row count and table version, at one snapshot.
//! - `changes` prints the change feed: every transaction committed after version `N` (default
//!   0), one block per transaction with its version and its changes across all tables.
//!
//! Every command opens an existing database (it never creates one) and holds its directory
//! lock while it runs, so it fails with "already open" while another process has the
//! database open. Errors print the vellum error's message on standard error and exit with
//! status 1; usage errors are clap's (status 2).

#![warn(missing_docs)]

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{DecimalBytes, ProgressBar, ProgressStyle};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use vellum::{Change, Db, ExportFormat, ExportOptions, ExportProgress, Options, Version};

/// Command-line tool for vellum databases.
#[derive(Debug, Parser)]
#[command(name = "vellum", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Export a consistent snapshot of every table into a new directory under TARGET_DIR.
    Export {
        /// The export format.
        #[arg(long, value_enum)]
        format: Format,
        /// The database directory.
        db_dir: PathBuf,
        /// Where exports are published (created if missing); LATEST names the newest.
        target_dir: PathBuf,
    },
    /// List the tables with their row counts.
    Tables {
        /// The database directory.
        db_dir: PathBuf,
    },
    /// Print every transaction committed after a version, one block per transaction.
    Changes {
        /// The database directory.
        db_dir: PathBuf,
        /// Print transactions committed after this version.
        #[arg(long, value_name = "N", default_value_t = 0)]
        since: u64,
    },
}

/// Export formats, as named on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// JSON Lines: one `<table>.jsonl` file per table.
    Jsonl,
    /// Parquet: one `<table>.parquet` file per table.
    Parquet,
    /// Delta Lake: one Delta table per vellum table under `TARGET_DIR/delta/`.
    Delta,
    /// vellum's native format: a checkpoint file that vellum reopens or restores.
    Native,
}

impl From<Format> for ExportFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Jsonl => ExportFormat::JsonLines,
            Format::Parquet => ExportFormat::Parquet,
            Format::Delta => ExportFormat::Delta,
            Format::Native => ExportFormat::Native,
        }
    }
}

/// What can stop a command.
#[derive(Debug)]
enum CliError {
    /// The database said no.
    Vellum(vellum::Error),
    /// Standard output could not be written.
    Output(io::Error),
}

impl From<vellum::Error> for CliError {
    fn from(e: vellum::Error) -> Self {
        CliError::Vellum(e)
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Output(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = match cli.command {
        Command::Export {
            format,
            db_dir,
            target_dir,
        } => export(&mut out, &db_dir, &target_dir, format.into()),
        Command::Tables { db_dir } => tables(&mut out, &db_dir),
        Command::Changes { db_dir, since } => changes(&mut out, &db_dir, Version(since)),
    };
    let result = result.and_then(|()| out.flush().map_err(CliError::Output));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`vellum changes db | head`): not an error of ours.
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(CliError::Output(e)) => {
            eprintln!("error: cannot write to standard output: {e}");
            ExitCode::FAILURE
        }
        Err(CliError::Vellum(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the existing database in `dir`.
fn open(dir: &Path) -> Result<Db, vellum::Error> {
    Db::open_with(dir, Options::default().create_if_missing(false))
}

fn export(
    out: &mut impl Write,
    db_dir: &Path,
    target: &Path,
    format: ExportFormat,
) -> Result<(), CliError> {
    let db = open(db_dir)?;
    let snapshot = db.snapshot()?;
    let tables_total = snapshot.list_tables()?.len();

    let bar = ProgressBar::new(tables_total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} tables  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(format!(
        "exporting version {} as {}",
        snapshot.version(),
        format.name()
    ));
    bar.enable_steady_tick(Duration::from_millis(100));
    let callback_bar = bar.clone();
    let options = ExportOptions::new(format).progress(move |p: &ExportProgress| {
        callback_bar.set_length(p.tables_total as u64);
        callback_bar.set_position(p.tables_done as u64);
        callback_bar.set_message(format!(
            "{} rows, {}  ({})",
            p.rows,
            DecimalBytes(p.bytes),
            p.table
        ));
    });
    let result = snapshot.export(target, options);
    match &result {
        Ok(_) => bar.finish_and_clear(),
        Err(_) => bar.abandon(),
    }
    let report = result?;
    drop(snapshot);

    writeln!(
        out,
        "exported version {} as {}",
        report.version,
        format.name()
    )?;
    writeln!(out, "  path      {}", report.path.display())?;
    writeln!(out, "  tables    {}", report.manifest.tables.len())?;
    writeln!(out, "  rows      {}", report.rows)?;
    writeln!(
        out,
        "  bytes     {} ({})",
        report.bytes,
        DecimalBytes(report.bytes)
    )?;
    writeln!(out, "  elapsed   {:.3} s", report.elapsed.as_secs_f64())?;
    writeln!(out, "  rows/s    {:.0}", report.rows_per_second())?;
    writeln!(out, "  MB/s      {:.2}", report.megabytes_per_second())?;
    let name_width = report
        .manifest
        .tables
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0);
    let rows_width = report
        .manifest
        .tables
        .iter()
        .map(|t| t.rows.to_string().len())
        .max()
        .unwrap_or(0);
    for t in &report.manifest.tables {
        let files: Vec<String> = t
            .files
            .iter()
            .map(|f| format!("{} ({} bytes)", f.path, f.bytes))
            .collect();
        write!(
            out,
            "  table {:<name_width$}  {:>rows_width$} rows  {}",
            t.name,
            t.rows,
            files.join(", ")
        )?;
        if let (Some(dir), Some(version)) = (&t.delta_table, t.delta_version) {
            write!(out, "  delta table {dir} version {version}")?;
        }
        writeln!(out)?;
    }
    db.close()?;
    Ok(())
}

fn tables(out: &mut impl Write, db_dir: &Path) -> Result<(), CliError> {
    let db = open(db_dir)?;
    let snapshot = db.snapshot()?;
    let mut listing = Vec::new();
    for name in snapshot.list_tables()? {
        let mut rows = 0u64;
        for row in snapshot.scan_all(&name)? {
            row?;
            rows += 1;
        }
        let version = snapshot.table_version(&name)?;
        listing.push((name, rows, version));
    }
    writeln!(
        out,
        "database {} at version {}",
        db.path().display(),
        snapshot.version()
    )?;
    if listing.is_empty() {
        writeln!(out, "no tables")?;
    } else {
        let header = ("TABLE", "ROWS", "TABLE VERSION");
        let name_width = listing
            .iter()
            .map(|(n, _, _)| n.len())
            .chain([header.0.len()])
            .max()
            .unwrap_or(0);
        let rows_width = listing
            .iter()
            .map(|(_, r, _)| r.to_string().len())
            .chain([header.1.len()])
            .max()
            .unwrap_or(0);
        writeln!(
            out,
            "{:<name_width$}  {:>rows_width$}  {}",
            header.0, header.1, header.2
        )?;
        for (name, rows, version) in &listing {
            writeln!(out, "{name:<name_width$}  {rows:>rows_width$}  {version}")?;
        }
        let total: u64 = listing.iter().map(|(_, r, _)| r).sum();
        writeln!(
            out,
            "{} table{}, {total} rows",
            listing.len(),
            if listing.len() == 1 { "" } else { "s" }
        )?;
    }
    drop(snapshot);
    db.close()?;
    Ok(())
}

fn changes(out: &mut impl Write, db_dir: &Path, since: Version) -> Result<(), CliError> {
    let db = open(db_dir)?;
    let feed = db.changes_since(since)?;
    let upto = feed.upto();
    let mut transactions = 0u64;
    for tx in feed {
        if transactions > 0 {
            writeln!(out)?;
        }
        transactions += 1;
        let n = tx.changes.len();
        writeln!(
            out,
            "version {} ({n} change{})",
            tx.version,
            if n == 1 { "" } else { "s" }
        )?;
        for change in &tx.changes {
            match change {
                Change::Put { table, key, value } => writeln!(
                    out,
                    "  put     {table} {} = {}",
                    show_bytes(key),
                    show_bytes(value)
                )?,
                Change::Delete { table, key } => {
                    writeln!(out, "  delete  {table} {}", show_bytes(key))?
                }
                Change::CreateTable { table } => writeln!(out, "  create table {table}")?,
                Change::DropTable { table } => writeln!(out, "  drop table {table}")?,
            }
        }
    }
    if transactions > 0 {
        writeln!(out)?;
    }
    writeln!(
        out,
        "{transactions} transaction{} after version {since}, up to version {upto}",
        if transactions == 1 { "" } else { "s" }
    )?;
    db.close()?;
    Ok(())
}

/// Longest prefix of a key or value shown, in bytes.
const SHOWN_BYTES: usize = 48;

/// A key or value for people: quoted text when it is printable UTF-8, hex otherwise; long
/// ones are cut after [`SHOWN_BYTES`] bytes with their full length appended.
fn show_bytes(bytes: &[u8]) -> String {
    let cut = bytes.len() > SHOWN_BYTES;
    let suffix = if cut {
        format!("... ({} bytes)", bytes.len())
    } else {
        String::new()
    };
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => {
            let mut end = text.len().min(SHOWN_BYTES);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let shown = text.get(..end).unwrap_or_default();
            format!("{shown:?}{suffix}")
        }
        _ => {
            let shown = bytes
                .get(..SHOWN_BYTES.min(bytes.len()))
                .unwrap_or_default();
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}{suffix}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bytes_are_shown_as_text_or_hex() {
        assert_eq!(show_bytes(b"acct-07"), "\"acct-07\"");
        assert_eq!(show_bytes(&[0xe8, 0x03, 0, 0]), "0xe8030000");
        assert_eq!(show_bytes(b"a\nb"), "0x610a62");
        assert_eq!(show_bytes(b""), "\"\"");
        let long = "é".repeat(40); // 80 bytes: cut at a character boundary
        assert_eq!(
            show_bytes(long.as_bytes()),
            format!("{:?}... (80 bytes)", "é".repeat(24))
        );
    }

    #[test]
    fn formats_map_to_the_library() {
        assert_eq!(ExportFormat::from(Format::Jsonl).name(), "jsonl");
        assert_eq!(ExportFormat::from(Format::Parquet).name(), "parquet");
        assert_eq!(ExportFormat::from(Format::Delta).name(), "delta");
        assert_eq!(ExportFormat::from(Format::Native).name(), "native");
    }
}
