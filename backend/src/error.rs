//! Handler errors: each maps to a status and a stable machine-readable code. Messages are
//! written here, never copied from a database or a request, so nothing internal or personal
//! leaks to clients.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::storage::StoreError;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Body is not valid JSON of the expected shape.
    #[error("malformed request body")]
    Malformed,
    /// Body or decompressed batch or record count over the limit.
    #[error("payload too large")]
    TooLarge,
    /// Body is not gzip or zstd.
    #[error("unsupported content encoding")]
    UnsupportedEncoding,
    /// Compressed bytes are corrupt.
    #[error("corrupt compressed body")]
    CorruptCompression,
    /// Batch schema version this server does not speak.
    #[error("unsupported schema version")]
    UnsupportedSchema,
    /// Batch content breaks a rule (reason is a fixed string).
    #[error("invalid batch: {0}")]
    Invalid(&'static str),
    /// One field of the request breaks a rule: names the field and the rule, never the value.
    #[error("invalid {field}: {rule}")]
    InvalidField {
        /// The field, as a path (`records[].features`).
        field: &'static str,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// Batch belongs to another region.
    #[error("batch belongs to another region")]
    WrongRegion,
    /// Missing or unknown credential.
    #[error("unauthorized")]
    Unauthorized,
    /// Credential valid but not allowed to do this.
    #[error("forbidden")]
    Forbidden,
    /// Nothing there.
    #[error("not found")]
    NotFound,
    /// Idempotency key reused with a different body.
    #[error("idempotency key reused with a different batch")]
    KeyReuse,
    /// Resource already exists (for example a model version).
    #[error("already exists")]
    Conflict,
    /// Too many concurrent writes; retry later.
    #[error("server saturated")]
    Saturated {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// This client (IP or device credential) sent too many requests; retry later.
    #[error("rate limited")]
    RateLimited {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// Database unreachable or pool exhausted; retry later.
    #[error("storage unavailable")]
    Unavailable {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// A feature is disabled by configuration (for example no signing key).
    #[error("not configured: {0}")]
    NotConfigured(&'static str),
    /// Anything else; details are logged, not returned.
    #[error("internal error")]
    Internal,
}

#[derive(Serialize)]
struct Body {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
}

impl ApiError {
    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed | Self::CorruptCompression => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::UnsupportedSchema | Self::Invalid(_) | Self::InvalidField { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::WrongRegion => StatusCode::MISDIRECTED_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::KeyReuse | Self::Conflict => StatusCode::CONFLICT,
            Self::Saturated { .. } | Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } | Self::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::CorruptCompression => "corrupt_compression",
            Self::UnsupportedSchema => "unsupported_schema",
            Self::Invalid(_) | Self::InvalidField { .. } => "invalid",
            Self::WrongRegion => "wrong_region",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::KeyReuse => "idempotency_key_reused",
            Self::Conflict => "conflict",
            Self::Saturated { .. } => "saturated",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable { .. } => "unavailable",
            Self::NotConfigured(_) => "not_configured",
            Self::Internal => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable => Self::Unavailable { retry_after: 2 },
            StoreError::Conflict => Self::Conflict,
            StoreError::NotFound => Self::NotFound,
            StoreError::Forbidden => Self::Forbidden,
            other => {
                // The error text comes from our own enum (no row values), safe to log.
                tracing::error!(error = %other, "storage error");
                Self::Internal
            }
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge
        } else {
            Self::Malformed
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        crate::metrics::count_error(self.code());
        let retry_after = match self {
            Self::Saturated { retry_after }
            | Self::RateLimited { retry_after }
            | Self::Unavailable { retry_after } => Some(retry_after),
            _ => None,
        };
        let field = match self {
            Self::InvalidField { field, .. } => Some(field),
            _ => None,
        };
        let body = Body {
            error: self.code(),
            message: self.to_string(),
            field,
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}
