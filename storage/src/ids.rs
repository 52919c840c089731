//! Identifier newtypes shared by storage and its callers.

use std::fmt;

/// A commit version: one global, monotonically increasing counter assigned at commit.
/// Version 0 means "nothing": no commit has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version(pub u64);

impl Version {
    /// The version before any commit.
    pub const ZERO: Version = Version(0);
    /// The largest version.
    pub const MAX: Version = Version(u64::MAX);

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u64> for Version {
    fn from(v: u64) -> Self {
        Version(v)
    }
}

/// Identifier of a table inside storage. Table 0 is reserved for the caller's catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TableId(pub u32);

impl TableId {
    /// Largest id storage accepts (the id after it bounds range scans).
    pub const MAX: TableId = TableId(u32::MAX - 1);
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
