//! Pessimistic transactions through the public API: deadlock detection (two- and three-way
//! cycles, exactly one victim, found long before the lock-wait timeout), lock-wait timeouts that
//! leave the transaction usable, locking reads (`get_for_update` reads the newest committed
//! value), pessimistic and optimistic transactions on the same keys, and lock release on every
//! way a transaction ends.
//!
//! Interleavings are forced with threads, barriers and blocking lock requests. Where a thread
//! is given a head start with a short sleep, the sleep only makes the usual interleaving likely;
//! every assertion holds under any interleaving (e.g. whichever transaction closes a cycle is
//! the victim, and the checks follow from who the victim turned out to be).

use std::error::Error as StdError;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};
use vellum::{
    ConflictKind, Db, DeadlockReport, Durability, Error, Options, RetryPolicy, Transaction, Version,
};

type TestResult = Result<(), Box<dyn StdError>>;

/// A lock-wait timeout no test should ever reach.
const LONG: Duration = Duration::from_secs(30);
/// A very generous bound for "well before the lock-wait timeout".
const GENEROUS: Duration = Duration::from_secs(10);
/// A head start for a thread that should block before the next one starts (not relied upon).
const HEAD_START: Duration = Duration::from_millis(50);

fn open_with(opts: Options) -> Result<(tempfile::TempDir, Db), Box<dyn StdError>> {
    let dir = tempfile::tempdir()?;
    let db = Db::open_with(dir.path().join("db"), opts.durability(Durability::None))?;
    db.create_table("t")?;
    Ok((dir, db))
}

fn open_db() -> Result<(tempfile::TempDir, Db), Box<dyn StdError>> {
    open_with(Options::default())
}

/// A pessimistic transaction with a lock-wait timeout no test reaches.
fn pessimistic(db: &Db, label: &str) -> Result<Transaction, Error> {
    db.tx()
        .pessimistic()
        .lock_timeout(LONG)
        .label(label)
        .begin()
}

fn get(db: &Db, key: &str) -> Result<Option<Vec<u8>>, Error> {
    db.begin_read()?.get("t", key)
}

