//! SQLite store: the embedded default. One writer connection (SQLite has one writer anyway, and
//! a single connection makes `BEGIN` never fail with `SQLITE_BUSY` between our own writers) and
//! a small reader pool, WAL journal. Every connection runs with `secure_delete`, so deleted rows
//! are overwritten with zeros in the pages that held them; an erasure then checkpoints the WAL
//! with TRUNCATE, so no older copy of those pages stays in the `-wal` file.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use vitalcore_protocol::FeatureRecord;

use super::*;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/001_init.sql")),
    (
        2,
        include_str!("../../migrations/sqlite/002_trust_boundary.sql"),
    ),
];

/// Rows per multi-row INSERT; keeps bound parameters far below SQLite's limit.
const CHUNK: usize = 400;

/// The SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file a `sqlite://` URL names.
    pub async fn connect(url: &str, acquire_timeout: Duration) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|_| StoreError::Backend("invalid sqlite url".into()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .pragma("secure_delete", "on")
            .busy_timeout(Duration::from_secs(5));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(acquire_timeout)
            .connect_with(opts.clone())
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(acquire_timeout)
            .connect_with(opts)
            .await?;
        Ok(Self { write, read })
    }
}

fn decode_record(row: &sqlx::sqlite::SqliteRow) -> StoreResult<StoredRecord> {
    let features: String = row.try_get("features")?;
    Ok(StoredRecord {
        seq: row.try_get("seq")?,
        purposes: row.try_get("purposes")?,
        label: row.try_get("label")?,
        record: FeatureRecord {
            record_id: row.try_get("record_id")?,
            subject: row.try_get("subject")?,
            study: row.try_get("study")?,
            kind: row.try_get("kind")?,
            feature_set: row.try_get("feature_set")?,
            captured_hour: row.try_get("captured_hour")?,
            age_band: row.try_get("age_band")?,
            quality: row.try_get("quality")?,
            features: features_from_json(&features)?,
        },
    })
}

