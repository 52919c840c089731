//! Merged, ordered reading across memtables and runs, and the MVCC row cursor on top of it.
//!
//! Every [`Source`] is a cursor over cells in internal-key order within the same bounds; its
//! current cell borrows the source (a cached segment block, or a chunk copied out of a
//! memtable), so reading allocates nothing per cell. [`Merge`] keeps the source with the
//! smallest current cell and skips exact duplicates (a cell copied from a frozen memtable into
//! the active one during a flush is briefly in both). [`RowCursor`] keeps, per user key, the
//! newest cell at or below its read version and hides tombstones; [`Scan`] is the same as an
//! iterator of owned rows.

use crate::error::Result;
use crate::ids::Version;
use crate::key::InternalKey;
use crate::memtable::{CellValue, Memtable};
use crate::runs::Run;
use crate::segment::{key_prefix, Block, RawEntry, Segment, SegmentIter};
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::Arc;

type Cell = (InternalKey, CellValue);

/// True if `e` is within the upper bound `hi`.
fn below(hi: &Bound<InternalKey>, e: &RawEntry<'_>) -> bool {
    match hi {
        Bound::Included(h) => e.cmp_key(h) != Ordering::Greater,
        Bound::Excluded(h) => e.cmp_key(h) == Ordering::Less,
        Bound::Unbounded => true,
    }
}

/// A borrowed view of an owned cell.
fn view(cell: &Cell) -> RawEntry<'_> {
    RawEntry {
        table: cell.0.table,
        version: cell.0.version.0,
        key: &cell.0.key,
        value: cell.1.as_deref(),
        prefix: key_prefix(&cell.0.key),
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

    /// The current cell; `None` once the source is exhausted (or before [`Source::prime`]).
    #[inline]
    fn current(&self) -> Option<RawEntry<'_>> {
        match self {
            Source::Mem { buf, .. } => buf.front().map(view),
            Source::Run { iter, .. } => iter.as_ref()?.current(),
        }
    }

    /// Positions the source at its first cell.
    fn prime(&mut self) -> Result<()> {
        self.settle()
    }

    /// Moves to the next cell.
    fn advance(&mut self) -> Result<()> {
        match self {
            Source::Mem { buf, .. } => {
                buf.pop_front();
            }
            Source::Run { iter, .. } => {
                if let Some(it) = iter {
                    it.advance()?;
                }
            }
        }
        self.settle()
    }

    /// Makes the current cell valid: refills an empty memtable chunk; moves a run to its next
    /// segment when one is exhausted, and stops it at the upper bound.
    fn settle(&mut self) -> Result<()> {
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
                Ok(())
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
                        return Ok(());
                    };
                    *iter = Some(SegmentIter::new(seg, start.as_ref(), *fill_cache)?);
                }
                let within = iter
                    .as_ref()
                    .and_then(|it| it.current())
                    .map(|e| below(hi, &e));
                match within {
                    Some(true) => return Ok(()),
                    Some(false) => {
                        // Past the upper bound: so is every later segment of the run.
                        segments.clear();
                        *iter = None;
                        return Ok(());
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
    /// The source holding the smallest current cell.
    best: Option<usize>,
    started: bool,
}

impl Merge {
    pub fn new(sources: Vec<Source>) -> Merge {
        Merge {
            sources,
            best: None,
            started: false,
        }
    }

    /// Positions every source at its first cell (once; later calls do nothing).
    pub fn start(&mut self) -> Result<()> {
        if !self.started {
            self.started = true;
            for s in &mut self.sources {
                s.prime()?;
            }
            // Sources with nothing in range never matter again (often every source but one).
            self.sources.retain(|s| s.current().is_some());
            self.pick()?;
        }
        Ok(())
    }

    /// Finds the source with the smallest current cell, first moving every other source past
    /// an exact copy of it.
    fn pick(&mut self) -> Result<()> {
        if let [only] = self.sources.as_slice() {
            self.best = only.current().is_some().then_some(0);
            return Ok(());
        }
        loop {
            let mut best: Option<(usize, RawEntry<'_>)> = None;
            for (i, s) in self.sources.iter().enumerate() {
                if let Some(c) = s.current() {
                    if best.is_none_or(|(_, b)| c.cmp_entry(&b) == Ordering::Less) {
                        best = Some((i, c));
                    }
                }
            }
            let Some((b, cell)) = best else {
                self.best = None;
                return Ok(());
            };
            let dup = self.sources.iter().enumerate().find_map(|(i, s)| {
                (i != b
                    && s.current()
                        .is_some_and(|c| c.cmp_entry(&cell) == Ordering::Equal))
                .then_some(i)
            });
            match dup {
                Some(i) => self.sources[i].advance()?,
                None => {
                    self.best = Some(b);
                    return Ok(());
                }
            }
        }
    }

    /// The smallest cell not yet passed (after [`Merge::start`]).
    #[inline]
    pub fn current(&self) -> Option<RawEntry<'_>> {
        debug_assert!(self.started, "Merge::current before Merge::start");
        self.sources.get(self.best?)?.current()
    }

    /// The cached block holding the current cell and its index there, if it comes from a run.
    #[inline]
    fn current_block(&self) -> Option<(&Arc<Block>, usize)> {
        match self.sources.get(self.best?)? {
            Source::Run { iter, .. } => iter.as_ref()?.position(),
            Source::Mem { .. } => None,
        }
    }

    /// Moves past the current cell.
    pub fn advance(&mut self) -> Result<()> {
        if let Some(b) = self.best {
            self.sources[b].advance()?;
            self.pick()?;
        }
        Ok(())
    }

    /// The next cell in internal-key order, copied out.
    pub fn next_cell(&mut self) -> Result<Option<Cell>> {
        self.start()?;
        let Some(cell) = self.current().map(RawEntry::to_owned) else {
            return Ok(None);
        };
        self.advance()?;
        Ok(Some(cell))
    }
}

/// A cursor over the live rows of a key range at one version, in internal-key order (table,
/// then key); the current row borrows the cursor.
pub struct RowCursor<'a> {
    merge: Merge,
    at: u64,
    /// The user key whose visible cell was already decided, if any.
    decided: Option<Decided>,
    /// True while the merge's current cell is the row handed out last.
    on_row: bool,
    failed: bool,
    _store: PhantomData<&'a ()>,
}

