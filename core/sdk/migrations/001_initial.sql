-- 001_initial: first schema of the encrypted on-device store.
--
-- Rule: every column holding data about a person is a BLOB sealed with AES-256-GCM
-- (layout: format byte || random nonce || ciphertext || tag; associated data = format, table,
-- row id, column, data key id; see src/store/crypto.rs). Identifiers that must be looked up
-- (subject ids) are stored only as HMAC-SHA256 tags under a key derived from the root key.
-- The plaintext columns below are those the engine must sort, filter or join on; each one is
-- annotated "PLAINTEXT:" with why it is there and why it reveals nothing personal.
--
-- Released migrations are never edited: the upgrade test compares this file's schema with the
-- committed v1 fixture (tests/fixtures/store_v1.db).

-- Per-store settings.
CREATE TABLE store_meta (
    name  TEXT PRIMARY KEY,   -- PLAINTEXT: fixed names ('kdf_salt', 'canary')
    value BLOB NOT NULL       -- kdf_salt: random HKDF salt, not secret; canary: sealed constant
) STRICT;

-- Data keys, one per (subject, purpose), stored only wrapped by the root-derived wrap key.
-- Deleting a row here is the crypto-shredding step of an erasure.
CREATE TABLE data_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT, -- PLAINTEXT: referenced by sealed rows and bound into their
                                                  -- associated data; AUTOINCREMENT so a destroyed key's id is never reused
    subject_tag BLOB NOT NULL,                     -- HMAC tag of the subject id
    purpose     TEXT NOT NULL,                     -- PLAINTEXT: purpose name from a fixed vocabulary ('care', 'research'...)
    wrapped     BLOB NOT NULL,                     -- sealed data key
    UNIQUE (subject_tag, purpose)
) STRICT;

-- Health checks. Sealed with the subject's 'care' data key.
CREATE TABLE checks (
    id          BLOB PRIMARY KEY,   -- PLAINTEXT: random 128-bit id, no content
    subject_tag BLOB NOT NULL,      -- HMAC tag of the subject id: history per subject
    key_id      INTEGER NOT NULL,   -- PLAINTEXT: data key sealing this row
    kind        TEXT NOT NULL,      -- PLAINTEXT: check kind ('ppg', 'ecg', 'accel'): history is filtered by kind;
                                    -- reveals which sensor was used, not any value
    started_min INTEGER NOT NULL,   -- PLAINTEXT: start time truncated to the minute (Unix minutes): time-range history
                                    -- queries and ordering without decrypting; exact times are sealed in 'detail'
    features    BLOB NOT NULL,      -- sealed feature vector (name -> value)
    detail      BLOB NOT NULL       -- sealed exact times, session metadata, quality, prediction, model, timings
) STRICT;
CREATE INDEX checks_by_subject_time ON checks (subject_tag, started_min);

-- Raw sensor windows, kept only when a retention period is configured.
CREATE TABLE raw_windows (
    id          BLOB PRIMARY KEY,   -- PLAINTEXT: random id
    check_id    BLOB NOT NULL REFERENCES checks (id) ON DELETE CASCADE, -- PLAINTEXT: random id of the parent check
    key_id      INTEGER NOT NULL,   -- PLAINTEXT: data key
    expires_min INTEGER NOT NULL,   -- PLAINTEXT: retention deadline (Unix minutes): the purge deletes without decrypting
    samples     BLOB NOT NULL       -- sealed channel, start time, rate and samples
) STRICT;
CREATE INDEX raw_windows_by_check ON raw_windows (check_id);
CREATE INDEX raw_windows_by_expiry ON raw_windows (expires_min);

-- Outcome labels for checks.
CREATE TABLE labels (
    id       BLOB PRIMARY KEY,      -- PLAINTEXT: random id
    check_id BLOB NOT NULL REFERENCES checks (id) ON DELETE CASCADE, -- PLAINTEXT: random id of the labelled check
    key_id   INTEGER NOT NULL,      -- PLAINTEXT: data key
    body     BLOB NOT NULL          -- sealed label name, value, source, time
) STRICT;
CREATE INDEX labels_by_check ON labels (check_id);

