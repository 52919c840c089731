//! The public error type and conflict reports.
//!
//! Every variant is a case a caller can act on. [`Error::is_retryable`] says which ones a retry
//! of the whole transaction can cure.

use crate::Version;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result of vellum operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transaction lost to a concurrent commit or a compare-and-swap precondition failed;
    /// nothing was written. Retrying the transaction may succeed.
    #[error("{0}")]
    Conflict(Box<ConflictReport>),
    /// A file of the database is damaged.
    #[error("corrupted file {} at offset {offset}: {reason}", file.display())]
    Corruption {
        /// The damaged file (or directory, when a file is missing).
        file: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What was found.
        reason: String,
    },
    /// A file was written by a format version this build does not read.
    #[error("file {} has format version {found}; this build reads version {supported}", file.display())]
    UnsupportedFormat {
        /// The file.
        file: PathBuf,
        /// Version found.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// An operating-system call failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A key is longer than [`crate::KEY_SIZE_MAX`].
    #[error("key of {size} bytes exceeds the maximum of {max} bytes")]
    KeyTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A value is longer than [`crate::VALUE_SIZE_MAX`].
    #[error("value of {size} bytes exceeds the maximum of {max} bytes")]
    ValueTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The transaction's writes exceed [`crate::TRANSACTION_BYTES_MAX`].
    #[error("transaction writes {size} bytes, more than the maximum of {max} bytes")]
    TransactionTooLarge {
        /// Bytes staged.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An argument is not acceptable (the message says why).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No table of that name exists at the transaction's snapshot.
    #[error("table `{0}` does not exist")]
    TableNotFound(String),
    /// A table of that name already exists.
    #[error("table `{0}` already exists")]
    TableExists(String),
    /// A write was attempted in a read-only transaction.
    #[error("the transaction is read-only")]
    ReadOnly,
    /// The transaction was already committed or rolled back.
    #[error("the transaction has already been {0}")]
    TransactionClosed(&'static str),
    /// The directory exists, is not empty, and is not a vellum database.
    #[error("{} is not a vellum database (it holds other files and no VELLUM identity file)", .0.display())]
    NotADatabase(PathBuf),
    /// Another open database (in this or another process) holds the directory.
    #[error("database {} is already open (the directory is locked)", .0.display())]
    Locked(PathBuf),
    /// The database does not exist and `create_if_missing` is off.
    #[error("no database at {}", .0.display())]
    NotFound(PathBuf),
    /// An earlier write-ahead-log failure stopped all writes (fail-stop). Reopen the database.
    #[error("the database refuses writes after an earlier I/O failure: {0}")]
    Poisoned(String),
    /// A pessimistic transaction's lock wait would have closed a cycle of waits; this
    /// transaction was chosen as the victim and rolled back. Retrying may succeed.
    #[error("{0}")]
    Deadlock(Box<DeadlockReport>),
    /// A lock was not granted within the lock-wait timeout. The transaction stays usable;
    /// retrying may succeed.
    #[error("lock wait timed out{}", label_suffix(.label))]
    LockTimeout {
        /// The transaction's label, if it has one.
        label: Option<String>,
    },
    /// The transaction's deadline passed; it was rolled back and its locks released.
    #[error("transaction timed out{}", label_suffix(.label))]
    Timeout {
        /// The transaction's label, if it has one.
        label: Option<String>,
    },
    /// A retrying run ([`crate::Db::run`]) gave up; `last` is the error of the final attempt.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The error of the last attempt.
        last: Box<Error>,
    },
    /// No savepoint of that name exists in the transaction.
    #[error("no savepoint named `{0}`")]
    SavepointNotFound(String),
    /// No prepared transaction has that global id.
    #[error("no prepared transaction with global id `{0}`")]
    PreparedNotFound(String),
    /// The change feed was asked for history that is no longer kept.
    #[error(
        "changes after version {requested} are no longer retained: history is kept only after \
         version {oldest} (older versions were collapsed by a checkpoint); export a snapshot \
         and follow the feed from its version"
    )]
    NotRetained {
        /// The version asked for.
        requested: Version,
        /// The oldest version after which history is complete.
        oldest: Version,
    },
    /// A prepared transaction with that global id already exists.
    #[error("a prepared transaction with global id `{0}` already exists")]
    DuplicateGlobalId(String),
}