fn decode_model(row: &sqlx::sqlite::SqliteRow) -> StoreResult<ModelRow> {
    Ok(ModelRow {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        signed_manifest: row.try_get("signed_manifest")?,
        artifact_key: row.try_get("artifact_key")?,
        rollout_percent: row.try_get("rollout_percent")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .execute(&self.write)
        .await?;
        for &(version, sql) in MIGRATIONS {
            let mut tx = self.write.begin().await?;
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_none() {
                // One statement at a time: the files hold plain DDL without inner ';'.
                for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    sqlx::query(stmt).execute(&mut *tx).await?;
                }
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)")
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        sqlx::query("SELECT 1").execute(&self.write).await?;
        Ok(())
    }

    async fn counts(&self) -> StoreResult<StoreCounts> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM devices) AS devices, (SELECT COUNT(*) FROM batches) AS batches, \
             (SELECT COUNT(*) FROM records) AS records, (SELECT COUNT(*) FROM labels) AS labels, \
             (SELECT COUNT(*) FROM idempotency) AS idempotency, (SELECT COUNT(*) FROM archive_refs) AS archive_refs",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(StoreCounts {
            devices: row.try_get("devices")?,
            batches: row.try_get("batches")?,
            records: row.try_get("records")?,
            labels: row.try_get("labels")?,
            idempotency: row.try_get("idempotency")?,
            archive_refs: row.try_get("archive_refs")?,
        })
    }

    async fn insert_device(
        &self,
        device_id: &str,
        credential_hash: &str,
        at: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO devices (device_id, credential_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(device_id)
        .bind(credential_hash)
        .bind(at)
        .bind(expires_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn device_by_credential(
        &self,
        credential_hash: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT device_id FROM devices WHERE credential_hash = ? AND revoked_at IS NULL AND expires_at > ?",
        )
        .bind(credential_hash)
        .bind(now)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn revoke_device(&self, device_id: &str, at: i64) -> StoreResult<()> {
        let n = sqlx::query(
            "UPDATE devices SET revoked_at = coalesce(revoked_at, ?) WHERE device_id = ?",
        )
        .bind(at)
        .bind(device_id)
        .execute(&self.write)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn idempotent_answer(
        &self,
        device_id: &str,
        key: &str,
    ) -> StoreResult<Option<StoredAnswer>> {
        let row = sqlx::query(
            "SELECT request_digest, status, body FROM idempotency WHERE device_id = ? AND idem_key = ?",
        )
        .bind(device_id)
        .bind(key)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            let status: i64 = r.try_get("status")?;
            Ok(StoredAnswer {
                request_digest: r.try_get("request_digest")?,
                status: u16::try_from(status).map_err(|_| StoreError::Corrupt("status"))?,
                body: r.try_get("body")?,
            })
        })
        .transpose()
    }

    async fn commit_batch(
        &self,
        b: &BatchWrite,
        answer: AnswerFn<'_>,
    ) -> StoreResult<CommitOutcome> {
        let mut tx = self.write.begin().await?;
        for p in &b.subjects {
            sqlx::query(
                "INSERT INTO subject_bindings (subject_digest, proof_hash, bound_at) VALUES (?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&p.subject_digest)
            .bind(&p.proof_hash)
            .bind(b.received_at)
            .execute(&mut *tx)
            .await?;
            let bound: String = sqlx::query_scalar(
                "SELECT proof_hash FROM subject_bindings WHERE subject_digest = ?",
            )
            .bind(&p.subject_digest)
            .fetch_one(&mut *tx)
            .await?;
            if bound != p.proof_hash {
                tx.rollback().await?;
                return Err(StoreError::Forbidden);
            }
        }
        let claimed = sqlx::query(
            "INSERT INTO idempotency (device_id, idem_key, request_digest, batch_id, status, body, created_at) \
             VALUES (?, ?, ?, ?, 0, x'', ?) ON CONFLICT DO NOTHING",
        )
        .bind(&b.device_id)
        .bind(&b.idempotency_key)
        .bind(&b.request_digest)
        .bind(&b.batch_id)
        .bind(b.received_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            tx.rollback().await?;
            let existing = self
                .idempotent_answer(&b.device_id, &b.idempotency_key)
                .await?
                .ok_or(StoreError::Corrupt("idempotency record vanished"))?;
            return Ok(CommitOutcome::Existing(existing));
        }
        let mut records_stored = 0u64;
        for chunk in b.records.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO records (subject, record_id, batch_id, study, kind, feature_set, \
                 captured_hour, age_band, quality, features, purposes) ",
            );
            qb.push_values(chunk, |mut row, r| {
                row.push_bind(r.subject.clone())
                    .push_bind(r.record_id.clone())
                    .push_bind(b.batch_id.clone())
                    .push_bind(r.study.clone())
                    .push_bind(r.kind.clone())
                    .push_bind(r.feature_set.clone())
                    .push_bind(r.captured_hour)
                    .push_bind(r.age_band.clone())
                    .push_bind(r.quality)
                    .push_bind(features_to_json(r))
                    .push_bind(b.purposes);
            });
            qb.push(" ON CONFLICT DO NOTHING");
            records_stored += qb.build().execute(&mut *tx).await?.rows_affected();
        }
        let mut labels_stored = 0u64;
        for chunk in b.labels.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO labels (subject, record_id, label, batch_id) ",
            );
            qb.push_values(chunk, |mut row, l| {
                row.push_bind(l.subject.clone())
                    .push_bind(l.record_id.clone())
                    .push_bind(l.label.clone())
                    .push_bind(b.batch_id.clone());
            });
            qb.push(" ON CONFLICT DO NOTHING");
            labels_stored += qb.build().execute(&mut *tx).await?.rows_affected();
        }
        for a in &b.archive {
            sqlx::query(
                "INSERT INTO archive_refs (object_key, batch_id, subject_digest) VALUES (?, ?, ?)",
            )
            .bind(&a.object_key)
            .bind(&b.batch_id)
            .bind(&a.subject_digest)
            .execute(&mut *tx)
            .await?;
        }
        let counts = InsertCounts {
            records_stored: u32::try_from(records_stored).unwrap_or(u32::MAX),
            records_duplicate: u32::try_from(b.records.len() as u64 - records_stored)
                .unwrap_or(u32::MAX),
            labels_stored: u32::try_from(labels_stored).unwrap_or(u32::MAX),
        };
        sqlx::query(
            "INSERT INTO batches (batch_id, region, purposes, received_at, records, labels) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&b.batch_id)
        .bind(&b.region)
        .bind(b.purposes)
        .bind(b.received_at)
        .bind(i64::from(counts.records_stored))
        .bind(i64::from(counts.labels_stored))
        .execute(&mut *tx)
        .await?;
        let (status, body) = answer(counts);
        sqlx::query(
            "UPDATE idempotency SET status = ?, body = ? WHERE device_id = ? AND idem_key = ?",
        )
        .bind(i64::from(status))
        .bind(&body)
        .bind(&b.device_id)
        .bind(&b.idempotency_key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(CommitOutcome::Committed(StoredAnswer {
            request_digest: b.request_digest.clone(),
            status,
            body,
        }))
    }

    async fn proof_mismatch(&self, subjects: &[SubjectProof]) -> StoreResult<bool> {
        for p in subjects {
            let bound: Option<String> = sqlx::query_scalar(
                "SELECT proof_hash FROM subject_bindings WHERE subject_digest = ?",
            )
            .bind(&p.subject_digest)
            .fetch_optional(&self.read)
            .await?;
            if bound.is_some_and(|h| h != p.proof_hash) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn records(&self, q: &RecordQuery) -> StoreResult<Vec<StoredRecord>> {
        let rows = sqlx::query(
            "SELECT r.seq, r.purposes, r.subject, r.record_id, r.study, r.kind, r.feature_set, \
             r.captured_hour, r.age_band, r.quality, r.features, l.label \
             FROM records r LEFT JOIN labels l ON l.subject = r.subject AND l.record_id = r.record_id \
             WHERE (r.purposes & ?) != 0 AND r.seq > ? AND (? IS NULL OR r.study = ?) \
             ORDER BY r.seq LIMIT ?",
        )
        .bind(purpose_bit(q.purpose))
        .bind(q.after_seq)
        .bind(&q.study)
        .bind(&q.study)
        .bind(q.limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(decode_record).collect()
    }

    async fn erase_subject(&self, e: &ErasureWrite<'_>) -> StoreResult<ErasureCounts> {
        let mut tx = self.write.begin().await?;
        let bound: Option<String> =
            sqlx::query_scalar("SELECT proof_hash FROM subject_bindings WHERE subject_digest = ?")
                .bind(e.subject_digest)
                .fetch_optional(&mut *tx)
                .await?;
        if bound.is_some_and(|h| Some(h.as_str()) != e.proof_hash) {
            tx.rollback().await?;
            return Err(StoreError::Forbidden);
        }
        let refs: Vec<(String, String)> = sqlx::query_as(
            "DELETE FROM archive_refs WHERE subject_digest = ? RETURNING object_key, batch_id",
        )
        .bind(e.subject_digest)
        .fetch_all(&mut *tx)
        .await?;
        let rec_batches: Vec<String> =
            sqlx::query_scalar("DELETE FROM records WHERE subject = ? RETURNING batch_id")
                .bind(e.subject)
                .fetch_all(&mut *tx)
                .await?;
        let label_batches: Vec<String> =
            sqlx::query_scalar("DELETE FROM labels WHERE subject = ? RETURNING batch_id")
                .bind(e.subject)
                .fetch_all(&mut *tx)
                .await?;
        let touched = touched_batches(&rec_batches, &label_batches, &refs);
        let mut batches = 0u64;
        for (batch_id, (records, labels)) in &touched {
            sqlx::query(
                "UPDATE batches SET records = records - ?, labels = labels - ? WHERE batch_id = ?",
            )
            .bind(*records)
            .bind(*labels)
            .bind(batch_id)
            .execute(&mut *tx)
            .await?;
            let gone = sqlx::query(
                "DELETE FROM batches WHERE batch_id = ? AND records <= 0 AND labels <= 0 \
                 AND NOT EXISTS (SELECT 1 FROM archive_refs WHERE batch_id = ?)",
            )
            .bind(batch_id)
            .bind(batch_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if gone > 0 {
                batches += gone;
                sqlx::query("DELETE FROM idempotency WHERE batch_id = ?")
                    .bind(batch_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let (records, labels) = (rec_batches.len() as u64, label_batches.len() as u64);
        let object_keys: Vec<String> = refs.into_iter().map(|(k, _)| k).collect();
        sqlx::query(
            "INSERT INTO erasure_audit (audit_id, at, records_deleted, labels_deleted, objects_deleted) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(e.audit_id)
        .bind(e.at)
        .bind(records as i64)
        .bind(labels as i64)
        .bind(object_keys.len() as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // secure_delete zeroed the rows in the pages written to the WAL; copy them into the
        // main file and cut the WAL to zero bytes, so no older copy of the pages survives. A
        // reader in the middle of a query can make it report busy: try again briefly.
        for attempt in 0..20 {
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&self.write)
                .await?;
            if busy == 0 {
                break;
            }
            if attempt == 19 {
                tracing::warn!("erasure: WAL checkpoint stayed busy; the next erasure retries it");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(ErasureCounts {
            records,
            labels,
            object_keys,
            batches,
        })
    }

    async fn purge_idempotency(&self, before: i64) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM idempotency WHERE created_at < ?")
            .bind(before)
            .execute(&self.write)
            .await?
            .rows_affected())
    }

    async fn insert_refusal(&self, r: &RefusalEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO refusal_audit (audit_id, at, device_id, action) VALUES (?, ?, ?, ?)",
        )
        .bind(&r.audit_id)
        .bind(r.at)
        .bind(&r.device_id)
        .bind(&r.action)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn refusals(&self) -> StoreResult<Vec<RefusalEntry>> {
        let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
            "SELECT audit_id, at, device_id, action FROM refusal_audit ORDER BY at, audit_id",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(audit_id, at, device_id, action)| RefusalEntry {
                audit_id,
                at,
                device_id,
                action,
            })
            .collect())
    }

    async fn audit_entries(&self) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT audit_id, at, records_deleted, labels_deleted, objects_deleted FROM erasure_audit ORDER BY at, audit_id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    audit_id: r.try_get("audit_id")?,
                    at: r.try_get("at")?,
                    records_deleted: r.try_get("records_deleted")?,
                    labels_deleted: r.try_get("labels_deleted")?,
                    objects_deleted: r.try_get("objects_deleted")?,
                })
            })
            .collect()
    }

    async fn insert_model(&self, m: &ModelRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO models (name, version, signed_manifest, artifact_key, rollout_percent, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.name)
        .bind(&m.version)
        .bind(&m.signed_manifest)
        .bind(&m.artifact_key)
        .bind(m.rollout_percent)
        .bind(m.created_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn models(&self, name: &str) -> StoreResult<Vec<ModelRow>> {
        let rows = sqlx::query(
            "SELECT name, version, signed_manifest, artifact_key, rollout_percent, created_at FROM models WHERE name = ?",
        )
        .bind(name)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(decode_model).collect()
    }

    async fn set_rollout(&self, name: &str, version: &str, percent: i64) -> StoreResult<()> {
        let n = sqlx::query("UPDATE models SET rollout_percent = ? WHERE name = ? AND version = ?")
            .bind(percent)
            .bind(name)
            .bind(version)
            .execute(&self.write)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn insert_partner_key(
        &self,
        key: &PartnerKey,
        key_hash: &str,
        at: i64,
    ) -> StoreResult<()> {
        let scopes =
            serde_json::to_string(&key.scopes).map_err(|_| StoreError::Corrupt("scopes"))?;
        sqlx::query(
            "INSERT INTO partner_keys (key_id, key_hash, scopes, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&key.key_id)
        .bind(key_hash)
        .bind(scopes)
        .bind(at)
        .bind(key.expires_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn partner_key(&self, key_hash: &str, now: i64) -> StoreResult<Option<PartnerKey>> {
        let row = sqlx::query(
            "SELECT key_id, scopes, expires_at FROM partner_keys \
             WHERE key_hash = ? AND revoked_at IS NULL AND expires_at > ?",
        )
        .bind(key_hash)
        .bind(now)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            let scopes: String = r.try_get("scopes")?;
            Ok(PartnerKey {
                key_id: r.try_get("key_id")?,
                scopes: serde_json::from_str(&scopes).map_err(|_| StoreError::Corrupt("scopes"))?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    async fn revoke_partner_key(&self, key_id: &str, at: i64) -> StoreResult<()> {
        let n = sqlx::query(
            "UPDATE partner_keys SET revoked_at = coalesce(revoked_at, ?) WHERE key_id = ?",
        )
        .bind(at)
        .bind(key_id)
        .execute(&self.write)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
