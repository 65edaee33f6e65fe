//! The OpenAPI 3.1 document, built from one table of operations, served at
//! `GET /v1/openapi.json` and checked in as `backend/openapi.json` (a test keeps the file, the
//! table and the router in step).

use axum::Json;
use serde_json::{json, Map, Value};

struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Option<&'static str>,
    request: Option<(&'static str, &'static str)>,
    responses: &'static [(u16, &'static str)],
}

const DEVICE: Option<&str> = Some("device");
const ADMIN: Option<&str> = Some("admin");
const PARTNER: Option<&str> = Some("partner");
const JSON: &str = "application/json";

const OPS: &[Op] = &[
    Op { method: "get", path: "/healthz", summary: "Liveness.", auth: None, request: None, responses: &[(200, "alive")] },
    Op { method: "get", path: "/readyz", summary: "Readiness: the database answers.", auth: None, request: None, responses: &[(200, "ready"), (503, "database unavailable (Retry-After)")] },
    Op { method: "get", path: "/v1/openapi.json", summary: "This document.", auth: None, request: None, responses: &[(200, "OpenAPI document")] },
    Op { method: "get", path: "/v1/region", summary: "The region this node serves, signed (Ed25519, server key) over the device's nonce: query nonce = 32 to 128 lower-case hex digits. Devices that pin the key refuse another region before uploading.", auth: None, request: None, responses: &[(200, "RegionStatement"), (422, "missing or malformed nonce"), (503, "no signing key configured")] },
    Op { method: "post", path: "/v1/enroll", summary: "Trade an app enrollment token for a per-device credential (EnrollRequest -> EnrollResponse).", auth: None, request: Some((JSON, "EnrollRequest")), responses: &[(201, "EnrollResponse"), (400, "malformed"), (401, "unknown enrollment token"), (429, "too many enrollments from this client IP (Retry-After)")] },
    Op { method: "post", path: "/v1/batches", summary: "Upload a SyncBatch, gzip or zstd compressed (Content-Encoding), with an idempotency key and one possession proof per subject (subject_proofs). A retry with the same key gets the first answer with header idempotent-replayed: true. Feature names must belong to the record's feature set and values lie in their accepted range; kind, study, age_band and label come from fixed vocabularies.", auth: DEVICE, request: Some((JSON, "SyncBatch (compressed)")), responses: &[(200, "BatchAck"), (400, "malformed JSON or corrupt compression"), (401, "unknown, revoked or expired credential"), (403, "a subject is bound to another proof (nothing stored)"), (409, "idempotency key reused with a different batch"), (413, "body, decompressed batch or record count too large"), (415, "not gzip or zstd"), (421, "batch belongs to another region"), (422, "unsupported schema version or invalid content (the body names the field, never the value)"), (429, "rate limited, device over its share of ingest slots, or saturated (Retry-After)"), (503, "storage unavailable (Retry-After)")] },
    Op { method: "post", path: "/v1/erasure", summary: "Erase a pseudonymous subject: rows, the batch and idempotency metadata left empty, archived objects; an audit entry keeps counts only. A bound subject needs its possession proof.", auth: DEVICE, request: Some((JSON, "ErasureRequest")), responses: &[(200, "ErasureReceipt"), (401, "unknown, revoked or expired credential"), (403, "the subject is bound to another proof (nothing erased)"), (422, "invalid subject or proof"), (429, "rate limited (Retry-After)"), (503, "retry (Retry-After)")] },
    Op { method: "get", path: "/v1/models/{name}/manifest", summary: "The newest SignedManifest this device's rollout bucket entitles it to. ETag / If-None-Match.", auth: DEVICE, request: None, responses: &[(200, "SignedManifest"), (304, "not modified"), (401, "unknown credential"), (404, "no model")] },
    Op { method: "get", path: "/v1/models/{name}/versions/{version}/artifact", summary: "The ONNX artifact of a version (its sha256 and length are pinned by the signed manifest).", auth: DEVICE, request: None, responses: &[(200, "application/octet-stream"), (401, "unknown credential"), (404, "no such version")] },
    Op { method: "post", path: "/v1/admin/models", summary: "Publish a model version: the server pins the artifact hash and signs the manifest with its Ed25519 key.", auth: ADMIN, request: Some((JSON, "ModelUpload")), responses: &[(201, "SignedManifest"), (401, "not admin"), (409, "version not newer"), (422, "invalid"), (503, "no signing key configured")] },
    Op { method: "post", path: "/v1/admin/models/{name}/versions/{version}/rollout", summary: "Set the share of devices (0-100) that get a version.", auth: ADMIN, request: Some((JSON, "Rollout")), responses: &[(204, "changed"), (401, "not admin"), (404, "no such version")] },
    Op { method: "get", path: "/v1/admin/export", summary: "Labelled features consented for model training, as an Arrow IPC stream.", auth: ADMIN, request: None, responses: &[(200, "application/vnd.apache.arrow.stream"), (401, "not admin")] },
    Op { method: "post", path: "/v1/admin/partner-keys", summary: "Create a partner API key with scopes (studies, features, records or aggregates only) and an optional expires_in_secs (default and maximum: partner_key_ttl_secs); the key is shown once.", auth: ADMIN, request: Some((JSON, "PartnerKeyRequest")), responses: &[(201, "NewPartnerKey"), (401, "not admin"), (422, "invalid scopes or lifetime")] },
    Op { method: "post", path: "/v1/admin/partner-keys/{key_id}/revoke", summary: "Revoke a partner API key; refused from the next request on.", auth: ADMIN, request: None, responses: &[(204, "revoked"), (401, "not admin"), (404, "no such key")] },
    Op { method: "post", path: "/v1/admin/devices/{device_id}/revoke", summary: "Revoke a device credential; refused from the next request on (the device may enroll again; its subjects stay bound to their proofs).", auth: ADMIN, request: None, responses: &[(204, "revoked"), (401, "not admin"), (404, "no such device")] },
    Op { method: "get", path: "/v1/admin/erasure-audit", summary: "Erasure audit trail (counts and times only).", auth: ADMIN, request: None, responses: &[(200, "AuditEntry list"), (401, "not admin")] },
    Op { method: "get", path: "/v1/admin/refusal-audit", summary: "Requests refused because they named a subject bound to another proof: time, device, action; never the subject.", auth: ADMIN, request: None, responses: &[(200, "RefusalEntry list"), (401, "not admin")] },
    Op { method: "get", path: "/v1/partner/records", summary: "Records shared with partners, scoped features only, per-key subject pseudonyms, cursor pagination.", auth: PARTNER, request: None, responses: &[(200, "RecordsPage"), (401, "unknown key"), (403, "out of scope or aggregates-only key")] },
    Op { method: "get", path: "/v1/partner/aggregates", summary: "Per-group count/mean/min/max of one feature; groups under the minimum group size are withheld.", auth: PARTNER, request: None, responses: &[(200, "Aggregates"), (401, "unknown key"), (403, "out of scope")] },
];

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPS {
        let mut responses = Map::new();
        for (code, desc) in op.responses {
            responses.insert(code.to_string(), json!({ "description": desc }));
        }
        let mut o = json!({
            "summary": op.summary,
            "operationId": format!("{}_{}", op.method, op.path.trim_start_matches('/').replace(['/', '{', '}', '.', '-'], "_")),
            "responses": responses,
        });
        if let Some(scheme) = op.auth {
            o["security"] = json!([{ scheme: [] }]);
        }
        if let Some((media, schema)) = op.request {
            o["requestBody"] =
                json!({ "required": true, "description": schema, "content": { media: {} } });
        }
        let params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if !params.is_empty() {
            o["parameters"] = Value::Array(params);
        }
        let entry = paths.entry(op.path).or_insert_with(|| json!({}));
        entry[op.method] = o;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "vitalcore-server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Minimal vitalcore backend: device enrollment, batch ingest, erasure, signed model registry, training export, partner API. Wire types: crate vitalcore-protocol. The /v1/admin/* operations are served only on the admin listener (admin_listen), never on the public one."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "device": { "type": "http", "scheme": "bearer", "description": "Per-device credential from /v1/enroll." },
                "admin": { "type": "http", "scheme": "bearer", "description": "Admin token from configuration." },
                "partner": { "type": "http", "scheme": "bearer", "description": "Partner API key from /v1/admin/partner-keys." }
            }
        }
    })
}

/// `GET /v1/openapi.json`.
pub(crate) async fn serve() -> Json<Value> {
    Json(document())
}

/// (method, path) of every documented operation.
pub fn operations() -> Vec<(&'static str, &'static str)> {
    OPS.iter().map(|o| (o.method, o.path)).collect()
}

/// (method, path) of every operation of the public listener (all but the admin ones).
pub fn public_operations() -> Vec<(&'static str, &'static str)> {
    OPS.iter()
        .filter(|o| o.auth != ADMIN)
        .map(|o| (o.method, o.path))
        .collect()
}
