//! Mirrors: keep an external copy of the database up to date by following the change feed.
//!
//! A [`Mirror`] is a sink that applies one whole committed transaction at a time (or loads a
//! full snapshot to start from) and knows its own durable position: the commit version of the
//! last transaction it holds. A [`MirrorRunner`] follows [`crate::Db::changes_since`] in a
//! background thread:
//!
//! * it starts from the sink's position (loading a snapshot if the sink holds nothing, or if
//!   the history after its position is no longer retained), so a crash of either side resumes
//!   where the sink really is and never applies a transaction twice;
//! * it applies transactions in commit order, each whole, and flushes after each batch;
//! * a failing sink is retried with exponential backoff (capped), the same transaction again;
//! * it persists its progress (`<db>/mirrors/<name>.progress`, written atomically) and reports
//!   status and lag in versions and seconds;
//! * while running it pins the history after its position, so garbage collection keeps what it
//!   still has to read.
//!
//! Contract for sinks: `apply` and `load_snapshot` are all-or-nothing (on `Err` nothing of that
//! call is kept), and `position` reports what survived the sink's own crashes.

mod directory;

pub use directory::DirectoryMirror;

use crate::db::{Db, DbInner};
use crate::error::{io_err, Error, Result};
use crate::feed::CommittedTransaction;
use crate::snapshot::Snapshot;
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vellum_storage::Version;

/// An error of a mirror sink.
pub type MirrorError = Box<dyn std::error::Error + Send + Sync>;

/// A destination that follows the database; see the module documentation for the contract.
pub trait Mirror: Send + 'static {
    /// The commit version of the last transaction or snapshot the sink holds durably, or
    /// `None` if it holds nothing.
    fn position(&mut self) -> std::result::Result<Option<Version>, MirrorError>;
    /// Replaces everything the sink holds by the snapshot's rows; its position becomes the
    /// snapshot's version.
    fn load_snapshot(&mut self, snapshot: &Snapshot) -> std::result::Result<(), MirrorError>;
    /// Applies one whole committed transaction, whose version is above the sink's position.
    fn apply(&mut self, tx: &CommittedTransaction) -> std::result::Result<(), MirrorError>;
    /// Makes what was applied durable and visible to the sink's readers; called after each
    /// batch. The default does nothing (for sinks whose `apply` is already durable).
    fn flush(&mut self) -> std::result::Result<(), MirrorError> {
        Ok(())
    }
}

/// How a [`MirrorRunner`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorOptions {
    /// How often to look for new commits when caught up.
    pub poll_interval: Duration,
    /// First retry delay after a sink failure; doubles per failure of the same call.
    pub retry_base: Duration,
    /// Largest retry delay.
    pub retry_max: Duration,
    /// Most transactions applied between two flushes.
    pub batch_max: usize,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions {
            poll_interval: Duration::from_millis(10),
            retry_base: Duration::from_millis(5),
            retry_max: Duration::from_secs(1),
            batch_max: 1000,
        }
    }
}

/// What a runner is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorState {
    /// Reading the sink's position or loading a snapshot.
    Starting,
    /// Following the change feed.
    Running,
    /// The sink failed; the same call is retried after a backoff.
    Retrying {
        /// Consecutive failures of the current call.
        attempts: u32,
        /// The last error.
        last_error: String,
    },
    /// Stopped by [`MirrorRunner::stop`] or drop.
    Stopped,
}

/// A runner's progress and health.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorStatus {
    /// The runner's name.
    pub name: String,
    /// Version of the last transaction the sink holds.
    pub mirrored_version: Version,
    /// The database's visible version when the status was taken.
    pub database_version: Version,
    /// Versions the mirror is behind.
    pub lag_versions: u64,
    /// How long the mirror has been behind (0 when caught up).
    pub lag_seconds: f64,
    /// Transactions applied since start.
    pub applied: u64,
    /// Snapshots loaded since start.
    pub snapshots_loaded: u64,
    /// Sink calls that failed since start.
    pub failures: u64,
    /// Current state.
    pub state: MirrorState,
}

