//! The raw-batch archive and model artifacts, behind `object_store`: a local folder by default,
//! S3 (or any S3-protocol server) in production.
//!
//! Ordering rule shared by ingest and erasure: **a database reference never points at a missing
//! object.** Ingest writes objects first and commits references after; erasure deletes
//! references first and objects after. A crash in between leaves at most an unreferenced
//! object under the subject's prefix (`raw/<subject digest>/`), which the next erasure of that
//! subject removes by listing the prefix.

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::config::ArchiveConfig;

/// Archive failures (messages carry no object contents).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The object does not exist.
    #[error("object not found")]
    NotFound,
    /// The store could not be reached or refused the call.
    #[error("object store error: {0}")]
    Store(String),
    /// The archive is misconfigured.
    #[error("archive configuration: {0}")]
    Config(String),
}

impl From<object_store::Error> for ArchiveError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::NotFound,
            other => Self::Store(store_kind(&other).to_owned()),
        }
    }
}

fn store_kind(e: &object_store::Error) -> &'static str {
    match e {
        object_store::Error::Generic { .. } => "generic",
        object_store::Error::PermissionDenied { .. } => "permission denied",
        object_store::Error::Unauthenticated { .. } => "unauthenticated",
        object_store::Error::AlreadyExists { .. } => "already exists",
        object_store::Error::Precondition { .. } => "precondition",
        _ => "other",
    }
}

/// An object store with the few operations the server needs.
#[derive(Debug, Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
}

impl Archive {
    /// Wraps any object store.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// A local folder, created if missing.
    pub fn local(dir: &FsPath) -> Result<Self, ArchiveError> {
        std::fs::create_dir_all(dir).map_err(|e| ArchiveError::Config(e.kind().to_string()))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(ArchiveError::from)?
            .with_automatic_cleanup(true);
        Ok(Self::new(Arc::new(fs)))
    }

    /// An S3 bucket; credentials from `AWS_*` environment variables (or the instance role).
    pub fn s3(
        bucket: &str,
        endpoint: Option<&str>,
        region: Option<&str>,
    ) -> Result<Self, ArchiveError> {
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = region {
            b = b.with_region(region);
        }
        Self::from_s3_builder(b)
    }

    /// An S3 store from a prepared builder (explicit credentials, custom endpoint).
    pub fn from_s3_builder(b: object_store::aws::AmazonS3Builder) -> Result<Self, ArchiveError> {
        // Few, short retries: a request must answer 503 + Retry-After within seconds when the
        // object store is down, and the device retries later; long server-side retry loops
        // would only hold write slots.
        let retry = object_store::RetryConfig {
            max_retries: 2,
            retry_timeout: std::time::Duration::from_secs(5),
            ..Default::default()
        };
        // rustls is built without a default provider (ring, not aws-lc); install it once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s3 = b
            .with_retry(retry)
            .build()
            .map_err(|e| ArchiveError::Config(store_kind(&e).to_owned()))?;
        Ok(Self::new(Arc::new(s3)))
    }

    /// The archive a configuration describes.
    pub fn from_config(cfg: &ArchiveConfig, data_dir: &FsPath) -> Result<Self, ArchiveError> {
        match cfg {
            ArchiveConfig::Local { path } => {
                Self::local(&path.clone().unwrap_or_else(|| data_dir.join("archive")))
            }
            ArchiveConfig::S3 {
                bucket,
                endpoint,
                region,
            } => Self::s3(bucket, endpoint.as_deref(), region.as_deref()),
        }
    }

    /// Writes an object (overwriting).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), ArchiveError> {
        self.store
            .put(&Path::from(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Reads an object.
    pub async fn get(&self, key: &str) -> Result<Bytes, ArchiveError> {
        Ok(self.store.get(&Path::from(key)).await?.bytes().await?)
    }

    /// Deletes an object; deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), ArchiveError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Keys under a prefix.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ArchiveError> {
        let prefix = Path::from(prefix);
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
    }

    /// Deletes every object under a prefix; returns how many went.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, ArchiveError> {
        let keys = self.list(prefix).await?;
        for k in &keys {
            self.delete(k).await?;
        }
        Ok(keys.len() as u64)
    }
}