fn text(db: &Db, key: &str) -> Result<Option<String>, Error> {
    Ok(get(db, key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

fn decode(raw: Option<Vec<u8>>) -> Result<u64, String> {
    match raw {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| format!("bad counter {v:?}"))?;
            Ok(u64::from_le_bytes(bytes))
        }
    }
}

fn counter(db: &Db, key: &str) -> Result<u64, Box<dyn StdError>> {
    Ok(decode(get(db, key)?)?)
}

/// True if another pessimistic transaction can lock `key` at once (it waits at most 100 ms);
/// the probe takes nothing with it (it rolls back).
fn lockable(db: &Db, key: &str) -> Result<bool, Error> {
    let mut probe = db
        .tx()
        .pessimistic()
        .lock_timeout(Duration::from_millis(100))
        .begin()?;
    match probe.put("t", key, "probe") {
        Ok(()) => {
            probe.rollback()?;
            Ok(true)
        }
        Err(Error::LockTimeout { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// How a transaction that requested a lock from its own thread ended.
#[derive(Debug)]
enum Outcome {
    Committed(Version),
    /// The request (or the commit) failed with `error`; `then` is what a further write in the
    /// same transaction returned.
    Refused {
        error: Error,
        then: Result<(), Error>,
    },
}

/// Requests `key` with a locking read (waiting while another transaction holds it), writes
/// it and commits. (The locking read matters: see
/// `a_blind_pessimistic_write_after_a_lock_wait_still_loses_to_the_holders_commit`.)
fn request_and_commit(mut tx: Transaction, key: &str, value: &str) -> Outcome {
    match tx
        .get_for_update("t", key)
        .and_then(|_| tx.put("t", key, value))
    {
        Ok(()) => match tx.commit() {
            Ok(v) => Outcome::Committed(v),
            Err(error) => Outcome::Refused {
                error,
                then: Ok(()),
            },
        },
        Err(error) => {
            let then = tx.put("t", "unrelated", value);
            Outcome::Refused { error, then }
        }
    }
}

/// Party `i` of a cycle of `n`: label `p{i}`, holds key `k{i}`, wants key `k{i+1 mod n}`.
fn label(i: usize) -> String {
    format!("p{i}")
}

fn key(i: usize) -> String {
    format!("k{i}")
}

/// Builds a cycle of `n` pessimistic transactions: each locks its own key, then (each from its
/// own thread, started in order) requests the next one's key with a locking read. Checks that exactly one
/// transaction is the deadlock victim, with a report that is the cycle as the lock table saw
/// it, that the others commit, and that all of it happens well before the lock-wait timeout.
fn deadlock_cycle(n: usize) -> TestResult {
    let (_dir, db) = open_db()?;
    let started = Instant::now();
    let mut txs = Vec::new();
    for i in 0..n {
        let mut tx = pessimistic(&db, &label(i))?;
        tx.put("t", key(i), label(i))?;
        txs.push(tx);
    }
    let ids: Vec<u64> = txs.iter().map(Transaction::id).collect();
    for (i, a) in ids.iter().enumerate() {
        assert!(
            !ids[i + 1..].contains(a),
            "transaction ids are unique: {ids:?}"
        );
    }

    let outcomes: Vec<thread::Result<Outcome>> = thread::scope(|s| {
        let mut handles = Vec::new();
        for (i, tx) in txs.into_iter().enumerate() {
            if i > 0 {
                thread::sleep(HEAD_START);
            }
            let (want, value) = (key((i + 1) % n), label(i));
            handles.push(s.spawn(move || request_and_commit(tx, &want, &value)));
        }
        handles.into_iter().map(|h| h.join()).collect()
    });
    let elapsed = started.elapsed();
    let mut outcomes_ok = Vec::new();
    for o in outcomes {
        outcomes_ok.push(o.map_err(|_| "a transaction thread panicked")?);
    }
    let outcomes = outcomes_ok;

    assert!(
        elapsed < GENEROUS,
        "the deadlock took {elapsed:?} to resolve with a lock-wait timeout of {LONG:?}"
    );
    let victims: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Outcome::Committed(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        victims.len(),
        1,
        "exactly one victim, the others commit: {outcomes:?}"
    );
    let v = victims[0];
    let mut versions: Vec<Version> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Committed(version) => Some(*version),
            Outcome::Refused { .. } => None,
        })
        .collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        n - 1,
        "each survivor made its own commit: {outcomes:?}"
    );
    let report: &DeadlockReport = match &outcomes[v] {
        Outcome::Refused {
            error: Error::Deadlock(report),
            then,
        } => {
            assert!(
                matches!(then, Err(Error::TransactionClosed(_))),
                "the victim was rolled back: {then:?}"
            );
            report
        }
        other => return Err(format!("party {v} failed without a deadlock: {other:?}").into()),
    };

    // The report is the cycle the victim's wait would have closed, starting with its own wait.
    let cycle = &report.cycle;
    assert_eq!(cycle.len(), n, "{report:?}");
    assert_eq!(
        cycle[0].waiter, ids[v],
        "the first edge is the victim's: {report:?}"
    );
    for (j, edge) in cycle.iter().enumerate() {
        let i = ids
            .iter()
            .position(|&id| id == edge.waiter)
            .ok_or_else(|| format!("unknown waiter in {report:?}"))?;
        let h = (i + 1) % n;
        assert_eq!(
            edge.waiter_label.as_deref(),
            Some(label(i).as_str()),
            "{edge:?}"
        );
        assert_eq!(edge.holder, ids[h], "{edge:?}");
        assert_eq!(
            edge.holder_label.as_deref(),
            Some(label(h).as_str()),
            "{edge:?}"
        );
        assert_eq!(edge.table, "t", "{edge:?}");
        assert_eq!(edge.key, key(h).into_bytes(), "{edge:?}");
        assert_eq!(
            edge.holder,
            cycle[(j + 1) % n].waiter,
            "the edges chain around the cycle: {report:?}"
        );
    }
    let mut waiters: Vec<u64> = cycle.iter().map(|e| e.waiter).collect();
    waiters.sort_unstable();
    let mut all = ids.clone();
    all.sort_unstable();
    assert_eq!(waiters, all, "every transaction of the cycle is named");

    let err = Error::Deadlock(Box::new(report.clone()));
    assert!(err.is_retryable());
    let shown = err.to_string();
    for (i, id) in ids.iter().enumerate().take(n) {
        assert!(shown.contains(&format!("`{}`", label(i))), "{shown}");
        assert!(shown.contains(&format!("\"{}\"", key(i))), "{shown}");
        assert!(shown.contains(&id.to_string()), "{shown}");
    }
    assert!(shown.contains("victim"), "{shown}");

    // Key k{i} was locked by party i and then wanted by party i-1, which took it over after
    // party i committed, unless party i-1 is the victim.
    for i in 0..n {
        let waiter = (i + n - 1) % n;
        let last_writer = if waiter == v { i } else { waiter };
        assert_eq!(
            text(&db, &key(i))?,
            Some(label(last_writer)),
            "final value of {} (victim p{v})",
            key(i)
        );
    }
    assert_eq!(get(&db, "unrelated")?, None, "the victim wrote nothing");
    for i in 0..n {
        assert!(lockable(&db, &key(i))?, "{} is free again", key(i));
    }
    assert_eq!(db.stats().live_transactions, 0);
    Ok(())
}

#[test]
fn two_transactions_in_a_deadlock_give_exactly_one_victim_and_the_other_commits() -> TestResult {
    deadlock_cycle(2)
}

#[test]
fn a_three_way_cycle_gives_exactly_one_victim_and_the_two_others_commit() -> TestResult {
    deadlock_cycle(3)
}

#[test]
fn the_transaction_whose_wait_closes_the_cycle_is_the_victim() -> TestResult {
    // T1 blocks on `b` first; only then does T2 request `a`. T1's wait cannot be observed
    // through the API, so T2 polls until T1's request has been made, then waits a little more.
    let (_dir, db) = open_db()?;
    let mut t1 = pessimistic(&db, "first")?;
    let mut t2 = pessimistic(&db, "second")?;
    t1.put("t", "a", "t1")?;
    t2.put("t", "b", "t2")?;
    let (id1, id2) = (t1.id(), t2.id());
    let started = Instant::now();
    let (r1, r2) = thread::scope(|s| {
        let h1 = s.spawn(move || request_and_commit(t1, "b", "t1"));
        thread::sleep(Duration::from_millis(300));
        let r2 = match t2.put("t", "a", "t2") {
            Ok(()) => Ok(t2.commit()),
            Err(e) => Err(e),
        };
        (h1.join(), r2)
    });
    let r1 = r1.map_err(|_| "T1 panicked")?;
    assert!(started.elapsed() < GENEROUS);
    match r2 {
        Err(Error::Deadlock(report)) => {
            assert!(matches!(r1, Outcome::Committed(_)), "{r1:?}");
            assert_eq!(report.cycle.len(), 2);
            assert_eq!((report.cycle[0].waiter, report.cycle[0].holder), (id2, id1));
            assert_eq!(report.cycle[0].key, b"a".to_vec());
            assert_eq!((report.cycle[1].waiter, report.cycle[1].holder), (id1, id2));
            assert_eq!(report.cycle[1].key, b"b".to_vec());
            assert_eq!(text(&db, "a")?.as_deref(), Some("t1"));
            assert_eq!(text(&db, "b")?.as_deref(), Some("t1"));
        }
        // Only if this thread was starved for 300 ms before T1 requested `b`.
        other => {
            assert!(
                matches!(
                    r1,
                    Outcome::Refused {
                        error: Error::Deadlock(_),
                        ..
                    }
                ),
                "T1 did not block in time, so it must be the victim: {r1:?}, {other:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn a_deadlock_victim_in_a_retrying_run_is_retried_and_both_commit() -> TestResult {
    // Each run's first attempt takes its first key, meets the other at a barrier, then wants
    // the other's key: a deadlock. The victim's run retries (without the barrier) and waits
    // for the survivor instead.
    let (_dir, db) = open_db()?;
    let barrier = Barrier::new(2);
    let attempts = AtomicU32::new(0);
    let worker = |first: &'static str, second: &'static str, tag: &'static str| {
        let (db, barrier, attempts) = (&db, &barrier, &attempts);
        move || -> Result<(), Error> {
            let mut mine = 0;
            db.tx()
                .pessimistic()
                .lock_timeout(LONG)
                .label(tag)
                .run(|tx| {
                    mine += 1;
                    attempts.fetch_add(1, Ordering::SeqCst);
                    // Locking reads, so that a retry that waited for the survivor's commit
                    // reads past it instead of conflicting with it.
                    tx.get_for_update("t", first)?;
                    tx.put("t", first, tag)?;
                    if mine == 1 {
                        barrier.wait();
                    }
                    tx.get_for_update("t", second)?;
                    tx.put("t", second, tag)?;
                    Ok(())
                })
        }
    };
    let started = Instant::now();
    let (r1, r2) = thread::scope(|s| {
        let h1 = s.spawn(worker("a", "b", "one"));
        let h2 = s.spawn(worker("b", "a", "two"));
        (h1.join(), h2.join())
    });
    r1.map_err(|_| "thread one panicked")??;
    r2.map_err(|_| "thread two panicked")??;
    assert!(started.elapsed() < GENEROUS);
    // At least one deadlock: the survivor ran once, the victim at least twice. (Lock grants
    // are not queued, so a victim retrying quickly can take its first key back before the
    // woken survivor does, and deadlock once more; the backoff makes that rare.)
    let total = attempts.load(Ordering::SeqCst);
    assert!((3..20).contains(&total), "{total} attempts");
    let (a, b) = (text(&db, "a")?, text(&db, "b")?);
    assert_eq!(a, b, "the last committer wrote both keys");
    assert!(matches!(a.as_deref(), Some("one" | "two")), "{a:?}");
    Ok(())
}

#[test]
fn a_lock_wait_timeout_is_retryable_and_leaves_the_transaction_usable() -> TestResult {
    let (_dir, db) = open_db()?;
    let mut holder = pessimistic(&db, "holder")?;
    holder.put("t", "a", "holder")?;

    let mut waiter = db
        .tx()
        .pessimistic()
        .lock_timeout(Duration::from_millis(100))
        .label("waiter")
        .begin()?;
    let started = Instant::now();
    let r = waiter.put("t", "a", "waiter");
    let waited = started.elapsed();
    assert!(
        matches!(&r, Err(Error::LockTimeout { label: Some(l) }) if l == "waiter"),
        "{r:?}"
    );
    assert!(
        waited >= Duration::from_millis(100),
        "it waited the timeout: {waited:?}"
    );
    assert!(waited < GENEROUS, "{waited:?}");
    let err = r.err().ok_or("expected an error")?;
    assert!(err.is_retryable());
    assert!(err.to_string().contains("`waiter`"), "{err}");

    // A locking read of the held key times out the same way.
    let r = waiter.get_for_update("t", "a");
    assert!(matches!(r, Err(Error::LockTimeout { .. })), "{r:?}");
    // The transaction is still active: it reads, writes other keys and commits.
    assert_eq!(waiter.get("t", "a")?, None, "the holder has not committed");
    waiter.put("t", "b", "waiter")?;
    waiter.delete("t", "c")?;
    waiter.commit()?;
    assert_eq!(text(&db, "b")?.as_deref(), Some("waiter"));

    // The holder was not disturbed.
    holder.put("t", "d", "holder")?;
    holder.commit()?;
    assert_eq!(text(&db, "a")?.as_deref(), Some("holder"));
    assert_eq!(text(&db, "d")?.as_deref(), Some("holder"));

    // Without a label, the error has none.
    let mut h = pessimistic(&db, "h")?;
    h.get_for_update("t", "a")?;
    let mut w = db
        .tx()
        .pessimistic()
        .lock_timeout(Duration::from_millis(20))
        .begin()?;
    let r = w.put("t", "a", "w");
    assert!(
        matches!(r, Err(Error::LockTimeout { label: None })),
        "{r:?}"
    );
    Ok(())
}

#[test]
fn the_database_wide_lock_wait_timeout_applies_when_the_builder_sets_none() -> TestResult {
    let (_dir, db) = open_with(Options::default().lock_wait_timeout(Duration::from_millis(50)))?;
    let mut holder = db.tx().pessimistic().begin()?;
    holder.put("t", "a", "1")?;
    let started = Instant::now();
    let mut waiter = db.tx().pessimistic().begin()?;
    let r = waiter.put("t", "a", "2");
    assert!(matches!(r, Err(Error::LockTimeout { .. })), "{r:?}");
    assert!(started.elapsed() < GENEROUS);
    Ok(())
}

#[test]
fn get_for_update_in_pessimistic_mode_reads_the_newest_committed_value() -> TestResult {
    let (_dir, db) = open_db()?;
    db.transaction(|tx| tx.put("t", "k", "1"))?;
    let mut p = pessimistic(&db, "p")?;
    // Committed after p's snapshot.
    db.transaction(|tx| tx.put("t", "k", "2"))?;
    assert_eq!(
        p.get("t", "k")?,
        Some(b"1".to_vec()),
        "a plain read sees the snapshot"
    );
    assert_eq!(
        p.get_for_update("t", "k")?,
        Some(b"2".to_vec()),
        "a locking read sees the newest commit"
    );
    assert_eq!(
        p.get_for_update("t", "k")?,
        Some(b"2".to_vec()),
        "and again, with the lock already held"
    );
    p.put("t", "k", "3")?;
    assert_eq!(
        p.get_for_update("t", "k")?,
        Some(b"3".to_vec()),
        "own write"
    );
    p.commit()?;
    assert_eq!(text(&db, "k")?.as_deref(), Some("3"));

    // For contrast: an optimistic get_for_update reads the snapshot and loses at commit.
    let mut o = db.begin()?;
    db.transaction(|tx| tx.put("t", "k", "4"))?;
    assert_eq!(o.get_for_update("t", "k")?, Some(b"3".to_vec()));
    o.put("t", "k", "5")?;
    let r = o.commit();
    assert!(matches!(r, Err(Error::Conflict(_))), "{r:?}");
    assert_eq!(text(&db, "k")?.as_deref(), Some("4"));

    // A locking read of a missing key locks it too.
    let mut p = pessimistic(&db, "p")?;
    assert_eq!(p.get_for_update("t", "absent")?, None);
    assert!(!lockable(&db, "absent")?);
    p.put("t", "absent", "now")?;
    p.commit()?;
    assert_eq!(text(&db, "absent")?.as_deref(), Some("now"));
    Ok(())
}

#[test]
fn a_pessimistic_counter_with_eight_threads_ends_exact_without_conflicts() -> TestResult {
    const THREADS: usize = 8;
    const PER_THREAD: u64 = 50;
    let (_dir, db) = open_db()?;
    let start = Barrier::new(THREADS);
    let results: Vec<thread::Result<Result<(), Error>>> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let (db, start) = (&db, &start);
                s.spawn(move || -> Result<(), Error> {
                    start.wait();
                    for _ in 0..PER_THREAD {
                        let mut tx = pessimistic(db, &format!("worker-{i}"))?;
                        let n =
                            decode(tx.get_for_update("t", "n")?).map_err(Error::InvalidArgument)?;
                        tx.put("t", "n", (n + 1).to_le_bytes())?;
                        tx.commit()?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    for r in results {
        r.map_err(|_| "a worker panicked")??;
    }
    assert_eq!(counter(&db, "n")?, THREADS as u64 * PER_THREAD);
    let stats = db.stats();
    assert_eq!(
        stats.conflicts, 0,
        "locking reads never conflict: {stats:?}"
    );
    assert_eq!(stats.live_transactions, 0);
    Ok(())
}

#[test]
fn an_optimistic_write_to_a_key_locked_by_a_pessimistic_transaction_fails_with_locked() -> TestResult
{
    let (_dir, db) = open_db()?;
    db.transaction(|tx| tx.put("t", "k", "0"))?;

    // The pessimistic transaction commits.
    let mut p = pessimistic(&db, "p")?;
    p.put("t", "k", "p")?;
    let mut o = db.tx().label("opt").begin()?;
    o.put("t", "k", "o")?;
    o.put("t", "free", "o")?;
    let err = o.commit().err().ok_or("the commit must fail")?;
    assert!(err.is_retryable());
    let report = err.conflict().ok_or("expected a conflict")?;
    assert_eq!(report.kind, ConflictKind::Locked);
    assert_eq!(report.table, "t");
    assert_eq!(report.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(report.label.as_deref(), Some("opt"));
    assert!(err.to_string().contains("locked"), "{err}");
    assert_eq!(
        get(&db, "free")?,
        None,
        "nothing of the failed commit was written"
    );
    p.commit()?;
    let mut o = db.begin()?;
    o.put("t", "k", "o")?;
    o.commit()?;
    assert_eq!(text(&db, "k")?.as_deref(), Some("o"));

    // The pessimistic transaction rolls back: an optimistic one begun while the lock was held
    // commits once it is gone.
    let mut p = pessimistic(&db, "p")?;
    p.get_for_update("t", "k")?;
    let mut early = db.begin()?;
    early.put("t", "k", "early")?;
    let mut blocked = db.begin()?;
    blocked.put("t", "k", "blocked")?;
    let r = blocked.commit();
    assert!(
        matches!(&r, Err(Error::Conflict(c)) if c.kind == ConflictKind::Locked),
        "a locking read locks the key against optimistic writers too: {r:?}"
    );
    p.rollback()?;
    early.commit()?;
    assert_eq!(text(&db, "k")?.as_deref(), Some("early"));

    // A pessimistic transaction holding the lock, and an optimistic write to another key.
    let mut p = pessimistic(&db, "p")?;
    p.put("t", "k", "p")?;
    db.transaction(|tx| tx.put("t", "other", "o"))?;
    p.commit()?;
    Ok(())
}

#[test]
fn a_mixed_pessimistic_and_optimistic_counter_ends_exact() -> TestResult {
    const EACH: usize = 4;
    const PER_THREAD: u64 = 50;
    // Optimistic writers can lose many times in a row while pessimistic ones hold the key;
    // give them room to retry.
    let policy = RetryPolicy {
        max_attempts: 1_000_000,
        max_elapsed: Duration::from_secs(300),
        base_backoff: Duration::from_micros(100),
        max_backoff: Duration::from_millis(2),
    };
    let (_dir, db) = open_with(Options::default().retry(policy))?;
    let start = Barrier::new(2 * EACH);
    let increment = |tx: &mut Transaction, locking: bool| -> Result<(), Error> {
        let raw = if locking {
            tx.get_for_update("t", "n")?
        } else {
            tx.get("t", "n")?
        };
        let n = decode(raw).map_err(Error::InvalidArgument)?;
        tx.put("t", "n", (n + 1).to_le_bytes())
    };
    let results: Vec<thread::Result<Result<(), Error>>> = thread::scope(|s| {
        let handles: Vec<_> = (0..2 * EACH)
            .map(|i| {
                let (db, start, increment) = (&db, &start, &increment);
                s.spawn(move || -> Result<(), Error> {
                    start.wait();
                    for _ in 0..PER_THREAD {
                        if i < EACH {
                            db.tx()
                                .pessimistic()
                                .lock_timeout(LONG)
                                .run(|tx| increment(tx, true))?;
                        } else {
                            db.run(|tx| increment(tx, false))?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    for r in results {
        r.map_err(|_| "a worker panicked")??;
    }
    assert_eq!(counter(&db, "n")?, 2 * EACH as u64 * PER_THREAD);
    assert_eq!(db.stats().live_transactions, 0);
    Ok(())
}

#[test]
fn locks_are_released_on_commit_rollback_drop_timeout_and_failed_commit() -> TestResult {
    let (_dir, db) = open_db()?;
    db.transaction(|tx| tx.put("t", "versioned", "0"))?;

    // Commit.
    let mut tx = pessimistic(&db, "commit")?;
    tx.put("t", "k1", "v")?;
    assert!(!lockable(&db, "k1")?, "held while active");
    tx.commit()?;
    assert!(lockable(&db, "k1")?, "released on commit");

    // Rollback.
    let mut tx = pessimistic(&db, "rollback")?;
    tx.put("t", "k2", "v")?;
    tx.get_for_update("t", "k3")?;
    assert!(!lockable(&db, "k2")? && !lockable(&db, "k3")?);
    tx.rollback()?;
    assert!(
        lockable(&db, "k2")? && lockable(&db, "k3")?,
        "released on rollback"
    );

    // Drop.
    let mut tx = pessimistic(&db, "drop")?;
    tx.delete("t", "k4")?;
    assert!(!lockable(&db, "k4")?);
    drop(tx);
    assert!(lockable(&db, "k4")?, "released on drop");

    // Timeout (noticed by the transaction's next operation).
    let mut tx = db
        .tx()
        .pessimistic()
        .lock_timeout(LONG)
        .timeout(Duration::from_secs(1))
        .begin()?;
    tx.put("t", "k5", "v")?;
    assert!(!lockable(&db, "k5")?);
    thread::sleep(Duration::from_millis(1200));
    let r = tx.get("t", "k5");
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert!(lockable(&db, "k5")?, "released on timeout");
    drop(tx);

    // A commit that fails on a precondition.
    let mut tx = pessimistic(&db, "cas")?;
    tx.put_if_version("t", "versioned", "v", Version::ZERO)?;
    assert!(!lockable(&db, "versioned")?);
    let r = tx.commit();
    assert!(
        matches!(&r, Err(Error::Conflict(c)) if matches!(c.kind, ConflictKind::KeyVersion { .. })),
        "{r:?}"
    );
    assert!(lockable(&db, "versioned")?, "released on a failed commit");

    // An optimistic writer is no longer refused on any of them.
    db.transaction(|tx| {
        for k in ["k1", "k2", "k3", "k4", "k5", "versioned"] {
            tx.put("t", k, "optimistic")?;
        }
        Ok::<_, Error>(())
    })?;
    assert_eq!(db.stats().live_transactions, 0);
    Ok(())
}

#[test]
fn a_blocked_request_proceeds_as_soon_as_the_holder_ends() -> TestResult {
    // A waiter is woken by the release itself, not by its lock-wait timeout.
    for end in ["commit", "rollback", "drop"] {
        let (_dir, db) = open_db()?;
        let mut holder = pessimistic(&db, "holder")?;
        holder.put("t", "k", "holder")?;
        let waiter = pessimistic(&db, "waiter")?;
        let started = Instant::now();
        let outcome = thread::scope(|s| -> Result<Outcome, Box<dyn StdError>> {
            let h = s.spawn(move || request_and_commit(waiter, "k", "waiter"));
            thread::sleep(HEAD_START);
            match end {
                "commit" => {
                    holder.commit()?;
                }
                "rollback" => holder.rollback()?,
                _ => drop(holder),
            }
            Ok(h.join().map_err(|_| "waiter panicked")?)
        })?;
        assert!(
            matches!(outcome, Outcome::Committed(_)),
            "{end}: {outcome:?}"
        );
        assert!(started.elapsed() < GENEROUS, "{end}");
        assert_eq!(text(&db, "k")?.as_deref(), Some("waiter"), "{end}");
    }
    Ok(())
}

#[test]
fn a_blind_pessimistic_write_after_a_lock_wait_still_loses_to_the_holders_commit() -> TestResult {
    // Pins down the semantics: a pessimistic `put` locks the key but keeps the transaction's
    // snapshot as its baseline, so when the holder it waited for commits the key, snapshot
    // isolation's first-committer-wins rule still applies and the commit fails. A locking read
    // (`get_for_update`) moves the baseline to the newest commit, and then the commit succeeds.
    let (_dir, db) = open_db()?;
    for locking_read in [false, true] {
        let mut holder = pessimistic(&db, "holder")?;
        holder.put("t", "k", "holder")?;
        let mut waiter = pessimistic(&db, "waiter")?;
        let result = thread::scope(|s| -> Result<Result<Version, Error>, Box<dyn StdError>> {
            let h = s.spawn(move || -> Result<Version, Error> {
                if locking_read {
                    waiter.get_for_update("t", "k")?;
                }
                waiter.put("t", "k", "waiter")?;
                waiter.commit()
            });
            thread::sleep(HEAD_START);
            holder.commit()?;
            Ok(h.join().map_err(|_| "waiter panicked")?)
        })?;
        if locking_read {
            assert!(result.is_ok(), "{result:?}");
            assert_eq!(text(&db, "k")?.as_deref(), Some("waiter"));
        } else {
            assert!(
                matches!(&result, Err(Error::Conflict(c)) if c.kind == ConflictKind::WriteWrite
                    && c.winner_label.as_deref() == Some("holder")),
                "{result:?}"
            );
            assert_eq!(text(&db, "k")?.as_deref(), Some("holder"));
        }
    }
    Ok(())
}