#[derive(Debug)]
struct Control {
    stop: Mutex<bool>,
    wake: Condvar,
    status: Mutex<Status>,
}

#[derive(Debug)]
struct Status {
    position: Version,
    applied: u64,
    snapshots: u64,
    failures: u64,
    state: MirrorState,
    behind_since: Option<Instant>,
}

/// Follows the change feed into a [`Mirror`] in a background thread. Stops when dropped.
#[derive(Debug)]
pub struct MirrorRunner {
    name: String,
    db: Db,
    control: Arc<Control>,
    handle: Option<JoinHandle<()>>,
}

impl MirrorRunner {
    /// Starts following the database into `mirror`, under a `name` unique per database (it
    /// names the progress file).
    pub fn start(
        db: &Db,
        name: &str,
        mirror: impl Mirror,
        options: MirrorOptions,
    ) -> Result<MirrorRunner> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::InvalidArgument(
                "a mirror name is non-empty ASCII letters, digits, '-' and '_'".into(),
            ));
        }
        let control = Arc::new(Control {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            status: Mutex::new(Status {
                position: Version::ZERO,
                applied: 0,
                snapshots: 0,
                failures: 0,
                state: MirrorState::Starting,
                behind_since: None,
            }),
        });
        let worker = Worker {
            db: db.clone(),
            name: name.to_string(),
            control: control.clone(),
            options,
            pinned: None,
        };
        let handle = std::thread::Builder::new()
            .name(format!("vellum-mirror-{name}"))
            .spawn(move || worker.run(mirror))
            .map_err(io_err(db.path()))?;
        Ok(MirrorRunner {
            name: name.to_string(),
            db: db.clone(),
            control,
            handle: Some(handle),
        })
    }

    /// Progress and health now.
    pub fn status(&self) -> MirrorStatus {
        let database_version = self.db.version();
        let s = self.control.status.lock();
        MirrorStatus {
            name: self.name.clone(),
            mirrored_version: s.position,
            database_version,
            lag_versions: database_version.get().saturating_sub(s.position.get()),
            lag_seconds: s.behind_since.map_or(0.0, |t| t.elapsed().as_secs_f64()),
            applied: s.applied,
            snapshots_loaded: s.snapshots,
            failures: s.failures,
            state: s.state.clone(),
        }
    }

    /// Waits until the sink holds `version` (or later); false on timeout.
    pub fn wait_for(&self, version: Version, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.control.status.lock().position >= version {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.control.status.lock().position >= version
    }

    /// Stops the runner (after the call in progress) and returns its final status.
    pub fn stop(mut self) -> MirrorStatus {
        self.halt();
        self.status()
    }

    fn halt(&mut self) {
        *self.control.stop.lock() = true;
        self.control.wake.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.control.status.lock().state = MirrorState::Stopped;
    }
}

impl Drop for MirrorRunner {
    fn drop(&mut self) {
        self.halt();
    }
}

struct Worker {
    db: Db,
    name: String,
    control: Arc<Control>,
    options: MirrorOptions,
    /// The history version this runner holds pinned.
    pinned: Option<Version>,
}

impl Worker {
    fn inner(&self) -> &DbInner {
        &self.db.inner
    }

    fn stopped(&self) -> bool {
        *self.control.stop.lock()
    }

    /// Sleeps up to `d`, waking early on stop; returns true if stopped.
    fn pause(&self, d: Duration) -> bool {
        let mut stop = self.control.stop.lock();
        if !*stop {
            self.control.wake.wait_for(&mut stop, d);
        }
        *stop
    }

    /// Calls `f` until it succeeds or the runner stops (None).
    fn retry<T>(&self, mut f: impl FnMut() -> std::result::Result<T, MirrorError>) -> Option<T> {
        let mut attempts = 0u32;
        loop {
            if self.stopped() {
                return None;
            }
            match f() {
                Ok(v) => {
                    if attempts > 0 {
                        self.control.status.lock().state = MirrorState::Running;
                    }
                    return Some(v);
                }
                Err(e) => {
                    attempts += 1;
                    {
                        let mut s = self.control.status.lock();
                        s.failures += 1;
                        s.state = MirrorState::Retrying {
                            attempts,
                            last_error: e.to_string(),
                        };
                    }
                    tracing::warn!(mirror = %self.name, error = %e, attempts, "mirror sink failed; retrying");
                    let delay = self
                        .options
                        .retry_base
                        .saturating_mul(1 << (attempts - 1).min(16))
                        .min(self.options.retry_max);
                    if self.pause(delay) {
                        return None;
                    }
                }
            }
        }
    }