fn label_suffix(label: &Option<String>) -> String {
    label
        .as_ref()
        .map(|l| format!(" (transaction `{l}`)"))
        .unwrap_or_default()
}

impl Error {
    /// True if running the whole transaction again may succeed: a conflict, a deadlock or a
    /// lock-wait timeout.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Conflict(_) | Error::Deadlock(_) | Error::LockTimeout { .. }
        )
    }

    /// The conflict report, if this is a conflict.
    pub fn conflict(&self) -> Option<&ConflictReport> {
        match self {
            Error::Conflict(report) => Some(report),
            _ => None,
        }
    }
}

/// Why a commit was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConflictKind {
    /// Another transaction committed a write to the same key after this one's snapshot
    /// (first committer wins).
    WriteWrite,
    /// A `put_if_version` precondition failed: the key's version is not the expected one.
    KeyVersion {
        /// The version the transaction expected.
        expected: Version,
    },
    /// An `expect_table_version` precondition failed.
    TableVersion {
        /// The version the transaction expected.
        expected: Version,
    },
    /// The table was created, dropped or recreated by a commit after this transaction's
    /// snapshot, and this transaction wrote to it.
    TableChanged,
    /// Serializable: a key this transaction read was changed by a commit after its snapshot.
    ReadWrite,
    /// Serializable: a commit after this transaction's snapshot inserted, changed or deleted a
    /// row in a range this transaction scanned (a phantom).
    Phantom,
    /// The key is reserved by a prepared two-phase-commit transaction.
    Reserved {
        /// The global id of the prepared transaction.
        global_id: String,
    },
    /// The key is locked by an active pessimistic transaction.
    Locked,
}

/// A report a person can act on: what clashed, where, and with which commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictReport {
    /// What kind of conflict.
    pub kind: ConflictKind,
    /// The table involved.
    pub table: String,
    /// The key involved, for key-level conflicts.
    pub key: Option<Vec<u8>>,
    /// This transaction's snapshot version.
    pub snapshot: Version,
    /// The version found: the commit that won, or the key's/table's actual version for a
    /// failed precondition (0 = the key does not exist; for reservations and locks, the
    /// newest committed version).
    pub winner: Version,
    /// This transaction's label, if it has one.
    pub label: Option<String>,
    /// The label of the transaction that committed `winner`, where known.
    pub winner_label: Option<String>,
}

/// One wait of a deadlock cycle: `waiter` wanted `key` of `table`, held by `holder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlockEdge {
    /// The waiting transaction's id.
    pub waiter: u64,
    /// Its label.
    pub waiter_label: Option<String>,
    /// The holding transaction's id.
    pub holder: u64,
    /// Its label.
    pub holder_label: Option<String>,
    /// The table of the key.
    pub table: String,
    /// The key.
    pub key: Vec<u8>,
}

/// The cycle of waits a deadlock victim would have closed. The first edge is the victim's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlockReport {
    /// The waits, in order around the cycle.
    pub cycle: Vec<DeadlockEdge>,
}

fn tx_name(id: u64, label: &Option<String>) -> String {
    match label {
        Some(l) => format!("transaction {id} `{l}`"),
        None => format!("transaction {id}"),
    }
}

impl fmt::Display for DeadlockReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadlock: ")?;
        for (i, e) in self.cycle.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(
                f,
                "{} waits for {} on table `{}` key {}",
                tx_name(e.waiter, &e.waiter_label),
                tx_name(e.holder, &e.holder_label),
                e.table,
                display_key(&e.key)
            )?;
        }
        write!(
            f,
            " (this transaction was chosen as the victim and rolled back)"
        )
    }
}

