//! [`Scan`]: rows of one table in key order, merging the snapshot with the transaction's own
//! staged writes (own writes win; own deletes hide rows).

use super::Transaction;
use crate::error::Result;
use std::collections::btree_map;
use std::iter::Peekable;
use std::ops::Bound;
use vellum_storage::TableId;

type Own<'a> = btree_map::Range<'a, (TableId, Vec<u8>), Option<Vec<u8>>>;
type Stored<'a> = vellum_storage::Scan<'a>;

/// Iterator over `(key, value)` rows; see the module documentation.
pub struct Scan<'a> {
    stored: Option<Peekable<Stored<'a>>>,
    own: Option<Peekable<Own<'a>>>,
}

impl std::fmt::Debug for Scan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan").finish_non_exhaustive()
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

impl<'a> Scan<'a> {
    pub(crate) fn new(
        tx: &'a Transaction,
        table: TableId,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
    ) -> Scan<'a> {
        if is_empty_range(&lower, &upper) {
            return Scan {
                stored: None,
                own: None,
            };
        }
        let own_lower = match &lower {
            Bound::Included(k) => Bound::Included((table, k.clone())),
            Bound::Excluded(k) => Bound::Excluded((table, k.clone())),
            Bound::Unbounded => Bound::Included((table, Vec::new())),
        };
        let own_upper = match &upper {
            Bound::Included(k) => Bound::Included((table, k.clone())),
            Bound::Excluded(k) => Bound::Excluded((table, k.clone())),
            Bound::Unbounded => Bound::Excluded((TableId(table.0 + 1), Vec::new())),
        };
        let own = tx.writes.range((own_lower, own_upper)).peekable();
        // The storage scan copies its bounds; it borrows only the store.
        let stored = tx
            .db
            .store
            .scan(table, as_slice(&lower), as_slice(&upper), tx.read_version())
            .peekable();
        Scan {
            stored: Some(stored),
            own: Some(own),
        }
    }
}

fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let (stored, own) = match (self.stored.as_mut(), self.own.as_mut()) {
            (Some(s), Some(o)) => (s, o),
            _ => return None,
        };
        loop {
            let order = match (stored.peek(), own.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => {
                    return stored
                        .next()
                        .map(|r| r.map(|(k, _, v)| (k, v)).map_err(Into::into));
                }
                (Some(Ok((sk, _, _))), Some(((_, ok), _))) => sk.as_slice().cmp(ok.as_slice()),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    return stored
                        .next()
                        .map(|r| r.map(|(k, _, v)| (k, v)).map_err(Into::into));
                }
                std::cmp::Ordering::Equal => {
                    stored.next();
                }
                std::cmp::Ordering::Greater => {}
            }
            if let Some(((_, key), Some(v))) = own.next() {
                return Some(Ok((key.clone(), v.clone())));
            }
        }
    }
}
