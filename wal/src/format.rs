//! Byte layout of WAL segments and frames. `docs/format/wal.md` is the prose version of this
//! file; change both together. All integers are little-endian.
//!
//! ```text
//! segment header (44 bytes)           frame (25-byte header + payload)
//!   0  magic        [u8; 8]             0  crc32c       u32  over bytes 4..25+len
//!   8  format       u32                 4  len          u32  payload length
//!  12  reserved     u32 (zero)          8  lsn          u64
//!  16  segment seq  u64                16  durable_lsn  u64  highest lsn synced when written
//!  24  first lsn    u64                24  kind         u8
//!  32  capacity     u64                25  payload      [u8; len]
//!  40  crc32c       u32 over 0..40
//! ```

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"VELLWAL\0";
/// Format version written by this build; readers refuse others.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header.
pub const SEGMENT_HEADER_SIZE: usize = 44;
/// Size of a frame header.
pub const FRAME_HEADER_SIZE: usize = 25;
/// Largest payload of one record (1 GiB): bounds the memory recovery may need for one record.
pub const RECORD_SIZE_MAX: usize = 1 << 30;
/// Smallest segment capacity accepted by [`crate::WalOptions`].
pub const SEGMENT_SIZE_MIN: u64 = 4096;

const _: () = assert!(SEGMENT_HEADER_SIZE == 8 + 4 + 4 + 8 + 8 + 8 + 4);
const _: () = assert!(FRAME_HEADER_SIZE == 4 + 4 + 8 + 8 + 1);

/// Record kinds on disk. Never renumber these tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A client record (for vellum: one committed transaction).
    Data = 1,
    /// A durability mark written after a sync at open and at clean close: proves every record
    /// before it is durable. Carries no payload and is not returned by recovery.
    Mark = 2,
}

impl Kind {
    /// Decodes a kind byte.
    pub fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Data),
            2 => Some(Kind::Mark),
            _ => None,
        }
    }
}

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version.
    pub format: u32,
    /// Sequence number of the segment (also in its file name).
    pub seq: u64,
    /// Lsn of the first record this segment holds.
    pub first_lsn: u64,
    /// Preallocated size of the file; it is never shorter.
    pub capacity: u64,
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_SIZE] {
        let mut b = [0u8; SEGMENT_HEADER_SIZE];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&self.format.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[32..40].copy_from_slice(&self.capacity.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a header; `Err` says what is wrong with it.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, &'static str> {
        if b.len() < SEGMENT_HEADER_SIZE {
            return Err("file shorter than a segment header");
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err("bad magic: not a vellum WAL segment");
        }
        if crc32c::crc32c(&b[0..40]) != le_u32(&b[40..44]) {
            return Err("segment header checksum mismatch");
        }
        Ok(SegmentHeader {
            format: le_u32(&b[8..12]),
            seq: le_u64(&b[16..24]),
            first_lsn: le_u64(&b[24..32]),
            capacity: le_u64(&b[32..40]),
        })
    }
}

/// A frame header as found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Stored checksum.
    pub crc: u32,
    /// Payload length.
    pub len: u32,
    /// Record lsn.
    pub lsn: u64,
    /// Highest lsn known durable when the frame was written.
    pub durable_lsn: u64,
    /// Kind byte.
    pub kind: u8,
}

/// What the bytes at an offset are.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A frame whose checksum matches.
    Valid(FrameHeader, &'a [u8]),
    /// A header of zero bytes: preallocated space, the clean end of the log.
    Zero,
    /// Anything else: a torn or damaged frame, or garbage.
    Invalid,
}

/// Parses the frame starting at `offset` of `data`.
pub fn parse_frame(data: &[u8], offset: usize) -> Parsed<'_> {
    let Some(head) = data.get(offset..offset.saturating_add(FRAME_HEADER_SIZE)) else {
        return if data[offset.min(data.len())..].iter().all(|&b| b == 0) {
            Parsed::Zero
        } else {
            Parsed::Invalid
        };
    };
    if head.iter().all(|&b| b == 0) {
        return Parsed::Zero;
    }
    let h = FrameHeader {
        crc: le_u32(&head[0..4]),
        len: le_u32(&head[4..8]),
        lsn: le_u64(&head[8..16]),
        durable_lsn: le_u64(&head[16..24]),
        kind: head[24],
    };
    let start = offset + FRAME_HEADER_SIZE;
    let Some(end) = start.checked_add(h.len as usize) else {
        return Parsed::Invalid;
    };
    if h.len as usize > RECORD_SIZE_MAX || end > data.len() || Kind::from_byte(h.kind).is_none() {
        return Parsed::Invalid;
    }
    if crc32c::crc32c(&data[offset + 4..end]) != h.crc {
        return Parsed::Invalid;
    }
    Parsed::Valid(h, &data[start..end])
}

/// Writes the header of a frame whose payload already sits at `frame[FRAME_HEADER_SIZE..]`.
pub fn seal_frame(frame: &mut [u8], lsn: u64, durable_lsn: u64, kind: Kind) {
    debug_assert!(frame.len() >= FRAME_HEADER_SIZE);
    let len = (frame.len() - FRAME_HEADER_SIZE) as u32;
    frame[4..8].copy_from_slice(&len.to_le_bytes());
    frame[8..16].copy_from_slice(&lsn.to_le_bytes());
    frame[16..24].copy_from_slice(&durable_lsn.to_le_bytes());
    frame[24] = kind as u8;
    let crc = crc32c::crc32c(&frame[4..]);
    frame[0..4].copy_from_slice(&crc.to_le_bytes());
}

pub(crate) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8], lsn: u64) -> Vec<u8> {
        let mut f = vec![0u8; FRAME_HEADER_SIZE];
        f.extend_from_slice(payload);
        seal_frame(&mut f, lsn, lsn - 1, Kind::Data);
        f
    }

    #[test]
    fn sealed_frame_parses_back() {
        let f = frame(b"payload", 7);
        match parse_frame(&f, 0) {
            Parsed::Valid(h, p) => {
                assert_eq!((h.lsn, h.durable_lsn, h.len), (7, 6, 7));
                assert_eq!(p, b"payload");
            }
            other => panic!("expected a valid frame, got {other:?}"),
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let f = frame(b"abc", 3);
        for i in 0..f.len() * 8 {
            let mut g = f.clone();
            g[i / 8] ^= 1 << (i % 8);
            assert!(
                !matches!(parse_frame(&g, 0), Parsed::Valid(..)),
                "flip of bit {i} went unnoticed"
            );
        }
    }

    #[test]
    fn zero_bytes_are_the_clean_end_and_short_garbage_is_invalid() {
        assert_eq!(parse_frame(&[0u8; 100], 10), Parsed::Zero);
        assert_eq!(parse_frame(&[0u8; 10], 3), Parsed::Zero);
        assert_eq!(parse_frame(&[0u8, 1, 0], 0), Parsed::Invalid);
        let f = frame(b"abc", 3);
        assert_eq!(parse_frame(&f[..f.len() - 1], 0), Parsed::Invalid);
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            format: FORMAT_VERSION,
            seq: 9,
            first_lsn: 100,
            capacity: 1 << 20,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..b.len() {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(SegmentHeader::decode(&c).is_err(), "byte {i}");
        }
    }
}
