//! Regression test for a crash found by the `wal_reader` fuzz target: a log that recovers once
//! fails to reopen after one append and a clean close.
//!
//! Recovery (`wal/src/recovery.rs`) stops reading the last segment at a valid frame whose lsn is
//! lower than the expected one and treats that as a clean end (`read_frames`, line 209: "stale
//! frames of a recycled segment", `damaged = false`). The search past the stop only looks for
//! frames with lsn >= the missing one, so stale frames with lower lsns leave `unproven` false,
//! and the tail is not zeroed (`tail_needs_zeroing: damaged || search_here.unproven`, line 170).
//! The writer then resumes at the stop and overwrites the stale frames only partly: the open
//! mark, the appended record and the close mark end in the middle of an old frame, whose
//! remaining bytes (its payload, i.e. client data) are now no longer covered by a valid frame
//! header. At the next open the byte-by-byte `search` (line 79: `_ => i += 1`) walks into
//! that payload, parses a frame-shaped fragment with a high lsn and `durable_lsn` as a valid
//! frame, takes it as *proof* that the missing record had been durable (line 72), and open fails
//! with `Corruption` — on a log that the same code accepted, wrote to and closed cleanly.
//!
//! This breaks the invariant stated in `wal/src/segment.rs` ("after its last frame come zeros,
//! never stale frames or fragments of them"): recovery resumes writing before stale bytes
//! without zeroing them. Fixed by zeroing the tail whenever anything but zeros follows the stop
//! (not only after damage or an unproven higher-lsn frame).
//!
//! Fuzz input (variant 3 of `fuzz/fuzz_targets/wal_reader.rs`, minimised, 46 bytes):
//! `0000001700000000000000c600000000410000c66d12d74d000000000000000100000a0101010101010101010100`
//! Panic: "a log that recovered once fails to reopen after one append: corrupted write-ahead log
//! /w/wal-00000000000000000001.log at offset 192: record 6 is damaged or missing, but the record
//! at offset 194 proves it had been made durable".

use std::path::Path;
use std::sync::Arc;
use vellum_fs::{FileSystem, SimFs, SimOptions};
use vellum_wal::format::{seal_frame, Kind, SegmentHeader, FORMAT_VERSION, FRAME_HEADER_SIZE};
use vellum_wal::format::{SEGMENT_HEADER_SIZE, SEGMENT_SIZE_MIN};
use vellum_wal::{Lsn, Record, SyncPolicy, Wal, WalOptions};

const DIR: &str = "/w";
const SEGMENT: &str = "wal-00000000000000000001.log";

fn frame(lsn: u64, durable_lsn: u64, kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; FRAME_HEADER_SIZE];
    f.extend_from_slice(payload);
    seal_frame(&mut f, lsn, durable_lsn, kind);
    f
}

fn options() -> WalOptions {
    WalOptions {
        segment_size: SEGMENT_SIZE_MIN,
        sync: SyncPolicy::Immediate,
        spare_segments_max: 2,
        ..WalOptions::default()
    }
}

fn open(fs: &SimFs) -> vellum_wal::Result<(Wal, Vec<Record>)> {
    let fs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    Wal::open(fs, Path::new(DIR), options(), Lsn(0), true)
}

#[test]
fn a_log_that_recovered_reopens_after_an_append_despite_stale_frames_after_its_end(
) -> Result<(), Box<dyn std::error::Error>> {
    // Client data that happens to look like a frame claiming lsn 1000 and durable lsn 1000.
    let fake = frame(1000, 1000, Kind::Data, &[]);
    let mut stale_payload = vec![0u8; 200];
    stale_payload[100..100 + fake.len()].copy_from_slice(&fake);

    // Live records 1 and 2, then stale frames with lower lsns (a clean end for recovery): an
    // empty one, so that the search past the stop meets the next one at its frame boundary and
    // skips its payload, then one whose payload holds the fake frame.
    let mut body = Vec::new();
    body.extend(frame(1, 0, Kind::Data, b"one"));
    body.extend(frame(2, 1, Kind::Data, b"two"));
    body.extend(frame(1, 0, Kind::Data, &[]));
    body.extend(frame(1, 0, Kind::Data, &stale_payload));
    let capacity = SEGMENT_SIZE_MIN;
    let mut segment = SegmentHeader {
        format: FORMAT_VERSION,
        seq: 1,
        first_lsn: 1,
        capacity,
    }
    .encode()
    .to_vec();
    segment.extend_from_slice(&body);
    segment.resize(capacity as usize, 0);
    assert!(SEGMENT_HEADER_SIZE + body.len() < segment.len());

    let fs = SimFs::new(SimOptions::default());
    let dir = Path::new(DIR);
    fs.create_dir_all(dir)?;
    let mut file = fs.open_write(&dir.join(SEGMENT))?;
    file.write_at(0, &segment)?;
    file.sync_data()?;
    drop(file);
    fs.sync_dir(dir)?;

    // The first open accepts the log: records 1 and 2, stop at the stale frame.
    let (wal, records) = open(&fs)?;
    let lsns: Vec<u64> = records.iter().map(|r| r.lsn.0).collect();
    assert_eq!(lsns, [1, 2]);
    // Open mark 3, then record 4, then close mark 5: they end inside the stale frame.
    let ticket = wal.enqueue(b"appended")?;
    wal.wait(ticket)?;
    assert_eq!(ticket.lsn(), Lsn(4));
    wal.close()?;
    drop(wal);

    let mut expected = records;
    expected.push(Record {
        lsn: ticket.lsn(),
        payload: b"appended".to_vec(),
    });
    // Fails today: "record 6 is damaged or missing, but the record at offset … proves it had
    // been made durable" — the proof is the fake frame inside the stale payload.
    let (_wal, again) = open(&fs)?;
    assert_eq!(again, expected);
    Ok(())
}
