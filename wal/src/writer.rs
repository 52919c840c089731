//! The log writer: enqueue, group commit, segment rotation, release, close.
//!
//! Concurrency protocol (group commit):
//! * [`Wal::enqueue`] takes the state lock briefly, assigns the next lsn and copies the payload
//!   into the pending buffer. It never does I/O, so a caller may hold its own commit lock
//!   around it to make lsn order equal its commit order.
//! * [`Wal::wait`] returns once the record is written (or synced, under `Immediate`). A waiter
//!   that finds no leader becomes the leader: it takes *everything* pending, releases the state
//!   lock, writes it with one positional write per segment touched, syncs once if anyone needs
//!   durability, then publishes the new written/durable lsns and wakes everyone. Records
//!   enqueued while a leader is busy are picked up by the next leader in one batch.
//! * The io lock is held only by the leader (and briefly by release); the state lock is never
//!   held during I/O.
//! * Fail-stop: a failed write or sync poisons the log; every later call fails with
//!   [`Error::Poisoned`].

use crate::error::{io_err, Error, Result};
use crate::format::SEGMENT_SIZE_MIN;
use crate::format::{seal_frame, Kind, FRAME_HEADER_SIZE, RECORD_SIZE_MAX, SEGMENT_HEADER_SIZE};
use crate::segment::{self, zero_range, OpenSegment};
use crate::{recovery, Lsn, SyncPolicy};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use vellum_fs::FileSystem;

/// Options of the log.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Preallocated size of each segment file. A record larger than a segment gets a segment
    /// of its own that grows past this size.
    pub segment_size: u64,
    /// When a record counts as done.
    pub sync: SyncPolicy,
    /// How many released segments to keep for reuse instead of deleting them.
    pub spare_segments_max: usize,
    /// Longest time a new leader waits to gather more records into its batch: while
    /// announced committers ([`Wal::announce`]) have not enqueued yet, or fewer records are
    /// pending than the previous batch held. A lone committer never waits.
    pub group_commit_wait: Duration,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 64 << 20,
            sync: SyncPolicy::Immediate,
            spare_segments_max: 2,
            group_commit_wait: Duration::from_micros(200),
        }
    }
}

/// A record returned by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its lsn.
    pub lsn: Lsn,
    /// Its payload as given to [`Wal::enqueue`].
    pub payload: Vec<u8>,
}

/// Proof of an enqueued record, to wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a record is not durable until the ticket is waited on"]
pub struct Ticket(Lsn);

impl Ticket {
    /// The record's lsn.
    pub fn lsn(&self) -> Lsn {
        self.0
    }
}

/// Counters of the log since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records enqueued (including the log's own marks written at open and close).
    pub records: u64,
    /// Leader rounds that wrote at least one record.
    pub batches: u64,
    /// `fdatasync` calls on live segments for commits (not those of segment creation,
    /// recovery or spare zeroing).
    pub syncs: u64,
    /// Frame bytes enqueued.
    pub bytes: u64,
}

#[derive(Debug)]
struct State {
    pending: Vec<u8>,
    pending_frames: Vec<(u64, Kind, usize)>,
    next_lsn: u64,
    written_lsn: u64,
    durable_lsn: u64,
    sync_wanted: u64,
    leader: bool,
    poisoned: Option<String>,
    stats: WalStats,
    /// Committers that announced themselves and have not enqueued yet.
    arriving: usize,
    /// Records in the previous leader's batch.
    last_batch: usize,
}

#[derive(Debug)]
struct Io {
    seg: OpenSegment,
    offset: u64,
    /// Live segments, ascending: (seq, first lsn, path). The last one is `seg`.
    segments: Vec<(u64, u64, PathBuf)>,
    spares: Vec<PathBuf>,
    written_lsn: u64,
    durable_lsn: u64,
    syncs: u64,
}

