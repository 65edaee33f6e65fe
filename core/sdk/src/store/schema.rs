//! Numbered migrations, tracked with `PRAGMA user_version`.
//!
//! Migration `N` lives in `migrations/NNN_name.sql`, is applied in its own `BEGIN IMMEDIATE`
//! transaction together with `user_version = N`, so a crash or failure leaves the store at
//! `N - 1`, never half-migrated. A fresh store gets every migration plus its salt and key-check
//! canary in one transaction.

use rusqlite::{Connection, TransactionBehavior};

use super::error::{Result, StoreError};

/// `(version, sql)` for every migration, in order. Released entries are never edited.
pub const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../../migrations/001_initial.sql")),
    (2, include_str!("../../migrations/002_outbox_backoff.sql")),
    (3, include_str!("../../migrations/003_sync_state.sql")),
];

/// Schema version this build creates and reads.
pub const SCHEMA_VERSION: u32 = 3;

pub(crate) fn user_version(conn: &Connection) -> Result<u32> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    u32::try_from(v).map_err(|_| StoreError::NotAStore)
}

pub(crate) fn is_empty_database(conn: &Connection) -> Result<bool> {
    let n: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    Ok(n == 0)
}

/// Applies migrations after `from` up to `target`, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection, target: u32) -> Result<()> {
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= target) {
        // Checked without a lock first: opening an up-to-date store must not wait for another
        // connection's write transaction.
        if user_version(conn)? >= version {
            continue;
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read inside the write lock: another process may have migrated meanwhile.
        if user_version(&tx)? >= version {
            continue;
        }
        let step = || -> Result<()> {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
            Ok(())
        };
        step().map_err(|e| StoreError::Migration {
            version,
            source: Box::new(e),
        })?;
        tx.commit()?;
    }
    Ok(())
}

/// Creates every table of a fresh store and runs `init` (salt, canary) in the same transaction.
/// Returns `false` without changes if another connection initialized the file first.
pub(crate) fn create_fresh(
    conn: &mut Connection,
    target: u32,
    init: impl FnOnce(&Connection) -> Result<()>,
) -> Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !is_empty_database(&tx)? {
        return Ok(false);
    }
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= target) {
        tx.execute_batch(sql).map_err(|e| StoreError::Migration {
            version,
            source: Box::new(e.into()),
        })?;
    }
    init(&tx)?;
    tx.pragma_update(None, "user_version", target)?;
    tx.commit()?;
    Ok(true)
}
