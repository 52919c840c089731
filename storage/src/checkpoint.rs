//! Checkpoint files: a durable image of the store at one version.
//!
//! Layout (little-endian; `docs/format/checkpoint.md` is the prose version):
//!
//! ```text
//! header  (32 bytes)  magic "VELLCKPT" | format u32 | flags u32 (0) | version u64
//!                     | meta_len u32 | crc32c u32 over bytes 0..28
//! meta                meta_len bytes | crc32c u32 over them
//! block*              len u32 (> 0) | crc32c u32 over payload | payload (entries)
//! end                 len u32 = 0 | 0 u32
//! footer  (28 bytes)  entry_count u64 | block_count u64 | crc32c u32 over those 16 bytes
//!                     | magic "VELLCEND"
//! entry               tag 1: table u32 | version u64 | key_len u32 | value_len u32 | key | value
//!                     tag 2: table u32 | version u64           (a table's version)
//! ```
//!
//! Files are named `checkpoint-<version, 20 digits>.ckpt` and published atomically: written to
//! `<name>.tmp`, synced, renamed, directory synced, so a crash leaves the whole file or none.
//! They are the native export format; a store's own durable state is its manifest and segments,
//! and a checkpoint file is read only when a directory restored from an export is opened. Any
//! damage is reported as [`Error::Corruption`] with the offset of the damaged part.

use crate::error::{io_err, Error, Result};
use crate::ids::{TableId, Version};
use crate::key::{InternalKey, VERSIONS_TABLE};
use std::path::{Path, PathBuf};
use vellum_fs::FileSystem;

/// First bytes of a checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"VELLCKPT";
/// Format version of checkpoint files written by this build.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
const FOOTER_MAGIC: [u8; 8] = *b"VELLCEND";
const HEADER_SIZE: usize = 32;
const FOOTER_SIZE: usize = 28;
const BLOCK_HEADER_SIZE: usize = 8;
/// Entries are grouped into blocks of about this size, each with its own checksum, so damage
/// is reported with a useful offset.
const BLOCK_TARGET: usize = 64 << 10;
/// Bytes buffered before each write call.
const WRITE_BUFFER: usize = 1 << 20;
const TAG_CELL: u8 = 1;
const TAG_TABLE_VERSION: u8 = 2;

const _: () = assert!(HEADER_SIZE == 8 + 4 + 4 + 8 + 4 + 4);
const _: () = assert!(FOOTER_SIZE == 8 + 8 + 4 + 8);

pub(crate) fn file_name(version: Version) -> String {
    format!("checkpoint-{:020}.ckpt", version.0)
}

pub(crate) fn parse_name(name: &str) -> Option<Version> {
    let digits = name.strip_prefix("checkpoint-")?.strip_suffix(".ckpt")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Version)
}

/// Streams blocks into a file through a write buffer.
struct BlockWriter {
    file: Box<dyn vellum_fs::WritableFile>,
    path: PathBuf,
    out: Vec<u8>,
    offset: u64,
    block: Vec<u8>,
    blocks: u64,
    entries: u64,
}

impl BlockWriter {
    fn flush_out(&mut self) -> Result<()> {
        self.file
            .write_at(self.offset, &self.out)
            .map_err(io_err(&self.path))?;
        self.offset += self.out.len() as u64;
        self.out.clear();
        Ok(())
    }