/// Formats a key as UTF-8 text when it is printable, else as hex.
pub(crate) fn display_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
    }
}

impl fmt::Display for ConflictReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match &self.key {
            Some(k) => format!("table `{}` key {}", self.table, display_key(k)),
            None => format!("table `{}`", self.table),
        };
        let who = match &self.label {
            Some(l) => format!("transaction `{l}`"),
            None => "this transaction".to_string(),
        };
        let winner = match &self.winner_label {
            Some(l) => format!("version {} (transaction `{l}`)", self.winner),
            None => format!("version {}", self.winner),
        };
        let snap = self.snapshot;
        match &self.kind {
            ConflictKind::WriteWrite => write!(
                f,
                "write-write conflict on {place}: {who} has snapshot {snap}, and {winner} \
                 committed a write to it first"
            ),
            ConflictKind::KeyVersion { expected } => write!(
                f,
                "version precondition failed on {place}: {who} expected version {expected}, \
                 found {winner} (snapshot {snap})"
            ),
            ConflictKind::TableVersion { expected } => write!(
                f,
                "table version precondition failed on {place}: {who} expected version \
                 {expected}, found {winner} (snapshot {snap})"
            ),
            ConflictKind::TableChanged => write!(
                f,
                "{place} was created or dropped by {winner} after the snapshot {snap} of {who}"
            ),
            ConflictKind::ReadWrite => write!(
                f,
                "serialization failure on {place}: {who} read it at snapshot {snap}, and \
                 {winner} changed it since"
            ),
            ConflictKind::Phantom => write!(
                f,
                "serialization failure (phantom) on {place}: {who} scanned a range at \
                 snapshot {snap}, and {winner} changed a row in it since"
            ),
            ConflictKind::Reserved { global_id } => write!(
                f,
                "{place} is reserved by prepared transaction `{global_id}`; {who} cannot \
                 commit a change to it until that transaction is resolved"
            ),
            ConflictKind::Locked => write!(
                f,
                "{place} is locked by an active pessimistic transaction; {who} cannot commit \
                 a change to it"
            ),
        }
    }
}

impl From<vellum_wal::Error> for Error {
    fn from(e: vellum_wal::Error) -> Self {
        use vellum_wal::Error as W;
        match e {
            W::Io { path, source } => Error::Io { path, source },
            W::Corruption {
                file,
                offset,
                reason,
            } => Error::Corruption {
                file,
                offset,
                reason,
            },
            W::UnsupportedVersion {
                file,
                found,
                supported,
            } => Error::UnsupportedFormat {
                file,
                found,
                supported,
            },
            W::Poisoned(why) => Error::Poisoned(why),
            W::RecordTooLarge { size, max } => Error::TransactionTooLarge { size, max },
            other => Error::Poisoned(other.to_string()),
        }
    }
}

impl From<vellum_storage::Error> for Error {
    fn from(e: vellum_storage::Error) -> Self {
        use vellum_storage::Error as S;
        match e {
            S::Io { path, source } => Error::Io { path, source },
            S::Corruption {
                file,
                offset,
                reason,
            } => Error::Corruption {
                file,
                offset,
                reason,
            },
            S::UnsupportedVersion {
                file,
                found,
                supported,
            } => Error::UnsupportedFormat {
                file,
                found,
                supported,
            },
            other => Error::Io {
                path: PathBuf::new(),
                source: io::Error::other(other.to_string()),
            },
        }
    }
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_report_names_table_key_and_versions() {
        let r = ConflictReport {
            kind: ConflictKind::WriteWrite,
            table: "accounts".into(),
            key: Some(b"alice".to_vec()),
            snapshot: Version(41),
            winner: Version(43),
            label: Some("transfer".into()),
            winner_label: None,
        };
        let text = Error::Conflict(Box::new(r)).to_string();
        for part in ["accounts", "\"alice\"", "41", "43", "transfer"] {
            assert!(text.contains(part), "{text}");
        }
        assert_eq!(display_key(&[0, 255]), "0x00ff");
    }
}
