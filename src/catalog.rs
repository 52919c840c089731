//! The catalog: table names and ids, stored as an ordinary versioned table.
//!
//! Table id 0 holds one cell per table: key = the table's name (UTF-8), value = its id
//! (u32 little-endian). Because the catalog is a table, creating and dropping tables is
//! transactional, snapshot-consistent and conflict-checked like any other write. Ids are never
//! reused while the database is open; a dropped table's cells stay invisible because no name
//! maps to its id any more.

use crate::error::{Error, Result};
use crate::options::TABLE_NAME_MAX;
use vellum_storage::TableId;

/// The catalog's own table id.
pub(crate) const CATALOG: TableId = TableId(0);

pub(crate) fn encode_id(id: TableId) -> [u8; 4] {
    id.0.to_le_bytes()
}

pub(crate) fn decode_id(value: &[u8]) -> Option<TableId> {
    let bytes: [u8; 4] = value.try_into().ok()?;
    Some(TableId(u32::from_le_bytes(bytes)))
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument(
            "table name must not be empty".into(),
        ));
    }
    if name.len() > TABLE_NAME_MAX {
        return Err(Error::InvalidArgument(format!(
            "table name of {} bytes exceeds the maximum of {TABLE_NAME_MAX}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(
            "table name must not contain control characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_bad_values_are_rejected() {
        assert_eq!(decode_id(&encode_id(TableId(77))), Some(TableId(77)));
        assert_eq!(decode_id(b"abc"), None);
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("accounts").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"x".repeat(256)).is_err());
    }
}