    fn end_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.out
            .extend_from_slice(&(self.block.len() as u32).to_le_bytes());
        self.out
            .extend_from_slice(&crc32c::crc32c(&self.block).to_le_bytes());
        self.out.extend_from_slice(&self.block);
        self.block.clear();
        self.blocks += 1;
        if self.out.len() >= WRITE_BUFFER {
            self.flush_out()?;
        }
        Ok(())
    }

    fn entry_done(&mut self) -> Result<()> {
        self.entries += 1;
        if self.block.len() >= BLOCK_TARGET {
            self.end_block()?;
        }
        Ok(())
    }

    fn cell(&mut self, table: TableId, version: Version, key: &[u8], value: &[u8]) -> Result<()> {
        let b = &mut self.block;
        b.push(TAG_CELL);
        b.extend_from_slice(&table.0.to_le_bytes());
        b.extend_from_slice(&version.0.to_le_bytes());
        b.extend_from_slice(&(key.len() as u32).to_le_bytes());
        b.extend_from_slice(&(value.len() as u32).to_le_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(value);
        self.entry_done()
    }

    fn table_version(&mut self, table: TableId, version: Version) -> Result<()> {
        let b = &mut self.block;
        b.push(TAG_TABLE_VERSION);
        b.extend_from_slice(&table.0.to_le_bytes());
        b.extend_from_slice(&version.0.to_le_bytes());
        self.entry_done()
    }
}

/// Writes a checkpoint at `version` into `dir`, durably and atomically, from `rows`: the
/// visible (non-tombstone) cell of every key at `version`, in internal-key order; cells of the
/// versions table become table-version entries.
pub(crate) fn write(
    fs: &dyn FileSystem,
    dir: &Path,
    version: Version,
    meta: &[u8],
    rows: impl Iterator<Item = Result<(InternalKey, Box<[u8]>)>>,
) -> Result<PathBuf> {
    let path = dir.join(file_name(version));
    let tmp = dir.join(format!("{}.tmp", file_name(version)));
    let mut file = fs.open_write(&tmp).map_err(io_err(&tmp))?;
    file.set_len(0).map_err(io_err(&tmp))?;
    let mut w = BlockWriter {
        file,
        path: tmp.clone(),
        out: Vec::with_capacity(WRITE_BUFFER + BLOCK_TARGET),
        offset: 0,
        block: Vec::with_capacity(BLOCK_TARGET * 2),
        blocks: 0,
        entries: 0,
    };
    let mut header = [0u8; HEADER_SIZE];
    header[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
    header[8..12].copy_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&version.0.to_le_bytes());
    header[24..28].copy_from_slice(&(meta.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c(&header[0..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    w.out.extend_from_slice(&header);
    w.out.extend_from_slice(meta);
    w.out.extend_from_slice(&crc32c::crc32c(meta).to_le_bytes());
    for row in rows {
        let (k, value) = row?;
        if k.table == VERSIONS_TABLE {
            let table = <[u8; 4]>::try_from(&*k.key).map(u32::from_be_bytes);
            debug_assert!(table.is_ok(), "versions-table key of {} bytes", k.key.len());
            if let Ok(table) = table {
                w.table_version(TableId(table), k.version())?;
            }
        } else {
            w.cell(TableId(k.table), k.version(), &k.key, &value)?;
        }
    }
    w.end_block()?;
    w.out.extend_from_slice(&[0u8; BLOCK_HEADER_SIZE]);
    let mut footer = [0u8; FOOTER_SIZE];
    footer[0..8].copy_from_slice(&w.entries.to_le_bytes());
    footer[8..16].copy_from_slice(&w.blocks.to_le_bytes());
    let crc = crc32c::crc32c(&footer[0..16]);
    footer[16..20].copy_from_slice(&crc.to_le_bytes());
    footer[20..28].copy_from_slice(&FOOTER_MAGIC);
    w.out.extend_from_slice(&footer);
    w.flush_out()?;
    w.file.sync_data().map_err(io_err(&tmp))?;
    drop(w);
    fs.rename(&tmp, &path).map_err(io_err(&tmp))?;
    fs.sync_dir(dir).map_err(io_err(dir))?;
    Ok(path)
}

/// One entry read back from a checkpoint.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entry<'a> {
    Cell {
        table: TableId,
        version: Version,
        key: &'a [u8],
        value: &'a [u8],
    },
    TableVersion {
        table: TableId,
        version: Version,
    },
}

/// A parsed checkpoint: its version, the caller's metadata, and its raw bytes to iterate.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub version: Version,
    pub meta: Vec<u8>,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }
}

fn parse_entry<'a>(c: &mut Cursor<'a>) -> Option<Entry<'a>> {
    let tag = c.take(1)?[0];
    let table = TableId(c.u32()?);
    if table > TableId::MAX {
        return None;
    }
    let version = Version(c.u64()?);
    match tag {
        TAG_CELL => {
            let key_len = c.u32()? as usize;
            let value_len = c.u32()? as usize;
            let key = c.take(key_len)?;
            let value = c.take(value_len)?;
            Some(Entry::Cell {
                table,
                version,
                key,
                value,
            })
        }
        TAG_TABLE_VERSION => Some(Entry::TableVersion { table, version }),
        _ => None,
    }
}

