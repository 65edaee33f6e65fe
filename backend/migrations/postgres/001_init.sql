CREATE TABLE devices (
    device_id       TEXT PRIMARY KEY,
    credential_hash TEXT NOT NULL UNIQUE,
    created_at      BIGINT NOT NULL
);
CREATE TABLE batches (
    batch_id    TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    region      TEXT NOT NULL,
    purposes    BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    records     BIGINT NOT NULL,
    labels      BIGINT NOT NULL
);
CREATE TABLE idempotency (
    device_id      TEXT NOT NULL,
    idem_key       TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    batch_id       TEXT NOT NULL,
    status         BIGINT NOT NULL,
    body           BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (device_id, idem_key)
);
CREATE TABLE records (
    seq           BIGSERIAL PRIMARY KEY,
    subject       TEXT NOT NULL,
    record_id     TEXT NOT NULL,
    batch_id      TEXT NOT NULL,
    study         TEXT NOT NULL,
    kind          TEXT NOT NULL,
    feature_set   TEXT NOT NULL,
    captured_hour BIGINT NOT NULL,
    age_band      TEXT,
    quality       DOUBLE PRECISION NOT NULL,
    features      TEXT NOT NULL,
    purposes      BIGINT NOT NULL,
    UNIQUE (subject, record_id)
);
CREATE INDEX records_study ON records (study, seq);
CREATE TABLE labels (
    subject   TEXT NOT NULL,
    record_id TEXT NOT NULL,
    label     TEXT NOT NULL,
    batch_id  TEXT NOT NULL,
    PRIMARY KEY (subject, record_id)
);
CREATE TABLE archive_refs (
    object_key     TEXT PRIMARY KEY,
    batch_id       TEXT NOT NULL,
    subject_digest TEXT NOT NULL
);
CREATE INDEX archive_refs_subject ON archive_refs (subject_digest);
CREATE TABLE erasure_audit (
    audit_id        TEXT PRIMARY KEY,
    at              BIGINT NOT NULL,
    records_deleted BIGINT NOT NULL,
    labels_deleted  BIGINT NOT NULL,
    objects_deleted BIGINT NOT NULL
);
CREATE TABLE models (
    name             TEXT NOT NULL,
    version          TEXT NOT NULL,
    signed_manifest  TEXT NOT NULL,
    artifact_key     TEXT NOT NULL,
    rollout_percent  BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE partner_keys (
    key_id     TEXT PRIMARY KEY,
    key_hash   TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
