//! Fuzz target: the whole database against a model, across crashes.
//!
//! The input is a program. Its first byte picks the crash behaviour of the simulated file system
//! (keep a random prefix of unsynced writes or none, tear the last one or not) and the next
//! eight its seed, so a failure replays exactly. Every later byte starts one operation on a
//! `Db` (durability `Immediate`, 4 KiB log segments so rotation and segment recycling happen,
//! no background checkpoints so the run is deterministic) over a `SimFs`:
//!
//! * put / delete of a key in one table, staged in the open transaction (begun on demand);
//! * commit; rollback;
//! * checkpoint (which also releases, and so recycles, log segments);
//! * crash after n more file-system operations;
//! * restart: a clean close, or a power cut (the file system restarts under the open
//!   database), or a power cut followed by a crash during recovery; then reopen;
//! * check: the visible rows equal the model.
//!
//! The model is a `BTreeMap` of acknowledged commits. A commit that returned an error may or
//! may not be durable, so after a restart the database must hold the model plus a prefix
//! (possibly empty) of the failed commits, and a reopen must always succeed. Any error other
//! than after a simulated crash is a failure too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::Arc;
use vellum::fs::{SimFs, SimOptions};
use vellum::{Db, Durability, Error, Options, Transaction};

const DB: &str = "/db";
const TABLE: &str = "t";
const OPS_MAX: usize = 300;
const SEGMENT_BYTES: u64 = 4096;

type Rows = BTreeMap<Vec<u8>, Vec<u8>>;
/// Staged changes of one transaction: key -> new value, or `None` for a delete.
type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Reads the input front to back; `None` once it is used up.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = self.data.get(self.pos).copied();
        self.pos += 1;
        b
    }
    fn byte_or_zero(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }
}

fn apply(rows: &mut Rows, changes: &Changes) {
    for (k, v) in changes {
        match v {
            Some(v) => {
                rows.insert(k.clone(), v.clone());
            }
            None => {
                rows.remove(k);
            }
        }
    }
}

fn options(fs: &SimFs) -> Options {
    Options::default()
        .file_system(Arc::new(fs.clone()))
        .durability(Durability::Immediate)
        .wal_segment_bytes(SEGMENT_BYTES)
        .checkpoint_after_wal_bytes(u64::MAX)
}

fn read_rows(db: &Db) -> Result<Rows, Error> {
    let tx = db.begin_read()?;
    let rows = tx.scan_all(TABLE)?.collect::<Result<Rows, Error>>()?;
    Ok(rows)
}

struct Harness {
    fs: SimFs,
    db: Option<Db>,
    tx: Option<Transaction>,
    staged: Changes,
    /// Rows of every acknowledged commit.
    model: Rows,
    /// Commits that returned an error, in order: each may or may not have become durable.
    uncertain: Vec<Changes>,
    /// An operation failed after a simulated crash: skip work until the next restart.
    down: bool,
    /// Operations so far, for failure messages.
    step: usize,
}

impl Harness {
    fn db(&self) -> &Db {
        match &self.db {
            Some(db) => db,
            None => panic!("step {}: no open database", self.step),
        }
    }

    /// An operation failed: fine after a simulated crash, a bug otherwise.
    fn failed(&mut self, what: &str, e: &Error) {
        assert!(
            self.fs.has_crashed(),
            "step {}: {what} failed without a crash: {e}",
            self.step
        );
        self.down = true;
    }

    fn stage(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if self.down {
            return;
        }
        if self.tx.is_none() {
            match self.db().begin() {
                Ok(tx) => self.tx = Some(tx),
                Err(e) => return self.failed("begin", &e),
            }
        }
        let Some(tx) = self.tx.as_mut() else { return };
        let result = match &value {
            Some(v) => tx.put(TABLE, &key, v),
            None => tx.delete(TABLE, &key),
        };
        match result {
            Ok(()) => {
                self.staged.insert(key, value);
            }
            Err(e) => self.failed("put/delete", &e),
        }
    }

    fn commit(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let changes = std::mem::take(&mut self.staged);
        match tx.commit() {
            Ok(_) => apply(&mut self.model, &changes),
            Err(e) => {
                self.uncertain.push(changes);
                self.failed("commit", &e);
            }
        }
    }

    fn rollback(&mut self) {
        self.staged.clear();
        if let Some(tx) = self.tx.take() {
            if let Err(e) = tx.rollback() {
                panic!("step {}: rollback of an active transaction failed: {e}", self.step);
            }
        }
    }

    fn checkpoint(&mut self) {
        if self.down {
            return;
        }
        if let Err(e) = self.db().checkpoint() {
            self.failed("checkpoint", &e);
        }
    }

