//! Reads segment files: open (header, footer, index, bloom filter), point lookups, ordered
//! iteration and full verification. Data blocks are read with positional reads, checked
//! against their checksum, and kept in the shared block cache.

use super::block::{cmp_internal, key_prefix, Block};
use super::{
    decode_entry, Cursor, Footer, IndexEntry, RawEntry, CRC_SIZE, FOOTER_SIZE, HEADER_SIZE,
    SEGMENT_FORMAT_VERSION, SEGMENT_MAGIC,
};
use crate::bloom::Bloom;
use crate::cache::{hot_slots, BlockCache, HotSlots};
use crate::error::{io_err, Error, Result};
use crate::key::InternalKey;
use crate::memtable::CellValue;
use std::cmp::{Ordering, Reverse};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vellum_fs::{FileSystem, ReadableFile};

/// An open segment file.
pub(crate) struct Segment {
    pub id: u64,
    pub path: PathBuf,
    file: Box<dyn ReadableFile>,
    pub footer: Footer,
    /// First cell's user key `(table, key)`.
    pub first: UserKey,
    index: Vec<IndexEntry>,
    /// `(table, key prefix)` of each index entry's last key, so index searches mostly compare
    /// integers in one array instead of following each entry's key to the heap.
    index_prefixes: Vec<(u32, u64)>,
    bloom: Bloom,
    cache: Arc<BlockCache>,
    /// The cache's lock-free way to this segment's cached blocks, one slot per index entry.
    hot: Arc<HotSlots>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("footer", &self.footer)
            .finish_non_exhaustive()
    }
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Error {
    Error::Corruption {
        file: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

impl Segment {
    /// Opens segment `id` at `path`, checking header, footer, index and bloom filter.
    pub fn open(
        fs: &dyn FileSystem,
        path: &Path,
        id: u64,
        cache: Arc<BlockCache>,
    ) -> Result<Segment> {
        let file = fs.open_read(path).map_err(io_err(path))?;
        let len = file.len();
        if len < (HEADER_SIZE + FOOTER_SIZE) as u64 {
            return Err(corrupt(
                path,
                0,
                format!("segment file too short ({len} bytes)"),
            ));
        }
        let mut header = [0u8; HEADER_SIZE];
        file.read_exact_at(0, &mut header).map_err(io_err(path))?;
        if header[0..8] != SEGMENT_MAGIC {
            return Err(corrupt(path, 0, "not a segment file (bad magic)"));
        }
        if crc32c::crc32c(&header[0..28]).to_le_bytes() != header[28..32] {
            return Err(corrupt(path, 0, "segment header checksum mismatch"));
        }
        let mut h = Cursor::new(&header[8..]);
        let format = h.u32().unwrap_or(0);
        if format != SEGMENT_FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                file: path.to_path_buf(),
                found: format,
                supported: SEGMENT_FORMAT_VERSION,
            });
        }
        let _flags = h.u32();
        if h.u64() != Some(id) {
            return Err(corrupt(
                path,
                16,
                "segment id in the header differs from the file name",
            ));
        }
        let footer_at = len - FOOTER_SIZE as u64;
        let mut fbytes = [0u8; FOOTER_SIZE];
        file.read_exact_at(footer_at, &mut fbytes)
            .map_err(io_err(path))?;
        let footer = Footer::decode(path, footer_at, &fbytes)?;
        let meta_ok = |off: u64, l: u32| {
            off >= HEADER_SIZE as u64
                && off
                    .checked_add(u64::from(l) + CRC_SIZE as u64)
                    .is_some_and(|e| e <= footer_at)
        };
        if !meta_ok(footer.index_offset, footer.index_len)
            || !meta_ok(footer.bloom_offset, footer.bloom_len)
        {
            return Err(corrupt(
                path,
                footer_at,
                "segment footer points outside the file",
            ));
        }
        let index_bytes = read_checked(
            file.as_ref(),
            path,
            footer.index_offset,
            footer.index_len,
            "index block",
        )?;
        let (first, index) = parse_index(&index_bytes)
            .filter(|(_, idx)| {
                index_is_sane(idx, footer.index_offset) && idx.len() == footer.blocks as usize
            })
            .ok_or_else(|| corrupt(path, footer.index_offset, "index block does not decode"))?;
        let bloom_bytes = read_checked(
            file.as_ref(),
            path,
            footer.bloom_offset,
            footer.bloom_len,
            "bloom block",
        )?;
        let mut b = Cursor::new(&bloom_bytes);
        let bloom = b
            .u32()
            .and_then(|probes| Bloom::from_parts(probes, bloom_bytes[4..].into()))
            .ok_or_else(|| corrupt(path, footer.bloom_offset, "bloom block does not decode"))?;
        let index_prefixes = index
            .iter()
            .map(|e| (e.last.table, key_prefix(&e.last.key)))
            .collect();
        Ok(Segment {
            id,
            path: path.to_path_buf(),
            file,
            footer,
            first,
            hot: hot_slots(index.len()),
            index,
            index_prefixes,
            bloom,
            cache,
        })
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.file.len()
    }

    /// Last user key `(table, key)` of the segment.
    pub fn last_user_key(&self) -> Option<(u32, &[u8])> {
        self.index.last().map(|e| (e.last.table, &*e.last.key))
    }

    /// The index entries (block positions and last keys).
    pub fn index(&self) -> &[IndexEntry] {
        &self.index
    }

    /// Reads data block `i`, from the cache or the file (then checked, split into entries
    /// and, if `fill`, cached).
    pub fn block(&self, i: usize, fill: bool) -> Result<Arc<Block>> {
        let Some(e) = self.index.get(i) else {
            return Err(corrupt(
                &self.path,
                0,
                format!("block {i} is past the index"),
            ));
        };
        if let Some(b) = self.cache.get(self.id, e.offset, &self.hot, i) {
            return Ok(b);
        }
        let data = read_checked(
            self.file.as_ref(),
            &self.path,
            e.offset,
            e.len,
            "data block",
        )?;
        let block = Arc::new(Block::parse(data).map_err(|at| self.bad_entry(i, at))?);
        if fill {
            self.cache
                .insert(self.id, e.offset, &self.hot, i, block.clone());
        }
        Ok(block)
    }

    /// The newest cell of `(table, key)` with version `≤ at` in this segment; `hash` is the
    /// key's bloom hash.
    pub fn get(
        &self,
        table: u32,
        key: &[u8],
        hash: u64,
        at: u64,
    ) -> Result<Option<(u64, CellValue)>> {
        if at < self.footer.min_version || !self.bloom.may_contain(hash) {
            return Ok(None);
        }
        let i = self.block_for(table, key, at);
        if i == self.index.len() {
            return Ok(None);
        }
        let lookup = |block: &Block| {
            block
                .entry(block.seek(table, key, at))
                .filter(|e| e.table == table && e.key == key)
                .map(|e| (e.version, e.value.map(Box::from)))
        };
        let offset = self.index.get(i).map_or(0, |e| e.offset);
        if let Some(found) = self.cache.with_slot(self.id, offset, &self.hot, i, lookup) {
            return Ok(found);
        }
        Ok(lookup(&*self.block(i, true)?))
    }

    /// Index of the first block whose last key is at or after `(table, key, version desc)`;
    /// the block count if there is none.
    fn block_for(&self, table: u32, key: &[u8], version: u64) -> usize {
        let target = (table, key_prefix(key), key, version);
        let (mut lo, mut hi) = (0, self.index.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let below = match (self.index_prefixes.get(mid), self.index.get(mid)) {
                (Some(&(t, p)), Some(e)) => match (t, p).cmp(&(target.0, target.1)) {
                    Ordering::Equal => {
                        let l = &e.last;
                        cmp_internal((l.table, p, &l.key, l.version.0), target) == Ordering::Less
                    }
                    o => o == Ordering::Less,
                },
                _ => false,
            };
            if below {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn bad_entry(&self, block: usize, at: usize) -> Error {
        let base = self.index.get(block).map_or(0, |e| e.offset);
        corrupt(&self.path, base + at as u64, "entry does not decode")
    }

    /// Calls `f` with every cell whose version is in `(after, upto]`, skipping blocks that
    /// hold none.
    pub fn for_each_between(
        &self,
        after: u64,
        upto: u64,
        mut f: impl FnMut(RawEntry<'_>),
    ) -> Result<()> {
        if self.footer.max_version <= after || self.footer.min_version > upto {
            return Ok(());
        }
        for (i, e) in self.index.iter().enumerate() {
            if e.max_version <= after || e.min_version > upto {
                continue;
            }
            let block = self.block(i, false)?;
            for c in (0..block.len()).filter_map(|j| block.entry(j)) {
                if c.version > after && c.version <= upto {
                    f(c);
                }
            }
        }
        Ok(())
    }

    /// Reads and checks every block and entry; returns the number of blocks and entries.
    pub fn verify(&self) -> Result<(u64, u64)> {
        let mut entries = 0u64;
        let mut last: Option<InternalKey> = None;
        for (i, e) in self.index.iter().enumerate() {
            let data = read_checked(
                self.file.as_ref(),
                &self.path,
                e.offset,
                e.len,
                "data block",
            )?;
            let mut r = Cursor::new(&data);
            while !r.is_empty() {
                let at_offset = r.position();
                let c = decode_entry(&mut r).ok_or_else(|| self.bad_entry(i, at_offset))?;
                if last
                    .as_ref()
                    .is_some_and(|l| c.cmp_key(l) != Ordering::Greater)
                {
                    return Err(corrupt(
                        &self.path,
                        e.offset + at_offset as u64,
                        "entries out of order",
                    ));
                }
                last = Some(c.to_owned().0);
                entries += 1;
            }
            if last.as_ref() != Some(&e.last) {
                return Err(corrupt(
                    &self.path,
                    e.offset,
                    "block's last key differs from the index",
                ));
            }
        }
        if entries != self.footer.entries {
            return Err(corrupt(
                &self.path,
                self.file.len() - FOOTER_SIZE as u64,
                format!(
                    "footer counts {} entries, blocks hold {entries}",
                    self.footer.entries
                ),
            ));
        }
        Ok((self.index.len() as u64, entries))
    }
}

/// Reads `len` payload bytes and their checksum at `offset`, and checks them.
fn read_checked(
    file: &dyn ReadableFile,
    path: &Path,
    offset: u64,
    len: u32,
    what: &str,
) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize + CRC_SIZE];
    file.read_exact_at(offset, &mut buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            corrupt(
                path,
                offset,
                format!("{what} runs past the end of the file"),
            )
        } else {
            Error::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    let (payload, crc) = buf.split_at(len as usize);
    if crc32c::crc32c(payload).to_le_bytes() != crc {
        return Err(corrupt(path, offset, format!("{what} checksum mismatch")));
    }
    buf.truncate(len as usize);
    Ok(buf)
}

/// A user key `(table, key)`.
type UserKey = (u32, Box<[u8]>);

fn parse_index(data: &[u8]) -> Option<(UserKey, Vec<IndexEntry>)> {
    let mut r = Cursor::new(data);
    let count = r.u32()? as usize;
    let first_table = r.u32()?;
    let first_len = r.u32()? as usize;
    let first = (first_table, Box::from(r.take(first_len)?));
    let mut index = Vec::with_capacity(count.min(data.len() / 40));
    for _ in 0..count {
        let offset = r.u64()?;
        let len = r.u32()?;
        let min_version = r.u64()?;
        let max_version = r.u64()?;
        let table = r.u32()?;
        let version = r.u64()?;
        let key_len = r.u32()? as usize;
        let key = r.take(key_len)?.into();
        index.push(IndexEntry {
            offset,
            len,
            min_version,
            max_version,
            last: InternalKey {
                table,
                key,
                version: Reverse(version),
            },
        });
    }
    r.is_empty().then_some((first, index))
}

/// Blocks lie in file order between the header and the index, and last keys increase.
fn index_is_sane(index: &[IndexEntry], index_offset: u64) -> bool {
    let mut next_free = HEADER_SIZE as u64;
    for (i, e) in index.iter().enumerate() {
        let end = e.offset.checked_add(u64::from(e.len) + CRC_SIZE as u64);
        if e.len == 0 || e.offset < next_free || end.is_none_or(|end| end > index_offset) {
            return false;
        }
        next_free = end.unwrap_or(u64::MAX);
        if i > 0 && index[i - 1].last >= e.last {
            return false;
        }
    }
    true
}

/// A cursor over a segment's cells in internal-key order from a starting key; the current
/// cell borrows the cached block.
pub(crate) struct SegmentIter {
    seg: Arc<Segment>,
    block_idx: usize,
    /// The block holding the current cell; `None` at the end.
    block: Option<Arc<Block>>,
    /// Index of the current cell in `block`.
    idx: usize,
    fill_cache: bool,
}

impl SegmentIter {
    /// Positions at the first cell `≥ start` (or the first cell if `start` is `None`).
    pub fn new(
        seg: Arc<Segment>,
        start: Option<&InternalKey>,
        fill_cache: bool,
    ) -> Result<SegmentIter> {
        let block_idx = match start {
            Some(s) => seg.block_for(s.table, &s.key, s.version.0),
            None => 0,
        };
        let mut it = SegmentIter {
            seg,
            block_idx,
            block: None,
            idx: 0,
            fill_cache,
        };
        it.load()?;
        if let (Some(s), Some(block)) = (start, &it.block) {
            it.idx = block.seek(s.table, &s.key, s.version.0);
        }
        it.settle()?;
        Ok(it)
    }

    /// Loads block `block_idx` (none past the last block) and points at its first cell.
    fn load(&mut self) -> Result<()> {
        self.block = if self.block_idx < self.seg.index.len() {
            Some(self.seg.block(self.block_idx, self.fill_cache)?)
        } else {
            None
        };
        self.idx = 0;
        Ok(())
    }

    /// Moves past exhausted blocks.
    fn settle(&mut self) -> Result<()> {
        while self.block.as_ref().is_some_and(|b| self.idx >= b.len()) {
            self.block_idx += 1;
            self.load()?;
        }
        Ok(())
    }

    /// The block holding the current cell and the cell's index in it.
    #[inline]
    pub fn position(&self) -> Option<(&Arc<Block>, usize)> {
        self.block.as_ref().map(|b| (b, self.idx))
    }

    /// The current cell, or `None` at the end.
    #[inline]
    pub fn current(&self) -> Option<RawEntry<'_>> {
        self.block.as_ref()?.entry(self.idx)
    }

    /// Moves to the next cell.
    pub fn advance(&mut self) -> Result<()> {
        if self.block.is_some() {
            self.idx += 1;
            self.settle()?;
        }
        Ok(())
    }
}
