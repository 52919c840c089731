//! Transaction deadlines, lock waits bounded by them, retrying runs (`Db::run`,
//! `TxBuilder::run`) and which errors they retry, and transaction labels in reports and
//! messages.
//!
//! Deadlines are short (tens to hundreds of milliseconds) and the tests sleep well past them;
//! no test asserts that something happens within a tight time bound.

use std::error::Error as StdError;
use std::thread;
use std::time::{Duration, Instant};
use vellum::{
    ConflictKind, ConflictReport, Db, DeadlockReport, Durability, Error, Options, Transaction,
    Version,
};

type TestResult = Result<(), Box<dyn StdError>>;

/// A lock-wait timeout no test should ever reach.
const LONG: Duration = Duration::from_secs(30);
/// A very generous bound for "long before `LONG`".
const GENEROUS: Duration = Duration::from_secs(10);

fn open_db() -> Result<(tempfile::TempDir, Db), Box<dyn StdError>> {
    let dir = tempfile::tempdir()?;
    let opts = Options::default().durability(Durability::None);
    let db = Db::open_with(dir.path().join("db"), opts)?;
    db.create_table("t")?;
    Ok((dir, db))
}

fn text(db: &Db, key: &str) -> Result<Option<String>, Error> {
    Ok(db
        .begin_read()?
        .get("t", key)?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

fn is_timeout(r: &Result<impl std::fmt::Debug, Error>, label: Option<&str>) -> bool {
    matches!(r, Err(Error::Timeout { label: l }) if l.as_deref() == label)
}

/// True if another pessimistic transaction can lock `key` at once (it waits at most 100 ms).
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

// ---------------------------------------------------------------------------------------------
// Transaction deadlines

#[test]
fn past_its_deadline_every_operation_of_a_transaction_fails_with_timeout() -> TestResult {
    let (_dir, db) = open_db()?;
    db.transaction(|tx| tx.put("t", "k", "committed"))?;

    let mut tx = db
        .tx()
        .timeout(Duration::from_millis(50))
        .label("slow")
        .begin()?;
    thread::sleep(Duration::from_millis(150));
    let r = tx.get("t", "k");
    assert!(is_timeout(&r, Some("slow")), "get: {r:?}");
    let err = r.err().ok_or("expected a timeout")?;
    assert!(!err.is_retryable(), "a deadline is not retried");
    assert!(err.to_string().contains("`slow`"), "{err}");
    assert_eq!(
        db.stats().live_transactions,
        0,
        "the timed-out transaction was rolled back at once (its snapshot is released)"
    );
    let r = tx.put("t", "k", "late");
    assert!(is_timeout(&r, Some("slow")), "put: {r:?}");
    let r = tx.delete("t", "k");
    assert!(is_timeout(&r, Some("slow")), "delete: {r:?}");
    let r = tx.get_for_update("t", "k");
    assert!(is_timeout(&r, Some("slow")), "get_for_update: {r:?}");
    let r = tx.scan_all("t").map(|_| ());
    assert!(is_timeout(&r, Some("slow")), "scan: {r:?}");
    let r = tx.savepoint("sp");
    assert!(is_timeout(&r, Some("slow")), "savepoint: {r:?}");
    let r = tx.create_table("late");
    assert!(is_timeout(&r, Some("slow")), "create_table: {r:?}");
    let r = tx.commit();
    assert!(is_timeout(&r, Some("slow")), "commit: {r:?}");

    // Commit as the first operation past the deadline, with writes staged before it.
    let mut tx = db
        .tx()
        .timeout(Duration::from_millis(500))
        .label("staged")
        .begin()?;
    tx.put("t", "k", "staged")?;
    tx.put("t", "new", "staged")?;
    thread::sleep(Duration::from_millis(700));
    let before = db.version();
    let r = tx.commit();
    assert!(is_timeout(&r, Some("staged")), "commit: {r:?}");
    assert_eq!(db.version(), before, "nothing was committed");
    assert_eq!(text(&db, "k")?.as_deref(), Some("committed"));
    assert_eq!(text(&db, "new")?, None);

    // Rollback past the deadline reports the timeout too; without a label there is none.
    let tx = db.tx().timeout(Duration::from_millis(20)).begin()?;
    thread::sleep(Duration::from_millis(100));
    let r = tx.rollback();
    assert!(is_timeout(&r, None), "rollback: {r:?}");
    assert_eq!(
        Error::Timeout { label: None }.to_string(),
        "transaction timed out"
    );

    // A transaction used before its deadline is unaffected.
    let mut tx = db.tx().timeout(LONG).begin()?;
    tx.put("t", "k", "in time")?;
    tx.commit()?;
    assert_eq!(text(&db, "k")?.as_deref(), Some("in time"));
    assert_eq!(db.stats().live_transactions, 0);
    Ok(())
}

#[test]
fn a_timed_out_pessimistic_transaction_releases_its_locks_and_a_blocked_one_proceeds() -> TestResult
{
    let (_dir, db) = open_db()?;
    let mut holder = db
        .tx()
        .pessimistic()
        .timeout(Duration::from_millis(500))
        .label("holder")
        .begin()?;
    holder.put("t", "k", "holder")?;
    holder.get_for_update("t", "j")?;
    let mut waiter = db
        .tx()
        .pessimistic()
        .lock_timeout(LONG)
        .label("waiter")
        .begin()?;
    let started = Instant::now();
    let waited = thread::scope(|s| -> Result<Result<Version, Error>, Box<dyn StdError>> {
        let h = s.spawn(move || -> Result<Version, Error> {
            waiter.get_for_update("t", "k")?; // blocks behind the holder
            waiter.put("t", "k", "waiter")?;
            waiter.commit()
        });
        thread::sleep(Duration::from_millis(700));
        // The holder's next operation notices the deadline, rolls back and releases.
        let r = holder.get("t", "k");
        assert!(is_timeout(&r, Some("holder")), "{r:?}");
        Ok(h.join().map_err(|_| "waiter panicked")?)
    })?;
    assert!(waited.is_ok(), "{waited:?}");
    assert!(started.elapsed() < GENEROUS);
    assert_eq!(text(&db, "k")?.as_deref(), Some("waiter"));
    assert!(lockable(&db, "j")?, "every lock of the holder was released");
    let r = holder.commit();
    assert!(is_timeout(&r, Some("holder")), "{r:?}");
    Ok(())
}

#[test]
fn an_idle_transaction_past_its_deadline_does_not_block_others() -> TestResult {
    // `TxBuilder::timeout`: "past it every operation and the commit fail with Timeout and its
    // locks are released". Here the holder's owner never touches it again after its deadline;
    // a transaction waiting for its lock should proceed once the deadline has passed, not
    // wait out its own lock-wait timeout.
    let (_dir, db) = open_db()?;
    let mut holder = db
        .tx()
        .pessimistic()
        .timeout(Duration::from_millis(200))
        .label("idle")
        .begin()?;
    holder.put("t", "k", "idle")?;
    let mut waiter = db
        .tx()
        .pessimistic()
        .lock_timeout(Duration::from_secs(5))
        .label("waiter")
        .begin()?;
    let started = Instant::now();
    let r = waiter.put("t", "k", "waiter");
    let waited = started.elapsed();
    assert!(
        matches!(r, Ok(())),
        "the lock of a transaction whose 200 ms deadline had passed was still held after \
         {waited:?}: {r:?}"
    );
    waiter.commit()?;
    drop(holder);
    assert_eq!(text(&db, "k")?.as_deref(), Some("waiter"));
    Ok(())
}

#[test]
fn a_lock_wait_is_bounded_by_the_transaction_deadline() -> TestResult {
    let (_dir, db) = open_db()?;
    let mut holder = db.tx().pessimistic().label("holder").begin()?;
    holder.put("t", "k", "holder")?;

    let mut waiter = db
        .tx()
        .pessimistic()
        .lock_timeout(LONG)
        .timeout(Duration::from_millis(500))
        .label("bounded")
        .begin()?;
    waiter.put("t", "other", "bounded")?; // a lock the timeout must release
    let started = Instant::now();
    let r = waiter.put("t", "k", "bounded");
    let waited = started.elapsed();
    assert!(
        is_timeout(&r, Some("bounded")),
        "the transaction deadline, not the lock-wait timeout, ended the wait: {r:?}"
    );
    assert!(
        waited < GENEROUS,
        "waited {waited:?} with a lock-wait timeout of {LONG:?}"
    );
    let r = waiter.put("t", "elsewhere", "x");
    assert!(
        is_timeout(&r, Some("bounded")),
        "the transaction is over: {r:?}"
    );
    assert!(lockable(&db, "other")?, "its locks were released");
    assert_eq!(db.stats().live_transactions, 1, "only the holder is live");

    // The other way round: a lock-wait timeout shorter than the deadline gives LockTimeout,
    // and the transaction stays usable.
    let mut short = db
        .tx()
        .pessimistic()
        .lock_timeout(Duration::from_millis(50))
        .timeout(LONG)
        .label("short")
        .begin()?;
    let r = short.put("t", "k", "short");
    assert!(
        matches!(&r, Err(Error::LockTimeout { label: Some(l) }) if l == "short"),
        "{r:?}"
    );
    short.put("t", "other", "short")?;
    short.commit()?;

    holder.commit()?;
    assert_eq!(text(&db, "k")?.as_deref(), Some("holder"));
    assert_eq!(text(&db, "other")?.as_deref(), Some("short"));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Retrying runs

fn read_u64(tx: &Transaction, key: &str) -> Result<u64, Error> {
    match tx.get("t", key)? {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| Error::InvalidArgument(format!("bad counter {v:?}")))?;
            Ok(u64::from_le_bytes(bytes))
        }
    }
}

#[test]
fn run_retries_a_conflicting_closure_until_it_commits() -> TestResult {
    let (_dir, db) = open_db()?;
    db.transaction(|tx| tx.put("t", "n", 1u64.to_le_bytes()))?;
    let mut attempts = 0u32;
    let out = db.run(|tx| {
        attempts += 1;
        let n = read_u64(tx, "n")?;
        if attempts == 1 {
            // A commit to the same key after this attempt's snapshot: this attempt loses.
            db.transaction(|other| other.put("t", "n", 100u64.to_le_bytes()))?;
        }
        tx.put("t", "n", (n + 1).to_le_bytes())?;
        Ok(n + 1)
    })?;
    assert_eq!(attempts, 2, "one conflict, one retry");
    assert_eq!(out, 101, "the retry read the winner's value");
    assert_eq!(db.begin_read().map(|tx| read_u64(&tx, "n"))??, 101);
    assert_eq!(db.stats().conflicts, 1);
    Ok(())
}

#[test]
fn run_retries_an_optimistic_commit_refused_by_a_lock() -> TestResult {
    let (_dir, db) = open_db()?;
    let mut holder = db.tx().pessimistic().label("holder").begin()?;
    holder.put("t", "n", 7u64.to_le_bytes())?;
    let mut holder = Some(holder);
    let mut attempts = 0u32;
    let out = db.run(|tx| {
        attempts += 1;
        if attempts == 2 {
            // The first attempt's commit was refused (the key was locked); the holder gives
            // up before the retry reads.
            drop(holder.take());
        }
        let n = read_u64(tx, "n")?;
        tx.put("t", "n", (n + 1).to_le_bytes())?;
        Ok(n + 1)
    })?;
    assert_eq!(attempts, 2);
    assert_eq!(out, 1, "the holder's write never committed");
    assert_eq!(db.stats().conflicts, 1, "one refused commit");
    Ok(())
}

#[test]
fn run_returns_non_retryable_errors_at_once() -> TestResult {
    let (_dir, db) = open_db()?;
    let mut attempts = 0u32;
    let r = db.run(|tx| {
        attempts += 1;
        tx.put("missing", "k", "v")
    });
    assert!(
        matches!(&r, Err(Error::TableNotFound(n)) if n == "missing"),
        "{r:?}"
    );
    assert_eq!(attempts, 1);

    let mut attempts = 0u32;
    let r: Result<(), Error> = db.run(|_| {
        attempts += 1;
        Err(Error::InvalidArgument("the closure refuses".into()))
    });
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    assert_eq!(attempts, 1);

    let mut attempts = 0u32;
    let r = db.tx().timeout(Duration::from_millis(20)).run(|tx| {
        attempts += 1;
        thread::sleep(Duration::from_millis(80));
        tx.put("t", "k", "late")
    });
    assert!(is_timeout(&r, None), "{r:?}");
    assert_eq!(attempts, 1, "a deadline is not retried");

    let mut attempts = 0u32;
    let r = db.tx().read_only().run(|tx| {
        attempts += 1;
        tx.put("t", "k", "v")
    });
    assert!(matches!(r, Err(Error::ReadOnly)), "{r:?}");
    assert_eq!(attempts, 1);
    assert_eq!(text(&db, "k")?, None);
    Ok(())
}

#[test]
fn run_gives_up_after_max_retries_with_the_last_conflict() -> TestResult {
    let (_dir, db) = open_db()?;
    let mut attempts = 0u32;
    let r = db.tx().max_retries(3).label("loser").run(|tx| {
        attempts += 1;
        let a = attempts;
        // Every attempt loses to a commit made after its snapshot.
        db.tx()
            .label("winner")
            .run(|other| other.put("t", "k", format!("winner {a}")))?;
        tx.put("t", "k", "loser")?;
        Ok(())
    });
    assert_eq!(attempts, 3);
    let last = match &r {
        Err(Error::RetriesExhausted { attempts: 3, last }) => last,
        other => return Err(format!("expected RetriesExhausted after 3: {other:?}").into()),
    };
    assert!(matches!(**last, Error::Conflict(_)), "{last:?}");
    let report = last.conflict().ok_or("the last error is a conflict")?;
    assert_eq!(report.kind, ConflictKind::WriteWrite);
    assert_eq!(report.label.as_deref(), Some("loser"));
    assert_eq!(report.winner_label.as_deref(), Some("winner"));
    let err = r.err().ok_or("expected an error")?;
    assert!(!err.is_retryable(), "exhausted retries are final");
    let shown = err.to_string();
    assert!(shown.contains("3 attempts"), "{shown}");
    assert!(shown.contains("write-write conflict"), "{shown}");
    assert_eq!(text(&db, "k")?.as_deref(), Some("winner 3"));

    // max_retries(1): one attempt, no retry.
    let mut attempts = 0u32;
    let r = db.tx().max_retries(1).run(|tx| {
        attempts += 1;
        db.transaction(|other| other.put("t", "k", "other"))?;
        tx.put("t", "k", "mine")
    });
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts: 1, .. })),
        "{r:?}"
    );
    assert_eq!(attempts, 1);

    // max_retry_time(0): no attempt starts after the first.
    let mut attempts = 0u32;
    let r = db.tx().max_retry_time(Duration::ZERO).run(|tx| {
        attempts += 1;
        db.transaction(|other| other.put("t", "k", "other"))?;
        tx.put("t", "k", "mine")
    });
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts: 1, .. })),
        "{r:?}"
    );
    assert_eq!(attempts, 1);
    Ok(())
}

