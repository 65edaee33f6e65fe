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
    /// Queues an erasure request for `pseudonym` inside this transaction.
    pub fn queue_erasure(&mut self, pseudonym: &str) -> Result<RecordId> {
        let id = RecordId::random()?;
        let keys = &self.store.keys;
        let body = keys
            .meta
            .seal(
                &keys.rng,
                binding("pending_erasures", "body", &id.0),
                pseudonym.as_bytes(),
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

    /// Queues an erasure request for `pseudonym` on its own.
    pub fn queue_erasure(&self, pseudonym: &str) -> Result<RecordId> {
        self.write(|tx| tx.queue_erasure(pseudonym))
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
                let pseudonym =
                    String::from_utf8(plain.to_vec()).map_err(|_| StoreError::Layout)?;
                Ok(PendingErasure {
                    id,
                    created_ms,
                    pseudonym,
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
