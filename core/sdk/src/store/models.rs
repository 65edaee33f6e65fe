//! Cache of model bundles and the active version per model.

use rusqlite::{params, OptionalExtension};

use super::crypto::Binding;
use super::error::{Result, StoreError};
use super::types::{ModelBundle, RecordId};
use super::{row_id, unauthentic, Store};

fn binding<'a>(row: &'a [u8], column: &'static str) -> Binding<'a> {
    Binding {
        table: "model_bundles",
        row,
        column,
        key_id: 0,
    }
}

/// id, model, version, sealed manifest, sealed artifact.
type BundleRow = (Vec<u8>, String, String, Vec<u8>, Vec<u8>);

impl Store {
    /// Caches a downloaded bundle (replacing a cached bundle of the same model and version).
    pub fn put_model_bundle(&self, b: &ModelBundle) -> Result<RecordId> {
        if b.model.is_empty() || b.version.is_empty() {
            return Err(StoreError::InvalidInput(
                "model name and version must be non-empty",
            ));
        }
        self.write(|tx| {
            // Re-caching a version keeps its row id, so the active pointer stays valid.
            let existing: Option<Vec<u8>> = tx
                .tx
                .query_row(
                    "SELECT id FROM model_bundles WHERE model = ?1 AND version = ?2",
                    params![b.model, b.version],
                    |r| r.get(0),
                )
                .optional()?;
            let id = match existing {
                Some(id) => RecordId::from_slice(&id)?,
                None => RecordId::random()?,
            };
            let row = row_id(&[&id.0, b.model.as_bytes(), b.version.as_bytes()]);
            let keys = &self.keys;
            let seal = |col, bytes: &[u8]| {
                keys.meta
                    .seal(&keys.rng, binding(&row, col), bytes)
                    .map_err(|_| StoreError::Random)
            };
            let manifest = seal("manifest", &b.manifest)?;
            let artifact = seal("artifact", &b.artifact)?;
            tx.tx.execute(
                "INSERT INTO model_bundles (id, model, version, manifest, artifact) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET manifest = excluded.manifest, artifact = excluded.artifact",
                params![&id.0[..], b.model, b.version, manifest, artifact],
            )?;
            Ok(id)
        })
    }

    /// Makes a cached version the active one for its model (atomically).
    pub fn set_active_model(&self, model: &str, version: &str) -> Result<()> {
        self.write(|tx| {
            let id: Vec<u8> = tx
                .tx
                .query_row(
                    "SELECT id FROM model_bundles WHERE model = ?1 AND version = ?2",
                    params![model, version],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or(StoreError::NotFound)?;
            tx.tx.execute(
                "INSERT INTO model_active (model, bundle_id) VALUES (?1, ?2)
                 ON CONFLICT (model) DO UPDATE SET bundle_id = excluded.bundle_id",
                params![model, id],
            )?;
            Ok(())
        })
    }

    /// The active bundle of a model.
    pub fn active_model(&self, model: &str) -> Result<Option<ModelBundle>> {
        self.load_bundle(
            "SELECT b.id, b.model, b.version, b.manifest, b.artifact FROM model_active a
             JOIN model_bundles b ON b.id = a.bundle_id WHERE a.model = ?1 AND ?2 IS NULL",
            model,
            None,
        )
    }

    /// A cached bundle by model and version.
    pub fn model_bundle(&self, model: &str, version: &str) -> Result<Option<ModelBundle>> {
        self.load_bundle(
            "SELECT id, model, version, manifest, artifact FROM model_bundles WHERE model = ?1 AND version = ?2",
            model,
            Some(version),
        )
    }

    fn load_bundle(
        &self,
        sql: &str,
        model: &str,
        version: Option<&str>,
    ) -> Result<Option<ModelBundle>> {
        self.read(|c| {
            let row: Option<BundleRow> = c
                .prepare_cached(sql)?
                .query_row(params![model, version], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()?;
            let Some((id, model, version, manifest, artifact)) = row else {
                return Ok(None);
            };
            let row = row_id(&[&id, model.as_bytes(), version.as_bytes()]);
            let manifest = self
                .keys
                .meta
                .open(binding(&row, "manifest"), &manifest)
                .map_err(unauthentic("model_bundles", "manifest"))?;
            let artifact = self
                .keys
                .meta
                .open(binding(&row, "artifact"), &artifact)
                .map_err(unauthentic("model_bundles", "artifact"))?;
            Ok(Some(ModelBundle {
                model,
                version,
                manifest: manifest.to_vec(),
                artifact: artifact.to_vec(),
            }))
        })
    }
}
