//! The sync outbox: sealed records with idempotency keys, batches, attempts and quarantine.

use rusqlite::{params, params_from_iter, types::Value};

use super::crypto::Binding;
use super::db::now_ms;
use super::error::{Result, StoreError};
use super::types::{BatchFailure, OutboxDraft, OutboxRecord, Purpose, RecordId, SubjectId};
use super::{row_id, unauthentic, KeyMemo, Store, WriteTx};

fn binding<'a>(row: &'a [u8], key_id: i64) -> Binding<'a> {
    Binding {
        table: "outbox",
        row,
        column: "payload",
        key_id,
    }
}

impl WriteTx<'_> {
    /// Enqueues a record for upload, sealed with the subject's key for the record's purpose
    /// (so withdrawing consent for that purpose can shred exactly these records).
    pub fn enqueue_outbox(&mut self, subject: &SubjectId, d: &OutboxDraft) -> Result<RecordId> {
        let tag = self.store.subject_tag(subject);
        let (key_id, key) = self.key_for(&tag, &d.purpose)?;
        let id = RecordId::random()?;
        let idem: [u8; 16] = self.store.keys.random().map_err(|_| StoreError::Random)?;
        let row = row_id(&[&id.0, d.purpose.as_str().as_bytes()]);
        let sealed = self.seal(&key, binding(&row, key_id), &d.payload)?;
        self.tx
            .prepare_cached(
                "INSERT INTO outbox (id, subject_tag, key_id, purpose, check_id, created_ms, idempotency_key, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                &id.0[..],
                tag,
                key_id,
                d.purpose.as_str(),
                d.check_id.as_ref().map(|c| c.0.to_vec()),
                now_ms(),
                &idem[..],
                sealed
            ])?;
        Ok(id)
    }
}

impl Store {
    /// Records due for upload: not quarantined, not in flight, `next_attempt_at <= now_ms`, for
    /// one of `purposes` (those the user consented to), oldest first, at most `limit`. Every
    /// subject's records; sync uses [`Store::outbox_due_of`].
    pub fn outbox_due(
        &self,
        purposes: &[Purpose],
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>> {
        self.due(None, purposes, now_ms, limit)
    }

    /// [`Store::outbox_due`] restricted to one subject's records: consent is per subject, so
    /// one subject's sync must never pick up another's queue.
    pub fn outbox_due_of(
        &self,
        subject: &SubjectId,
        purposes: &[Purpose],
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>> {
        self.due(Some(subject), purposes, now_ms, limit)
    }

    fn due(
        &self,
        subject: Option<&SubjectId>,
        purposes: &[Purpose],
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>> {
        if purposes.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let placeholders = vec!["?"; purposes.len()].join(",");
        let sql = format!(
            "SELECT id, key_id, purpose, check_id, idempotency_key, batch_id, attempts, next_attempt_at_ms, quarantined, payload
             FROM outbox WHERE quarantined = 0 AND batch_id IS NULL AND next_attempt_at_ms <= ?
             AND (? IS NULL OR subject_tag = ?)
             AND purpose IN ({placeholders}) ORDER BY created_ms, rowid LIMIT ?"
        );
        let tag = match subject {
            Some(s) => Value::Blob(self.subject_tag(s)),
            None => Value::Null,
        };
        let mut args: Vec<Value> = vec![Value::Integer(now_ms), tag.clone(), tag];
        args.extend(purposes.iter().map(|p| Value::Text(p.as_str().to_owned())));
        args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(args.iter()))?;
            let mut out = Vec::new();
            let mut memo = KeyMemo::new();
            while let Some(r) = rows.next()? {
                let id = RecordId::from_slice(&r.get::<_, Vec<u8>>(0)?)?;
                let key_id: i64 = r.get(1)?;
                let purpose =
                    Purpose::new(r.get::<_, String>(2)?).map_err(|_| StoreError::Layout)?;
                let check_id = r
                    .get::<_, Option<Vec<u8>>>(3)?
                    .map(|b| RecordId::from_slice(&b))
                    .transpose()?;
                let idem: Vec<u8> = r.get(4)?;
                let batch_id = r
                    .get::<_, Option<Vec<u8>>>(5)?
                    .map(|b| RecordId::from_slice(&b))
                    .transpose()?;
                let sealed: Vec<u8> = r.get(9)?;
                let key = self.data_key(conn, key_id, &mut memo)?;
                let row = row_id(&[&id.0, purpose.as_str().as_bytes()]);
                let payload = key
                    .open(binding(&row, key_id), &sealed)
                    .map_err(unauthentic("outbox", "payload"))?;
                out.push(OutboxRecord {
                    id,
                    purpose,
                    check_id,
                    idempotency_key: idem.as_slice().try_into().map_err(|_| StoreError::Layout)?,
                    batch_id,
                    attempts: u32::try_from(r.get::<_, i64>(6)?).map_err(|_| StoreError::Layout)?,
                    next_attempt_at_ms: r.get(7)?,
                    quarantined: r.get::<_, i64>(8)? != 0,
                    payload: payload.to_vec(),
                });
            }
            Ok(out)
        })
    }

    /// Records claimed by a batch that was never acknowledged (the upload was cut, failed, or
    /// the app was killed), grouped by batch, oldest batch first. Sync re-sends each batch as
    /// it was formed, under the same key, instead of re-forming it.
    pub fn outbox_in_flight(&self) -> Result<Vec<(RecordId, Vec<OutboxRecord>)>> {
        self.in_flight(None)
    }

    /// [`Store::outbox_in_flight`] restricted to one subject's records.
    pub fn outbox_in_flight_of(
        &self,
        subject: &SubjectId,
    ) -> Result<Vec<(RecordId, Vec<OutboxRecord>)>> {
        self.in_flight(Some(subject))
    }

