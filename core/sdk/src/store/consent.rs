//! Consent decisions per subject and purpose, with history.

use rusqlite::params;

use super::crypto::Binding;
use super::error::{Result, StoreError};
use super::types::{ConsentDecision, Purpose, RecordId, SubjectId};
use super::{row_id, unauthentic, Store, WriteTx};

impl WriteTx<'_> {
    /// Appends a consent decision inside this transaction (for example together with the
    /// erasure request a withdrawal implies).
    pub fn record_consent(
        &mut self,
        subject: &SubjectId,
        decision: &ConsentDecision,
    ) -> Result<()> {
        let tag = self.store.subject_tag(subject);
        let id = RecordId::random()?;
        let row = row_id(&[&id.0, &tag, decision.purpose.as_str().as_bytes()]);
        let keys = &self.store.keys;
        let body = keys
            .meta
            .seal(&keys.rng, binding(&row), &decision.encode())
            .map_err(|_| StoreError::Random)?;
        self.tx
            .prepare_cached("INSERT INTO consent_events (id, subject_tag, purpose, body) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![&id.0[..], tag, decision.purpose.as_str(), body])?;
        Ok(())
    }
}

impl Store {
    /// Appends a consent decision; the latest decision per purpose is the current state.
    pub fn record_consent(&self, subject: &SubjectId, decision: &ConsentDecision) -> Result<()> {
        self.write(|tx| tx.record_consent(subject, decision))
    }

    /// Every decision of the subject, oldest first, optionally for one purpose.
    pub fn consent_history(
        &self,
        subject: &SubjectId,
        purpose: Option<&Purpose>,
    ) -> Result<Vec<ConsentDecision>> {
        let tag = self.subject_tag(subject);
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, purpose, body FROM consent_events
                 WHERE subject_tag = ?1 AND (?2 IS NULL OR purpose = ?2) ORDER BY seq",
            )?;
            let mut rows = stmt.query(params![tag, purpose.map(Purpose::as_str)])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let id: Vec<u8> = r.get(0)?;
                let p = Purpose::new(r.get::<_, String>(1)?).map_err(|_| StoreError::Layout)?;
                let body: Vec<u8> = r.get(2)?;
                let row = row_id(&[&id, &tag, p.as_str().as_bytes()]);
                let plain = self
                    .keys
                    .meta
                    .open(binding(&row), &body)
                    .map_err(unauthentic("consent_events", "body"))?;
                out.push(ConsentDecision::decode(p, &plain)?);
            }
            Ok(out)
        })
    }

    /// The current decision for a purpose (`None`: never asked).
    pub fn consent(
        &self,
        subject: &SubjectId,
        purpose: &Purpose,
    ) -> Result<Option<ConsentDecision>> {
        Ok(self.consent_history(subject, Some(purpose))?.pop())
    }
}

fn binding(row: &[u8]) -> Binding<'_> {
    Binding {
        table: "consent_events",
        row,
        column: "body",
        key_id: 0,
    }
}
