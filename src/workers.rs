//! Background work: the checkpoint worker.
//!
//! One thread per database wakes when a commit reports that enough log has accumulated
//! ([`Options::checkpoint_after_wal_bytes`](crate::Options)) or the memtable reached its budget
//! ([`Options::memtable_bytes`](crate::Options)), and writes a checkpoint: a flush of the
//! memtable to a segment file, after which the log it covers is released. So memory, the log
//! and reopen time stay bounded. (Compaction runs on storage's own thread.) It holds only a weak reference to the database, so it
//! never keeps it open. A checkpoint that fails while writing its file is logged and retried at
//! the next trigger (the log simply stays longer); one that fails to sync or release the log
//! leaves the log poisoned, and the database then refuses writes (fail-stop).

use crate::db::DbInner;
use crate::error::{io_err, Result};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Default)]
struct Signal {
    stop: bool,
    wanted: bool,
}

/// Handle of the checkpoint worker.
#[derive(Debug, Default)]
pub(crate) struct Worker {
    signal: Arc<(Mutex<Signal>, Condvar)>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Worker {
    /// Asks for a checkpoint.
    pub fn nudge(&self) {
        let (lock, cond) = &*self.signal;
        lock.lock().wanted = true;
        cond.notify_one();
    }

    /// Stops the worker and waits for it (unless called from the worker itself).
    pub fn stop(&self) {
        let (lock, cond) = &*self.signal;
        lock.lock().stop = true;
        cond.notify_all();
        if let Some(h) = self.handle.lock().take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// Starts the worker of `db`.
pub(crate) fn start(db: &Arc<DbInner>) -> Result<()> {
    let weak: Weak<DbInner> = Arc::downgrade(db);
    let signal = db.worker.signal.clone();
    let handle = std::thread::Builder::new()
        .name("vellum-checkpoint".into())
        .spawn(move || run(weak, signal))
        .map_err(io_err(&db.path))?;
    *db.worker.handle.lock() = Some(handle);
    Ok(())
}

fn run(db: Weak<DbInner>, signal: Arc<(Mutex<Signal>, Condvar)>) {
    let (lock, cond) = &*signal;
    loop {
        {
            let mut s = lock.lock();
            while !s.stop && !s.wanted {
                cond.wait_for(&mut s, Duration::from_secs(1));
            }
            if s.stop {
                return;
            }
            s.wanted = false;
        }
        let Some(db) = db.upgrade() else { return };
        if checkpoint_due(&db) {
            if let Err(e) = db.checkpoint() {
                tracing::warn!(error = %e, "background checkpoint failed; will retry");
            }
        }
    }
}

/// True once enough log accumulated since the last checkpoint, or the memtable is full.
pub(crate) fn checkpoint_due(db: &DbInner) -> bool {
    let written = db.log_bytes();
    let at_last = db.wal_bytes_at_checkpoint.load(Ordering::Relaxed);
    written.saturating_sub(at_last) >= db.opts.checkpoint_after_wal_bytes || db.store.needs_flush()
}
