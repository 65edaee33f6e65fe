//! Errors of the store. Messages name tables, columns, pragmas and SQLite result codes only:
//! never values, ids, subjects or key material.

use std::path::PathBuf;

use crate::keys::KeyError;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The root key does not open this store. Nothing was modified.
    #[error("the key does not open this store (wrong key); the database was not modified")]
    WrongKey,
    /// The key provider failed.
    #[error("key provider: {0}")]
    Key(#[from] KeyError),
    /// The database file is corrupt. When detected at open, the file (with its `-wal`/`-shm`)
    /// was moved aside to `quarantined_to` and a new open starts an empty store; when detected
    /// later, `quarantined_to` is `None` and the next open quarantines it.
    #[error("the store database is corrupt{}", match .quarantined_to { Some(_) => "; it was moved aside", None => "" })]
    Corrupt {
        /// Where the corrupt file now lives, if it was moved.
        quarantined_to: Option<PathBuf>,
    },
    /// A sealed value failed authentication: tampered with, moved between rows or columns,
    /// truncated, or sealed under another key. The value is not returned.
    #[error("sealed value in {table}.{column} failed authentication")]
    Integrity {
        /// Table of the value.
        table: &'static str,
        /// Column of the value.
        column: &'static str,
    },
    /// The audit log's HMAC chain is broken at this sequence number.
    #[error("audit log chain broken at entry {seq}")]
    AuditChainBroken {
        /// First entry that does not verify.
        seq: i64,
    },
    /// The row's data key was destroyed by an erasure: its ciphertext is unreadable by design.
    #[error("the data key of this row was destroyed (erased)")]
    KeyDestroyed,
    /// The file is a SQLite database but not a vitalcore store. Nothing was modified.
    #[error("the file is not a vitalcore store")]
    NotAStore,
    /// The database was written by a newer version of the SDK. Nothing was modified.
    #[error("store schema version {found} is newer than this SDK supports ({supported})")]
    SchemaTooNew {
        /// Version in the file.
        found: u32,
        /// Highest version this build knows.
        supported: u32,
    },
    /// A migration failed; it was rolled back and the store stays at the previous version.
    #[error("migration to schema version {version} failed: {source}")]
    Migration {
        /// Version being applied.
        version: u32,
        /// Cause.
        #[source]
        source: Box<StoreError>,
    },
    /// A pinned pragma did not take the expected value after open.
    #[error("pragma {pragma} is {found}, expected {expected}")]
    PragmaMismatch {
        /// Pragma name.
        pragma: &'static str,
        /// Value required.
        expected: String,
        /// Value found.
        found: String,
    },
    /// The disk is full. The transaction was rolled back; stored data is intact.
    #[error("disk full; the write was rolled back and stored data is intact")]
    DiskFull,
    /// The store stayed busy (another process holding the write lock) beyond every retry.
    #[error("the store stayed busy beyond the retry budget")]
    Busy,
    /// Operating system I/O error. Stored data is kept.
    #[error("I/O error (sqlite code {code}); stored data is kept")]
    Io {
        /// SQLite extended result code.
        code: i32,
    },
    /// The store cannot be opened at this path (missing directory, permissions).
    #[error("cannot open the store file: {0}")]
    CannotOpen(#[source] std::io::Error),
    /// Any other SQLite failure, by result code.
    #[error("sqlite error (extended code {code})")]
    Sqlite {
        /// SQLite extended result code (`-1` when the error came from the Rust wrapper).
        code: i32,
    },
    /// A stored value authenticated but does not decode: a bug or an unknown future layout.
    #[error("stored value has an unexpected layout")]
    Layout,
    /// The OS random source failed.
    #[error("secure random source failed")]
    Random,
    /// Bad input from the caller; the message names the field, not its value.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The requested record does not exist.
    #[error("not found")]
    NotFound,
}

impl StoreError {
    /// Whether the error means another connection holds a lock (retried internally).
    pub(crate) fn is_busy(&self) -> bool {
        matches!(self, Self::Busy)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match &e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                C::DatabaseBusy | C::DatabaseLocked => Self::Busy,
                C::DatabaseCorrupt | C::NotADatabase => Self::Corrupt {
                    quarantined_to: None,
                },
                C::DiskFull => Self::DiskFull,
                C::SystemIoFailure => Self::Io {
                    code: f.extended_code,
                },
                _ => Self::Sqlite {
                    code: f.extended_code,
                },
            },
            rusqlite::Error::QueryReturnedNoRows => Self::NotFound,
            // Wrapper errors (type conversions, wrong column): a bug, not data. The rusqlite
            // message could quote SQL, so only a code is kept.
            _ => Self::Sqlite { code: -1 },
        }
    }
}

impl From<super::codec::DecodeError> for StoreError {
    fn from(_: super::codec::DecodeError) -> Self {
        Self::Layout
    }
}

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;

    fn sqlite(code: i32) -> StoreError {
        rusqlite::Error::SqliteFailure(
            ffi::Error::new(code),
            Some("INSERT ... secret value".into()),
        )
        .into()
    }

    #[test]
    fn only_corrupt_and_notadb_count_as_corruption() {
        use super::super::db::is_corruption;
        assert!(is_corruption(&sqlite(ffi::SQLITE_CORRUPT)));
        assert!(is_corruption(&sqlite(ffi::SQLITE_NOTADB)));
        let kept = [
            (ffi::SQLITE_FULL, "DiskFull"),
            (ffi::SQLITE_IOERR_WRITE, "Io"),
            (ffi::SQLITE_IOERR_FSYNC, "Io"),
            (ffi::SQLITE_BUSY, "Busy"),
            (ffi::SQLITE_LOCKED, "Busy"),
            (ffi::SQLITE_BUSY_SNAPSHOT, "Busy"),
            (ffi::SQLITE_CONSTRAINT_UNIQUE, "Sqlite"),
            (ffi::SQLITE_READONLY, "Sqlite"),
        ];
        for (code, variant) in kept {
            let e = sqlite(code);
            assert!(!is_corruption(&e), "{code} must not quarantine");
            assert!(format!("{e:?}").starts_with(variant), "{code}: {e:?}");
            // The SQLite message (which may quote SQL or values) is never carried.
            assert!(!e.to_string().contains("secret") && !format!("{e:?}").contains("secret"));
            assert!(!e.to_string().contains("locked"));
        }
    }
}
