//! Segment files: immutable, sorted, block-based runs of cells.
//!
//! Layout (little-endian; `docs/format/segment.md` is the prose version):
//!
//! ```text
//! header (32 bytes)  magic "VELLSEGM" | format u32 | flags u32 (0) | segment id u64
//!                    | reserved u32 (0) | crc32c u32 over bytes 0..28
//! data block*        payload (entries) | crc32c u32 over the payload
//! index block        payload | crc32c u32
//! bloom block        payload | crc32c u32
//! footer (80 bytes)  index offset u64 | index len u32 | bloom offset u64 | bloom len u32
//!                    | entry count u64 | block count u32 | min version u64 | max version u64
//!                    | max user table u32 | user key count u64 | reserved u32 (0)
//!                    | crc32c u32 over bytes 0..68 of the footer | magic "VELLSEND"
//! entry              table u32 | version u64 | kind u8 (0 tombstone, 1 value)
//!                    | key len u32 | value len u32 | key | value
//! index payload      block count u32 | first table u32 | first key len u32 | first key
//!                    | per block: offset u64 | len u32 | min version u64 | max version u64
//!                    | last table u32 | last version u64 | last key len u32 | last key
//! bloom payload      probes u32 | bits
//! ```
//!
//! Entries are sorted by `(table, key, version descending)`; every version of one user key
//! lives in one segment. Lengths in the footer and index count payload bytes only (the 4-byte
//! checksum follows each payload). Every piece is checked against its checksum before it is
//! used; damage is an `Error::Corruption` naming the file and the offset of the damaged piece.
//!
//! Invariants:
//! * A segment file is written once (to its final name), synced, and only then listed in the
//!   manifest; it is never modified afterwards.
//! * Blocks are non-empty and their index entries are in file order; the last key of block `i`
//!   is below the first key of block `i + 1`.

mod block;
mod reader;
mod writer;

pub use block::key_prefix;
pub(crate) use block::Block;
pub(crate) use reader::{Segment, SegmentIter};
pub(crate) use writer::SegmentWriter;

use crate::error::Error;
use crate::key::InternalKey;
use crate::memtable::CellValue;
use std::path::Path;

/// First bytes of a segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"VELLSEGM";
/// Format version of segment files written by this build.
pub const SEGMENT_FORMAT_VERSION: u32 = 1;
pub(crate) const FOOTER_MAGIC: [u8; 8] = *b"VELLSEND";
pub(crate) const HEADER_SIZE: usize = 32;
pub(crate) const FOOTER_SIZE: usize = 80;
pub(crate) const CRC_SIZE: usize = 4;
const KIND_TOMBSTONE: u8 = 0;
const KIND_VALUE: u8 = 1;
/// Data blocks are closed once they reach this many payload bytes.
pub(crate) const BLOCK_TARGET: usize = 4096;

const _: () = assert!(FOOTER_SIZE == 8 + 4 + 8 + 4 + 8 + 4 + 8 + 8 + 4 + 8 + 4 + 4 + 8);

/// The file name of segment `id`.
pub(crate) fn file_name(id: u64) -> String {
    format!("seg-{id:020}.sst")
}

/// The id in a segment file name.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".sst")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The footer: where the index and bloom blocks are, and what the segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Footer {
    pub index_offset: u64,
    pub index_len: u32,
    pub bloom_offset: u64,
    pub bloom_len: u32,
    pub entries: u64,
    pub blocks: u32,
    pub min_version: u64,
    pub max_version: u64,
    /// Largest user table id with a cell or a table version here; `u32::MAX` if none.
    pub max_user_table: u32,
    pub user_keys: u64,
}

impl Footer {
    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        let mut f = [0u8; FOOTER_SIZE];
        let mut w = &mut f[..];
        for part in [
            &self.index_offset.to_le_bytes()[..],
            &self.index_len.to_le_bytes(),
            &self.bloom_offset.to_le_bytes(),
            &self.bloom_len.to_le_bytes(),
            &self.entries.to_le_bytes(),
            &self.blocks.to_le_bytes(),
            &self.min_version.to_le_bytes(),
            &self.max_version.to_le_bytes(),
            &self.max_user_table.to_le_bytes(),
            &self.user_keys.to_le_bytes(),
            &0u32.to_le_bytes(),
        ] {
            let (head, rest) = w.split_at_mut(part.len());
            head.copy_from_slice(part);
            w = rest;
        }
        let crc = crc32c::crc32c(&f[..68]);
        f[68..72].copy_from_slice(&crc.to_le_bytes());
        f[72..80].copy_from_slice(&FOOTER_MAGIC);
        f
    }

    pub fn decode(file: &Path, at: u64, f: &[u8]) -> Result<Footer, Error> {
        let corrupt = |reason: &str| Error::Corruption {
            file: file.to_path_buf(),
            offset: at,
            reason: format!("segment footer: {reason}"),
        };
        if f.len() != FOOTER_SIZE || f[72..80] != FOOTER_MAGIC {
            return Err(corrupt("bad magic"));
        }
        let mut r = Cursor::new(f);
        let want = crc32c::crc32c(&f[..68]);
        let footer = (|| {
            Some(Footer {
                index_offset: r.u64()?,
                index_len: r.u32()?,
                bloom_offset: r.u64()?,
                bloom_len: r.u32()?,
                entries: r.u64()?,
                blocks: r.u32()?,
                min_version: r.u64()?,
                max_version: r.u64()?,
                max_user_table: r.u32()?,
                user_keys: r.u64()?,
            })
        })()
        .ok_or_else(|| corrupt("short"))?;
        let _reserved = r.u32();
        if r.u32() != Some(want) {
            return Err(corrupt("checksum mismatch"));
        }
        Ok(footer)
    }
}

