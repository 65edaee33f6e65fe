//! The one error type of the FFI, and the one place every internal error is converted to it.
//!
//! Variants are what a caller can act on, not where the failure happened. Messages carry no
//! personal data (no sample values, ids or key bytes): only what was wrong, in words a
//! developer can fix.

/// Every failure of the vitalcore API, as the host languages see it.
///
/// Kotlin: `VitalcoreException.InvalidInput` etc.; Swift: `VitalcoreError.InvalidInput`;
/// Python: `VitalcoreError.InvalidInput`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum VitalcoreError {
    /// The caller passed something unusable (wrong length, out of range, unknown name).
    /// Fix the call; retrying the same input fails again.
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// What was wrong, without the offending values.
        reason: String,
    },
    /// The local store could not be read or written (disk full, file corrupt, locked).
    #[error("storage failure: {reason}")]
    Storage {
        /// What failed.
        reason: String,
    },
    /// Keys or sealed data are unusable (wrong key, tampered data, keystore unavailable).
    #[error("crypto failure: {reason}")]
    Crypto {
        /// What failed.
        reason: String,
    },
    /// The backend could not be reached or refused the request; retry later.
    #[error("network failure: {reason}")]
    Network {
        /// What failed.
        reason: String,
        /// When the server said to retry, in milliseconds from now, if it said so.
        retry_after_ms: Option<u64>,
    },
    /// A model (an update, or one loaded for inference) was refused and not installed; the
    /// model already serving keeps serving. `kind` says what to do about it.
    #[error("model rejected: {reason}")]
    ModelRejected {
        /// Which check failed.
        reason: String,
        /// What kind of refusal, hence what to do.
        kind: ModelRejection,
    },
    /// The user has not granted the consent this operation needs.
    #[error("consent required: {reason}")]
    ConsentRequired {
        /// Which consent is missing.
        reason: String,
    },
    /// The operation was interrupted or the engine was shut down while it ran.
    #[error("interrupted: {reason}")]
    Interrupted {
        /// What was interrupted.
        reason: String,
    },
    /// The engine, session or capture was closed (shut down, finished, cancelled): open a
    /// new one.
    #[error("closed: {reason}")]
    Closed {
        /// What is closed.
        reason: String,
    },
    /// No record with this id.
    #[error("not found: {reason}")]
    NotFound {
        /// What was looked for.
        reason: String,
    },
    /// A background capture is behind: the batch was not taken; push it again later.
    #[error("capture is {pending} windows behind; batch not accepted, retry later")]
    Backpressure {
        /// Windows waiting to be processed.
        pending: u64,
    },
    /// The engine lacks a setting this operation needs (a sync endpoint and region, an
    /// enrollment token), or the endpoint serves another data region: fix the configuration.
    #[error("not configured: {reason}")]
    NotConfigured {
        /// Which setting is missing or wrong.
        reason: String,
    },
    /// The server refused the app's enrollment token or the device's credential. Retrying
    /// does not help; the app's token must be checked (or the device re-enrolled).
    #[error("unauthorized: {reason}")]
    Unauthorized {
        /// What was refused.
        reason: String,
    },
    /// A bug in vitalcore (or a host callback that failed unexpectedly). Report it.
    #[error("internal error: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },
}

/// Why a model was refused: what the app (or the model's publisher) can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum ModelRejection {
    /// The envelope or artifact is not what the publisher signed (signature does not verify,
    /// artifact length or sha256 differ, envelope unreadable): corrupted or altered on the
    /// way. Fetch it again; never install it.
    Tampered,
    /// Signed, but not by a key the app pins (`EngineConfig.model_public_keys`): the app's
    /// configuration or the publisher's key is wrong.
    UntrustedPublisher,
    /// Not newer than the model this device already trusts (a replay or a rollback):
    /// nothing to install.
    NotNewer,
    /// The manifest's expiry has passed (a frozen or replayed manifest): the publisher must
    /// sign a fresh one.
    Expired,
    /// Made for another SDK version, manifest schema or feature set: the app needs an
    /// update (or the publisher a compatible model).
    Incompatible,
    /// Passed every integrity check but cannot run here (operators the SDK lacks, fails its
    /// own self-test, fails at inference): report it to the publisher.
    Unusable,
}

impl VitalcoreError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            reason: reason.into(),
        }
    }

    /// A model that cannot run here.
    pub(crate) fn unusable_model(reason: impl Into<String>) -> Self {
        Self::ModelRejected {
            reason: reason.into(),
            kind: ModelRejection::Unusable,
        }
    }
}

/// A host callback threw something that is not a `VitalcoreError`. Its message is dropped on
/// purpose: host exceptions may carry anything, and this error may end up in logs.
impl From<uniffi::UnexpectedUniFFICallbackError> for VitalcoreError {
    fn from(_: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Internal {
            reason: "a host callback raised an exception that is not a VitalcoreError".into(),
        }
    }
}

impl From<crate::keys::KeyError> for VitalcoreError {
    fn from(e: crate::keys::KeyError) -> Self {
        use crate::keys::KeyError;
        match e {
            KeyError::WrongLength { .. } => Self::InvalidInput {
                reason: e.to_string(),
            },
            KeyError::Degenerate => Self::Crypto {
                reason: e.to_string(),
            },
        }
    }
}

impl From<crate::catalogue::CatalogueError> for VitalcoreError {
    fn from(e: crate::catalogue::CatalogueError) -> Self {
        Self::invalid(e.to_string())
    }
}

