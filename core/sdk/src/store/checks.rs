//! Checks, raw windows and outcome labels.

use rusqlite::{params, Connection, OptionalExtension};

use super::crypto::Binding;
use super::db::now_ms;
use super::error::{Result, StoreError};
use super::types::{
    AuditAction, CheckKind, CheckRecord, OutboxDraft, OutcomeLabel, RawWindow, RecordId, SubjectId,
};
use super::{row_id, unauthentic, KeyMemo, Store, WriteTx};

const MS_PER_MIN: i64 = 60_000;
/// Upper bounds that keep one row well inside SQLite's limits and the codec's u32 lengths.
const MAX_FEATURES: usize = 4096;
const MAX_RAW_SAMPLES: usize = 10_000_000;

fn check_binding<'a>(row: &'a [u8], column: &'static str, key_id: i64) -> Binding<'a> {
    Binding {
        table: "checks",
        row,
        column,
        key_id,
    }
}

/// What [`Store::save_check`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedCheck {
    /// The outbox record, if one was enqueued.
    pub outbox_id: Option<RecordId>,
    /// The raw windows stored (empty when raw retention is off).
    pub raw_ids: Vec<RecordId>,
}

/// A history query: one subject, a time range, optionally one kind.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    subject: SubjectId,
    from_ms: i64,
    to_ms: i64,
    kind: Option<CheckKind>,
}

impl HistoryQuery {
    /// Checks of `subject` that started in `[from_ms, to_ms)` (Unix ms), any kind.
    pub fn new(subject: SubjectId, from_ms: i64, to_ms: i64) -> Self {
        Self {
            subject,
            from_ms,
            to_ms,
            kind: None,
        }
    }

    /// Only checks of this kind. Default: every kind.
    pub fn kind(mut self, kind: CheckKind) -> Self {
        self.kind = Some(kind);
        self
    }
}

impl WriteTx<'_> {
    /// Stores a check, sealed with its subject's `care` key.
    pub fn insert_check(&mut self, c: &CheckRecord) -> Result<()> {
        if c.ended_at_ms < c.started_at_ms {
            return Err(StoreError::InvalidInput("check ends before it starts"));
        }
        if c.features.len() > MAX_FEATURES {
            return Err(StoreError::InvalidInput("too many features"));
        }
        let tag = self.store.subject_tag(&c.subject);
        let (key_id, key) = self.key_for(&tag, &super::Purpose::care())?;
        let row = c.id.0;
        let features = self.seal(
            &key,
            check_binding(&row, "features", key_id),
            &zeroizing(c.encode_features()),
        )?;
        let detail = self.seal(
            &key,
            check_binding(&row, "detail", key_id),
            &zeroizing(c.encode_detail()),
        )?;
        self.tx
            .prepare_cached(
                "INSERT INTO checks (id, subject_tag, key_id, kind, started_min, features, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                &row[..],
                tag,
                key_id,
                c.kind.as_str(),
                c.started_at_ms.div_euclid(MS_PER_MIN),
                features,
                detail
            ])?;
        Ok(())
    }

    fn check_key(&mut self, check_id: &RecordId) -> Result<i64> {
        self.tx
            .prepare_cached("SELECT key_id FROM checks WHERE id = ?1")?
            .query_row([&check_id.0[..]], |r| r.get(0))
            .optional()?
            .ok_or(StoreError::NotFound)
    }

    /// Stores a raw window of a check stored earlier (or in this transaction), if raw retention
    /// is on; returns `None` and stores nothing when it is off (the default).
    pub fn insert_raw_window(
        &mut self,
        check_id: &RecordId,
        w: &RawWindow,
    ) -> Result<Option<RecordId>> {
        let Some(keep) = self.store.config.raw_retention else {
            return Ok(None);
        };
        if !(w.rate_hz.is_finite() && w.rate_hz > 0.0) || w.values.len() > MAX_RAW_SAMPLES {
            return Err(StoreError::InvalidInput(
                "raw window rate or length out of range",
            ));
        }
        let key_id = self.check_key(check_id)?;
        let key = self.key_by_id(key_id)?;
        let id = RecordId::random()?;
        let row = row_id(&[&id.0, &check_id.0]);
        let sealed = self.seal(
            &key,
            Binding {
                table: "raw_windows",
                row: &row,
                column: "samples",
                key_id,
            },
            &zeroizing(w.encode()),
        )?;
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let expires_min = now_ms().saturating_add(keep_ms).div_euclid(MS_PER_MIN);
        self.tx
            .prepare_cached(
                "INSERT INTO raw_windows (id, check_id, key_id, expires_min, samples) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![&id.0[..], &check_id.0[..], key_id, expires_min, sealed])?;
        Ok(Some(id))
    }

    /// Attaches an outcome label to a stored check.
    pub fn insert_label(&mut self, check_id: &RecordId, label: &OutcomeLabel) -> Result<RecordId> {
        let key_id = self.check_key(check_id)?;
        let key = self.key_by_id(key_id)?;
        let id = RecordId::random()?;
        let row = row_id(&[&id.0, &check_id.0]);
        let sealed = self.seal(
            &key,
            Binding {
                table: "labels",
                row: &row,
                column: "body",
                key_id,
            },
            &zeroizing(label.encode()),
        )?;
        self.tx
            .prepare_cached(
                "INSERT INTO labels (id, check_id, key_id, body) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![&id.0[..], &check_id.0[..], key_id, sealed])?;
        Ok(id)
    }
}

/// The stored columns of a check, before opening.
struct SealedCheck {
    kind: String,
    key_id: i64,
    features: Vec<u8>,
    detail: Vec<u8>,
}

/// kind, key id, features, detail, subject tag.
type CheckRow = (String, i64, Vec<u8>, Vec<u8>, Vec<u8>);

fn zeroizing(v: Vec<u8>) -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(v)
}

