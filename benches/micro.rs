//! Micro benchmarks of the components and of the public API (criterion).
//!
//! * `wal/append_<mode>`: one 128-byte record appended to the write-ahead log and waited for,
//!   per durability mode: `none` (written to the operating system), `buffered` (the same; a
//!   background thread syncs), `immediate` (`fdatasync` before it returns; one thread, so no
//!   group commit).
//! * `memtable/insert` and `memtable/get_100k_keys`: storage's memtable through
//!   `vellum_storage::Store` — apply one cell at a new version; read a random key of 100,000.
//! * `commit/durability_none_small_tx`: the commit pipeline without `fdatasync` — begin, one
//!   put (16-byte key, 100-byte value), validate, version, log enqueue + write to the operating
//!   system, apply, publish.
//! * `snapshot/pin_and_get`: take a snapshot (a registered read version) and read one key.
//! * `read/point_get_100k_keys`: one `get` of a random existing key, from a read transaction, on
//!   a table of 100,000 keys.
//! * `read/scan_100_rows`: the first 100 rows of a range scan from a random key of that table.
//!
//! Sample sizes and times are small so the whole run takes well under a minute.
//! Run: `cargo bench --bench micro`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;
use vellum::{Db, Durability, Error, Options};
use vellum_storage::{Change, Store, StoreOptions, TableId, Version};
use vellum_wal::{Lsn, SyncPolicy, Wal, WalOptions};

const TABLE: &str = "t";
const KEYS: u64 = 100_000;
const VALUE_BYTES: usize = 100;
const SCAN_ROWS: usize = 100;

/// Benchmark setup has no caller to return an error to: fail loudly with the error's text.
fn ok<T>(r: Result<T, Error>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("benchmark setup failed: {e}"),
    }
}

/// The 16-byte key of row `i`: big-endian, so key order is numeric order.
fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(b"key:\0\0\0\0");
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// A database with `Durability::None` in a fresh temporary directory.
fn open_db() -> (tempfile::TempDir, Db) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    };
    let db = ok(Db::open_with(
        dir.path().join("db"),
        Options::default().durability(Durability::None),
    ));
    ok(db.create_table(TABLE));
    (dir, db)
}

/// xorshift64: deterministic key choice.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn commit(c: &mut Criterion) {
    let (_dir, db) = open_db();
    let value = [7u8; VALUE_BYTES];
    let mut i = 0u64;
    c.bench_function("commit/durability_none_small_tx", |b| {
        b.iter(|| {
            let mut tx = ok(db.begin());
            ok(tx.put(TABLE, key(i), value));
            i += 1;
            black_box(ok(tx.commit()))
        })
    });
    ok(db.close());
}

fn reads(c: &mut Criterion) {
    let (_dir, db) = open_db();
    let value = [9u8; VALUE_BYTES];
    for chunk in 0..KEYS / 10_000 {
        let mut tx = ok(db.begin());
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            ok(tx.put(TABLE, key(i), value));
        }
        ok(tx.commit());
    }
    let tx = ok(db.begin_read());
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    c.bench_function("read/point_get_100k_keys", |b| {
        b.iter(|| {
            let k = key(next(&mut x) % KEYS);
            black_box(ok(tx.get(TABLE, k)))
        })
    });
    c.bench_function("read/scan_100_rows", |b| {
        b.iter(|| {
            let from = key(next(&mut x) % (KEYS - SCAN_ROWS as u64));
            let rows = ok(tx.scan(TABLE, from..)).take(SCAN_ROWS);
            let mut n = 0usize;
            for row in rows {
                black_box(ok(row));
                n += 1;
            }
            assert_eq!(n, SCAN_ROWS);
        })
    });
    drop(tx);
    ok(db.close());
}

fn wal_append(c: &mut Criterion) {
    let payload = [5u8; 128];
    for (name, sync) in [
        ("none", SyncPolicy::None),
        ("buffered", SyncPolicy::Buffered(Duration::from_millis(10))),
        ("immediate", SyncPolicy::Immediate),
    ] {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("cannot create a temporary directory: {e}"),
        };
        let opts = WalOptions {
            sync,
            ..WalOptions::default()
        };
        let fs = std::sync::Arc::new(vellum::fs::RealFs);
        let wal = match Wal::open(fs, &dir.path().join("wal"), opts, Lsn(0), false) {
            Ok((w, _)) => w,
            Err(e) => panic!("cannot open the log: {e}"),
        };
        c.bench_function(&format!("wal/append_{name}"), |b| {
            b.iter(|| {
                let ticket = match wal.enqueue(&payload) {
                    Ok(t) => t,
                    Err(e) => panic!("append failed: {e}"),
                };
                if let Err(e) = wal.wait(ticket) {
                    panic!("append failed: {e}");
                }
            })
        });
        if let Err(e) = wal.close() {
            panic!("close failed: {e}");
        }
    }
}

fn memtable(c: &mut Criterion) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    };
    let opts = StoreOptions {
        // Large enough that nothing is flushed: this measures the memtable alone.
        memtable_bytes: u64::MAX / 4,
        background_compaction: false,
        ..StoreOptions::default()
    };
    let store = match Store::open_with(std::sync::Arc::new(vellum::fs::RealFs), dir.path(), opts) {
        Ok((s, _)) => s,
        Err(e) => panic!("cannot open storage: {e}"),
    };
    let value = [3u8; VALUE_BYTES];
    let mut v = 0u64;
    // One committed cell of table 1 at version `v`.
    let put = |v: u64, i: u64| {
        let k = key(i);
        let change = [Change {
            table: TableId(1),
            key: &k,
            value: Some(&value),
        }];
        store.apply(Version(v), &change, &[]);
    };
    for i in 0..KEYS {
        v += 1;
        put(v, i);
    }
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    c.bench_function("memtable/get_100k_keys", |b| {
        b.iter(|| {
            let k = key(next(&mut x) % KEYS);
            match store.get(TableId(1), &k, Version(v)) {
                Ok(f) => black_box(f),
                Err(e) => panic!("get failed: {e}"),
            }
        })
    });
    let mut i = KEYS;
    c.bench_function("memtable/insert", |b| {
        b.iter(|| {
            v += 1;
            i += 1;
            put(v, i);
        })
    });
}

fn snapshot(c: &mut Criterion) {
    let (_dir, db) = open_db();
    let value = [4u8; VALUE_BYTES];
    let mut tx = ok(db.begin());
    for i in 0..10_000 {
        ok(tx.put(TABLE, key(i), value));
    }
    ok(tx.commit());
    let mut x = 0x1234_5678_9ABC_DEF1u64;
    c.bench_function("snapshot/pin_and_get", |b| {
        b.iter(|| {
            let s = ok(db.snapshot());
            black_box(ok(s.get(TABLE, key(next(&mut x) % 10_000))))
        })
    });
    ok(db.close());
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = micro;
    config = config();
    targets = wal_append, memtable, commit, reads, snapshot
}
criterion_main!(micro);
