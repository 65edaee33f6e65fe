//! PostgreSQL store (production; RDS/Aurora-compatible). A batch is one transaction; its
//! records go in one `INSERT ... SELECT FROM UNNEST(arrays)` statement (one round trip per
//! batch, a prepared statement cached per connection).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgPool, Row};
use vitalcore_protocol::FeatureRecord;

use super::*;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/001_init.sql")),
    (
        2,
        include_str!("../../migrations/postgres/002_trust_boundary.sql"),
    ),
];

/// Serializes migrations when several nodes start at once.
const MIGRATION_LOCK: i64 = 0x7669_7461_6c63;

/// The PostgreSQL implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects a pool to a `postgres://` URL.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> StoreResult<Self> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::Backend("invalid postgres url".into()))?;
        Self::connect_with(opts, max_connections, acquire_timeout).await
    }

    /// Connects with every table in `schema` (created if missing); tests use one schema each
    /// so they run in parallel against one database.
    pub async fn connect_in_schema(
        url: &str,
        schema: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> StoreResult<Self> {
        if !schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StoreError::Backend("invalid schema name".into()));
        }
        let opts = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::Backend("invalid postgres url".into()))?;
        let mut conn = sqlx::PgConnection::connect_with(&opts).await?;
        // The name was checked to be [A-Za-z0-9_] above, so formatting it in is safe.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Self::connect_with(
            opts.options([("search_path", schema)]),
            max_connections,
            acquire_timeout,
        )
        .await
    }

    async fn connect_with(
        opts: PgConnectOptions,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            // A connection broken while the database was down is dropped, not reused.
            .test_before_acquire(true)
            .connect_lazy_with(opts);
        Ok(Self { pool })
    }

    /// The underlying pool (tests hold connections to saturate it).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn decode_record(row: &PgRow) -> StoreResult<StoredRecord> {
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

fn subject_arrays(subjects: &[SubjectProof]) -> (Vec<&str>, Vec<&str>) {
    subjects
        .iter()
        .map(|p| (p.subject_digest.as_str(), p.proof_hash.as_str()))
        .unzip()
}

