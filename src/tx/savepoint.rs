//! Savepoints: named marks in the undo log of a transaction's write set.
//!
//! Every change to the write set (a staged write replacing or removing an entry, a table
//! joining the written tables) appends an undo entry. A savepoint remembers the length of the
//! undo log and of the precondition lists; rolling back to it replays the undo log backwards to
//! that length. Savepoints nest: rolling back to one discards the savepoints made after it and
//! keeps it; releasing one discards it and those after it and keeps the writes. Reads (and
//! locks) are not undone: what was read stays in the serializable read set.

use super::{change_size, Transaction, WriteKey};
use crate::error::{Error, Result};
use vellum_storage::TableId;

/// One reversible change of the write set.
#[derive(Debug)]
pub(super) enum Undo {
    /// `key` was staged; `previous` is what the write set held before (`None`: nothing).
    Write {
        key: WriteKey,
        previous: Option<Option<Vec<u8>>>,
    },
    /// The table joined `tables_written`.
    TableWritten(TableId),
}

#[derive(Debug)]
pub(super) struct Savepoint {
    name: String,
    undo_len: usize,
    key_expectations: usize,
    table_expectations: usize,
}

impl Transaction {
    /// Marks the current state of the write set under `name`. A later savepoint with the same
    /// name hides this one until it is released or rolled past.
    pub fn savepoint(&mut self, name: &str) -> Result<()> {
        self.check_active()?;
        self.savepoints.push(Savepoint {
            name: name.to_string(),
            undo_len: self.undo.len(),
            key_expectations: self.key_expectations.len(),
            table_expectations: self.table_expectations.len(),
        });
        Ok(())
    }

    /// Undoes every write (and precondition) made after the savepoint `name`. The savepoint
    /// stays; savepoints made after it are discarded.
    pub fn rollback_to(&mut self, name: &str) -> Result<()> {
        self.check_active()?;
        let at = self.find_savepoint(name)?;
        let mark = &self.savepoints[at];
        let (undo_len, keys, tables) = (
            mark.undo_len,
            mark.key_expectations,
            mark.table_expectations,
        );
        while self.undo.len() > undo_len {
            match self.undo.pop() {
                Some(Undo::Write { key, previous }) => {
                    if let Some(current) = self.writes.remove(&key) {
                        self.write_bytes -= change_size(&key.key, current.as_deref());
                    }
                    if let Some(old) = previous {
                        self.write_bytes += change_size(&key.key, old.as_deref());
                        self.writes.insert(key, old);
                    }
                }
                Some(Undo::TableWritten(id)) => {
                    self.tables_written.remove(&id);
                }
                None => break,
            }
        }
        self.key_expectations.truncate(keys);
        self.table_expectations.truncate(tables);
        self.savepoints.truncate(at + 1);
        Ok(())
    }

    /// Forgets the savepoint `name` and those made after it; their writes stay.
    pub fn release(&mut self, name: &str) -> Result<()> {
        self.check_active()?;
        let at = self.find_savepoint(name)?;
        self.savepoints.truncate(at);
        Ok(())
    }

    fn find_savepoint(&self, name: &str) -> Result<usize> {
        self.savepoints
            .iter()
            .rposition(|s| s.name == name)
            .ok_or_else(|| Error::SavepointNotFound(name.to_string()))
    }
}