#[derive(Debug)]
struct Shared {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    opts: WalOptions,
    state: Mutex<State>,
    cond: Condvar,
    /// Signalled when an announced committer enqueues or gives up.
    arrivals: Condvar,
    io: Mutex<Io>,
    stop: Mutex<bool>,
    stop_cond: Condvar,
}

/// The write-ahead log. Dropping it syncs and writes a close mark (errors are ignored there;
/// call [`Wal::close`] to see them).
#[derive(Debug)]
pub struct Wal {
    shared: Arc<Shared>,
    syncer: Mutex<Option<JoinHandle<()>>>,
    closed: Mutex<bool>,
}

impl Io {
    fn write_at(&mut self, data: &[u8]) -> Result<()> {
        let at = self.offset;
        self.seg
            .file
            .write_at(at, data)
            .map_err(io_err(&self.seg.path))?;
        self.offset += data.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.seg.file.sync_data().map_err(io_err(&self.seg.path))?;
        self.syncs += 1;
        self.durable_lsn = self.written_lsn;
        Ok(())
    }

    fn rotate(&mut self, shared: &Shared, first_lsn: u64) -> Result<()> {
        self.sync()?;
        let seq = self.segments.last().map_or(1, |s| s.0 + 1);
        let spare = self.spares.pop();
        let seg = segment::create(
            shared.fs.as_ref(),
            &shared.dir,
            seq,
            first_lsn,
            shared.opts.segment_size,
            spare,
        )?;
        self.segments.push((seq, first_lsn, seg.path.clone()));
        self.seg = seg;
        self.offset = SEGMENT_HEADER_SIZE as u64;
        Ok(())
    }

    /// Writes the pending frames: seals each header with the durable lsn known at this moment,
    /// rotates segments where a frame does not fit, one write per contiguous run.
    fn write_batch(
        &mut self,
        shared: &Shared,
        batch: &mut [u8],
        frames: &[(u64, Kind, usize)],
    ) -> Result<()> {
        let mut pos = 0usize;
        let mut run_start = 0usize;
        for &(lsn, kind, len) in frames {
            let frame_len = FRAME_HEADER_SIZE + len;
            let fits = self.offset + (pos - run_start + frame_len) as u64 <= self.seg.capacity;
            let segment_used = self.offset > SEGMENT_HEADER_SIZE as u64 || pos > run_start;
            if !fits && segment_used {
                self.write_at(&batch[run_start..pos])?;
                self.written_lsn = lsn - 1;
                self.rotate(shared, lsn)?;
                run_start = pos;
            }
            seal_frame(
                &mut batch[pos..pos + frame_len],
                lsn,
                self.durable_lsn,
                kind,
            );
            pos += frame_len;
        }
        self.write_at(&batch[run_start..pos])?;
        if let Some(&(lsn, _, _)) = frames.last() {
            self.written_lsn = lsn;
        }
        Ok(())
    }
}

