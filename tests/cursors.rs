//! `Transaction::cursor` (rows borrowed from the cursor) against a model: committed rows spread
//! over several flushed segments, runs and the memtable, with overwrites, deletes and several
//! versions per key, merged with the transaction's own staged puts and deletes, within random
//! bounds. The cursor, `scan` (owned rows) and the model must agree row for row.

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::Bound;
use vellum::{Db, Error, Options};

type Rows = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
}

fn key(k: u8) -> Vec<u8> {
    // Keys of different lengths, sharing prefixes, some longer than 8 bytes.
    match k % 3 {
        0 => vec![b'k', k / 3],
        1 => format!("key-{:03}", k / 3).into_bytes(),
        _ => format!("key-{:03}-long-suffix", k / 3).into_bytes(),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..60, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0u8..60).prop_map(Op::Delete),
    ]
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        (0u8..60).prop_map(|k| Bound::Included(key(k))),
        (0u8..60).prop_map(|k| Bound::Excluded(key(k))),
    ]
}

fn apply(model: &mut Rows, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put(k, v) => model.insert(key(*k), vec![*v; 1 + usize::from(*v % 7)]),
            Op::Delete(k) => model.remove(&key(*k)),
        };
    }
}

fn in_range(k: &[u8], lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    let above = match lo {
        Bound::Included(l) => k >= l.as_slice(),
        Bound::Excluded(l) => k > l.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match hi {
        Bound::Included(h) => k <= h.as_slice(),
        Bound::Excluded(h) => k < h.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

fn stage(tx: &mut vellum::Transaction, ops: &[Op]) -> Result<(), Error> {
    for op in ops {
        match op {
            Op::Put(k, v) => tx.put("t", key(*k), vec![*v; 1 + usize::from(*v % 7)])?,
            Op::Delete(k) => tx.delete("t", key(*k))?,
        }
    }
    Ok(())
}

fn check(
    batches: Vec<(Vec<Op>, bool)>,
    own: Vec<Op>,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
) -> Result<(), TestCaseError> {
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = Db::open_with(dir.path(), Options::default().background_compaction(false))?;
        db.create_table("t")?;
        db.create_table("other")?;
        let mut model = Rows::new();
        for (ops, flush) in &batches {
            let mut tx = db.begin()?;
            stage(&mut tx, ops)?;
            // A neighbouring table's rows must never show in `t`'s range.
            tx.put("other", "k", "x")?;
            tx.commit()?;
            apply(&mut model, ops);
            if *flush {
                db.checkpoint()?;
            }
        }
        let mut tx = db.begin()?;
        stage(&mut tx, &own)?;
        apply(&mut model, &own);
        let want: Vec<(Vec<u8>, Vec<u8>)> = model
            .into_iter()
            .filter(|(k, _)| in_range(k, &lo, &hi))
            .collect();
        let range = (lo.clone(), hi.clone());
        let mut got = Vec::new();
        let mut cursor = tx.cursor("t", range.clone())?;
        while let Some((k, v)) = cursor.next_row()? {
            got.push((k.to_vec(), v.to_vec()));
        }
        assert_eq!(cursor.next_row()?, None, "a finished cursor stays finished");
        drop(cursor);
        assert_eq!(got, want, "cursor");
        let scanned = tx.scan("t", range)?.collect::<Result<Vec<_>, _>>()?;
        assert_eq!(scanned, want, "scan");
        Ok(())
    };
    run().map_err(|e| TestCaseError::fail(e.to_string()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn cursors_agree_with_the_model(
        batches in prop::collection::vec((prop::collection::vec(op(), 1..40), any::<bool>()), 1..6),
        own in prop::collection::vec(op(), 0..12),
        lo in bound(),
        hi in bound(),
    ) {
        check(batches, own, lo, hi)?;
    }
}

/// Many versions of the same keys across several segments: the cursor shows each key once,
/// at its newest version, and skips keys whose newest version is a delete.
#[test]
fn overwritten_keys_show_once_at_their_newest_version() -> Result<(), Box<dyn std::error::Error>> {
    let mut batches = Vec::new();
    for round in 0u8..6 {
        let ops: Vec<Op> = (0u8..30)
            .map(|k| {
                if (k + round) % 5 == 0 {
                    Op::Delete(k)
                } else {
                    Op::Put(k, round)
                }
            })
            .collect();
        batches.push((ops, true));
    }
    check(batches, Vec::new(), Bound::Unbounded, Bound::Unbounded).map_err(|e| format!("{e:?}"))?;
    Ok(())
}