impl Store {
    /// Stores a finished check with its outbox record and raw windows in ONE transaction: the
    /// engine's `finish()` path.
    pub fn save_check(
        &self,
        check: &CheckRecord,
        outbox: Option<&OutboxDraft>,
        raw: &[RawWindow],
    ) -> Result<SavedCheck> {
        self.write(|tx| {
            tx.insert_check(check)?;
            let outbox_id = match outbox {
                Some(d) => Some(tx.enqueue_outbox(&check.subject, d)?),
                None => None,
            };
            let mut raw_ids = Vec::new();
            for w in raw {
                if let Some(id) = tx.insert_raw_window(&check.id, w)? {
                    raw_ids.push(id);
                }
            }
            Ok(SavedCheck { outbox_id, raw_ids })
        })
    }

    fn decode_check_row(
        &self,
        conn: &Connection,
        id: &[u8],
        row: SealedCheck,
        memo: &mut KeyMemo,
    ) -> Result<CheckRecord> {
        let SealedCheck {
            kind,
            key_id,
            features,
            detail,
        } = row;
        let key = self.data_key(conn, key_id, memo)?;
        let f = key
            .open_owned(check_binding(id, "features", key_id), features)
            .map_err(unauthentic("checks", "features"))?;
        let d = key
            .open_owned(check_binding(id, "detail", key_id), detail)
            .map_err(unauthentic("checks", "detail"))?;
        let kind = CheckKind::new(kind).map_err(|_| StoreError::Layout)?;
        Ok(CheckRecord::decode(
            RecordId::from_slice(id)?,
            kind,
            &f,
            &d,
        )?)
    }

