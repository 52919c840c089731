//! Regression test: client data that looks like a frame must not turn a torn tail into a
//! refusal to open.
//!
//! A power cut can lose the sector holding a record's header while its payload sector
//! survives. If that payload holds bytes that form a checksummed frame claiming a high lsn and
//! durable lsn, recovery's byte-wise search past the stop used to take it as proof that the
//! missing record had been durable, and open failed with `Corruption` although the record was
//! only an unacknowledged torn tail. The search now ignores frames whose lsn cannot fit between
//! the stop and their offset (every record takes at least one frame header) or whose durable
//! lsn is not below their own lsn. (Reported while fuzzing the WAL reader.)

use std::path::Path;
use std::sync::Arc;
use vellum_fs::{FileSystem, SimFs, SimOptions};
use vellum_wal::format::SEGMENT_SIZE_MIN;
use vellum_wal::format::{seal_frame, Kind, SegmentHeader, FORMAT_VERSION, FRAME_HEADER_SIZE};
use vellum_wal::{Lsn, SyncPolicy, Wal, WalOptions};

fn frame(lsn: u64, durable_lsn: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; FRAME_HEADER_SIZE];
    f.extend_from_slice(payload);
    seal_frame(&mut f, lsn, durable_lsn, Kind::Data);
    f
}

#[test]
fn a_frame_shaped_payload_of_a_torn_record_is_not_taken_as_proof(
) -> Result<(), Box<dyn std::error::Error>> {
    let fake = frame(1000, 1000, b"looks like a frame");
    let mut payload = b"user data: ".to_vec();
    payload.extend_from_slice(&fake);
    let mut torn = frame(3, 2, &payload);
    torn[..FRAME_HEADER_SIZE].fill(0); // the header's sector was lost

    let mut segment = SegmentHeader {
        format: FORMAT_VERSION,
        seq: 1,
        first_lsn: 1,
        capacity: SEGMENT_SIZE_MIN,
    }
    .encode()
    .to_vec();
    segment.extend(frame(1, 0, b"one"));
    segment.extend(frame(2, 1, b"two"));
    segment.extend(torn);
    segment.resize(SEGMENT_SIZE_MIN as usize, 0);

    let sim = SimFs::new(SimOptions::default());
    let dir = Path::new("/w");
    sim.create_dir_all(dir)?;
    sim.sync_dir(Path::new("/"))?;
    let mut file = sim.open_write(&dir.join("wal-00000000000000000001.log"))?;
    file.write_at(0, &segment)?;
    file.sync_data()?;
    drop(file);
    sim.sync_dir(dir)?;

    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    let opts = WalOptions {
        segment_size: SEGMENT_SIZE_MIN,
        sync: SyncPolicy::Immediate,
        ..WalOptions::default()
    };
    let (wal, records) = Wal::open(fs.clone(), dir, opts.clone(), Lsn(0), true)?;
    let lsns: Vec<u64> = records.iter().map(|r| r.lsn.0).collect();
    assert_eq!(
        lsns,
        [1, 2],
        "the torn record is dropped, the durable ones kept"
    );
    drop(wal);
    let (_wal, again) = Wal::open(fs, dir, opts, Lsn(0), true)?;
    assert_eq!(again, records, "and the log keeps opening");
    Ok(())
}