impl std::fmt::Debug for RowCursor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowCursor")
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// The user key a row cursor has decided: its table, prefix and length, which settle most
/// comparisons without reading key bytes, and where its bytes are.
struct Decided {
    table: u32,
    prefix: u64,
    len: usize,
    bytes: KeyBytes,
}

/// Where a decided key's bytes are: in a cached block (held, not copied: rows of one block
/// share it), or copied out of a memtable.
enum KeyBytes {
    Block(Arc<Block>, usize),
    Owned(Vec<u8>),
}

impl Decided {
    /// True if `c` is a cell of this user key.
    fn is(&self, c: &RawEntry<'_>) -> bool {
        if self.table != c.table || self.prefix != c.prefix || self.len != c.key.len() {
            return false;
        }
        // Equal prefixes of keys of equal length up to 8 bytes are equal keys.
        self.len <= 8
            || match &self.bytes {
                KeyBytes::Block(b, i) => b.entry(*i).is_some_and(|e| e.key == c.key),
                KeyBytes::Owned(k) => k.as_slice() == c.key,
            }
    }
}

/// What a row cursor does with a cell.
enum Step {
    /// Newer than the read version, or an older version of a decided key.
    Skip,
    /// The visible cell of its key is a tombstone.
    Deleted,
    /// The visible cell of its key has a value.
    Row,
}

impl RowCursor<'_> {
    pub(crate) fn new(merge: Merge, at: Version) -> Self {
        RowCursor {
            merge,
            at: at.0,
            decided: None,
            on_row: false,
            failed: false,
            _store: PhantomData,
        }
    }

    /// Moves to the next live row; `false` at the end (and after an error).
    pub fn advance(&mut self) -> Result<bool> {
        if self.failed {
            return Ok(false);
        }
        let moved = self.advance_inner();
        if moved.is_err() {
            self.failed = true;
            self.on_row = false;
        }
        moved
    }

    fn advance_inner(&mut self) -> Result<bool> {
        self.merge.start()?;
        if self.on_row {
            self.on_row = false;
            self.decide_current();
            self.merge.advance()?;
        }
        loop {
            let step = match self.merge.current() {
                None => return Ok(false),
                Some(c) if c.version > self.at => Step::Skip,
                Some(c) if self.decided.as_ref().is_some_and(|d| d.is(&c)) => Step::Skip,
                Some(c) if c.value.is_none() => Step::Deleted,
                Some(_) => Step::Row,
            };
            match step {
                Step::Skip => self.merge.advance()?,
                Step::Deleted => {
                    self.decide_current();
                    self.merge.advance()?;
                }
                Step::Row => {
                    self.on_row = true;
                    return Ok(true);
                }
            }
        }
    }

    /// Remembers the current cell's user key as decided (reusing what it can).
    fn decide_current(&mut self) {
        let Some(c) = self.merge.current() else {
            return;
        };
        let (table, prefix, len) = (c.table, c.prefix, c.key.len());
        let reuse = self.decided.take().map(|d| d.bytes);
        let bytes = match (self.merge.current_block(), reuse) {
            (Some((block, i)), Some(KeyBytes::Block(held, _))) if Arc::ptr_eq(block, &held) => {
                KeyBytes::Block(held, i)
            }
            (Some((block, i)), _) => KeyBytes::Block(block.clone(), i),
            (None, Some(KeyBytes::Owned(mut k))) => {
                k.clear();
                k.extend_from_slice(c.key);
                KeyBytes::Owned(k)
            }
            (None, _) => KeyBytes::Owned(c.key.to_vec()),
        };
        self.decided = Some(Decided {
            table,
            prefix,
            len,
            bytes,
        });
    }

    /// The current row `(table, key, version, value)`, after [`RowCursor::advance`] returned
    /// `true`.
    pub fn row(&self) -> Option<(u32, &[u8], Version, &[u8])> {
        if !self.on_row {
            return None;
        }
        let c = self.merge.current()?;
        Some((c.table, c.key, Version(c.version), c.value?))
    }
}

/// Iterator over the live rows of one table at one version, in key order, copied out.
#[derive(Debug)]
pub struct Scan<'a> {
    rows: RowCursor<'a>,
}

impl<'a> Scan<'a> {
    pub(crate) fn new(rows: RowCursor<'a>) -> Self {
        Scan { rows }
    }
}

impl Iterator for Scan<'_> {
    /// `(key, version, value)` of each live row.
    type Item = Result<(Vec<u8>, Version, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.rows.advance() {
            Ok(true) => self
                .rows
                .row()
                .map(|(_, k, version, v)| Ok((k.to_vec(), version, v.to_vec()))),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