#[test]
fn is_retryable_is_true_exactly_for_conflicts_deadlocks_and_lock_timeouts() -> TestResult {
    let (_dir, db) = open_db()?;
    // A real conflict.
    let mut a = db.begin()?;
    let mut b = db.begin()?;
    a.put("t", "k", "a")?;
    b.put("t", "k", "b")?;
    a.commit()?;
    let conflict = b.commit().err().ok_or("expected a conflict")?;
    assert!(matches!(conflict, Error::Conflict(_)));
    // A real lock-wait timeout.
    let mut holder = db.tx().pessimistic().begin()?;
    holder.put("t", "k", "h")?;
    let mut waiter = db
        .tx()
        .pessimistic()
        .lock_timeout(Duration::from_millis(20))
        .begin()?;
    let lock_timeout = waiter
        .put("t", "k", "w")
        .err()
        .ok_or("expected a lock timeout")?;
    assert!(matches!(lock_timeout, Error::LockTimeout { .. }));
    drop((holder, waiter));
    // A real transaction timeout.
    let tx = db.tx().timeout(Duration::from_millis(1)).begin()?;
    thread::sleep(Duration::from_millis(20));
    let timeout = tx.get("t", "k").err().ok_or("expected a timeout")?;
    assert!(matches!(timeout, Error::Timeout { .. }));
    drop(tx);
    // Deadlocks are produced in tests/pessimistic_locks.rs; the variant is what counts here.
    let deadlock = Error::Deadlock(Box::new(DeadlockReport { cycle: Vec::new() }));

    for retryable in [&conflict, &deadlock, &lock_timeout] {
        assert!(retryable.is_retryable(), "{retryable:?}");
    }
    let mut tx = db.begin()?;
    let missing_savepoint = tx.rollback_to("nope").err().ok_or("no savepoint")?;
    let missing_table = tx.put("nope", "k", "v").err().ok_or("no table")?;
    let read_only = db
        .begin_read()?
        .put("t", "k", "v")
        .err()
        .ok_or("read-only")?;
    let exhausted = Error::RetriesExhausted {
        attempts: 3,
        last: Box::new(Error::Conflict(Box::new(ConflictReport {
            kind: ConflictKind::WriteWrite,
            table: "t".into(),
            key: None,
            snapshot: Version::ZERO,
            winner: Version::ZERO,
            label: None,
            winner_label: None,
        }))),
    };
    let not_retryable = [
        timeout,
        missing_savepoint,
        missing_table,
        read_only,
        exhausted,
        Error::InvalidArgument("x".into()),
        Error::TableExists("t".into()),
        Error::Poisoned("x".into()),
        Error::TransactionClosed("committed"),
        Error::SavepointNotFound("s".into()),
        Error::PreparedNotFound("g".into()),
    ];
    for e in &not_retryable {
        assert!(!e.is_retryable(), "{e:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Labels

#[test]
fn builder_labels_appear_in_conflict_reports_and_their_text() -> TestResult {
    let (_dir, db) = open_db()?;
    let mut loser = db.tx().label("nightly-batch").begin()?;
    let mut winner = db.tx().label("web-request").begin()?;
    assert_eq!(loser.label(), Some("nightly-batch"));
    loser.put("t", "k", "loser")?;
    winner.put("t", "k", "winner")?;
    let won = winner.commit()?;
    let err = loser.commit().err().ok_or("the second committer loses")?;
    let report = err.conflict().ok_or("expected a conflict")?;
    assert_eq!(report.kind, ConflictKind::WriteWrite);
    assert_eq!(report.label.as_deref(), Some("nightly-batch"));
    assert_eq!(report.winner_label.as_deref(), Some("web-request"));
    assert_eq!(report.winner, won);
    let shown = err.to_string();
    assert!(shown.contains("`nightly-batch`"), "{shown}");
    assert!(shown.contains("`web-request`"), "{shown}");
    assert!(shown.contains(&won.to_string()), "{shown}");

    // An unlabelled winner: no winner label, and the text does not invent one.
    let mut loser = db.tx().label("second").begin()?;
    db.transaction(|tx| tx.put("t", "k", "anonymous"))?;
    loser.put("t", "k", "loser")?;
    let err = loser.commit().err().ok_or("the second committer loses")?;
    let report = err.conflict().ok_or("expected a conflict")?;
    assert_eq!(report.label.as_deref(), Some("second"));
    assert_eq!(report.winner_label, None);
    let shown = err.to_string();
    assert!(shown.contains("`second`"), "{shown}");
    assert!(!shown.contains("`web-request`"), "{shown}");

    // An unlabelled loser.
    let mut loser = db.begin()?;
    db.tx()
        .label("labelled-winner")
        .run(|tx| tx.put("t", "k", "labelled"))?;
    loser.put("t", "k", "loser")?;
    let err = loser.commit().err().ok_or("the second committer loses")?;
    let report = err.conflict().ok_or("expected a conflict")?;
    assert_eq!(report.label, None);
    assert_eq!(report.winner_label.as_deref(), Some("labelled-winner"));
    assert!(err.to_string().contains("this transaction"), "{err}");

    // Labels in a Locked conflict and in lock errors.
    let mut holder = db.tx().pessimistic().label("locker").begin()?;
    holder.put("t", "k", "h")?;
    let mut opt = db.tx().label("optimist").begin()?;
    opt.put("t", "k", "o")?;
    let err = opt.commit().err().ok_or("the key is locked")?;
    let report = err.conflict().ok_or("expected a conflict")?;
    assert_eq!(report.kind, ConflictKind::Locked);
    assert_eq!(report.label.as_deref(), Some("optimist"));
    assert!(err.to_string().contains("`optimist`"), "{err}");
    let mut w = db
        .tx()
        .pessimistic()
        .lock_timeout(Duration::from_millis(20))
        .label("impatient")
        .begin()?;
    let err = w.put("t", "k", "w").err().ok_or("lock timeout")?;
    assert_eq!(
        err.to_string(),
        "lock wait timed out (transaction `impatient`)"
    );
    drop(holder);
    Ok(())
}