    /// Moves the history pin to `v` (new pin first, then the old one released).
    fn pin(&mut self, v: Version) -> bool {
        if self.pinned == Some(v) {
            return true;
        }
        if self.inner().snapshots.acquire_history(v).is_err() {
            return false;
        }
        if let Some(old) = self.pinned.replace(v) {
            self.inner().snapshots.release(old);
        }
        true
    }

    fn unpin(&mut self) {
        if let Some(old) = self.pinned.take() {
            self.inner().snapshots.release(old);
        }
    }

    fn set_position(&self, v: Version, applied: u64) {
        let mut s = self.control.status.lock();
        s.position = v;
        s.applied += applied;
        s.state = MirrorState::Running;
        let behind = self.db.version() > v;
        match (behind, s.behind_since) {
            (true, None) => s.behind_since = Some(Instant::now()),
            (false, Some(_)) => s.behind_since = None,
            _ => {}
        }
    }

    fn persist(&self, v: Version) {
        let fs = self.inner().opts.file_system.clone();
        let dir = self.db.path().join("mirrors");
        let path = dir.join(format!("{}.progress", self.name));
        let body = format!("{{\"mirrored_version\": {}}}\n", v.get());
        let result = vellum_fs::create_dir_durable(fs.as_ref(), &dir)
            .and_then(|_| vellum_fs::write_file_atomic(fs.as_ref(), &path, body.as_bytes()));
        if let Err(e) = result {
            tracing::warn!(mirror = %self.name, error = %e, "could not persist mirror progress");
        }
    }

    /// Loads a fresh snapshot into the sink; returns its version.
    fn reload(&mut self, mirror: &mut impl Mirror) -> Option<Version> {
        let snapshot = match self.db.snapshot() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(mirror = %self.name, error = %e, "cannot take a snapshot");
                return None;
            }
        };
        let v = snapshot.version();
        // Pin before anything else: the feed after `v` must stay retained.
        if !self.pin(v) {
            return None;
        }
        self.retry(|| mirror.load_snapshot(&snapshot))?;
        self.retry(|| mirror.flush())?;
        self.control.status.lock().snapshots += 1;
        self.set_position(v, 0);
        self.persist(v);
        Some(v)
    }

    fn run(mut self, mut mirror: impl Mirror) {
        let start = self.retry(|| mirror.position());
        let mut position = match start {
            None => return self.finish(),
            Some(Some(v)) if self.pin(v) => v,
            Some(_) => match self.reload(&mut mirror) {
                Some(v) => v,
                None => return self.finish(),
            },
        };
        self.set_position(position, 0);
        while !self.stopped() {
            let feed = match self.db.changes_since(position) {
                Ok(feed) => feed,
                Err(Error::NotRetained { .. }) => match self.reload(&mut mirror) {
                    Some(v) => {
                        position = v;
                        continue;
                    }
                    None => break,
                },
                Err(e) => {
                    tracing::warn!(mirror = %self.name, error = %e, "cannot read the change feed");
                    if self.pause(self.options.retry_max) {
                        break;
                    }
                    continue;
                }
            };
            let mut applied = 0u64;
            for tx in feed.take(self.options.batch_max) {
                if self.retry(|| mirror.apply(&tx)).is_none() {
                    break;
                }
                position = tx.version;
                applied += 1;
            }
            if applied > 0 {
                if self.retry(|| mirror.flush()).is_none() {
                    break;
                }
                self.pin(position);
                self.set_position(position, applied);
                self.persist(position);
            } else {
                self.set_position(position, 0);
                if self.pause(self.options.poll_interval) {
                    break;
                }
            }
        }
        self.finish();
    }

    fn finish(&mut self) {
        self.unpin();
    }
}
