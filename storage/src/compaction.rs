//! Compaction: merging adjacent runs into one, dropping versions nothing can read.
//!
//! Policy: size-tiered. Runs are taken newest first while each next run is at most twice the
//! size of those taken so far; once [`StoreOptions::compaction_trigger`] runs qualify (or
//! there are more runs than `max_runs`), they are merged. Tiering keeps write amplification
//! low (a cell is rewritten about log₂(data / memtable) times), which suits a store whose
//! commit path is its point; the cost is more runs to consult on a read, which bloom filters
//! make cheap for point reads. [`compact_all`] merges everything (a major compaction).
//!
//! Version garbage collection happens here. With horizon `h` (no read below `h` will be
//! made), per user key: every cell above `h` is kept; the newest cell at or below `h` is kept
//! (it is what reads at `h` see) unless it is a tombstone and the merge includes the oldest
//! run (nothing older can resurface); older cells are dropped.
//!
//! Work is split by key range into parts merged in parallel on rayon's pool. The output run
//! replaces the input runs in one manifest write; the inputs' files are deleted after it.
//! Readers are never blocked: they hold the run list they started with. Writers are only
//! stalled (and the stall counted) when runs pile up past `max_runs`.
//!
//! [`StoreOptions::compaction_trigger`]: crate::StoreOptions::compaction_trigger

use crate::error::{io_err, Result};
use crate::key::InternalKey;
use crate::merge::{Merge, Source};
use crate::runs::{Run, RunSet};
use crate::segment::{Segment, SegmentWriter};
use crate::store::Shared;
use rayon::prelude::*;
use std::cmp::Reverse;
use std::ops::{Bound, Range};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Inputs smaller than this are merged as one part.
const PARALLEL_MIN_BYTES: u64 = 8 << 20;

/// Starts the background compaction thread; it holds only a weak reference to the store.
pub(crate) fn spawn(shared: &Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("vellum-compaction".into())
        .spawn(move || run_thread(weak))
}

fn run_thread(weak: Weak<Shared>) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let Some(sh) = weak.upgrade() else { return };
        if sh.stop.load(Ordering::Acquire) {
            return;
        }
        match compact_pending(&sh) {
            Ok(()) => backoff = Duration::from_millis(10),
            Err(e) => {
                tracing::warn!(error = %e, "compaction failed; will retry");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        let (lock, cond) = &sh.wake;
        let mut woken = lock.lock();
        if !*woken && !sh.stop.load(Ordering::Acquire) {
            cond.wait_for(&mut woken, backoff.max(Duration::from_millis(200)));
        }
        *woken = false;
    }
}

/// The window of runs (indices, newest first) the policy wants merged now.
pub(crate) fn pick(sizes: &[u64], trigger: usize, max_runs: usize) -> Option<Range<usize>> {
    if sizes.len() < 2 {
        return None;
    }
    let mut acc = sizes[0];
    let mut k = 1;
    while k < sizes.len() && sizes[k] <= 2 * acc {
        acc += sizes[k];
        k += 1;
    }
    if k >= trigger.max(2) {
        Some(0..k)
    } else if sizes.len() > max_runs {
        Some(0..k.max(2))
    } else {
        None
    }
}

/// Runs the compactions the policy asks for until there are none.
pub(crate) fn compact_pending(sh: &Shared) -> Result<()> {
    loop {
        if sh.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = sh.compacting.lock();
        let runs = sh.runs.load_full();
        let sizes: Vec<u64> = runs.runs.iter().map(|r| r.size()).collect();
        let Some(window) = pick(&sizes, sh.opts.compaction_trigger, sh.opts.max_runs) else {
            return Ok(());
        };
        compact(sh, &runs, window)?;
    }
}

/// Merges every run into one.
pub(crate) fn compact_all(sh: &Shared) -> Result<()> {
    let _one = sh.compacting.lock();
    let runs = sh.runs.load_full();
    if runs.runs.is_empty() {
        return Ok(());
    }
    compact(sh, &runs, 0..runs.runs.len())
}

/// Merges `runs[window]` into one run and installs it. Called with the compaction lock held.
fn compact(sh: &Shared, runs: &RunSet, window: Range<usize>) -> Result<()> {
    let inputs: Vec<Arc<Run>> = runs.runs[window.clone()].to_vec();
    let bottom = window.end == runs.runs.len();
    let horizon = sh.horizon.load(Ordering::Acquire);
    let input_bytes: u64 = inputs.iter().map(|r| r.size()).sum();
    let parts = split(&inputs, input_bytes);
    let outputs: Vec<(Vec<Arc<Segment>>, u64)> = parts
        .into_par_iter()
        .map(|(lo, hi)| merge_part(sh, &inputs, lo, hi, horizon, bottom))
        .collect::<Result<_>>()?;
    let dropped: u64 = outputs.iter().map(|o| o.1).sum();
    let segments: Vec<Arc<Segment>> = outputs.into_iter().flat_map(|o| o.0).collect();
    if !segments.is_empty() {
        sh.fs.sync_dir(&sh.dir).map_err(io_err(&sh.dir))?;
    }
    let input_ids: Vec<u64> = inputs.iter().flat_map(|r| r.ids()).collect();
    {
        let mut current = sh.manifest.lock();
        let now = sh.runs.load_full();
        // Flushes only add runs in front, so the inputs are still adjacent, `window.len()` runs
        // ending `runs.len() - window.start` runs from the back.
        let start = now.runs.len() - (runs.runs.len() - window.start);
        debug_assert!(now.runs[start..start + window.len()]
            .iter()
            .zip(&inputs)
            .all(|(a, b)| Arc::ptr_eq(a, b)));
        let mut new_runs = RunSet::default();
        let mut data = current.clone();
        new_runs.runs.extend(now.runs[..start].iter().cloned());
        let mut ids: Vec<Vec<u64>> = data.runs[..start].to_vec();
        if !segments.is_empty() {
            let run = Run { segments };
            ids.push(run.ids());
            new_runs.runs.push(Arc::new(run));
        }
        new_runs
            .runs
            .extend(now.runs[start + window.len()..].iter().cloned());
        ids.extend(data.runs[start + window.len()..].iter().cloned());
        data.runs = ids;
        data.gc_floor = data.gc_floor.max(horizon);
        sh.install(&mut current, data, new_runs)?;
    }
    sh.remove_segment_files(&input_ids);
    sh.counters.compactions.fetch_add(1, Ordering::Relaxed);
    sh.counters
        .cells_dropped
        .fetch_add(dropped, Ordering::Relaxed);
    sh.notify();
    Ok(())
}