impl Shared {
    fn lock_state(&self) -> Result<MutexGuard<'_, State>> {
        let st = self.state.lock();
        match &st.poisoned {
            Some(why) => Err(Error::Poisoned(why.clone())),
            None => Ok(st),
        }
    }

    fn enqueue(&self, kind: Kind, payload: &[u8]) -> Result<Ticket> {
        if payload.len() > RECORD_SIZE_MAX {
            return Err(Error::RecordTooLarge {
                size: payload.len(),
                max: RECORD_SIZE_MAX,
            });
        }
        let mut st = self.lock_state()?;
        let lsn = st.next_lsn;
        st.next_lsn += 1;
        let start = st.pending.len();
        st.pending.resize(start + FRAME_HEADER_SIZE, 0);
        st.pending.extend_from_slice(payload);
        st.pending_frames.push((lsn, kind, payload.len()));
        st.stats.records += 1;
        st.stats.bytes += (FRAME_HEADER_SIZE + payload.len()) as u64;
        if st.leader {
            self.arrivals.notify_all();
        }
        Ok(Ticket(Lsn(lsn)))
    }

    /// Waits until `lsn` is written, and synced if `durable`; leads a round if nobody does.
    fn wait_for(&self, lsn: u64, durable: bool) -> Result<()> {
        let mut st = self.lock_state()?;
        loop {
            if let Some(why) = &st.poisoned {
                return Err(Error::Poisoned(why.clone()));
            }
            let done = if durable {
                st.durable_lsn >= lsn
            } else {
                st.written_lsn >= lsn
            };
            if done {
                return Ok(());
            }
            if durable && st.sync_wanted < lsn {
                st.sync_wanted = lsn;
            }
            if st.leader {
                self.cond.wait(&mut st);
                continue;
            }
            st.leader = true;
            self.gather(&mut st);
            let mut batch = std::mem::take(&mut st.pending);
            let frames = std::mem::take(&mut st.pending_frames);
            let sync = st.sync_wanted > st.durable_lsn;
            let outcome = MutexGuard::unlocked(&mut st, || {
                let mut io = self.io.lock();
                let syncs_before = io.syncs;
                let mut result = io.write_batch(self, &mut batch, &frames);
                if result.is_ok() && sync {
                    result = io.sync();
                }
                (
                    result,
                    io.written_lsn,
                    io.durable_lsn,
                    io.syncs - syncs_before,
                )
            });
            st.leader = false;
            let (result, written, durable_now, syncs) = outcome;
            st.stats.syncs += syncs;
            if !frames.is_empty() {
                st.stats.batches += 1;
                st.last_batch = frames.len();
            }
            match result {
                Ok(()) => {
                    st.written_lsn = written;
                    st.durable_lsn = durable_now;
                    // Hand the buffer back so its capacity is reused.
                    if st.pending.is_empty() {
                        batch.clear();
                        st.pending = batch;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "write-ahead log write failed; refusing further writes");
                    st.poisoned = Some(e.to_string());
                    self.cond.notify_all();
                    return Err(e);
                }
            }
            self.cond.notify_all();
        }
    }

    /// Called by a new leader: waits (bounded) for committers that are about to enqueue.
    fn gather(&self, st: &mut MutexGuard<'_, State>) {
        let wait = self.opts.group_commit_wait;
        let more_expected = |st: &State| st.arriving > 0 || st.pending_frames.len() < st.last_batch;
        if wait.is_zero() || !more_expected(st) || st.pending_frames.is_empty() {
            return;
        }
        let deadline = std::time::Instant::now() + wait;
        while more_expected(st) {
            if self.arrivals.wait_until(st, deadline).timed_out() {
                break;
            }
        }
    }

    fn sync_all(&self) -> Result<()> {
        let last = {
            let st = self.lock_state()?;
            if st.durable_lsn + 1 >= st.next_lsn {
                return Ok(());
            }
            st.next_lsn - 1
        };
        self.wait_for(last, true)
    }

    /// Syncs everything, then writes and syncs a mark proving it durable.
    fn mark(&self) -> Result<()> {
        self.sync_all()?;
        let ticket = self.enqueue(Kind::Mark, &[])?;
        self.wait_for(ticket.0 .0, true)
    }
}

