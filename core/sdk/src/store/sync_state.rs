//! What engine-level sync keeps between runs: the device credential, each subject's pseudonym
//! secret, and erasure requests not yet confirmed by the server. All sealed with the meta key.

use rusqlite::{params, OptionalExtension};
use zeroize::Zeroizing;

use super::crypto::Binding;
use super::db::now_ms;
use super::error::{Result, StoreError};
use super::types::{RecordId, SubjectId};
use super::{row_id, unauthentic, Store, WriteTx};

/// Names of the device-level values kept in `sync_meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMeta {
    /// The bearer credential the server issued at enrollment.
    Credential,
}

impl SyncMeta {
    fn name(self) -> &'static str {
        match self {
            Self::Credential => "credential",
        }
    }
}

/// An erasure request waiting for delivery. `Debug` hides the pseudonym.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingErasure {
    /// Row id.
    pub id: RecordId,
    /// When the user asked, Unix milliseconds.
    pub created_ms: i64,
    /// The pseudonym whose server data is to be erased.
    pub pseudonym: String,
    /// Its possession proof, computed when the request was stored (the pseudonym secret may be
    /// shredded since); `None` for a request stored before proofs existed.
    pub proof: Option<String>,
}

impl std::fmt::Debug for PendingErasure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingErasure")
            .field("id", &self.id)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

fn binding<'a>(table: &'static str, column: &'static str, row: &'a [u8]) -> Binding<'a> {
    Binding {
        table,
        row,
        column,
        key_id: 0,
    }
}

impl WriteTx<'_> {
    /// Queues an erasure request for `pseudonym` (with its possession proof) inside this
    /// transaction.
    pub fn queue_erasure(&mut self, pseudonym: &str, proof: Option<&str>) -> Result<RecordId> {
        let id = RecordId::random()?;
        let keys = &self.store.keys;
        // `pseudonym` or `pseudonym\nproof`: neither contains a line break.
        let plain = match proof {
            Some(p) => format!("{pseudonym}\n{p}"),
            None => pseudonym.to_owned(),
        };
        let body = keys
            .meta
            .seal(
                &keys.rng,
                binding("pending_erasures", "body", &id.0),
                plain.as_bytes(),
            )
            .map_err(|_| StoreError::Random)?;
        self.tx
            .prepare_cached(
                "INSERT INTO pending_erasures (id, created_ms, body) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![&id.0[..], now_ms(), body])?;
        Ok(id)
    }
}

