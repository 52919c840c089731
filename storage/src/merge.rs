//! Merged, ordered reading across memtables and runs, and the MVCC scan on top of it.
//!
//! Every source yields cells in internal-key order within the same bounds; [`Merge`] interleaves
//! them, and drops exact duplicates (a cell copied from a frozen memtable into the active one
//! during a flush is briefly in both). [`Scan`] keeps, per user key, the newest cell at or below
//! its read version and hides tombstones.

use crate::error::Result;
use crate::ids::Version;
use crate::key::InternalKey;
use crate::memtable::{CellValue, Memtable};
use crate::runs::Run;
use crate::segment::{Segment, SegmentIter};
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::Arc;

type Cell = (InternalKey, CellValue);

/// True if `k` is within the upper bound `hi`.
fn below(hi: &Bound<InternalKey>, k: &InternalKey) -> bool {
    match hi {
        Bound::Included(h) => k <= h,
        Bound::Excluded(h) => k < h,
        Bound::Unbounded => true,
    }
}

/// One ordered source of cells.
pub(crate) enum Source {
    /// A memtable, read in copied chunks so no borrow of it is held between calls.
    Mem {
        mem: Arc<Memtable>,
        next: Bound<InternalKey>,
        hi: Bound<InternalKey>,
        buf: VecDeque<Cell>,
        chunk: usize,
        exhausted: bool,
    },
    /// A run: its overlapping segments one after the other.
    Run {
        segments: VecDeque<Arc<Segment>>,
        start: Option<InternalKey>,
        hi: Bound<InternalKey>,
        iter: Option<SegmentIter>,
        fill_cache: bool,
    },
}

impl Source {
    pub fn mem(mem: Arc<Memtable>, lo: Bound<InternalKey>, hi: Bound<InternalKey>) -> Source {
        Source::Mem {
            mem,
            next: lo,
            hi,
            buf: VecDeque::new(),
            chunk: 16,
            exhausted: false,
        }
    }

    /// A source over the cells of `run` within `[lo, hi)` (by the bounds' internal keys).
    pub fn run(
        run: &Run,
        lo: &Bound<InternalKey>,
        hi: Bound<InternalKey>,
        fill_cache: bool,
    ) -> Source {
        let start = match lo {
            // No cell has version 0, so "after (k, 0)" is "from (k, 0)".
            Bound::Included(k) | Bound::Excluded(k) => Some(k.clone()),
            Bound::Unbounded => None,
        };
        let lo_user = start.as_ref().map_or((0, &[][..]), |k| (k.table, &*k.key));
        let hi_user = match &hi {
            Bound::Included(k) | Bound::Excluded(k) => Some((k.table, &*k.key)),
            Bound::Unbounded => None,
        };
        let segments = run.overlapping(lo_user, hi_user).into();
        Source::Run {
            segments,
            start,
            hi,
            iter: None,
            fill_cache,
        }
    }

    fn next_cell(&mut self) -> Result<Option<Cell>> {
        match self {
            Source::Mem {
                mem,
                next,
                hi,
                buf,
                chunk,
                exhausted,
            } => {
                if buf.is_empty() && !*exhausted {
                    let got = mem.chunk(next.as_ref(), hi.as_ref(), *chunk);
                    *exhausted = got.len() < *chunk;
                    *chunk = (*chunk * 2).min(1024);
                    if let Some((last, _)) = got.last() {
                        *next = Bound::Excluded(last.clone());
                    }
                    buf.extend(got);
                }
                Ok(buf.pop_front())
            }
            Source::Run {
                segments,
                start,
                hi,
                iter,
                fill_cache,
            } => loop {
                if iter.is_none() {
                    let Some(seg) = segments.pop_front() else {
                        return Ok(None);
                    };
                    *iter = Some(SegmentIter::new(seg, start.as_ref(), *fill_cache)?);
                }
                let Some(it) = iter.as_mut() else {
                    return Ok(None);
                };
                match it.next_cell()? {
                    Some(cell) if below(hi, &cell.0) => return Ok(Some(cell)),
                    Some(_) => {
                        segments.clear();
                        *iter = None;
                        return Ok(None);
                    }
                    None => *iter = None,
                }
            },
        }
    }
}

/// Interleaves sources into one ordered stream without duplicates.
pub(crate) struct Merge {
    sources: Vec<Source>,
    heads: Vec<Option<Cell>>,
    started: bool,
}

impl Merge {
    pub fn new(sources: Vec<Source>) -> Merge {
        let heads = sources.iter().map(|_| None).collect();
        Merge {
            sources,
            heads,
            started: false,
        }
    }

    /// The next cell in internal-key order.
    pub fn next_cell(&mut self) -> Result<Option<Cell>> {
        if !self.started {
            for (head, src) in self.heads.iter_mut().zip(self.sources.iter_mut()) {
                *head = src.next_cell()?;
            }
            self.started = true;
        }
        let mut best: Option<usize> = None;
        for (i, head) in self.heads.iter().enumerate() {
            if let Some((k, _)) = head {
                if best.is_none_or(|b| self.heads[b].as_ref().is_some_and(|(bk, _)| k < bk)) {
                    best = Some(i);
                }
            }
        }
        let Some(b) = best else { return Ok(None) };
        let out = self.heads[b].take();
        self.heads[b] = self.sources[b].next_cell()?;
        if let Some((k, _)) = &out {
            // Drop copies of the same cell in other sources.
            for i in 0..self.heads.len() {
                while self.heads[i].as_ref().is_some_and(|(hk, _)| hk == k) {
                    self.heads[i] = self.sources[i].next_cell()?;
                }
            }
        }
        Ok(out)
    }
}

/// Iterator over the live rows of one table at one version, in key order.
pub struct Scan<'a> {
    merge: Merge,
    at: u64,
    /// The user key whose visible cell was already decided.
    current: Option<(u32, Box<[u8]>)>,
    failed: bool,
    _store: PhantomData<&'a ()>,
}

impl std::fmt::Debug for Scan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan")
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl Scan<'_> {
    pub(crate) fn new(merge: Merge, at: Version) -> Self {
        Scan {
            merge,
            at: at.0,
            current: None,
            failed: false,
            _store: PhantomData,
        }
    }
}

impl Iterator for Scan<'_> {
    /// `(key, version, value)` of each live row.
    type Item = Result<(Vec<u8>, Version, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let (k, value) = match self.merge.next_cell() {
                Ok(Some(cell)) => cell,
                Ok(None) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            };
            if k.version.0 > self.at {
                continue;
            }
            if self
                .current
                .as_ref()
                .is_some_and(|(t, key)| k.same_user_key(*t, key))
            {
                continue;
            }
            let InternalKey {
                table,
                key,
                version,
            } = k;
            let row = value.map(|v| (key.to_vec(), Version(version.0), v.into_vec()));
            self.current = Some((table, key));
            if let Some(row) = row {
                return Some(Ok(row));
            }
        }
    }
}
