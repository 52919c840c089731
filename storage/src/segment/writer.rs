//! Writes one segment file from cells given in internal-key order.

use super::{
    encode_entry, file_name, Footer, IndexEntry, BLOCK_TARGET, HEADER_SIZE, SEGMENT_FORMAT_VERSION,
    SEGMENT_MAGIC,
};
use crate::bloom::{key_hash, Bloom};
use crate::error::{io_err, Result};
use crate::key::{InternalKey, VERSIONS_TABLE};
use std::path::{Path, PathBuf};
use vellum_fs::{FileSystem, WritableFile};

/// Bytes buffered before each write call.
const WRITE_BUFFER: usize = 1 << 20;

/// A finished, synced segment file (its directory entry is not synced yet).
#[derive(Debug, Clone)]
pub(crate) struct WrittenSegment {
    pub id: u64,
    pub path: PathBuf,
    pub size: u64,
}

/// See the module documentation.
pub(crate) struct SegmentWriter {
    file: Box<dyn WritableFile>,
    path: PathBuf,
    id: u64,
    out: Vec<u8>,
    offset: u64,
    block: Vec<u8>,
    block_min: u64,
    block_max: u64,
    last: Option<InternalKey>,
    first: Option<InternalKey>,
    index: Vec<IndexEntry>,
    hashes: Vec<u64>,
    footer: Footer,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SegmentWriter {
    /// Creates `dir/seg-<id>.sst` (replacing a leftover of a crashed attempt).
    pub fn create(fs: &dyn FileSystem, dir: &Path, id: u64) -> Result<SegmentWriter> {
        let path = dir.join(file_name(id));
        let mut file = fs.open_write(&path).map_err(io_err(&path))?;
        file.set_len(0).map_err(io_err(&path))?;
        let mut header = [0u8; HEADER_SIZE];
        header[0..8].copy_from_slice(&SEGMENT_MAGIC);
        header[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        header[16..24].copy_from_slice(&id.to_le_bytes());
        let crc = crc32c::crc32c(&header[0..28]);
        header[28..32].copy_from_slice(&crc.to_le_bytes());
        let mut out = Vec::with_capacity(WRITE_BUFFER + 2 * BLOCK_TARGET);
        out.extend_from_slice(&header);
        Ok(SegmentWriter {
            file,
            path,
            id,
            out,
            offset: 0,
            block: Vec::with_capacity(2 * BLOCK_TARGET),
            block_min: u64::MAX,
            block_max: 0,
            last: None,
            first: None,
            index: Vec::new(),
            hashes: Vec::new(),
            footer: Footer {
                min_version: u64::MAX,
                max_user_table: u32::MAX,
                ..Footer::default()
            },
        })
    }

    /// Bytes written or buffered so far.
    pub fn size(&self) -> u64 {
        self.offset + (self.out.len() + self.block.len()) as u64
    }

    /// True if no cell was added.
    pub fn is_empty(&self) -> bool {
        self.footer.entries == 0
    }

    /// Adds a cell; cells must come in strictly increasing internal-key order.
    pub fn add(&mut self, key: &InternalKey, value: Option<&[u8]>) -> Result<()> {
        debug_assert!(
            self.last.as_ref().is_none_or(|l| l < key),
            "cells out of order"
        );
        let new_user_key = self
            .last
            .as_ref()
            .is_none_or(|l| !l.same_user_key(key.table, &key.key));
        if new_user_key {
            self.hashes.push(key_hash(key.table, &key.key));
            self.footer.user_keys += 1;
        }
        let version = key.version.0;
        encode_entry(&mut self.block, key.table, &key.key, version, value);
        self.block_min = self.block_min.min(version);
        self.block_max = self.block_max.max(version);
        self.footer.entries += 1;
        self.footer.min_version = self.footer.min_version.min(version);
        self.footer.max_version = self.footer.max_version.max(version);
        // A table that only has a version (created, never written) counts too.
        let user_table = if key.table == VERSIONS_TABLE {
            <[u8; 4]>::try_from(&*key.key).ok().map(u32::from_be_bytes)
        } else {
            Some(key.table)
        };
        if let Some(ut) = user_table {
            let t = &mut self.footer.max_user_table;
            *t = if *t == u32::MAX { ut } else { (*t).max(ut) };
        }
        if self.first.is_none() {
            self.first = Some(key.clone());
        }
        self.last = Some(key.clone());
        if self.block.len() >= BLOCK_TARGET {
            self.end_block()?;
        }
        Ok(())
    }

    fn end_block(&mut self) -> Result<()> {
        let Some(last) = self.last.clone() else {
            return Ok(());
        };
        if self.block.is_empty() {
            return Ok(());
        }
        let offset = self.offset + self.out.len() as u64;
        self.index.push(IndexEntry {
            offset,
            len: self.block.len() as u32,
            min_version: self.block_min,
            max_version: self.block_max,
            last,
        });
        self.out.extend_from_slice(&self.block);
        self.out
            .extend_from_slice(&crc32c::crc32c(&self.block).to_le_bytes());
        self.block.clear();
        self.block_min = u64::MAX;
        self.block_max = 0;
        self.footer.blocks += 1;
        if self.out.len() >= WRITE_BUFFER {
            self.flush_out()?;
        }
        Ok(())
    }

    fn flush_out(&mut self) -> Result<()> {
        self.file
            .write_at(self.offset, &self.out)
            .map_err(io_err(&self.path))?;
        self.offset += self.out.len() as u64;
        self.out.clear();
        Ok(())
    }

    /// Appends `payload` and its checksum as a meta block; returns `(offset, len)`.
    fn meta_block(&mut self, payload: &[u8]) -> (u64, u32) {
        let offset = self.offset + self.out.len() as u64;
        self.out.extend_from_slice(payload);
        self.out
            .extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        (offset, payload.len() as u32)
    }

    /// Writes the index, bloom filter and footer, and syncs the file.
    pub fn finish(mut self) -> Result<WrittenSegment> {
        self.end_block()?;
        let mut index = Vec::new();
        index.extend_from_slice(&(self.index.len() as u32).to_le_bytes());
        let (first_table, first_key): (u32, &[u8]) = match &self.first {
            Some(k) => (k.table, &k.key),
            None => (0, &[]),
        };
        index.extend_from_slice(&first_table.to_le_bytes());
        index.extend_from_slice(&(first_key.len() as u32).to_le_bytes());
        index.extend_from_slice(first_key);
        for e in &self.index {
            index.extend_from_slice(&e.offset.to_le_bytes());
            index.extend_from_slice(&e.len.to_le_bytes());
            index.extend_from_slice(&e.min_version.to_le_bytes());
            index.extend_from_slice(&e.max_version.to_le_bytes());
            index.extend_from_slice(&e.last.table.to_le_bytes());
            index.extend_from_slice(&e.last.version.0.to_le_bytes());
            index.extend_from_slice(&(e.last.key.len() as u32).to_le_bytes());
            index.extend_from_slice(&e.last.key);
        }
        (self.footer.index_offset, self.footer.index_len) = self.meta_block(&index);
        let bloom = Bloom::build(&self.hashes);
        let mut payload = Vec::with_capacity(4 + bloom.bits().len());
        payload.extend_from_slice(&bloom.probes().to_le_bytes());
        payload.extend_from_slice(bloom.bits());
        (self.footer.bloom_offset, self.footer.bloom_len) = self.meta_block(&payload);
        if self.footer.entries == 0 {
            self.footer.min_version = 0;
        }
        let footer = self.footer.encode();
        self.out.extend_from_slice(&footer);
        self.flush_out()?;
        self.file.sync_data().map_err(io_err(&self.path))?;
        Ok(WrittenSegment {
            id: self.id,
            path: self.path,
            size: self.offset,
        })
    }
}