    fn in_flight(&self, subject: Option<&SubjectId>) -> Result<Vec<(RecordId, Vec<OutboxRecord>)>> {
        let sql = "SELECT id, key_id, purpose, check_id, idempotency_key, batch_id, attempts, next_attempt_at_ms, quarantined, payload
             FROM outbox WHERE quarantined = 0 AND batch_id IS NOT NULL AND (?1 IS NULL OR subject_tag = ?1)
             ORDER BY created_ms, rowid";
        let tag = subject.map(|s| self.subject_tag(s));
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(sql)?;
            let mut rows = stmt.query([&tag])?;
            let mut out: Vec<(RecordId, Vec<OutboxRecord>)> = Vec::new();
            let mut memo = KeyMemo::new();
            while let Some(r) = rows.next()? {
                let rec = self.decode_outbox_row(conn, r, &mut memo)?;
                let Some(batch) = rec.batch_id else {
                    continue;
                };
                match out.iter_mut().find(|(b, _)| *b == batch) {
                    Some((_, v)) => v.push(rec),
                    None => out.push((batch, vec![rec])),
                }
            }
            Ok(out)
        })
    }

    fn decode_outbox_row(
        &self,
        conn: &rusqlite::Connection,
        r: &rusqlite::Row<'_>,
        memo: &mut KeyMemo,
    ) -> Result<OutboxRecord> {
        let id = RecordId::from_slice(&r.get::<_, Vec<u8>>(0)?)?;
        let key_id: i64 = r.get(1)?;
        let purpose = Purpose::new(r.get::<_, String>(2)?).map_err(|_| StoreError::Layout)?;
        let check_id = r
            .get::<_, Option<Vec<u8>>>(3)?
            .map(|b| RecordId::from_slice(&b))
            .transpose()?;
        let idem: Vec<u8> = r.get(4)?;
        let batch_id = r
            .get::<_, Option<Vec<u8>>>(5)?
            .map(|b| RecordId::from_slice(&b))
            .transpose()?;
        let sealed: Vec<u8> = r.get(9)?;
        let key = self.data_key(conn, key_id, memo)?;
        let row = row_id(&[&id.0, purpose.as_str().as_bytes()]);
        let payload = key
            .open(binding(&row, key_id), &sealed)
            .map_err(unauthentic("outbox", "payload"))?;
        Ok(OutboxRecord {
            id,
            purpose,
            check_id,
            idempotency_key: idem.as_slice().try_into().map_err(|_| StoreError::Layout)?,
            batch_id,
            attempts: u32::try_from(r.get::<_, i64>(6)?).map_err(|_| StoreError::Layout)?,
            next_attempt_at_ms: r.get(7)?,
            quarantined: r.get::<_, i64>(8)? != 0,
            payload: payload.to_vec(),
        })
    }

    /// Marks records as in flight in a new batch; records already in a batch, quarantined or
    /// gone are skipped. Returns the batch id and how many records it holds.
    pub fn outbox_claim(&self, ids: &[RecordId]) -> Result<(RecordId, usize)> {
        let batch = RecordId::random()?;
        let n = self.write(|tx| {
            let mut stmt = tx.tx.prepare_cached(
                "UPDATE outbox SET batch_id = ?1 WHERE id = ?2 AND batch_id IS NULL AND quarantined = 0",
            )?;
            let mut n = 0;
            for id in ids {
                n += stmt.execute(params![&batch.0[..], &id.0[..]])?;
            }
            Ok(n)
        })?;
        Ok((batch, n))
    }

    /// The server acknowledged the batch: its records are deleted. Returns how many.
    pub fn outbox_ack(&self, batch: &RecordId) -> Result<usize> {
        self.write(|tx| {
            Ok(tx
                .tx
                .execute("DELETE FROM outbox WHERE batch_id = ?1", [&batch.0[..]])?)
        })
    }

    /// The batch upload failed: its records count one more attempt and wait until
    /// `next_attempt_at_ms`; those reaching `max_attempts` are quarantined.
    pub fn outbox_fail(
        &self,
        batch: &RecordId,
        next_attempt_at_ms: i64,
        max_attempts: u32,
    ) -> Result<BatchFailure> {
        self.write(|tx| {
            let quarantined = tx.tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, batch_id = NULL, quarantined = 1
                 WHERE batch_id = ?1 AND attempts + 1 >= ?2",
                params![&batch.0[..], max_attempts],
            )?;
            let retrying = tx.tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, batch_id = NULL, next_attempt_at_ms = ?2
                 WHERE batch_id = ?1",
                params![&batch.0[..], next_attempt_at_ms],
            )?;
            Ok(BatchFailure {
                retrying,
                quarantined,
            })
        })
    }

    /// Sets one record aside as poison (for example rejected by the server as malformed).
    pub fn outbox_quarantine(&self, id: &RecordId) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.tx.execute(
                "UPDATE outbox SET quarantined = 1, batch_id = NULL WHERE id = ?1",
                [&id.0[..]],
            )? > 0)
        })
    }

    /// Releases every in-flight batch (after a crash or restart mid-upload); the idempotency
    /// keys are unchanged, so re-sending is safe. Returns how many records were released.
    pub fn outbox_release_in_flight(&self) -> Result<usize> {
        self.write(|tx| {
            Ok(tx.tx.execute(
                "UPDATE outbox SET batch_id = NULL WHERE batch_id IS NOT NULL",
                [],
            )?)
        })
    }

    /// Number of records in the outbox: `(pending, quarantined)`.
    pub fn outbox_counts(&self) -> Result<(u64, u64)> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FILTER (WHERE quarantined = 0), count(*) FILTER (WHERE quarantined = 1) FROM outbox",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )?)
        })
    }
}
