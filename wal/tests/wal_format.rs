//! The worked example of `docs/format/wal.md`, byte for byte.

mod common;

use common::*;
use vellum_fs::FileSystem;
use vellum_wal::format::{parse_frame, FrameHeader, Kind, Parsed, SegmentHeader, FORMAT_VERSION};
use vellum_wal::{Error, SyncPolicy};

fn frame_at(data: &[u8], offset: usize) -> Result<(FrameHeader, Vec<u8>), String> {
    match parse_frame(data, offset) {
        Parsed::Valid(h, p) => Ok((h, p.to_vec())),
        other => Err(format!("no valid frame at {offset}: {other:?}")),
    }
}

#[test]
fn the_worked_example_of_the_format_document_matches_the_bytes_on_disk() -> TestResult {
    let fs = strict_sim();
    let opts = options(4096, SyncPolicy::Immediate, 2);
    let (wal, _) = open(&fs, &opts, 0)?;
    let hello = wal.enqueue(b"hello")?;
    wal.wait(hello)?;
    let ab = wal.enqueue(b"ab")?;
    let xyz = wal.enqueue(b"xyz")?;
    wal.wait(xyz)?;
    drop(wal);
    assert_eq!((hello.lsn().0, ab.lsn().0, xyz.lsn().0), (2, 3, 4));

    let seg = dir().join("wal-00000000000000000001.log");
    assert_eq!(segment_files(&fs), vec![seg.clone()]);
    let data = fs.read(&seg)?;
    assert_eq!(data.len(), 4096);
    assert_eq!(&data[0..8], b"VELLWAL\0");
    assert_eq!(&data[12..16], &[0, 0, 0, 0]);
    let header = SegmentHeader::decode(&data).map_err(|e| e.to_string())?;
    assert_eq!(
        header,
        SegmentHeader {
            format: FORMAT_VERSION,
            seq: 1,
            first_lsn: 1,
            capacity: 4096
        }
    );
    // (offset, lsn, durable_lsn, kind, payload)
    let expected: [(usize, u64, u64, Kind, &[u8]); 5] = [
        (44, 1, 0, Kind::Mark, b""),
        (69, 2, 1, Kind::Data, b"hello"),
        (99, 3, 2, Kind::Data, b"ab"),
        (126, 4, 2, Kind::Data, b"xyz"),
        (154, 5, 4, Kind::Mark, b""),
    ];
    for (offset, lsn, durable, kind, payload) in expected {
        let (h, p) = frame_at(&data, offset)?;
        assert_eq!(
            (h.lsn, h.durable_lsn, h.kind, h.len as usize),
            (lsn, durable, kind as u8, payload.len()),
            "frame at {offset}"
        );
        assert_eq!(p, payload);
    }
    assert_eq!(written_end(&fs, &seg)?, 179);
    assert_eq!(parse_frame(&data, 179), Parsed::Zero);

    // A flipped byte in "ab" is proven durable by the close mark (durable_lsn 4 >= 3), not by
    // the frame of "xyz" (durable_lsn 2).
    fs.corrupt(&seg, 126 - 1, 0x01)?;
    let err = open(&fs, &opts, 0).err();
    assert!(
        matches!(&err, Some(Error::Corruption { file, offset: 99, .. }) if *file == seg),
        "{err:?}"
    );
    Ok(())
}