impl Wal {
    /// Opens (or creates) the log in `dir` and recovers it.
    ///
    /// Returns the log, positioned after its last valid record, and every data record with an
    /// lsn above `replay_after`, in order. `must_exist` says the database already exists, so a
    /// directory without segments is corruption rather than a new log.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        opts: WalOptions,
        replay_after: Lsn,
        must_exist: bool,
    ) -> Result<(Wal, Vec<Record>)> {
        if opts.segment_size < SEGMENT_SIZE_MIN {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("segment size must be at least {SEGMENT_SIZE_MIN} bytes"),
                ),
            });
        }
        vellum_fs::create_dir_durable(fs.as_ref(), dir).map_err(io_err(dir))?;
        let listing = segment::list(fs.as_ref(), dir)?;
        for tmp in listing.temps.iter().chain(&listing.recycling) {
            fs.remove_file(tmp).map_err(io_err(tmp))?;
        }
        let mut spares = listing.spares;
        let (io, records) = if listing.segments.is_empty() {
            if must_exist {
                return Err(Error::Corruption {
                    file: dir.to_path_buf(),
                    offset: 0,
                    reason: "the database exists but its log has no segments".into(),
                });
            }
            let first = replay_after.0 + 1;
            let seg = segment::create(fs.as_ref(), dir, 1, first, opts.segment_size, spares.pop())?;
            let io = Io {
                segments: vec![(1, first, seg.path.clone())],
                seg,
                offset: SEGMENT_HEADER_SIZE as u64,
                spares,
                written_lsn: replay_after.0,
                durable_lsn: replay_after.0,
                syncs: 0,
            };
            (io, Vec::new())
        } else {
            Self::resume(fs.as_ref(), dir, &listing.segments, spares, replay_after)?
        };
        let last = io.written_lsn;
        let shared = Arc::new(Shared {
            fs,
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                pending: Vec::new(),
                pending_frames: Vec::new(),
                next_lsn: last + 1,
                written_lsn: last,
                durable_lsn: last,
                sync_wanted: last,
                leader: false,
                poisoned: None,
                stats: WalStats::default(),
                arriving: 0,
                last_batch: 0,
            }),
            cond: Condvar::new(),
            arrivals: Condvar::new(),
            io: Mutex::new(io),
            stop: Mutex::new(false),
            stop_cond: Condvar::new(),
            opts,
        });
        shared.mark()?;
        let syncer = match shared.opts.sync {
            SyncPolicy::Buffered(every) => {
                let shared = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("vellum-wal-sync".into())
                        .spawn(move || background_sync(&shared, every))
                        .map_err(io_err(dir))?,
                )
            }
            _ => None,
        };
        Ok((
            Wal {
                shared,
                syncer: Mutex::new(syncer),
                closed: Mutex::new(false),
            },
            records,
        ))
    }

    fn resume(
        fs: &dyn FileSystem,
        dir: &Path,
        segments: &[(u64, PathBuf)],
        spares: Vec<PathBuf>,
        replay_after: Lsn,
    ) -> Result<(Io, Vec<Record>)> {
        let outcome = recovery::recover(fs, segments, replay_after)?;
        let kept = outcome.segments;
        let Some((_, _, tail_path)) = kept.last().cloned() else {
            return Err(Error::Corruption {
                file: dir.to_path_buf(),
                offset: 0,
                reason: "no usable log segment".into(),
            });
        };
        if outcome.last_lsn < replay_after.0 {
            return Err(Error::Corruption {
                file: tail_path,
                offset: outcome.tail_offset,
                reason: format!(
                    "the log ends at lsn {} but the checkpoint covers lsn {}: records that were \
                     synced before the checkpoint are missing",
                    outcome.last_lsn, replay_after.0
                ),
            });
        }
        let mut file = fs.open_write(&tail_path).map_err(io_err(&tail_path))?;
        if outcome.tail_needs_zeroing {
            tracing::warn!(
                file = %tail_path.display(),
                offset = outcome.tail_offset,
                "discarding a torn write-ahead log tail"
            );
            zero_range(file.as_mut(), outcome.tail_offset, outcome.tail_len)
                .map_err(io_err(&tail_path))?;
        }
        // What recovery read may have come from the page cache only (a process crash keeps
        // unsynced writes there): make it durable before anything is built on it.
        file.sync_data().map_err(io_err(&tail_path))?;
        let io = Io {
            seg: OpenSegment {
                file,
                path: tail_path,
                capacity: outcome.tail_capacity,
            },
            offset: outcome.tail_offset,
            segments: kept,
            spares,
            written_lsn: outcome.last_lsn,
            durable_lsn: outcome.last_lsn,
            syncs: 1,
        };
        Ok((io, outcome.records))
    }

    /// Announces a committer that will enqueue a record soon, so a leader starting meanwhile
    /// waits (up to [`WalOptions::group_commit_wait`]) to include it. The announcement ends
    /// when the returned guard is dropped: drop it right after [`Wal::enqueue`], or on any
    /// path that does not enqueue.
    pub fn announce(&self) -> Arrival<'_> {
        self.shared.state.lock().arriving += 1;
        Arrival {
            shared: &self.shared,
        }
    }

    /// Appends a record to the pending batch and returns its ticket. No I/O happens here.
    pub fn enqueue(&self, payload: &[u8]) -> Result<Ticket> {
        self.shared.enqueue(Kind::Data, payload)
    }

    /// Waits until the ticket's record is done under the log's [`SyncPolicy`].
    pub fn wait(&self, ticket: Ticket) -> Result<()> {
        let durable = self.shared.opts.sync == SyncPolicy::Immediate;
        self.shared.wait_for(ticket.0 .0, durable)
    }

    /// Makes every enqueued record durable.
    pub fn sync(&self) -> Result<()> {
        self.shared.sync_all()
    }

    /// `Err(Poisoned)` if an earlier write or sync failed.
    pub fn check_healthy(&self) -> Result<()> {
        self.shared.lock_state().map(|_| ())
    }

    /// Lsn of the last record made durable.
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.shared.state.lock().durable_lsn)
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        self.shared.state.lock().stats
    }

    /// Releases every segment whose records all have lsn ≤ `upto` (they are covered by a
    /// durable checkpoint): up to `spare_segments_max` are zeroed and kept for reuse, the rest
    /// removed. The segment being written is never released. Runs without blocking writers.
    pub fn release_upto(&self, upto: Lsn) -> Result<()> {
        let (released, spares_now) = {
            let mut io = self.shared.io.lock();
            let mut cut = 0;
            while cut + 1 < io.segments.len() && io.segments[cut + 1].1 <= upto.0 + 1 {
                cut += 1;
            }
            let released: Vec<(u64, PathBuf)> = io
                .segments
                .drain(..cut)
                .map(|(seq, _, path)| (seq, path))
                .collect();
            (released, io.spares.len())
        };
        let new_spares = segment::release(
            self.shared.fs.as_ref(),
            &self.shared.dir,
            &released,
            spares_now,
            self.shared.opts.spare_segments_max,
        );
        match new_spares {
            Ok(spares) => {
                self.shared.io.lock().spares.extend(spares);
                Ok(())
            }
            Err(e) => {
                self.shared.state.lock().poisoned = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Number of live segment files.
    pub fn segment_count(&self) -> usize {
        self.shared.io.lock().segments.len()
    }

    /// Syncs, writes a close mark and stops the background syncer. Later calls do nothing.
    /// Records may still be enqueued afterwards; they are written but no mark follows them.
    pub fn close(&self) -> Result<()> {
        let mut closed = self.closed.lock();
        if *closed {
            return Ok(());
        }
        *closed = true;
        *self.shared.stop.lock() = true;
        self.shared.stop_cond.notify_all();
        if let Some(handle) = self.syncer.lock().take() {
            let _ = handle.join();
        }
        self.shared.mark()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::debug!(error = %e, "write-ahead log close failed");
        }
    }
}

/// An announced committer; see [`Wal::announce`].
#[derive(Debug)]
#[must_use = "the announcement ends when the guard is dropped"]
pub struct Arrival<'a> {
    shared: &'a Shared,
}

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.arriving -= 1;
        if st.leader {
            self.shared.arrivals.notify_all();
        }
    }
}

fn background_sync(shared: &Shared, every: Duration) {
    let mut stop = shared.stop.lock();
    while !*stop {
        shared.stop_cond.wait_for(&mut stop, every);
        if *stop {
            break;
        }
        let result = MutexGuard::unlocked(&mut stop, || shared.sync_all());
        if result.is_err() {
            break;
        }
    }
}
