//! Helpers shared by the integration tests of `vellum`: a `BTreeMap` model of the whole
//! database, readers that turn a database into that model, a seeded generator, and the
//! options used on the simulated file system.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use vellum::fs::{SimFs, SimOptions};
use vellum::{Db, Durability, Error, Options};

/// Result type of every test.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Rows of one table.
pub type Rows = BTreeMap<Vec<u8>, Vec<u8>>;

/// The model of a database: table name -> rows.
pub type Model = BTreeMap<String, Rows>;

/// The database directory used on every simulated file system.
pub fn db_path() -> PathBuf {
    PathBuf::from("/db")
}

/// The write-ahead-log directory of [`db_path`].
pub fn wal_dir() -> PathBuf {
    db_path().join("wal")
}

/// A simulated file system with the given crash behaviour.
pub fn sim(seed: u64, keep_unsynced: bool, tear: bool) -> SimFs {
    SimFs::new(SimOptions {
        seed,
        keep_unsynced,
        tear,
    })
}

/// Options for a database on `fs`: `Immediate` durability, small log segments (so rotation
/// and recycling happen), and no background checkpoints (so the sequence of file-system
/// operations is deterministic).
pub fn sim_options(fs: &SimFs, segment_bytes: u64) -> Options {
    Options::default()
        .file_system(Arc::new(fs.clone()))
        .durability(Durability::Immediate)
        .wal_segment_bytes(segment_bytes)
        .checkpoint_after_wal_bytes(u64::MAX)
        .background_compaction(false)
}

/// Every table and row visible to a fresh read-only transaction.
pub fn read_state(db: &Db) -> Result<Model, Error> {
    let tx = db.begin_read()?;
    let mut out = Model::new();
    for name in tx.list_tables()? {
        let rows = tx.scan_all(&name)?.collect::<Result<Rows, Error>>()?;
        out.insert(name, rows);
    }
    Ok(out)
}

/// Checks point reads against `model` for every key of every table in `model`, plus `probe`
/// keys that must be absent unless the model has them.
pub fn check_gets(db: &Db, model: &Model, probe: &[Vec<u8>]) -> Result<(), String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    for (table, rows) in model {
        let keys = rows.keys().chain(probe.iter());
        for key in keys {
            let got = tx.get(table, key).map_err(|e| e.to_string())?;
            let want = rows.get(key);
            if got.as_ref() != want {
                return Err(format!(
                    "get({table}, {}) = {:?}, expected {:?}",
                    show(key),
                    got.as_deref().map(show),
                    want.map(|v| show(v))
                ));
            }
        }
    }
    Ok(())
}

/// Short printable form of a byte string.
pub fn show(b: &[u8]) -> String {
    let head: String = b
        .iter()
        .take(24)
        .map(|&c| {
            if c.is_ascii_graphic() {
                (c as char).to_string()
            } else {
                format!("\\x{c:02x}")
            }
        })
        .collect();
    if b.len() > 24 {
        format!("{head}..({} bytes)", b.len())
    } else {
        head
    }
}

/// A readable description of how `got` differs from `want`.
pub fn describe_diff(got: &Model, want: &Model) -> String {
    fn cell(v: Option<&Vec<u8>>) -> String {
        v.map_or_else(|| "absent".to_string(), |v| format!("\"{}\"", show(v)))
    }
    let mut out = String::new();
    let names: BTreeSet<&String> = got.keys().chain(want.keys()).collect();
    for name in names {
        match (got.get(name), want.get(name)) {
            (Some(_), None) => {
                let _ = writeln!(out, "  table {name}: present, expected absent");
            }
            (None, Some(_)) => {
                let _ = writeln!(out, "  table {name}: absent, expected present");
            }
            (Some(g), Some(w)) if g != w => {
                let keys: BTreeSet<&Vec<u8>> = g.keys().chain(w.keys()).collect();
                for key in keys {
                    let (a, b) = (g.get(key), w.get(key));
                    if a != b {
                        let _ = writeln!(
                            out,
                            "  {name}[{}]: {}, expected {}",
                            show(key),
                            cell(a),
                            cell(b)
                        );
                    }
                }
            }
            _ => {}
        }
    }
    if out.is_empty() {
        out.push_str("  (no difference)\n");
    }
    out
}

/// A small deterministic generator (xorshift64*), so failures replay from their seed.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// A value of `len` bytes that is unique to `tag` (its first bytes spell the tag).
pub fn value(tag: &str, len: usize) -> Vec<u8> {
    let mut v = tag.as_bytes().to_vec();
    v.push(b'|');
    let mut x = tag.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v.truncate(len.max(tag.len() + 1));
    v
}

/// True if `err` is what a simulated crash makes an operation return.
pub fn is_crash_error(err: &Error) -> bool {
    matches!(err, Error::Io { .. } | Error::Poisoned(_))
}
