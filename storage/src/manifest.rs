//! The manifest: which segments are live, in which runs, and what the WAL position they cover is.
//!
//! Layout of the file `manifest` (little-endian; `docs/format/manifest.md` is the prose version):
//!
//! ```text
//! magic "VELLMANI" | format u32 | flags u32 (0) | generation u64 | covered version u64
//! | gc floor u64 | next segment id u64 | meta len u32 | meta
//! | run count u32 | per run (newest first): segment count u32 | segment id u64 * count
//! | crc32c u32 over every byte before it
//! ```
//!
//! The manifest is replaced atomically (written to `manifest.tmp`, synced, renamed over
//! `manifest`, directory synced): after a crash it is the old one or the new one, whole.
//! Invariants:
//! * Every segment it lists was synced, and its directory entry made durable, before the
//!   manifest naming it was written.
//! * `covered` is the version every commit at or below which is in the listed segments; `meta`
//!   (the caller's: the log position of that version, prepared transactions) goes with it.
//! * `gc_floor`: history above it is complete; versions at or below it may be collapsed.
//! * Files `seg-*.sst` that the manifest does not list are leftovers of a crashed flush or
//!   compaction, or inputs of a finished compaction, and are deleted at open.

use crate::error::{Error, Result};
use crate::segment::Cursor;
use std::path::Path;

/// First bytes of a manifest file.
pub const MANIFEST_MAGIC: [u8; 8] = *b"VELLMANI";
/// Format version of manifests written by this build.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// File name of the manifest in the data directory.
pub(crate) const FILE_NAME: &str = "manifest";

/// The decoded contents of a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ManifestData {
    pub generation: u64,
    pub covered: u64,
    pub gc_floor: u64,
    pub next_segment_id: u64,
    pub meta: Vec<u8>,
    /// Segment ids of each run, newest run first, segments in key order.
    pub runs: Vec<Vec<u64>>,
}

impl ManifestData {
    pub fn encode(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(64 + self.meta.len() + 8 * self.runs.len());
        m.extend_from_slice(&MANIFEST_MAGIC);
        m.extend_from_slice(&MANIFEST_FORMAT_VERSION.to_le_bytes());
        m.extend_from_slice(&0u32.to_le_bytes());
        for v in [
            self.generation,
            self.covered,
            self.gc_floor,
            self.next_segment_id,
        ] {
            m.extend_from_slice(&v.to_le_bytes());
        }
        m.extend_from_slice(&(self.meta.len() as u32).to_le_bytes());
        m.extend_from_slice(&self.meta);
        m.extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
        for run in &self.runs {
            m.extend_from_slice(&(run.len() as u32).to_le_bytes());
            for id in run {
                m.extend_from_slice(&id.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&m);
        m.extend_from_slice(&crc.to_le_bytes());
        m
    }

    pub fn decode(file: &Path, data: &[u8]) -> Result<ManifestData> {
        let corrupt = |offset: usize, reason: &str| Error::Corruption {
            file: file.to_path_buf(),
            offset: offset as u64,
            reason: format!("manifest: {reason}"),
        };
        if data.len() < 8 + 4 || data[0..8] != MANIFEST_MAGIC {
            return Err(corrupt(0, "bad magic"));
        }
        let body_len = data.len() - 4;
        if crc32c::crc32c(&data[..body_len]).to_le_bytes() != data[body_len..] {
            return Err(corrupt(body_len, "checksum mismatch"));
        }
        let mut r = Cursor::new(&data[8..body_len]);
        let format = r.u32().unwrap_or(0);
        if format != MANIFEST_FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                file: file.to_path_buf(),
                found: format,
                supported: MANIFEST_FORMAT_VERSION,
            });
        }
        let parsed = (|| {
            let _flags = r.u32()?;
            let generation = r.u64()?;
            let covered = r.u64()?;
            let gc_floor = r.u64()?;
            let next_segment_id = r.u64()?;
            let meta_len = r.u32()? as usize;
            let meta = r.take(meta_len)?.to_vec();
            let run_count = r.u32()? as usize;
            let mut runs = Vec::with_capacity(run_count.min(body_len / 4));
            for _ in 0..run_count {
                let n = r.u32()? as usize;
                let mut run = Vec::with_capacity(n.min(body_len / 8));
                for _ in 0..n {
                    run.push(r.u64()?);
                }
                runs.push(run);
            }
            r.is_empty().then_some(ManifestData {
                generation,
                covered,
                gc_floor,
                next_segment_id,
                meta,
                runs,
            })
        })();
        parsed.ok_or_else(|| corrupt(8, "does not decode"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let m = ManifestData {
            generation: 3,
            covered: 99,
            gc_floor: 50,
            next_segment_id: 12,
            meta: b"lsn".to_vec(),
            runs: vec![vec![11], vec![7, 8, 9]],
        };
        let bytes = m.encode();
        let p = Path::new("manifest");
        assert_eq!(ManifestData::decode(p, &bytes).ok(), Some(m));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(
                ManifestData::decode(p, &bad).is_err(),
                "flip at {i} not detected"
            );
        }
        assert!(ManifestData::decode(p, &bytes[..bytes.len() - 1]).is_err());
    }
}