    /// One check by id, decrypted.
    pub fn check(&self, id: &RecordId) -> Result<Option<CheckRecord>> {
        let found = self.read(|conn| {
            let row: Option<CheckRow> = conn
                .prepare_cached(
                    "SELECT kind, key_id, features, detail, subject_tag FROM checks WHERE id = ?1",
                )?
                .query_row([&id.0[..]], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()?;
            match row {
                None => Ok(None),
                Some((kind, key_id, f, d, tag)) => {
                    let sealed = SealedCheck {
                        kind,
                        key_id,
                        features: f,
                        detail: d,
                    };
                    let c = self.decode_check_row(conn, &id.0, sealed, &mut KeyMemo::new())?;
                    if self.subject_tag(&c.subject) != tag {
                        return Err(StoreError::Integrity {
                            table: "checks",
                            column: "subject_tag",
                        });
                    }
                    Ok(Some(c))
                }
            }
        })?;
        self.audit_read("checks", found.is_some() as u64)?;
        Ok(found)
    }

    /// History: the subject's checks in the query's time range, decrypted, oldest first.
    pub fn history(&self, q: &HistoryQuery) -> Result<Vec<CheckRecord>> {
        if q.to_ms <= q.from_ms {
            return Err(StoreError::InvalidInput("history range is empty"));
        }
        let tag = self.subject_tag(&q.subject);
        let lo = q.from_ms.div_euclid(MS_PER_MIN);
        let hi = (q.to_ms - 1).div_euclid(MS_PER_MIN);
        let mut out = self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, kind, key_id, features, detail FROM checks
                 WHERE subject_tag = ?1 AND started_min BETWEEN ?2 AND ?3 AND (?4 IS NULL OR kind = ?4)
                 ORDER BY started_min",
            )?;
            let mut rows = stmt.query(params![tag, lo, hi, q.kind.as_ref().map(|k| k.as_str())])?;
            let mut out = Vec::new();
            let mut memo = KeyMemo::new();
            while let Some(r) = rows.next()? {
                let id: Vec<u8> = r.get(0)?;
                let sealed = SealedCheck {
                    kind: r.get(1)?,
                    key_id: r.get(2)?,
                    features: r.get(3)?,
                    detail: r.get(4)?,
                };
                let c = self.decode_check_row(conn, &id, sealed, &mut memo)?;
                if c.subject != q.subject {
                    // The plaintext tag was moved to this subject; the sealed subject says otherwise.
                    return Err(StoreError::Integrity { table: "checks", column: "subject_tag" });
                }
                if (q.from_ms..q.to_ms).contains(&c.started_at_ms) {
                    out.push(c);
                }
            }
            Ok(out)
        })?;
        out.sort_by_key(|c| (c.started_at_ms, c.id));
        self.audit_read("checks", out.len() as u64)?;
        Ok(out)
    }

    /// The raw windows stored for a check, decrypted.
    pub fn raw_windows(&self, check_id: &RecordId) -> Result<Vec<RawWindow>> {
        let out = self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, key_id, samples FROM raw_windows WHERE check_id = ?1 ORDER BY rowid",
            )?;
            let mut rows = stmt.query([&check_id.0[..]])?;
            let mut out = Vec::new();
            let mut memo = KeyMemo::new();
            while let Some(r) = rows.next()? {
                let id: Vec<u8> = r.get(0)?;
                let key_id: i64 = r.get(1)?;
                let sealed: Vec<u8> = r.get(2)?;
                let key = self.data_key(conn, key_id, &mut memo)?;
                let row = row_id(&[&id, &check_id.0]);
                let plain = key
                    .open_owned(
                        Binding {
                            table: "raw_windows",
                            row: &row,
                            column: "samples",
                            key_id,
                        },
                        sealed,
                    )
                    .map_err(unauthentic("raw_windows", "samples"))?;
                out.push(RawWindow::decode(&plain)?);
            }
            Ok(out)
        })?;
        self.audit_read("raw_windows", out.len() as u64)?;
        Ok(out)
    }

    /// The outcome labels of a check, decrypted, in insertion order.
    pub fn labels(&self, check_id: &RecordId) -> Result<Vec<OutcomeLabel>> {
        let out = self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, key_id, body FROM labels WHERE check_id = ?1 ORDER BY rowid",
            )?;
            let mut rows = stmt.query([&check_id.0[..]])?;
            let mut out = Vec::new();
            let mut memo = KeyMemo::new();
            while let Some(r) = rows.next()? {
                let id: Vec<u8> = r.get(0)?;
                let key_id: i64 = r.get(1)?;
                let sealed: Vec<u8> = r.get(2)?;
                let key = self.data_key(conn, key_id, &mut memo)?;
                let row = row_id(&[&id, &check_id.0]);
                let plain = key
                    .open(
                        Binding {
                            table: "labels",
                            row: &row,
                            column: "body",
                            key_id,
                        },
                        &sealed,
                    )
                    .map_err(unauthentic("labels", "body"))?;
                out.push(OutcomeLabel::decode(&plain)?);
            }
            Ok(out)
        })?;
        self.audit_read("labels", out.len() as u64)?;
        Ok(out)
    }

    /// Deletes a check with its raw windows, labels and pending uploads. Returns whether it
    /// existed.
    pub fn delete_check(&self, id: &RecordId) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .tx
                .execute("DELETE FROM checks WHERE id = ?1", [&id.0[..]])?;
            tx.audit(AuditAction::Delete, "checks", n as u64)?;
            Ok(n > 0)
        })
    }

    /// Deletes raw windows whose retention period ended before `now_ms`. Returns how many.
    pub fn purge_expired_raw(&self, now_ms: i64) -> Result<usize> {
        self.write(|tx| {
            let n = tx.tx.execute(
                "DELETE FROM raw_windows WHERE expires_min < ?1",
                [now_ms.div_euclid(MS_PER_MIN)],
            )?;
            tx.audit(AuditAction::Purge, "raw_windows", n as u64)?;
            Ok(n)
        })
    }
}
