//! Erasure by crypto-shredding: rows are deleted AND their data keys destroyed.
//!
//! With `secure_delete` the freed pages are zeroed, and a `TRUNCATE` checkpoint drops the WAL
//! frames that still held them. Any copy of a ciphertext that survives elsewhere (a stale WAL
//! page, a free page, a file copy taken after the erasure) is sealed under a key that no longer
//! exists. A full copy of the store taken *before* the erasure still holds the wrapped key: it
//! is protected by the platform root key only.

use rusqlite::params;

use super::error::Result;
use super::types::{AuditAction, ErasureReport, Purpose, SubjectId};
use super::Store;

impl Store {
    /// Erases everything of a subject: checks, raw windows, labels, pending uploads, and every
    /// data key of the subject, including its pseudonym secret. Consent history is kept as
    /// the record of the request.
    pub fn erase_subject(&self, subject: &SubjectId) -> Result<ErasureReport> {
        let tag = self.subject_tag(subject);
        let (mut report, ids) = self.write(|tx| {
            let ids = key_ids(
                tx.tx,
                "SELECT id FROM data_keys WHERE subject_tag = ?1",
                params![tag],
            )?;
            let mut rows = tx
                .tx
                .execute("DELETE FROM checks WHERE subject_tag = ?1", [&tag])?;
            rows += tx
                .tx
                .execute("DELETE FROM outbox WHERE subject_tag = ?1", [&tag])?;
            let mut keys = tx
                .tx
                .execute("DELETE FROM data_keys WHERE subject_tag = ?1", [&tag])?;
            // The pseudonym secret goes too: pseudonyms made after the erasure cannot be
            // linked to the ones the server knew.
            keys += tx.tx.execute(
                "DELETE FROM pseudonym_secrets WHERE subject_tag = ?1",
                [&tag],
            )?;
            tx.audit(AuditAction::Erase, "subject", rows as u64)?;
            Ok((
                ErasureReport {
                    keys_destroyed: keys,
                    rows_deleted: rows,
                    wal_truncated: false,
                },
                ids,
            ))
        })?;
        self.forget_keys(&ids);
        report.wal_truncated = self.checkpoint()?;
        Ok(report)
    }

    /// Erases a subject's data for one purpose and destroys that purpose's key. For
    /// [`Purpose::care`] that is the local health record (checks with their raw windows, labels
    /// and uploads); for a sync purpose, the pending uploads for it (on consent withdrawal).
    pub fn erase_purpose(&self, subject: &SubjectId, purpose: &Purpose) -> Result<ErasureReport> {
        let tag = self.subject_tag(subject);
        let care = *purpose == Purpose::care();
        let (mut report, ids) = self.write(|tx| {
            let ids = key_ids(
                tx.tx,
                "SELECT id FROM data_keys WHERE subject_tag = ?1 AND purpose = ?2",
                params![tag, purpose.as_str()],
            )?;
            let mut rows = 0;
            if care {
                rows += tx
                    .tx
                    .execute("DELETE FROM checks WHERE subject_tag = ?1", [&tag])?;
            }
            rows += tx.tx.execute(
                "DELETE FROM outbox WHERE subject_tag = ?1 AND purpose = ?2",
                params![tag, purpose.as_str()],
            )?;
            let keys = tx.tx.execute(
                "DELETE FROM data_keys WHERE subject_tag = ?1 AND purpose = ?2",
                params![tag, purpose.as_str()],
            )?;
            tx.audit(AuditAction::Erase, "purpose", rows as u64)?;
            Ok((
                ErasureReport {
                    keys_destroyed: keys,
                    rows_deleted: rows,
                    wal_truncated: false,
                },
                ids,
            ))
        })?;
        self.forget_keys(&ids);
        report.wal_truncated = self.checkpoint()?;
        Ok(report)
    }
}

fn key_ids(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<i64>> {
    let mut stmt = tx.prepare_cached(sql)?;
    let ids = stmt
        .query_map(p, |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}