/// Every signal error is about the input (its messages name indices, rates and lengths,
/// never sample values), so the caller can fix the call.
impl From<vitalcore_signal::SignalError> for VitalcoreError {
    fn from(e: vitalcore_signal::SignalError) -> Self {
        Self::invalid(e.to_string())
    }
}

impl From<crate::samples::PackedError> for VitalcoreError {
    fn from(e: crate::samples::PackedError) -> Self {
        Self::invalid(e.to_string())
    }
}

impl From<crate::offload::OffloadError> for VitalcoreError {
    fn from(e: crate::offload::OffloadError) -> Self {
        Self::Internal {
            reason: e.to_string(),
        }
    }
}

/// Keys, sealed data and the keystore are `Crypto`; the database itself is `Storage`.
impl From<vitalcore::store::StoreError> for VitalcoreError {
    fn from(e: vitalcore::store::StoreError) -> Self {
        use vitalcore::store::StoreError as S;
        let reason = e.to_string();
        match e {
            S::Key(vitalcore::keys::KeyError::InvalidLength { .. }) => {
                Self::InvalidInput { reason }
            }
            S::WrongKey
            | S::Key(_)
            | S::Integrity { .. }
            | S::AuditChainBroken { .. }
            | S::KeyDestroyed => Self::Crypto { reason },
            _ => Self::Storage { reason },
        }
    }
}

/// Engine messages name channels, lengths, rates and settings, never sample values or ids.
impl From<vitalcore::EngineError> for VitalcoreError {
    fn from(e: vitalcore::EngineError) -> Self {
        use vitalcore::EngineError as E;
        let reason = e.to_string();
        match e {
            E::Store(s) => s.into(),
            E::Signal(_)
            | E::Batch(_)
            | E::InvalidConfig(_)
            | E::TooShort { .. }
            | E::InvalidId
            | E::InvalidLabel(_) => Self::InvalidInput { reason },
            E::SessionClosed | E::CaptureClosed | E::ShutDown => Self::Closed { reason },
            E::Interrupted => Self::Interrupted { reason },
            E::Backpressure { pending } => Self::Backpressure {
                pending: pending as u64,
            },
            E::NotFound => Self::NotFound { reason },
            E::Sync(s) => s.into(),
            E::Privacy(p) => p.into(),
            E::Model(m) => m.into(),
            E::Inference(_) => Self::unusable_model(reason),
            _ => Self::Internal { reason },
        }
    }
}

/// Sync failures by what the app can do about them: fix the config, check its token, or
/// retry later.
impl From<vitalcore::sync::SyncError> for VitalcoreError {
    fn from(e: vitalcore::sync::SyncError) -> Self {
        use vitalcore::sync::SyncError as S;
        let reason = e.to_string();
        match e {
            S::NoEndpoint | S::NotEnrolled | S::Config(_) | S::WrongRegion { .. } => {
                Self::NotConfigured { reason }
            }
            S::Unauthorized => Self::Unauthorized { reason },
            S::Unavailable { retry_after_ms } => Self::Network {
                reason,
                retry_after_ms: Some(retry_after_ms),
            },
            S::Network(_) | S::HeldByPolicy => Self::Network {
                reason,
                retry_after_ms: None,
            },
            S::ModelNotFound => Self::NotFound { reason },
            S::Store(s) => s.into(),
            S::Privacy(p) => p.into(),
        }
    }
}

/// A purpose without upload meaning is the caller's input; a record that cannot be prepared
/// is the store's problem (it is quarantined, never sent).
impl From<vitalcore::privacy::PrivacyError> for VitalcoreError {
    fn from(e: vitalcore::privacy::PrivacyError) -> Self {
        use vitalcore::privacy::PrivacyError as P;
        let reason = e.to_string();
        match e {
            P::UnknownPurpose | P::InvalidDp(_) => Self::InvalidInput { reason },
            // The app's own privacy setting forbids further uploads for the purpose: a
            // configuration matter (raise the budget or stop syncing it), not a retry.
            P::BudgetExhausted => Self::NotConfigured { reason },
            P::Store(s) => s.into(),
            P::MalformedRecord | P::NoFeatures => Self::Storage { reason },
        }
    }
}

/// A bundle that fails any check is `ModelRejected` with the kind of refusal (the previous
/// model keeps serving); the model cache on disk is `Storage`. Every variant is named, so a
/// new refusal in the SDK must be given a kind here.
impl From<vitalcore::models::ModelError> for VitalcoreError {
    fn from(e: vitalcore::models::ModelError) -> Self {
        use vitalcore::models::ModelError as M;
        use ModelRejection as K;
        let reason = e.to_string();
        let kind = match e {
            M::TrustStore(_) => return Self::Storage { reason },
            M::NoActiveModel => return Self::NotFound { reason },
            M::Inference(i) => return i.into(),
            M::Malformed(_) | M::BadSignature | M::ArtifactLength { .. } | M::ArtifactHash => {
                K::Tampered
            }
            M::UntrustedKey => K::UntrustedPublisher,
            M::Rollback { .. } => K::NotNewer,
            M::Expired => K::Expired,
            M::UnsupportedSchema(_) | M::SdkTooOld { .. } | M::IncompatibleInputs(_) => {
                K::Incompatible
            }
            M::Unloadable(_) | M::SelfTestFailed => K::Unusable,
        };
        Self::ModelRejected { reason, kind }
    }
}
