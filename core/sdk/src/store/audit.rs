//! Append-only audit log of data access and deletion, chained with an HMAC.
//!
//! Triggers refuse `UPDATE` and `DELETE`; the chain detects edits made around them (with the
//! triggers dropped, or on a copy of the file). Entries hold no personal data.

use rusqlite::OptionalExtension;

use super::db::now_ms;
use super::error::{Result, StoreError};
use super::types::{AuditAction, AuditEntry};
use super::{Store, WriteTx};

fn entry_bytes(seq: i64, at_ms: i64, action: &str, scope: &str, rows: i64) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + action.len() + scope.len());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&at_ms.to_be_bytes());
    for s in [action, scope] {
        v.extend_from_slice(&(s.len() as u32).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
    }
    v.extend_from_slice(&rows.to_be_bytes());
    v
}

impl WriteTx<'_> {
    /// Appends an audit entry inside this transaction.
    pub(crate) fn audit(
        &mut self,
        action: AuditAction,
        scope: &'static str,
        rows: u64,
    ) -> Result<()> {
        let last: Option<(i64, Vec<u8>)> = self
            .tx
            .prepare_cached("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (seq, prev) = match last {
            Some((s, m)) => (s + 1, m),
            None => (1, Vec::new()),
        };
        let at = now_ms();
        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
        let mac = self
            .store
            .keys
            .audit_mac(&prev, &entry_bytes(seq, at, action.as_str(), scope, rows));
        self.tx
            .prepare_cached("INSERT INTO audit_log (seq, at_ms, action, scope, rows, mac) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
            .execute(rusqlite::params![seq, at, action.as_str(), scope, rows, mac])?;
        Ok(())
    }
}

impl Store {
    pub(crate) fn audit_read(&self, scope: &'static str, rows: u64) -> Result<()> {
        if self.config.audit_reads {
            self.write(|tx| tx.audit(AuditAction::Read, scope, rows))?;
        }
        Ok(())
    }

    /// The whole audit log, oldest first (reading it is not itself audited).
    pub fn audit_log(&self) -> Result<Vec<AuditEntry>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, at_ms, action, scope, rows FROM audit_log ORDER BY seq",
            )?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(AuditEntry {
                    seq: r.get(0)?,
                    at_ms: r.get(1)?,
                    action: AuditAction::parse(&r.get::<_, String>(2)?)
                        .ok_or(StoreError::Layout)?,
                    scope: r.get(3)?,
                    rows: u64::try_from(r.get::<_, i64>(4)?).map_err(|_| StoreError::Layout)?,
                });
            }
            Ok(out)
        })
    }

    /// Verifies the audit log's HMAC chain; returns the number of entries.
    pub fn verify_audit_log(&self) -> Result<u64> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, at_ms, action, scope, rows, mac FROM audit_log ORDER BY seq",
            )?;
            let mut rows = stmt.query([])?;
            let mut prev: Vec<u8> = Vec::new();
            let mut expected_seq = 1i64;
            while let Some(r) = rows.next()? {
                let seq: i64 = r.get(0)?;
                let mac: Vec<u8> = r.get(5)?;
                let entry = entry_bytes(
                    seq,
                    r.get(1)?,
                    &r.get::<_, String>(2)?,
                    &r.get::<_, String>(3)?,
                    r.get(4)?,
                );
                // A gap in the sequence is a deleted entry.
                if seq != expected_seq || !self.keys.audit_verify(&prev, &entry, &mac) {
                    return Err(StoreError::AuditChainBroken { seq });
                }
                prev = mac;
                expected_seq += 1;
            }
            Ok((expected_seq - 1) as u64)
        })
    }
}
