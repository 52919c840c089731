//! Fuzz target: the write-ahead-log reader.
//!
//! Each input is tried three ways, each in a fresh `SimFs`, as the log directory `/w` of a
//! database that exists (`must_exist`), and handed to `vellum_wal::Wal::open`:
//!
//! 1. the input bytes are the whole segment file `/w/wal-00000000000000000001.log`;
//! 2. a valid segment header (seq 1, first lsn 1, capacity = file length) followed by the input;
//! 3. the input describes frames that are sealed with valid checksums (`format::seal_frame`),
//!    with chosen lsns, durable lsns, kinds, zero gaps, a split into two segments, trailing
//!    zeros and one flipped byte, so the torn-tail-versus-corruption rule is reached past the
//!    checksums.
//!
//! Properties: any input gives `Ok` or `Err`, never a panic; recovered records come in lsn
//! order; and a log that opened must survive a round trip: append one record, close, reopen;
//! the reopen must succeed and return the same records plus the new one (this catches a
//! recovery that accepts a log it then cannot continue, e.g. stale bytes after the last frame of
//! a segment that is no longer the last one).

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vellum_fs::{FileSystem, SimFs, SimOptions};
use vellum_wal::format::{seal_frame, Kind, SegmentHeader, FORMAT_VERSION, FRAME_HEADER_SIZE};
use vellum_wal::format::{SEGMENT_HEADER_SIZE, SEGMENT_SIZE_MIN};
use vellum_wal::{Lsn, Record, SyncPolicy, Wal, WalOptions};

const DIR: &str = "/w";

fn segment_path(seq: u64) -> PathBuf {
    Path::new(DIR).join(format!("wal-{seq:020}.log"))
}

fn options() -> WalOptions {
    WalOptions {
        segment_size: SEGMENT_SIZE_MIN,
        sync: SyncPolicy::Immediate,
        spare_segments_max: 2,
        ..WalOptions::default()
    }
}

/// A fresh file system holding `segments` (seq, bytes), each written and synced.
fn file_system(segments: &[(u64, Vec<u8>)]) -> Option<SimFs> {
    let fs = SimFs::new(SimOptions::default());
    let dir = Path::new(DIR);
    fs.create_dir_all(dir).ok()?;
    for (seq, bytes) in segments {
        let mut file = fs.open_write(&segment_path(*seq)).ok()?;
        file.write_at(0, bytes).ok()?;
        file.sync_data().ok()?;
    }
    fs.sync_dir(dir).ok()?;
    Some(fs)
}

fn open(fs: &SimFs, replay_after: u64) -> vellum_wal::Result<(Wal, Vec<Record>)> {
    Wal::open(
        Arc::new(fs.clone()),
        Path::new(DIR),
        options(),
        Lsn(replay_after),
        true,
    )
}

/// Opens the log made of `segments`; see the module documentation for what is checked.
fn check(segments: &[(u64, Vec<u8>)], replay_after: u64) {
    let Some(fs) = file_system(segments) else {
        return;
    };
    let Ok((wal, records)) = open(&fs, replay_after) else {
        return;
    };
    for pair in records.windows(2) {
        assert!(pair[0].lsn < pair[1].lsn, "records out of lsn order: {pair:?}");
    }
    let ticket = match wal.enqueue(b"appended after recovery") {
        Ok(t) => t,
        Err(e) => panic!("enqueue after a successful recovery failed: {e}"),
    };
    if let Err(e) = wal.wait(ticket) {
        panic!("append after a successful recovery failed: {e}");
    }
    if let Err(e) = wal.close() {
        panic!("close after a successful recovery failed: {e}");
    }
    drop(wal);
    let mut expected = records;
    expected.push(Record {
        lsn: ticket.lsn(),
        payload: b"appended after recovery".to_vec(),
    });
    match open(&fs, replay_after) {
        Ok((_wal, again)) => assert_eq!(again, expected, "records changed across a round trip"),
        Err(e) => panic!("a log that recovered once fails to reopen after one append: {e}"),
    }
}