/// Reads and fully verifies the checkpoint in `data` (the bytes of `path`), handing every entry
/// to `apply`. Nothing is handed over unless the header is valid; a damaged block stops the read
/// with [`Error::Corruption`].
pub(crate) fn read(path: &Path, data: &[u8], mut apply: impl FnMut(Entry<'_>)) -> Result<Loaded> {
    let corrupt = |offset: usize, reason: &str| Error::Corruption {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason: reason.to_string(),
    };
    let header = data
        .get(..HEADER_SIZE)
        .ok_or_else(|| corrupt(0, "file shorter than a checkpoint header"))?;
    if header[0..8] != CHECKPOINT_MAGIC {
        return Err(corrupt(0, "bad magic: not a vellum checkpoint"));
    }
    let mut c = Cursor { data, pos: 8 };
    let format = c.u32().unwrap_or_default();
    let stored_crc = u32::from_le_bytes([header[28], header[29], header[30], header[31]]);
    if crc32c::crc32c(&header[0..28]) != stored_crc {
        return Err(corrupt(0, "checkpoint header checksum mismatch"));
    }
    if format != CHECKPOINT_FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            file: path.to_path_buf(),
            found: format,
            supported: CHECKPOINT_FORMAT_VERSION,
        });
    }
    c.pos = 16;
    let version = Version(c.u64().unwrap_or_default());
    let meta_len = c.u32().unwrap_or_default() as usize;
    c.pos = HEADER_SIZE;
    let meta = c
        .take(meta_len)
        .ok_or_else(|| corrupt(HEADER_SIZE, "truncated in the metadata"))?;
    let meta_crc = c
        .u32()
        .ok_or_else(|| corrupt(HEADER_SIZE, "truncated in the metadata"))?;
    if crc32c::crc32c(meta) != meta_crc {
        return Err(corrupt(HEADER_SIZE, "metadata checksum mismatch"));
    }
    // Verify every block before applying anything, so a damaged file changes nothing.
    let body_start = c.pos;
    let mut blocks: Vec<(usize, &[u8])> = Vec::new();
    loop {
        let at = c.pos;
        let len = c
            .u32()
            .ok_or_else(|| corrupt(at, "truncated: no end marker"))? as usize;
        let crc = c
            .u32()
            .ok_or_else(|| corrupt(at, "truncated: no end marker"))?;
        if len == 0 {
            if crc != 0 {
                return Err(corrupt(at, "damaged end marker"));
            }
            break;
        }
        let payload = c
            .take(len)
            .ok_or_else(|| corrupt(at, "block runs past the end of the file (truncated)"))?;
        if crc32c::crc32c(payload) != crc {
            return Err(corrupt(at, "block checksum mismatch"));
        }
        blocks.push((at, payload));
    }
    let footer_at = c.pos;
    let footer = c
        .take(FOOTER_SIZE)
        .ok_or_else(|| corrupt(footer_at, "truncated: footer missing"))?;
    let entries = u64::from_le_bytes(footer[0..8].try_into().unwrap_or_default());
    let block_count = u64::from_le_bytes(footer[8..16].try_into().unwrap_or_default());
    let footer_crc = u32::from_le_bytes(footer[16..20].try_into().unwrap_or_default());
    if crc32c::crc32c(&footer[0..16]) != footer_crc || footer[20..28] != FOOTER_MAGIC {
        return Err(corrupt(footer_at, "footer damaged"));
    }
    if c.pos != data.len() {
        return Err(corrupt(c.pos, "unexpected bytes after the footer"));
    }
    if block_count != blocks.len() as u64 {
        return Err(corrupt(body_start, "block count does not match the footer"));
    }
    let mut parsed = Vec::new();
    for (at, payload) in &blocks {
        let mut bc = Cursor {
            data: payload,
            pos: 0,
        };
        while bc.pos < payload.len() {
            let entry_at = *at + BLOCK_HEADER_SIZE + bc.pos;
            let entry = parse_entry(&mut bc).ok_or_else(|| corrupt(entry_at, "malformed entry"))?;
            parsed.push(entry);
        }
    }
    if parsed.len() as u64 != entries {
        return Err(corrupt(footer_at, "entry count does not match the footer"));
    }
    for entry in parsed {
        apply(entry);
    }
    Ok(Loaded {
        version,
        meta: meta.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use vellum_fs::SimFs;

    /// The visible rows at version 3: `a@3` and table 1's version 3.
    fn sample() -> impl Iterator<Item = Result<(InternalKey, Box<[u8]>)>> {
        let versions = InternalKey {
            table: VERSIONS_TABLE,
            key: 1u32.to_be_bytes().into(),
            version: std::cmp::Reverse(3),
        };
        vec![
            Ok((
                InternalKey::new(TableId(1), b"a", Version(3)),
                Box::from(&b"three"[..]),
            )),
            Ok((versions, Box::default())),
        ]
        .into_iter()
    }

    fn load(path: &Path, data: &[u8]) -> Result<(Loaded, Vec<String>)> {
        let mut seen = Vec::new();
        let loaded = read(path, data, |e| seen.push(format!("{e:?}")))?;
        Ok((loaded, seen))
    }

    #[test]
    fn checkpoint_round_trips_newest_live_cells_at_its_version() -> Result<()> {
        let fs: Arc<dyn FileSystem> = Arc::new(SimFs::default());
        let dir = Path::new("/db");
        fs.create_dir_all(dir).map_err(io_err(dir))?;
        let path = write(fs.as_ref(), dir, Version(3), b"meta!", sample())?;
        assert_eq!(
            parse_name(&path.file_name().unwrap_or_default().to_string_lossy()),
            Some(Version(3))
        );
        let data = fs.read(&path).map_err(io_err(&path))?;
        let (loaded, entries) = load(&path, &data)?;
        assert_eq!(loaded.version, Version(3));
        assert_eq!(loaded.meta, b"meta!");
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert!(
            entries[0].starts_with("Cell") && entries[0].contains("Version(3)"),
            "{entries:?}"
        );
        Ok(())
    }

    #[test]
    fn any_flipped_byte_or_truncation_is_corruption() -> Result<()> {
        let fs: Arc<dyn FileSystem> = Arc::new(SimFs::default());
        let dir = Path::new("/db");
        fs.create_dir_all(dir).map_err(io_err(dir))?;
        let path = write(fs.as_ref(), dir, Version(4), b"m", sample())?;
        let data = fs.read(&path).map_err(io_err(&path))?;
        for i in 0..data.len() {
            let mut d = data.clone();
            d[i] ^= 0x40;
            let r = load(&path, &d);
            assert!(
                matches!(
                    r,
                    Err(Error::Corruption { .. }) | Err(Error::UnsupportedVersion { .. })
                ),
                "flip at {i} gave {r:?}"
            );
        }
        for len in 0..data.len() {
            let r = load(&path, &data[..len]);
            assert!(matches!(r, Err(Error::Corruption { .. })), "cut at {len}");
        }
        Ok(())
    }
}
