mod common;
use common::*;
use vellum_wal::{Lsn, SyncPolicy};
#[test]
fn probe() -> TestResult {
    for salt in [2u64, 3, 5] {
        for rel in 8..40u64 {
            let fs = strict_sim();
            let opts = options(4096, SyncPolicy::Immediate, 2);
            let (wal, _) = open(&fs, &opts, 0)?;
            let mut acked = 0;
            let mut up = 0;
            for b in 0..60u64 {
                if b == rel {
                    up = acked;
                    wal.release_upto(Lsn(acked))?;
                }
                let n = if b % 5 == 2 { 3 } else { 1 };
                for j in 0..n {
                    let len = if b % 13 == 7 && j == 0 {
                        5000
                    } else {
                        ((b * 53 + j * 31 + salt * 7) % 400 + 1) as usize
                    };
                    let t = wal.enqueue(&payload(b * 10 + j, len))?;
                    wal.wait(t)?;
                    acked = t.lsn().0;
                }
            }
            drop(wal);
            let r = open(&fs, &opts, up);
            println!(
                "salt {salt} rel {rel}: {:?}",
                r.map(|x| x.1.len()).map_err(|e| e.to_string())
            );
        }
    }
    Ok(())
}