fn decode_model(row: &PgRow) -> StoreResult<ModelRow> {
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
impl Store for PostgresStore {
    async fn migrate(&self) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        for &(version, sql) in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_none() {
                // One statement at a time: the files hold plain DDL without inner ';'.
                for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    sqlx::query(stmt).execute(&mut *tx).await?;
                }
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)")
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn counts(&self) -> StoreResult<StoreCounts> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM devices) AS devices, (SELECT COUNT(*) FROM batches) AS batches, \
             (SELECT COUNT(*) FROM records) AS records, (SELECT COUNT(*) FROM labels) AS labels, \
             (SELECT COUNT(*) FROM idempotency) AS idempotency, (SELECT COUNT(*) FROM archive_refs) AS archive_refs",
        )
        .fetch_one(&self.pool)
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
            "INSERT INTO devices (device_id, credential_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(device_id)
        .bind(credential_hash)
        .bind(at)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn device_by_credential(
        &self,
        credential_hash: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT device_id FROM devices WHERE credential_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(credential_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn revoke_device(&self, device_id: &str, at: i64) -> StoreResult<()> {
        let n = sqlx::query(
            "UPDATE devices SET revoked_at = coalesce(revoked_at, $1) WHERE device_id = $2",
        )
        .bind(at)
        .bind(device_id)
        .execute(&self.pool)
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
            "SELECT request_digest, status, body FROM idempotency WHERE device_id = $1 AND idem_key = $2",
        )
        .bind(device_id)
        .bind(key)
        .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        if !b.subjects.is_empty() {
            // First proof wins (a concurrent first upload of the same subject blocks on the
            // key until the other commits); then any subject bound to another proof refuses
            // the whole batch, before anything else is written.
            let (digests, hashes) = subject_arrays(&b.subjects);
            sqlx::query(
                "INSERT INTO subject_bindings (subject_digest, proof_hash, bound_at) \
                 SELECT d, h, $3 FROM UNNEST($1::text[], $2::text[]) AS t(d, h) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&digests)
            .bind(&hashes)
            .bind(b.received_at)
            .execute(&mut *tx)
            .await?;
            // A statement of its own: under READ COMMITTED it sees a binding another
            // transaction committed while the insert above waited for it.
            let mismatched: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM UNNEST($1::text[], $2::text[]) AS t(d, h) \
                 JOIN subject_bindings s ON s.subject_digest = t.d WHERE s.proof_hash <> t.h)",
            )
            .bind(&digests)
            .bind(&hashes)
            .fetch_one(&mut *tx)
            .await?;
            if mismatched {
                tx.rollback().await?;
                return Err(StoreError::Forbidden);
            }
        }
        // A concurrent transaction holding the same key blocks here until it ends, then this
        // insert does nothing: exactly one writer wins, the other replays its answer.
        let claimed = sqlx::query(
            "INSERT INTO idempotency (device_id, idem_key, request_digest, batch_id, status, body, created_at) \
             VALUES ($1, $2, $3, $4, 0, ''::bytea, $5) ON CONFLICT DO NOTHING",
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
        let n = b.records.len();
        let mut subject = Vec::with_capacity(n);
        let mut record_id = Vec::with_capacity(n);
        let mut study = Vec::with_capacity(n);
        let mut kind = Vec::with_capacity(n);
        let mut feature_set = Vec::with_capacity(n);
        let mut captured = Vec::with_capacity(n);
        let mut age_band = Vec::with_capacity(n);
        let mut quality = Vec::with_capacity(n);
        let mut features = Vec::with_capacity(n);
        for r in &b.records {
            subject.push(r.subject.as_str());
            record_id.push(r.record_id.as_str());
            study.push(r.study.as_str());
            kind.push(r.kind.as_str());
            feature_set.push(r.feature_set.as_str());
            captured.push(r.captured_hour);
            age_band.push(r.age_band.as_deref());
            quality.push(r.quality);
            features.push(features_to_json(r));
        }
        let records_stored = if n == 0 {
            0
        } else {
            sqlx::query(
                "INSERT INTO records (subject, record_id, batch_id, study, kind, feature_set, captured_hour, \
                 age_band, quality, features, purposes) \
                 SELECT s, r, $3, st, k, fs, ch, ab, q, f, $11 FROM UNNEST($1::text[], $2::text[], $4::text[], \
                 $5::text[], $6::text[], $7::int8[], $8::text[], $9::float8[], $10::text[]) \
                 AS t(s, r, st, k, fs, ch, ab, q, f) ON CONFLICT DO NOTHING",
            )
            .bind(&subject)
            .bind(&record_id)
            .bind(&b.batch_id)
            .bind(&study)
            .bind(&kind)
            .bind(&feature_set)
            .bind(&captured)
            .bind(&age_band)
            .bind(&quality)
            .bind(&features)
            .bind(b.purposes)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        };
        let labels_stored = if b.labels.is_empty() {
            0
        } else {
            let ls: Vec<&str> = b.labels.iter().map(|l| l.subject.as_str()).collect();
            let lr: Vec<&str> = b.labels.iter().map(|l| l.record_id.as_str()).collect();
            let ll: Vec<&str> = b.labels.iter().map(|l| l.label.as_str()).collect();
            sqlx::query(
                "INSERT INTO labels (subject, record_id, label, batch_id) \
                 SELECT s, r, l, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(s, r, l) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&ls)
            .bind(&lr)
            .bind(&ll)
            .bind(&b.batch_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        };
        if !b.archive.is_empty() {
            let keys: Vec<&str> = b.archive.iter().map(|a| a.object_key.as_str()).collect();
            let digests: Vec<&str> = b
                .archive
                .iter()
                .map(|a| a.subject_digest.as_str())
                .collect();
            sqlx::query(
                "INSERT INTO archive_refs (object_key, batch_id, subject_digest) \
                 SELECT k, $2, d FROM UNNEST($1::text[], $3::text[]) AS t(k, d)",
            )
            .bind(&keys)
            .bind(&b.batch_id)
            .bind(&digests)
            .execute(&mut *tx)
            .await?;
        }
        let counts = InsertCounts {
            records_stored: u32::try_from(records_stored).unwrap_or(u32::MAX),
            records_duplicate: u32::try_from(n as u64 - records_stored).unwrap_or(u32::MAX),
            labels_stored: u32::try_from(labels_stored).unwrap_or(u32::MAX),
        };
        let (status, body) = answer(counts);
        sqlx::query(
            "WITH b AS (INSERT INTO batches (batch_id, region, purposes, received_at, records, labels) \
             VALUES ($1, $3, $4, $5, $6, $7)) \
             UPDATE idempotency SET status = $8, body = $9 WHERE device_id = $2 AND idem_key = $10",
        )
        .bind(&b.batch_id)
        .bind(&b.device_id)
        .bind(&b.region)
        .bind(b.purposes)
        .bind(b.received_at)
        .bind(i64::from(counts.records_stored))
        .bind(i64::from(counts.labels_stored))
        .bind(i64::from(status))
        .bind(&body)
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
        if subjects.is_empty() {
            return Ok(false);
        }
        let (digests, hashes) = subject_arrays(subjects);
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM UNNEST($1::text[], $2::text[]) AS t(d, h) \
             JOIN subject_bindings s ON s.subject_digest = t.d WHERE s.proof_hash <> t.h)",
        )
        .bind(&digests)
        .bind(&hashes)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn records(&self, q: &RecordQuery) -> StoreResult<Vec<StoredRecord>> {
        let rows = sqlx::query(
            "SELECT r.seq, r.purposes, r.subject, r.record_id, r.study, r.kind, r.feature_set, \
             r.captured_hour, r.age_band, r.quality, r.features, l.label \
             FROM records r LEFT JOIN labels l ON l.subject = r.subject AND l.record_id = r.record_id \
             WHERE (r.purposes & $1) <> 0 AND r.seq > $2 AND ($3::text IS NULL OR r.study = $3) \
             ORDER BY r.seq LIMIT $4",
        )
        .bind(purpose_bit(q.purpose))
        .bind(q.after_seq)
        .bind(&q.study)
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_record).collect()
    }

    async fn erase_subject(&self, e: &ErasureWrite<'_>) -> StoreResult<ErasureCounts> {
        let mut tx = self.pool.begin().await?;
        // FOR UPDATE: a first upload binding the subject concurrently waits for this erasure.
        let bound: Option<String> = sqlx::query_scalar(
            "SELECT proof_hash FROM subject_bindings WHERE subject_digest = $1 FOR UPDATE",
        )
        .bind(e.subject_digest)
        .fetch_optional(&mut *tx)
        .await?;
        if bound.is_some_and(|h| Some(h.as_str()) != e.proof_hash) {
            tx.rollback().await?;
            return Err(StoreError::Forbidden);
        }
        let refs: Vec<(String, String)> = sqlx::query_as(
            "DELETE FROM archive_refs WHERE subject_digest = $1 RETURNING object_key, batch_id",
        )
        .bind(e.subject_digest)
        .fetch_all(&mut *tx)
        .await?;
        let rec_batches: Vec<String> =
            sqlx::query_scalar("DELETE FROM records WHERE subject = $1 RETURNING batch_id")
                .bind(e.subject)
                .fetch_all(&mut *tx)
                .await?;
        let label_batches: Vec<String> =
            sqlx::query_scalar("DELETE FROM labels WHERE subject = $1 RETURNING batch_id")
                .bind(e.subject)
                .fetch_all(&mut *tx)
                .await?;
        let touched = touched_batches(&rec_batches, &label_batches, &refs);
        let mut batches = 0u64;
        if !touched.is_empty() {
            let ids: Vec<&str> = touched.keys().map(String::as_str).collect();
            let recs: Vec<i64> = touched.values().map(|v| v.0).collect();
            let labs: Vec<i64> = touched.values().map(|v| v.1).collect();
            let gone: Vec<String> = sqlx::query_scalar(
                "WITH u AS (UPDATE batches b SET records = b.records - t.r, labels = b.labels - t.l \
                   FROM UNNEST($1::text[], $2::int8[], $3::int8[]) AS t(id, r, l) \
                   WHERE b.batch_id = t.id RETURNING b.batch_id, b.records, b.labels) \
                 SELECT batch_id FROM u WHERE records <= 0 AND labels <= 0 \
                   AND NOT EXISTS (SELECT 1 FROM archive_refs a WHERE a.batch_id = u.batch_id)",
            )
            .bind(&ids)
            .bind(&recs)
            .bind(&labs)
            .fetch_all(&mut *tx)
            .await?;
            if !gone.is_empty() {
                batches = sqlx::query("DELETE FROM batches WHERE batch_id = ANY($1)")
                    .bind(&gone)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("DELETE FROM idempotency WHERE batch_id = ANY($1)")
                    .bind(&gone)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let (records, labels) = (rec_batches.len() as u64, label_batches.len() as u64);
        let object_keys: Vec<String> = refs.into_iter().map(|(k, _)| k).collect();
        sqlx::query(
            "INSERT INTO erasure_audit (audit_id, at, records_deleted, labels_deleted, objects_deleted) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(e.audit_id)
        .bind(e.at)
        .bind(records as i64)
        .bind(labels as i64)
        .bind(object_keys.len() as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ErasureCounts {
            records,
            labels,
            object_keys,
            batches,
        })
    }

    async fn purge_idempotency(&self, before: i64) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn insert_refusal(&self, r: &RefusalEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO refusal_audit (audit_id, at, device_id, action) VALUES ($1, $2, $3, $4)",
        )
        .bind(&r.audit_id)
        .bind(r.at)
        .bind(&r.device_id)
        .bind(&r.action)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn refusals(&self) -> StoreResult<Vec<RefusalEntry>> {
        let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
            "SELECT audit_id, at, device_id, action FROM refusal_audit ORDER BY at, audit_id",
        )
        .fetch_all(&self.pool)
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
        .fetch_all(&self.pool)
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
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&m.name)
        .bind(&m.version)
        .bind(&m.signed_manifest)
        .bind(&m.artifact_key)
        .bind(m.rollout_percent)
        .bind(m.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn models(&self, name: &str) -> StoreResult<Vec<ModelRow>> {
        let rows = sqlx::query(
            "SELECT name, version, signed_manifest, artifact_key, rollout_percent, created_at FROM models WHERE name = $1",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_model).collect()
    }

    async fn set_rollout(&self, name: &str, version: &str, percent: i64) -> StoreResult<()> {
        let n =
            sqlx::query("UPDATE models SET rollout_percent = $1 WHERE name = $2 AND version = $3")
                .bind(percent)
                .bind(name)
                .bind(version)
                .execute(&self.pool)
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
            "INSERT INTO partner_keys (key_id, key_hash, scopes, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.key_id)
        .bind(key_hash)
        .bind(scopes)
        .bind(at)
        .bind(key.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn partner_key(&self, key_hash: &str, now: i64) -> StoreResult<Option<PartnerKey>> {
        let row = sqlx::query(
            "SELECT key_id, scopes, expires_at FROM partner_keys \
             WHERE key_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(key_hash)
        .bind(now)
        .fetch_optional(&self.pool)
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
            "UPDATE partner_keys SET revoked_at = coalesce(revoked_at, $1) WHERE key_id = $2",
        )
        .bind(at)
        .bind(key_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
