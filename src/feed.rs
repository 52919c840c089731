//! The change feed: committed transactions in commit order, each whole.
//!
//! Built from the versioned storage: every cell of a version belongs to one committed
//! transaction, so grouping the cells of versions `(after, now]` by version gives each
//! transaction's puts and deletes across all its tables, in commit order. Catalog changes
//! appear as [`Change::CreateTable`] / [`Change::DropTable`]. A transaction that drops a table
//! and creates one of the same name shows only the `CreateTable` (both changed the same
//! catalog entry): consumers treat `CreateTable` of an existing table as "start it empty".
//!
//! Retention: storage keeps full history only above its *history floor*, the version at or
//! below which checkpoints have collapsed old versions (the checkpoint version at open, then
//! each garbage-collection horizon). Asking for changes after a version below the floor is
//! [`Error::NotRetained`], which says where the retained history starts.

use crate::catalog::{self, CATALOG};
use crate::db::Db;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::ops::Bound;
use vellum_storage::{CellChange, TableId, Version};

/// One change of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `key` of `table` was set to `value`.
    Put {
        /// Table name.
        table: String,
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// `key` of `table` was deleted.
    Delete {
        /// Table name.
        table: String,
        /// The key.
        key: Vec<u8>,
    },
    /// The table was created.
    CreateTable {
        /// Table name.
        table: String,
    },
    /// The table was dropped (its rows are gone with it).
    DropTable {
        /// Table name.
        table: String,
    },
}

/// A committed transaction as the change feed yields it: all its changes, across every table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedTransaction {
    /// Its commit version.
    pub version: Version,
    /// Its changes: table creations and drops first, then rows by table id and key.
    pub changes: Vec<Change>,
}

/// Iterator over committed transactions in commit order; see [`Db::changes_since`].
#[derive(Debug)]
pub struct ChangeFeed {
    transactions: std::vec::IntoIter<CommittedTransaction>,
    upto: Version,
}

impl ChangeFeed {
    /// The newest version the feed covers (the visible version when it was created).
    pub fn upto(&self) -> Version {
        self.upto
    }
}

impl Iterator for ChangeFeed {
    type Item = CommittedTransaction;
    fn next(&mut self) -> Option<CommittedTransaction> {
        self.transactions.next()
    }
}

impl Db {
    /// Every transaction committed after `after` up to the newest visible version, in commit
    /// order, each whole. Fails with [`Error::NotRetained`] if history after `after` is no
    /// longer kept.
    pub fn changes_since(&self, after: Version) -> Result<ChangeFeed> {
        let db = &self.inner;
        // Register as a reader of the history after `after`, so no garbage collection can
        // collapse the span while it is read.
        db.snapshots
            .acquire_history(after)
            .map_err(|oldest| Error::NotRetained {
                requested: after,
                oldest,
            })?;
        let result = self.collect_changes(after);
        db.snapshots.release(after);
        result
    }

    fn collect_changes(&self, after: Version) -> Result<ChangeFeed> {
        let upto = self.version();
        let cells = self.inner.store.changes_between(after, upto)?;
        let names = table_names(self, after, &cells)?;
        let name = |t: TableId| {
            names
                .get(&t)
                .cloned()
                .unwrap_or_else(|| format!("#{}", t.0))
        };
        let mut transactions: Vec<CommittedTransaction> = Vec::new();
        for cell in cells {
            if transactions.last().map(|t| t.version) != Some(cell.version) {
                transactions.push(CommittedTransaction {
                    version: cell.version,
                    changes: Vec::new(),
                });
            }
            let change = if cell.table == CATALOG {
                let table = String::from_utf8_lossy(&cell.key).into_owned();
                match cell.value {
                    Some(_) => Change::CreateTable { table },
                    None => Change::DropTable { table },
                }
            } else {
                let table = name(cell.table);
                match cell.value {
                    Some(value) => Change::Put {
                        table,
                        key: cell.key,
                        value,
                    },
                    None => Change::Delete {
                        table,
                        key: cell.key,
                    },
                }
            };
            if let Some(t) = transactions.last_mut() {
                t.changes.push(change);
            }
        }
        Ok(ChangeFeed {
            transactions: transactions.into_iter(),
            upto,
        })
    }
}

/// The names of every table that can have rows in `(after, ..]` of `cells`: the catalog as of
/// `after` (readable: `after` is at or above the history floor) plus the tables the span
/// creates. A table with rows in the span existed at `after` or was created in it.
fn table_names(db: &Db, after: Version, cells: &[CellChange]) -> Result<HashMap<TableId, String>> {
    let mut names = HashMap::new();
    let existing = db
        .inner
        .store
        .scan(CATALOG, Bound::Unbounded, Bound::Unbounded, after);
    for row in existing {
        let (key, _, value) = row?;
        if let Some(id) = catalog::decode_id(&value) {
            names.insert(id, String::from_utf8_lossy(&key).into_owned());
        }
    }
    for cell in cells.iter().filter(|c| c.table == CATALOG) {
        if let Some(id) = cell.value.as_deref().and_then(catalog::decode_id) {
            names.insert(id, String::from_utf8_lossy(&cell.key).into_owned());
        }
    }
    Ok(names)
}