fn header(seq: u64, first_lsn: u64, capacity: u64) -> [u8; SEGMENT_HEADER_SIZE] {
    SegmentHeader {
        format: FORMAT_VERSION,
        seq,
        first_lsn,
        capacity,
    }
    .encode()
}

/// Variant 2: a valid header in front of the input.
fn with_header(data: &[u8]) -> Vec<u8> {
    let mut seg = header(1, 1, (SEGMENT_HEADER_SIZE + data.len()) as u64).to_vec();
    seg.extend_from_slice(data);
    seg
}

/// Reads the input front to back; zeros once it is used up.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn is_done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// Variant 3: frames with valid checksums, described by the input. Returns the segments and
/// the replay point.
fn structured(data: &[u8]) -> (Vec<(u64, Vec<u8>)>, u64) {
    let mut input = Input { data, pos: 0 };
    let flags = input.byte();
    let split_at = input.byte() as usize % 16;
    let flip_at = u16::from_le_bytes([input.byte(), input.byte()]) as usize;
    let flip_mask = input.byte() | 1;
    let replay_after = u64::from((flags >> 3) & 3);
    // Frames: (lsn, bytes, zero gap before it).
    let mut frames: Vec<(u64, Vec<u8>, usize)> = Vec::new();
    let mut lsn = 0u64;
    while !input.is_done() && frames.len() < 64 {
        let step = input.byte();
        lsn = match step {
            0..=191 => lsn + 1,
            192..=223 => lsn.saturating_sub(u64::from(step & 7)),
            _ => lsn + 2 + u64::from(step & 7),
        };
        let back = input.byte();
        let durable = if back == 255 {
            lsn + 3
        } else {
            lsn.saturating_sub(1 + u64::from(back % 4))
        };
        let shape = input.byte();
        let kind = if shape & 1 == 0 { Kind::Data } else { Kind::Mark };
        let gap = if shape & 2 != 0 { FRAME_HEADER_SIZE } else { 0 };
        let len = if kind == Kind::Mark {
            0
        } else {
            usize::from(shape >> 2)
        };
        let mut frame = vec![0u8; FRAME_HEADER_SIZE];
        for _ in 0..len {
            frame.push(input.byte());
        }
        seal_frame(&mut frame, lsn, durable, kind);
        frames.push((lsn, frame, gap));
    }
    let two_segments = flags & 4 != 0 && split_at > 0 && split_at < frames.len();
    let cut = if two_segments { split_at } else { frames.len() };
    let pad = usize::from(flags >> 5) * 16;
    let mut segments = Vec::new();
    for (seq, part) in [(1u64, &frames[..cut]), (2u64, &frames[cut..])] {
        if seq == 2 && !two_segments {
            break;
        }
        let first_lsn = if seq == 1 {
            1
        } else {
            part.first().map_or(1, |f| f.0)
        };
        let mut body = Vec::new();
        for (_, frame, gap) in part {
            body.resize(body.len() + gap, 0);
            body.extend_from_slice(frame);
        }
        body.resize(body.len() + pad, 0);
        let capacity = (SEGMENT_HEADER_SIZE + body.len()) as u64;
        let mut seg = header(seq, first_lsn, capacity).to_vec();
        seg.extend_from_slice(&body);
        segments.push((seq, seg));
    }
    if flags & 1 != 0 {
        let which = if flags & 2 != 0 { 0 } else { segments.len().saturating_sub(1) };
        if let Some((_, seg)) = segments.get_mut(which) {
            let at = flip_at % seg.len();
            seg[at] ^= flip_mask;
        }
    }
    (segments, replay_after)
}

fuzz_target!(|data: &[u8]| {
    check(&[(1, data.to_vec())], 0);
    check(&[(1, with_header(data))], 0);
    let (segments, replay_after) = structured(data);
    check(&segments, replay_after);
});