impl Store {
    /// A device-level sync value, if set.
    pub fn sync_meta(&self, which: SyncMeta) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let sealed: Option<Vec<u8>> = self.read(|c| {
            Ok(
                c.prepare_cached("SELECT value FROM sync_meta WHERE name = ?1")?
                    .query_row([which.name()], |r| r.get(0))
                    .optional()?,
            )
        })?;
        sealed
            .map(|s| {
                self.keys
                    .meta
                    .open(binding("sync_meta", "value", which.name().as_bytes()), &s)
                    .map_err(unauthentic("sync_meta", "value"))
            })
            .transpose()
    }

    /// Sets (or replaces) a device-level sync value.
    pub fn set_sync_meta(&self, which: SyncMeta, value: &[u8]) -> Result<()> {
        let keys = &self.keys;
        let sealed = keys
            .meta
            .seal(
                &keys.rng,
                binding("sync_meta", "value", which.name().as_bytes()),
                value,
            )
            .map_err(|_| StoreError::Random)?;
        self.write(|tx| {
            tx.tx
                .prepare_cached(
                    "INSERT INTO sync_meta (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![which.name(), sealed])?;
            Ok(())
        })
    }

    /// The subject's pseudonym secret, created on first use. After [`Store::erase_subject`]
    /// a new, unrelated secret is created.
    pub fn pseudonym_secret(&self, subject: &SubjectId) -> Result<Zeroizing<[u8; 32]>> {
        if let Some(s) = self.existing_pseudonym_secret(subject)? {
            return Ok(s);
        }
        let tag = self.subject_tag(subject);
        let fresh = self.keys.new_data_key().map_err(|_| StoreError::Random)?;
        let row = row_id(&[&tag]);
        let sealed = self
            .keys
            .meta
            .seal(
                &self.keys.rng,
                binding("pseudonym_secrets", "secret", &row),
                &fresh[..],
            )
            .map_err(|_| StoreError::Random)?;
        // Another thread or process may create it first: the first one wins, and everyone
        // reads the winner back.
        self.write(|tx| {
            tx.tx
                .prepare_cached(
                    "INSERT INTO pseudonym_secrets (subject_tag, secret) VALUES (?1, ?2)
                     ON CONFLICT (subject_tag) DO NOTHING",
                )?
                .execute(params![tag, sealed])?;
            Ok(())
        })?;
        self.existing_pseudonym_secret(subject)?
            .ok_or(StoreError::Layout)
    }

    /// The subject's pseudonym secret if one was ever created (and not erased since).
    pub fn existing_pseudonym_secret(
        &self,
        subject: &SubjectId,
    ) -> Result<Option<Zeroizing<[u8; 32]>>> {
        let tag = self.subject_tag(subject);
        let sealed: Option<Vec<u8>> = self.read(|c| {
            Ok(
                c.prepare_cached("SELECT secret FROM pseudonym_secrets WHERE subject_tag = ?1")?
                    .query_row([&tag], |r| r.get(0))
                    .optional()?,
            )
        })?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let row = row_id(&[&tag]);
        let plain = self
            .keys
            .meta
            .open(binding("pseudonym_secrets", "secret", &row), &sealed)
            .map_err(unauthentic("pseudonym_secrets", "secret"))?;
        let mut out = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(StoreError::Layout);
        }
        out.copy_from_slice(&plain);
        Ok(Some(out))
    }

    /// Queues an erasure request for `pseudonym` (with its possession proof) on its own.
    pub fn queue_erasure(&self, pseudonym: &str, proof: Option<&str>) -> Result<RecordId> {
        self.write(|tx| tx.queue_erasure(pseudonym, proof))
    }

    /// Erasure requests not yet confirmed by the server, oldest first.
    pub fn pending_erasures(&self) -> Result<Vec<PendingErasure>> {
        let rows: Vec<(Vec<u8>, i64, Vec<u8>)> = self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT id, created_ms, body FROM pending_erasures ORDER BY seq")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(id, created_ms, body)| {
                let id = RecordId::from_slice(&id)?;
                let plain = self
                    .keys
                    .meta
                    .open(binding("pending_erasures", "body", &id.0), &body)
                    .map_err(unauthentic("pending_erasures", "body"))?;
                let body = String::from_utf8(plain.to_vec()).map_err(|_| StoreError::Layout)?;
                let (pseudonym, proof) = match body.split_once('\n') {
                    Some((p, proof)) => (p.to_owned(), Some(proof.to_owned())),
                    None => (body, None),
                };
                Ok(PendingErasure {
                    id,
                    created_ms,
                    pseudonym,
                    proof,
                })
            })
            .collect()
    }

    /// The server confirmed an erasure request: it is forgotten. Returns whether it existed.
    pub fn erasure_delivered(&self, id: &RecordId) -> Result<bool> {
        self.write(|tx| {
            Ok(tx
                .tx
                .execute("DELETE FROM pending_erasures WHERE id = ?1", [&id.0[..]])?
                > 0)
        })
    }
}