    /// Outside a crash, readers see exactly the acknowledged commits.
    fn check_visible(&mut self) {
        if self.down {
            return;
        }
        match read_rows(self.db()) {
            Ok(rows) => assert_eq!(rows, self.model, "step {}: visible rows differ", self.step),
            Err(e) => self.failed("read", &e),
        }
    }

    fn open(&self) -> Result<Db, Error> {
        Db::open_with(DB, options(&self.fs))
    }

    /// `how`: 0 clean close, 1 power cut, 2 power cut then a crash during recovery.
    fn restart(&mut self, how: u8, crash_in_recovery: u64) {
        self.staged.clear();
        let tx = self.tx.take();
        let db = self.db.take();
        if how == 0 {
            drop(tx);
            if let Some(db) = db {
                if let Err(e) = db.close() {
                    assert!(
                        self.fs.has_crashed(),
                        "step {}: clean close failed without a crash: {e}",
                        self.step
                    );
                }
            }
            self.fs.restart();
        } else {
            // The machine goes down under the open database; its handles are fenced off.
            self.fs.restart();
            drop(tx);
            drop(db);
        }
        if how == 2 {
            self.fs.crash_after(Some(crash_in_recovery));
            let attempt = self.open();
            if let Err(e) = &attempt {
                assert!(
                    self.fs.has_crashed(),
                    "step {}: reopen failed without a crash: {e}",
                    self.step
                );
            }
            drop(attempt);
            self.fs.restart();
        }
        let db = match self.open() {
            Ok(db) => db,
            Err(e) => panic!(
                "step {}: reopen after a crash failed: {e} (uncertain commits: {})",
                self.step,
                self.uncertain.len()
            ),
        };
        let rows = match read_rows(&db) {
            Ok(rows) => rows,
            Err(e) => panic!("step {}: reading after reopen failed: {e}", self.step),
        };
        // Acceptable states: the model plus a prefix of the uncertain commits.
        let mut candidate = self.model.clone();
        let mut matched = rows == candidate;
        for changes in &self.uncertain {
            if matched {
                break;
            }
            apply(&mut candidate, changes);
            matched = rows == candidate;
        }
        assert!(
            matched,
            "step {}: after reopen the rows are neither the acknowledged commits nor those \
             plus a prefix of the {} failed ones\n  got:      {rows:?}\n  expected: {:?}",
            self.step,
            self.uncertain.len(),
            self.model
        );
        self.model = rows;
        self.uncertain.clear();
        self.down = false;
        self.db = Some(db);
    }
}

fn run(data: &[u8]) {
    let mut input = Input { data, pos: 0 };
    let mode = input.byte_or_zero();
    let mut seed = 0u64;
    for _ in 0..8 {
        seed = seed << 8 | u64::from(input.byte_or_zero());
    }
    let fs = SimFs::new(SimOptions {
        seed,
        keep_unsynced: mode & 1 == 0,
        tear: mode & 2 == 0,
    });
    let mut h = Harness {
        fs,
        db: None,
        tx: None,
        staged: Changes::new(),
        model: Rows::new(),
        uncertain: Vec::new(),
        down: false,
        step: 0,
    };
    let db = match h.open() {
        Ok(db) => db,
        Err(e) => panic!("creating the database failed: {e}"),
    };
    if let Err(e) = db.create_table(TABLE) {
        panic!("creating the table failed: {e}");
    }
    h.db = Some(db);

    while h.step < OPS_MAX {
        let Some(op) = input.byte() else { break };
        h.step += 1;
        match op % 10 {
            0..=2 => {
                let key = vec![b'k', input.byte_or_zero() % 32];
                let len = usize::from(input.byte_or_zero() % 96);
                let fill = input.byte_or_zero();
                let mut value = vec![fill; len];
                value.extend_from_slice(&(h.step as u32).to_le_bytes());
                h.stage(key, Some(value));
            }
            3 => {
                let key = vec![b'k', input.byte_or_zero() % 32];
                h.stage(key, None);
            }
            4 | 5 => h.commit(),
            6 => h.rollback(),
            7 => h.checkpoint(),
            8 => {
                let arg = input.byte_or_zero();
                match arg % 4 {
                    0 => h.check_visible(),
                    _ => h.fs.crash_after(Some(1 + u64::from(arg / 4))),
                }
            }
            _ => {
                let arg = input.byte_or_zero();
                h.restart(arg % 3, 1 + u64::from(arg / 3) % 24);
            }
        }
    }
    // Finally a power cut: every acknowledged commit must survive it.
    h.restart(1, 1);
    drop(h);
}

fuzz_target!(|data: &[u8]| run(data));