-- Consent decisions, append-only history per subject and purpose. Sealed with the meta key
-- (not a subject key) so the record of a withdrawal survives the erasure it triggers.
CREATE TABLE consent_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT, -- PLAINTEXT: order of the history
    id          BLOB NOT NULL UNIQUE, -- PLAINTEXT: random id bound into the sealed body's associated data
    subject_tag BLOB NOT NULL,        -- HMAC tag of the subject id
    purpose     TEXT NOT NULL,        -- PLAINTEXT: purpose name: sync asks "may I upload for purpose X"
    body        BLOB NOT NULL         -- sealed granted/withdrawn, time, policy version
) STRICT;
CREATE INDEX consent_by_subject ON consent_events (subject_tag, purpose, seq);

-- Sync outbox. Sealed with the subject's data key for the record's purpose.
CREATE TABLE outbox (
    id              BLOB PRIMARY KEY,  -- PLAINTEXT: random id
    subject_tag     BLOB NOT NULL,     -- HMAC tag of the subject id: erasure finds the subject's uploads
    key_id          INTEGER NOT NULL,  -- PLAINTEXT: data key
    purpose         TEXT NOT NULL,     -- PLAINTEXT: sync picks only purposes with consent
    check_id        BLOB REFERENCES checks (id) ON DELETE CASCADE, -- PLAINTEXT: random id; deleting a check drops its upload
    created_ms      INTEGER NOT NULL,  -- PLAINTEXT: insertion time, for FIFO order (the sealed payload has the real times)
    idempotency_key BLOB NOT NULL UNIQUE, -- PLAINTEXT: random 128-bit key, sent to the server as is
    batch_id        BLOB,              -- PLAINTEXT: random id of the batch in flight
    attempts        INTEGER NOT NULL DEFAULT 0, -- PLAINTEXT: failed upload attempts (retry policy)
    quarantined     INTEGER NOT NULL DEFAULT 0, -- PLAINTEXT: poison record, never retried automatically
    payload         BLOB NOT NULL      -- sealed serialized record
) STRICT;
CREATE INDEX outbox_by_purpose ON outbox (purpose, created_ms);

-- Model bundle cache. Models are public artifacts; they are sealed anyway so that local
-- tampering with the cached bytes is detected before the models module even verifies them.
CREATE TABLE model_bundles (
    id       BLOB PRIMARY KEY,   -- PLAINTEXT: random id
    model    TEXT NOT NULL,      -- PLAINTEXT: model name (public)
    version  TEXT NOT NULL,      -- PLAINTEXT: bundle version (public): lookups by version
    manifest BLOB NOT NULL,      -- sealed signed manifest
    artifact BLOB NOT NULL,      -- sealed model bytes
    UNIQUE (model, version)
) STRICT;
CREATE TABLE model_active (
    model     TEXT PRIMARY KEY,  -- PLAINTEXT: model name (public)
    bundle_id BLOB NOT NULL REFERENCES model_bundles (id) -- PLAINTEXT: random id of the active bundle
) STRICT;

-- Append-only audit log of data access and deletion. No personal data: fixed action and scope
-- vocabularies and row counts. Each entry carries an HMAC over the previous entry's MAC and its
-- own fields, so edits and deletions are detected; triggers refuse them outright.
CREATE TABLE audit_log (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT, -- PLAINTEXT: order
    at_ms  INTEGER NOT NULL,  -- PLAINTEXT: when
    action TEXT NOT NULL,     -- PLAINTEXT: 'read', 'delete', 'erase', 'purge'
    scope  TEXT NOT NULL,     -- PLAINTEXT: table or purpose name
    rows   INTEGER NOT NULL,  -- PLAINTEXT: row count
    mac    BLOB NOT NULL      -- HMAC chain link
) STRICT;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