impl Store {
    /// Privacy loss already charged to `(subject, purpose)`.
    pub fn epsilon_spent(&self, subject: &SubjectId, purpose: &super::Purpose) -> Result<f64> {
        let tag = self.subject_tag(subject);
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT coalesce(sum(epsilon), 0.0) FROM ldp_charges WHERE subject_tag = ?1 AND purpose = ?2",
            )?
            .query_row(params![tag, purpose.as_str()], |r| r.get(0))?)
        })
    }

    /// Charges `epsilon` to `(subject, purpose)` for each record of `ids` not charged before,
    /// in order, as long as the total stays within `budget`, all in one transaction. Returns
    /// the records that may be uploaded (charged now or earlier) and whether any was refused
    /// because the budget is spent.
    pub fn charge_epsilon(
        &self,
        subject: &SubjectId,
        purpose: &super::Purpose,
        ids: &[RecordId],
        epsilon: f64,
        budget: f64,
    ) -> Result<(Vec<RecordId>, bool)> {
        if !(epsilon.is_finite() && epsilon > 0.0 && budget.is_finite()) {
            return Err(StoreError::InvalidInput(
                "epsilon and budget must be finite, epsilon > 0",
            ));
        }
        let tag = self.subject_tag(subject);
        self.write(|tx| {
            let mut spent: f64 = tx
                .tx
                .prepare_cached(
                    "SELECT coalesce(sum(epsilon), 0.0) FROM ldp_charges WHERE subject_tag = ?1 AND purpose = ?2",
                )?
                .query_row(params![tag, purpose.as_str()], |r| r.get(0))?;
            let mut ok = Vec::with_capacity(ids.len());
            let mut refused = false;
            for id in ids {
                let charged: bool = tx
                    .tx
                    .prepare_cached("SELECT count(*) FROM ldp_charges WHERE record_id = ?1")?
                    .query_row([&id.0[..]], |r| r.get::<_, i64>(0))?
                    > 0;
                if charged {
                    ok.push(*id);
                    continue;
                }
                // A relative slack so that budget = k * epsilon admits exactly k records.
                if spent + epsilon > budget * (1.0 + 1e-9) {
                    refused = true;
                    continue;
                }
                tx.tx
                    .prepare_cached(
                        "INSERT INTO ldp_charges (record_id, subject_tag, purpose, epsilon) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![&id.0[..], tag, purpose.as_str(), epsilon])?;
                spent += epsilon;
                ok.push(*id);
            }
            Ok((ok, refused))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keys::InMemoryKeyProvider;
    use crate::store::{Purpose, StoreConfig};

    fn open(dir: &std::path::Path) -> Store {
        Store::open(
            StoreConfig::new(dir.join("s.db")),
            &InMemoryKeyProvider::new([9; 32]),
        )
        .unwrap()
    }

    #[test]
    fn secrets_and_requests_persist_sealed_and_the_secret_dies_with_the_subject() {
        let dir = tempfile::tempdir().unwrap();
        let who = SubjectId::new("subject-a").unwrap();
        let pseudonym = "f00dfeedcafebeef0123456789abcdef";
        let (secret, id) = {
            let s = open(dir.path());
            assert!(s.existing_pseudonym_secret(&who).unwrap().is_none());
            let secret = s.pseudonym_secret(&who).unwrap();
            s.set_sync_meta(SyncMeta::Credential, b"vcd_credential-canary")
                .unwrap();
            let id = s.queue_erasure(pseudonym, Some(&"ab".repeat(32))).unwrap();
            s.queue_erasure("legacy0123456789", None).unwrap();
            s.checkpoint().unwrap();
            (secret, id)
        };
        let file = std::fs::read(dir.path().join("s.db")).unwrap();
        for needle in [pseudonym.as_bytes(), b"credential-canary", &secret[..]] {
            assert!(
                !file.windows(needle.len()).any(|w| w == needle),
                "plaintext in the store file"
            );
        }
        let s = open(dir.path());
        assert_eq!(
            s.pseudonym_secret(&who).unwrap(),
            secret,
            "stable across reopen"
        );
        assert_eq!(
            s.sync_meta(SyncMeta::Credential)
                .unwrap()
                .unwrap()
                .as_slice(),
            b"vcd_credential-canary"
        );
        let pending = s.pending_erasures().unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(
            (pending[0].id, pending[0].pseudonym.as_str()),
            (id, pseudonym)
        );
        assert_eq!(pending[0].proof, Some("ab".repeat(32)));
        assert_eq!(
            (pending[1].pseudonym.as_str(), pending[1].proof.as_deref()),
            ("legacy0123456789", None),
            "a request stored without a proof reads back without one"
        );
        assert!(s.erasure_delivered(&pending[1].id).unwrap());
        assert!(!format!("{pending:?}").contains(pseudonym));
        assert!(s.erasure_delivered(&id).unwrap());
        assert!(s.pending_erasures().unwrap().is_empty());

        let report = s.erase_subject(&who).unwrap();
        assert!(report.keys_destroyed >= 1);
        assert!(s.existing_pseudonym_secret(&who).unwrap().is_none());
        assert_ne!(s.pseudonym_secret(&who).unwrap(), secret);
    }

    #[test]
    fn epsilon_is_charged_once_per_record_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let who = SubjectId::new("subject-a").unwrap();
        let p = Purpose::new("research").unwrap();
        let other = Purpose::new("model_training").unwrap();
        let ids: Vec<RecordId> = (0..4).map(|_| RecordId::random().unwrap()).collect();
        let (ok, refused) = s.charge_epsilon(&who, &p, &ids[..2], 0.5, 1.5).unwrap();
        assert_eq!((ok.as_slice(), refused), (&ids[..2], false));
        // Already charged records pass without a new charge; one more fits, the last not.
        let (ok, refused) = s.charge_epsilon(&who, &p, &ids, 0.5, 1.5).unwrap();
        assert_eq!((ok.as_slice(), refused), (&ids[..3], true));
        assert_eq!(s.epsilon_spent(&who, &p).unwrap(), 1.5);
        assert_eq!(s.epsilon_spent(&who, &other).unwrap(), 0.0);
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.epsilon_spent(&who, &p).unwrap(), 1.5);
        let (ok, refused) = s.charge_epsilon(&who, &p, &ids[3..], 0.5, 1.5).unwrap();
        assert!(ok.is_empty() && refused);
        assert!(s.charge_epsilon(&who, &p, &ids, 0.0, 1.0).is_err());
    }
}
