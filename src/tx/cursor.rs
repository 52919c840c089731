//! [`Cursor`]: rows of one table in key order, merging the snapshot with the transaction's own
//! staged writes (own writes win; own deletes hide rows). Each row borrows the cursor, so
//! reading copies nothing; [`super::Scan`] is the same walk yielding owned rows.

use super::{Transaction, WriteKey};
use crate::error::Result;
use std::cmp::Ordering;
use std::collections::btree_map;
use std::iter::Peekable;
use std::ops::Bound;
use vellum_storage::{RowCursor, TableId};

type Own<'a> = btree_map::Range<'a, WriteKey, Option<Vec<u8>>>;

/// Which side the row handed out last came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Nothing,
    Stored,
    Own,
}

/// A cursor over `(key, value)` rows in key order; see the module documentation.
///
/// ```
/// # fn main() -> vellum::Result<()> {
/// # let dir = tempfile::tempdir().map_err(|e| vellum::Error::InvalidArgument(e.to_string()))?;
/// let db = vellum::Db::open(dir.path())?;
/// db.create_table("t")?;
/// let mut tx = db.begin()?;
/// tx.put("t", "a", "1")?;
/// tx.put("t", "b", "2")?;
/// let mut rows = tx.cursor("t", "a"..)?;
/// let mut keys = Vec::new();
/// while let Some((key, _value)) = rows.next_row()? {
///     keys.push(key.to_vec());
/// }
/// assert_eq!(keys, [b"a".to_vec(), b"b".to_vec()]);
/// # Ok(())
/// # }
/// ```
pub struct Cursor<'a> {
    /// `None` for an empty range.
    stored: Option<RowCursor<'a>>,
    /// True while `stored` is on a row.
    stored_on: bool,
    own: Peekable<Own<'a>>,
    started: bool,
    last: Last,
    failed: bool,
}

impl std::fmt::Debug for Cursor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor").finish_non_exhaustive()
    }
}

/// True if no key can lie between the bounds (also guards `BTreeMap::range`, which panics on
/// inverted bounds).
fn is_empty_range(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u))
        | (Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
        _ => false,
    }
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(
        tx: &'a Transaction,
        table: TableId,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
    ) -> Cursor<'a> {
        let empty = is_empty_range(&lower, &upper);
        // The storage cursor copies its bounds; it borrows only the store.
        let stored = (!empty).then(|| {
            tx.db.store.rows(
                table,
                lower.as_ref().map(Vec::as_slice),
                upper.as_ref().map(Vec::as_slice),
                tx.read_version(),
            )
        });
        let own = if empty || tx.writes.is_empty() {
            // `start..start` is an empty range `BTreeMap::range` accepts (and allocates for
            // nothing: most cursors run in transactions that wrote nothing).
            let none = WriteKey::first(table);
            tx.writes.range(none.clone()..none)
        } else {
            let own_lower = match lower {
                Bound::Included(k) => Bound::Included(WriteKey::new(table, k)),
                Bound::Excluded(k) => Bound::Excluded(WriteKey::new(table, k)),
                Bound::Unbounded => Bound::Included(WriteKey::first(table)),
            };
            let own_upper = match upper {
                Bound::Included(k) => Bound::Included(WriteKey::new(table, k)),
                Bound::Excluded(k) => Bound::Excluded(WriteKey::new(table, k)),
                Bound::Unbounded => Bound::Excluded(WriteKey::first(TableId(table.0 + 1))),
            };
            tx.writes.range((own_lower, own_upper))
        };
        Cursor {
            stored,
            stored_on: false,
            own: own.peekable(),
            started: false,
            last: Last::Nothing,
            failed: false,
        }
    }

    /// The next row, or `None` after the last one. The row borrows the cursor until the next
    /// call. After an error the cursor yields nothing more.
    pub fn next_row(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        if self.failed {
            return Ok(None);
        }
        match self.step() {
            Ok(()) => {}
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        }
        Ok(match self.last {
            Last::Nothing => None,
            Last::Stored => self
                .stored
                .as_ref()
                .and_then(|s| s.row())
                .map(|(_, k, _, v)| (k, v)),
            Last::Own => self
                .own
                .peek()
                .and_then(|&(k, v)| v.as_deref().map(|v| (k.key.as_slice(), v))),
        })
    }

    /// Moves past the last row and decides where the next one comes from (`self.last`).
    fn step(&mut self) -> Result<()> {
        let Some(stored) = self.stored.as_mut() else {
            self.last = Last::Nothing;
            return Ok(());
        };
        if !self.started {
            self.started = true;
            self.stored_on = stored.advance()?;
        }
        match self.last {
            Last::Stored => self.stored_on = stored.advance()?,
            Last::Own => {
                self.own.next();
            }
            Last::Nothing => {}
        }
        self.last = Last::Nothing;
        if self.own.peek().is_none() {
            if self.stored_on {
                self.last = Last::Stored;
            }
            return Ok(());
        }
        loop {
            let stored_key = if self.stored_on {
                stored.row().map(|(_, k, _, _)| k)
            } else {
                None
            };
            let order = match (stored_key, self.own.peek()) {
                (None, None) => return Ok(()),
                (Some(sk), Some((ok, _))) => sk.cmp(ok.key.as_slice()),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
            };
            match order {
                Ordering::Less => {
                    self.last = Last::Stored;
                    return Ok(());
                }
                // The staged write replaces the stored row.
                Ordering::Equal => self.stored_on = stored.advance()?,
                Ordering::Greater => {}
            }
            match self.own.peek() {
                Some((_, Some(_))) => {
                    self.last = Last::Own;
                    return Ok(());
                }
                // A staged delete hides the key.
                Some((_, None)) => {
                    self.own.next();
                }
                None => {}
            }
        }
    }
}
