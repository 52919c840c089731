//! Flush: the active memtable becomes a segment file and a new run in the manifest.
//!
//! Steps, each crash-safe:
//! 1. Freeze the active memtable (readers keep seeing it in the frozen list) and start a new
//!    one; copy into the new one every frozen cell above the flush version (commits applied
//!    but not yet durable must stay in memory, never reach a segment ahead of their log record).
//! 2. Write the frozen cells at or below the flush version to `seg-<id>.sst`, sync it, sync the
//!    directory. A crash here leaves an unlisted file, removed at the next open.
//! 3. Write the new manifest (new run first, covered version, caller's meta) atomically. Only
//!    now may the caller release the log up to the flush version.
//! 4. Publish the run, then drop the frozen memtables.
//!
//! If a step fails the frozen memtables stay readable and the next flush writes them too.

use crate::error::{io_err, Result};
use crate::ids::Version;
use crate::memtable::Memtable;
use crate::merge::{Merge, Source};
use crate::runs::{Run, RunSet};
use crate::segment::{Segment, SegmentWriter};
use crate::store::{CheckpointInfo, Mems, Shared};
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) fn flush(sh: &Shared, version: Version, meta: &[u8]) -> Result<CheckpointInfo> {
    let _one = sh.flushing.lock();
    let (frozen, active) = {
        let _rotate = sh.rotate.write();
        let mut m = Mems::clone(&sh.mems.load());
        let old = std::mem::replace(&mut m.active, Arc::new(Memtable::default()));
        if !old.is_empty() || m.frozen.is_empty() {
            m.frozen.insert(0, old);
        }
        let pair = (m.frozen.clone(), m.active.clone());
        sh.mems.store(Arc::new(m));
        pair
    };
    for mem in &frozen {
        for (k, v) in mem.iter() {
            if k.version.0 > version.0 {
                active.insert_missing(&k, &v);
            }
        }
    }
    let written = write_segment(sh, &frozen, version)?;
    {
        let mut current = sh.manifest.lock();
        let mut data = current.clone();
        data.covered = version.0.max(current.covered);
        data.meta = meta.to_vec();
        let old_runs = sh.runs.load_full();
        let mut runs = RunSet::default();
        if let Some(seg) = &written {
            data.runs.insert(0, vec![seg.id]);
            runs.runs.push(Arc::new(Run {
                segments: vec![seg.clone()],
            }));
        }
        runs.runs.extend(old_runs.runs.iter().cloned());
        sh.install(&mut current, data, runs)?;
    }
    // Readers that still hold the list with the frozen memtable keep reading it; it holds
    // nothing the new run lacks.
    let mut m = Mems::clone(&sh.mems.load());
    m.frozen.clear();
    sh.mems.store(Arc::new(m));
    if let Some(seg) = &written {
        sh.counters.flushes.fetch_add(1, Ordering::Relaxed);
        sh.counters
            .flushed_bytes
            .fetch_add(seg.size(), Ordering::Relaxed);
    }
    sh.notify();
    let m = sh.manifest.lock();
    Ok(CheckpointInfo {
        version: Version(m.covered),
        meta: m.meta.clone(),
        path: sh.manifest_path(),
        history_floor: Version(m.gc_floor),
    })
}

/// Writes the cells `≤ version` of the frozen memtables to a new segment; `None` if there are
/// none.
fn write_segment(
    sh: &Shared,
    frozen: &[Arc<Memtable>],
    version: Version,
) -> Result<Option<Arc<Segment>>> {
    let sources = frozen
        .iter()
        .map(|m| Source::mem(m.clone(), Bound::Unbounded, Bound::Unbounded))
        .collect();
    let mut merge = Merge::new(sources);
    let id = sh.next_segment_id();
    let mut w = SegmentWriter::create(sh.fs.as_ref(), &sh.dir, id)?;
    while let Some((k, v)) = merge.next_cell()? {
        if k.version.0 <= version.0 {
            w.add(&k, v.as_deref())?;
        }
    }
    if w.is_empty() {
        drop(w);
        let path = sh.dir.join(crate::segment::file_name(id));
        sh.fs.remove_file(&path).map_err(io_err(&path))?;
        return Ok(None);
    }
    let written = w.finish()?;
    sh.fs.sync_dir(&sh.dir).map_err(io_err(&sh.dir))?;
    let seg = Segment::open(sh.fs.as_ref(), &written.path, written.id, sh.cache.clone())?;
    Ok(Some(Arc::new(seg)))
}
