ALTER TABLE devices ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 9223372036854775807;
ALTER TABLE devices ADD COLUMN revoked_at INTEGER;
ALTER TABLE partner_keys ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 9223372036854775807;
UPDATE devices SET expires_at = created_at + 31536000;
ALTER TABLE partner_keys ADD COLUMN revoked_at INTEGER;
UPDATE partner_keys SET expires_at = created_at + 7776000;
ALTER TABLE batches DROP COLUMN device_id;
CREATE INDEX idempotency_batch ON idempotency (batch_id);
CREATE INDEX idempotency_created ON idempotency (created_at);
CREATE INDEX archive_refs_batch ON archive_refs (batch_id);
CREATE TABLE subject_bindings (
    subject_digest TEXT PRIMARY KEY,
    proof_hash     TEXT NOT NULL,
    bound_at       INTEGER NOT NULL
);
CREATE TABLE refusal_audit (
    audit_id  TEXT PRIMARY KEY,
    at        INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    action    TEXT NOT NULL
)
