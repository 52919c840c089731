//! Crashes at every file-system operation of flushes, manifest updates, compactions and the
//! removal of compacted segments, through the simulated file system.
//!
//! A deterministic workload (background compaction off) applies commits with overwrites and
//! deletes to three tables, flushes ("checkpoints") regularly, raises the garbage-collection
//! horizon and compacts. A dry run counts its operations; then every operation is made the
//! crash point in turn, under four file-system behaviours (unsynced writes dropped, with or
//! without tearing; a random prefix of them kept, with or without tearing): about 1,200 crash
//! points. After the restart the store must open and hold exactly
//! the model's contents at the version its manifest covers — which is at least the last flush
//! that returned — at that version and at every version down to its history floor: no flushed
//! commit lost, no deleted key back, no version the floor promises collapsed. It must then take
//! more commits and flush them.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use vellum_fs::{FileSystem, SimFs, SimOptions};
use vellum_storage::{Change, Store, StoreOptions, TableId, Version};

type TestResult = Result<(), Box<dyn std::error::Error>>;
/// (table, key) -> [(version, value or tombstone)], oldest first.
type History = BTreeMap<(u32, Vec<u8>), Vec<(u64, Option<Vec<u8>>)>>;

const DIR: &str = "/db/data";
const TABLES: u32 = 3;
const KEYS: u64 = 12;

fn opts() -> StoreOptions {
    StoreOptions {
        memtable_bytes: 4 << 10,
        block_cache_bytes: 64 << 10,
        segment_bytes: 2 << 10,
        compaction_trigger: 3,
        max_runs: 100,
        background_compaction: false,
    }
}

