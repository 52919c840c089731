//! [`Scan`]: rows of one table in key order as an iterator of owned `(key, value)` pairs; a
//! [`Cursor`] underneath merges the snapshot with the transaction's own staged writes.

use super::cursor::Cursor;
use super::Transaction;
use crate::error::Result;
use std::ops::Bound;
use vellum_storage::TableId;

/// Iterator over `(key, value)` rows; see the module documentation.
pub struct Scan<'a> {
    rows: Cursor<'a>,
}

impl std::fmt::Debug for Scan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan").finish_non_exhaustive()
    }
}

impl<'a> Scan<'a> {
    pub(crate) fn new(
        tx: &'a Transaction,
        table: TableId,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
    ) -> Scan<'a> {
        Scan {
            rows: Cursor::new(tx, table, lower, upper),
        }
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.rows.next_row() {
            Ok(Some((k, v))) => Some(Ok((k.to_vec(), v.to_vec()))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