type Part = (Bound<InternalKey>, Bound<InternalKey>);

/// Splits the key space of the inputs into parts of similar size at user-key boundaries.
fn split(inputs: &[Arc<Run>], input_bytes: u64) -> Vec<Part> {
    let threads = rayon::current_num_threads().max(1);
    if input_bytes < PARALLEL_MIN_BYTES || threads == 1 {
        return vec![(Bound::Unbounded, Bound::Unbounded)];
    }
    // Block boundaries of the largest input run approximate the key distribution.
    let Some(largest) = inputs.iter().max_by_key(|r| r.size()) else {
        return vec![(Bound::Unbounded, Bound::Unbounded)];
    };
    let lasts: Vec<&InternalKey> = largest
        .segments
        .iter()
        .flat_map(|s| s.index().iter().map(|e| &e.last))
        .collect();
    let mut cuts: Vec<InternalKey> = (1..threads)
        .filter_map(|i| lasts.get(i * lasts.len() / threads))
        .map(|k| InternalKey {
            table: k.table,
            key: k.key.clone(),
            version: Reverse(u64::MAX),
        })
        .collect();
    cuts.dedup();
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    let mut lo = Bound::Unbounded;
    for cut in cuts {
        parts.push((lo, Bound::Excluded(cut.clone())));
        lo = Bound::Included(cut);
    }
    parts.push((lo, Bound::Unbounded));
    parts
}

/// Merges one key range of the inputs into output segments; returns them and the number of
/// cells dropped.
fn merge_part(
    sh: &Shared,
    inputs: &[Arc<Run>],
    lo: Bound<InternalKey>,
    hi: Bound<InternalKey>,
    horizon: u64,
    bottom: bool,
) -> Result<(Vec<Arc<Segment>>, u64)> {
    let sources = inputs
        .iter()
        .map(|r| Source::run(r, &lo, hi.clone(), false))
        .collect();
    let mut merge = Merge::new(sources);
    let mut out = Vec::new();
    let mut writer: Option<SegmentWriter> = None;
    let mut dropped = 0u64;
    // Per user key: whether its newest cell at or below the horizon was already seen.
    let mut current: Option<(u32, Box<[u8]>)> = None;
    let mut floor_seen = false;
    while let Some((k, value)) = merge.next_cell()? {
        let same = current
            .as_ref()
            .is_some_and(|(t, key)| k.same_user_key(*t, key));
        if !same {
            // A new user key: the only place an output segment may end.
            if writer
                .as_ref()
                .is_some_and(|w| w.size() >= sh.opts.segment_bytes)
            {
                if let Some(w) = writer.take() {
                    out.push(finish(sh, w)?);
                }
            }
            current = Some((k.table, k.key.clone()));
            floor_seen = false;
        }
        if k.version.0 <= horizon {
            if floor_seen || (value.is_none() && bottom) {
                floor_seen = true;
                dropped += 1;
                continue;
            }
            floor_seen = true;
        }
        let w = match writer.as_mut() {
            Some(w) => w,
            None => writer.insert(SegmentWriter::create(
                sh.fs.as_ref(),
                &sh.dir,
                sh.next_segment_id(),
            )?),
        };
        w.add(&k, value.as_deref())?;
    }
    if let Some(w) = writer.take() {
        out.push(finish(sh, w)?);
    }
    Ok((out, dropped))
}

fn finish(sh: &Shared, w: SegmentWriter) -> Result<Arc<Segment>> {
    let written = w.finish()?;
    sh.counters
        .compacted_bytes
        .fetch_add(written.size, Ordering::Relaxed);
    let seg = Segment::open(sh.fs.as_ref(), &written.path, written.id, sh.cache.clone())?;
    Ok(Arc::new(seg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_merges_similar_sized_newest_runs() {
        assert_eq!(pick(&[10], 4, 20), None);
        assert_eq!(pick(&[10, 10, 10], 4, 20), None, "below the trigger");
        assert_eq!(pick(&[10, 10, 10, 10], 4, 20), Some(0..4));
        assert_eq!(
            pick(&[10, 10, 10, 10, 1000], 4, 20),
            Some(0..4),
            "the big run waits"
        );
        assert_eq!(pick(&[10, 10, 10, 30, 100], 4, 20), Some(0..5));
        let many: Vec<u64> = (0..21).map(|i| 1u64 << (2 * i)).collect();
        assert_eq!(
            pick(&many, 4, 20),
            Some(0..2),
            "too many runs forces a merge"
        );
    }
}