/// The model's value of `(table, key)` at `at`.
fn model_at(h: &History, table: u32, key: &[u8], at: u64) -> Option<Vec<u8>> {
    h.get(&(table, key.to_vec()))?
        .iter()
        .rev()
        .find(|(v, _)| *v <= at)
        .and_then(|(_, val)| val.clone())
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a run of the workload got acknowledged before it stopped.
#[derive(Default)]
struct Acked {
    /// Versions a `checkpoint` was called with, in order, and whether it returned `Ok`.
    flushes: Vec<(u64, bool)>,
}

/// Runs the workload, recording every applied version in `history`, until an error (the crash).
fn workload(
    store: &Store,
    history: &mut History,
    acked: &mut Acked,
    first: u64,
) -> Result<u64, vellum_storage::Error> {
    let mut rng = Rng(0x5eed + first);
    let mut v = first;
    for round in 0..14u64 {
        for _ in 0..6 {
            v += 1;
            let n = 1 + rng.below(3);
            let mut owned: Vec<(u32, Vec<u8>, Option<Vec<u8>>)> = Vec::new();
            for _ in 0..n {
                let table = 1 + rng.below(u64::from(TABLES)) as u32;
                let key = format!("key-{:02}", rng.below(KEYS)).into_bytes();
                if owned.iter().any(|(t, k, _)| *t == table && *k == key) {
                    continue;
                }
                let value = (rng.below(4) != 0).then(|| {
                    let len = 10 + rng.below(200) as usize;
                    vec![(v % 251) as u8; len]
                });
                owned.push((table, key, value));
            }
            let changes: Vec<Change<'_>> = owned
                .iter()
                .map(|(t, k, val)| Change {
                    table: TableId(*t),
                    key: k,
                    value: val.as_deref(),
                })
                .collect();
            let touched: Vec<TableId> = owned.iter().map(|(t, ..)| TableId(*t)).collect();
            store.apply(Version(v), &changes, &touched);
            for (t, k, val) in owned {
                history.entry((t, k)).or_default().push((v, val));
            }
        }
        let meta = v.to_le_bytes();
        acked.flushes.push((v, false));
        store.checkpoint(Version(v), &meta)?;
        if let Some(last) = acked.flushes.last_mut() {
            last.1 = true;
        }
        if round % 3 == 2 {
            // Readers at versions below v - 8 are gone.
            store.gc(Version(v.saturating_sub(8)));
        }
        if round % 2 == 1 {
            store.compact_pending()?;
        }
        if round % 5 == 4 {
            store.compact_all()?;
        }
    }
    Ok(v)
}

/// Checks the reopened store against the model; returns the covered version.
fn check(
    store: &Store,
    info_version: u64,
    floor: u64,
    history: &History,
    ctx: &str,
) -> Result<(), String> {
    let lowest = floor.max(1);
    for at in (lowest..=info_version).rev().take(40) {
        for table in 1..=TABLES {
            for k in 0..KEYS {
                let key = format!("key-{k:02}").into_bytes();
                let got = store
                    .get(TableId(table), &key, Version(at))
                    .map_err(|e| format!("{ctx}: get failed: {e}"))?
                    .and_then(|f| f.value);
                let want = model_at(history, table, &key, at);
                if got != want {
                    return Err(format!(
                        "{ctx}: table {table} key {k} at version {at} (covered {info_version}, floor {floor}): got {:?}, want {:?}",
                        got.map(|g| g.len()),
                        want.map(|w| w.len())
                    ));
                }
            }
            if at == info_version {
                let rows: Vec<Vec<u8>> = store
                    .scan(
                        TableId(table),
                        Bound::Unbounded,
                        Bound::Unbounded,
                        Version(at),
                    )
                    .map(|r| r.map(|(k, _, _)| k))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{ctx}: scan failed: {e}"))?;
                let want: Vec<Vec<u8>> = (0..KEYS)
                    .map(|k| format!("key-{k:02}").into_bytes())
                    .filter(|key| model_at(history, table, key, at).is_some())
                    .collect();
                if rows != want {
                    return Err(format!(
                        "{ctx}: scan of table {table} at {at}: {} rows, want {}",
                        rows.len(),
                        want.len()
                    ));
                }
            }
        }
    }
    // Nothing above the covered version reached a segment.
    for table in 1..=TABLES {
        for k in 0..KEYS {
            let key = format!("key-{k:02}").into_bytes();
            let newest = store
                .latest_version(TableId(table), &key)
                .map_err(|e| format!("{ctx}: {e}"))?;
            if newest.is_some_and(|v| v.0 > info_version) {
                return Err(format!(
                    "{ctx}: a cell above the covered version {info_version} survived"
                ));
            }
        }
    }
    let report = store.verify();
    if !report.is_ok() {
        return Err(format!("{ctx}: verify found {:?}", report.problems));
    }
    Ok(())
}

fn dry_run(sim: SimOptions) -> Result<u64, Box<dyn std::error::Error>> {
    let fs = Arc::new(SimFs::new(sim));
    let (store, _) = Store::open_with(fs.clone(), Path::new(DIR), opts())?;
    let mut history = History::new();
    let mut acked = Acked::default();
    workload(&store, &mut history, &mut acked, 0)?;
    drop(store);
    Ok(fs.op_count())
}

fn crash_case(sim: SimOptions, crash_at: u64) -> Result<(), String> {
    let ctx = format!("crash at op {crash_at} with {sim:?}");
    let fs = Arc::new(SimFs::new(sim));
    fs.crash_after(Some(crash_at));
    let mut history = History::new();
    let mut acked = Acked::default();
    match Store::open_with(fs.clone(), Path::new(DIR), opts()) {
        Ok((store, _)) => {
            let r = workload(&store, &mut history, &mut acked, 0);
            if r.is_ok() && !fs.has_crashed() {
                return Err(format!(
                    "{ctx}: the workload finished without reaching the crash"
                ));
            }
            drop(store);
        }
        Err(_) if fs.has_crashed() => {}
        Err(e) => return Err(format!("{ctx}: open failed before the crash: {e}")),
    }
    fs.restart();
    let (store, info) = Store::open_with(fs.clone(), Path::new(DIR), opts())
        .map_err(|e| format!("{ctx}: reopen failed: {e}"))?;
    let last_ok = acked.flushes.iter().rev().find(|f| f.1).map_or(0, |f| f.0);
    let (covered, floor) = match &info {
        Some(i) => {
            if i.meta != i.version.0.to_le_bytes() {
                return Err(format!(
                    "{ctx}: manifest meta does not belong to its version"
                ));
            }
            (i.version.0, i.history_floor.0)
        }
        None => (0, 0),
    };
    if covered < last_ok {
        return Err(format!(
            "{ctx}: covers version {covered}, but the flush of {last_ok} returned"
        ));
    }
    if covered != 0 && !acked.flushes.iter().any(|f| f.0 == covered) {
        return Err(format!(
            "{ctx}: covers version {covered}, which no flush was asked for"
        ));
    }
    check(&store, covered, floor, &history, &ctx)?;
    // The store works on: more commits, a flush, a compaction, a clean reopen.
    let mut acked2 = Acked::default();
    let end = workload(&store, &mut history, &mut acked2, covered + 1000)
        .map_err(|e| format!("{ctx}: work after recovery failed: {e}"))?;
    drop(store);
    // Versions between the covered one and `covered + 1000` were never applied after the
    // crash: drop the lost ones from the model.
    for cells in history.values_mut() {
        cells.retain(|(v, _)| *v <= covered || *v > covered + 1000);
    }
    let (store, info) = Store::open_with(fs.clone(), Path::new(DIR), opts())
        .map_err(|e| format!("{ctx}: second reopen failed: {e}"))?;
    let info = info.ok_or_else(|| format!("{ctx}: nothing after the second reopen"))?;
    if info.version.0 != end {
        return Err(format!(
            "{ctx}: second reopen covers {}, want {end}",
            info.version
        ));
    }
    check(
        &store,
        end,
        info.history_floor.0.max(covered + 1001),
        &history,
        &format!("{ctx}, after more work"),
    )
}

fn sweep(sim: SimOptions) -> Result<u64, Box<dyn std::error::Error>> {
    let total = dry_run(sim)?;
    if total < 250 {
        return Err(format!("the workload does only {total} operations").into());
    }
    for crash_at in 1..=total {
        crash_case(sim, crash_at)?;
    }
    Ok(total)
}

#[test]
fn a_crash_at_any_operation_of_flush_or_compaction_loses_nothing_flushed_and_revives_nothing_deleted(
) -> TestResult {
    let mut points = 0;
    for (seed, keep_unsynced, tear) in [
        (1, false, false),
        (2, true, false),
        (3, true, true),
        (4, false, true),
    ] {
        points += sweep(SimOptions {
            seed,
            keep_unsynced,
            tear,
        })?;
    }
    assert!(points >= 1000, "only {points} crash points");
    Ok(())
}

#[test]
fn the_workload_compacts_and_collects_garbage() -> TestResult {
    let fs = Arc::new(SimFs::new(SimOptions::default()));
    let (store, _) = Store::open_with(fs.clone(), Path::new(DIR), opts())?;
    let mut history = History::new();
    let end = workload(&store, &mut history, &mut Acked::default(), 0)?;
    let stats = store.stats();
    assert!(stats.flushes >= 10, "{stats:?}");
    assert!(stats.compactions >= 5, "{stats:?}");
    assert!(stats.cells_dropped > 0, "{stats:?}");
    check(&store, end, end - 8, &history, "no crash")?;
    let names = fs.list(Path::new(DIR))?;
    assert!(names.iter().any(|n| n == "manifest"), "{names:?}");
    Ok(())
}

/// A horizon above the flushed version collapses memtable cells the flush then writes without
/// the newer cell that shadowed them: the manifest's history floor must say so, so no read
/// below that horizon is served after a restart.
#[test]
fn the_history_floor_covers_a_horizon_above_the_flushed_version() -> TestResult {
    let fs = Arc::new(SimFs::new(SimOptions::default()));
    let (store, _) = Store::open_with(fs.clone(), Path::new(DIR), opts())?;
    let put = |v: u64, value: &[u8]| {
        let c = [Change {
            table: TableId(1),
            key: b"k",
            value: Some(value),
        }];
        store.apply(Version(v), &c, &[TableId(1)]);
    };
    put(1, b"one");
    put(2, b"two");
    put(3, b"three");
    store.gc(Version(3));
    let info = store.checkpoint(Version(2), b"m")?;
    assert_eq!(info.version, Version(2));
    assert!(info.history_floor >= Version(3), "{info:?}");
    drop(store);
    fs.restart();
    let (_, info) = Store::open_with(fs.clone(), Path::new(DIR), opts())?;
    let info = info.ok_or("no manifest")?;
    assert!(info.history_floor >= Version(3), "{info:?}");
    Ok(())
}