/// One index entry: where a data block is, what versions it holds, and its last key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub offset: u64,
    pub len: u32,
    pub min_version: u64,
    pub max_version: u64,
    pub last: InternalKey,
}

/// Appends one entry in the data-block encoding.
pub(crate) fn encode_entry(
    out: &mut Vec<u8>,
    table: u32,
    key: &[u8],
    version: u64,
    value: Option<&[u8]>,
) {
    out.extend_from_slice(&table.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.push(if value.is_some() {
        KIND_VALUE
    } else {
        KIND_TOMBSTONE
    });
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(value.map_or(0, <[u8]>::len) as u32).to_le_bytes());
    out.extend_from_slice(key);
    if let Some(v) = value {
        out.extend_from_slice(v);
    }
}

/// One entry of a data block, borrowing the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawEntry<'a> {
    pub table: u32,
    pub version: u64,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
    /// [`key_prefix`] of `key` (from a block's entry table, so reading it touches no key).
    pub prefix: u64,
}

impl RawEntry<'_> {
    pub fn to_owned(self) -> (InternalKey, CellValue) {
        (
            InternalKey {
                table: self.table,
                key: self.key.into(),
                version: std::cmp::Reverse(self.version),
            },
            self.value.map(Box::from),
        )
    }

    /// Compares this entry's internal key with `k`.
    pub fn cmp_key(&self, k: &InternalKey) -> std::cmp::Ordering {
        (self.table, self.key, std::cmp::Reverse(self.version)).cmp(&(k.table, &*k.key, k.version))
    }

    /// Compares the internal keys of two entries.
    pub fn cmp_entry(&self, o: &RawEntry<'_>) -> std::cmp::Ordering {
        block::cmp_internal(
            (self.table, self.prefix, self.key, self.version),
            (o.table, o.prefix, o.key, o.version),
        )
    }
}

/// Decodes the entry at the front of `r`; `None` if the bytes do not hold one.
pub(crate) fn decode_entry<'a>(r: &mut Cursor<'a>) -> Option<RawEntry<'a>> {
    let table = r.u32()?;
    let version = r.u64()?;
    let kind = r.u8()?;
    let key_len = r.u32()? as usize;
    let value_len = r.u32()? as usize;
    let key = r.take(key_len)?;
    let value = match kind {
        KIND_VALUE => Some(r.take(value_len)?),
        KIND_TOMBSTONE if value_len == 0 => None,
        _ => return None,
    };
    Some(RawEntry {
        table,
        version,
        key,
        value,
        prefix: key_prefix(key),
    })
}

/// A bounds-checked little-endian reader over a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name("seg-42.sst"), None);
        assert_eq!(parse_name("manifest"), None);
    }

    #[test]
    fn footer_round_trips_and_detects_damage() {
        let f = Footer {
            index_offset: 1,
            index_len: 2,
            bloom_offset: 3,
            bloom_len: 4,
            entries: 5,
            blocks: 6,
            min_version: 7,
            max_version: 8,
            max_user_table: 9,
            user_keys: 10,
        };
        let bytes = f.encode();
        let p = Path::new("seg");
        assert_eq!(Footer::decode(p, 0, &bytes).ok(), Some(f));
        let mut bad = bytes;
        bad[3] ^= 1;
        assert!(matches!(
            Footer::decode(p, 0, &bad),
            Err(Error::Corruption { .. })
        ));
    }

    #[test]
    fn entries_round_trip() {
        let mut block = Vec::new();
        encode_entry(&mut block, 3, b"key", 9, Some(b"value"));
        encode_entry(&mut block, 3, b"gone", 8, None);
        let mut r = Cursor::new(&block);
        let a = decode_entry(&mut r);
        let b = decode_entry(&mut r);
        assert_eq!(
            a.map(|e| (e.key, e.value)),
            Some((&b"key"[..], Some(&b"value"[..])))
        );
        assert_eq!(b.map(|e| (e.version, e.value)), Some((8, None)));
        assert!(r.is_empty());
        assert_eq!(decode_entry(&mut Cursor::new(&block[..5])), None);
    }
}
