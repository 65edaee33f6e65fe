-- 003_sync_state: what engine-level sync keeps between runs: the device credential, the
-- per-subject pseudonym secret, and erasure requests the server has not confirmed yet.

-- Device-level sync settings obtained from the server.
CREATE TABLE sync_meta (
    name  TEXT PRIMARY KEY,   -- PLAINTEXT: fixed names ('credential')
    value BLOB NOT NULL       -- sealed with the meta key
) STRICT;

-- The key of a subject's pseudonyms (HMAC per purpose). Never leaves the device; deleting the
-- row is the crypto-shredding step that makes later pseudonyms unlinkable to earlier ones.
CREATE TABLE pseudonym_secrets (
    subject_tag BLOB PRIMARY KEY, -- HMAC tag of the subject id
    secret      BLOB NOT NULL     -- sealed 256-bit key (meta key)
) STRICT;

-- Erasure requests waiting to be delivered (the device was offline when the user asked).
-- Uploads wait until every pending request is confirmed, so an erasure never deletes data
-- sent after it.
CREATE TABLE pending_erasures (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT, -- PLAINTEXT: delivery order
    id         BLOB NOT NULL UNIQUE,  -- PLAINTEXT: random id bound into the sealed body's associated data
    created_ms INTEGER NOT NULL,      -- PLAINTEXT: when the user asked
    body       BLOB NOT NULL          -- sealed pseudonym whose server data is to be erased
) STRICT;

-- Local differential privacy accounting: the privacy loss (epsilon) charged for each record
-- uploaded with noised features, so the per-subject, per-purpose budget survives restarts.
-- Charges are kept after the record left the outbox: privacy loss does not expire.
CREATE TABLE ldp_charges (
    record_id   BLOB PRIMARY KEY, -- PLAINTEXT: random id of the outbox record charged (charged once, however often it is sent)
    subject_tag BLOB NOT NULL,    -- HMAC tag of the subject id
    purpose     TEXT NOT NULL,    -- PLAINTEXT: purpose whose budget was charged
    epsilon     REAL NOT NULL     -- PLAINTEXT: the policy's per-record epsilon, a configuration constant
) STRICT;
CREATE INDEX ldp_by_subject ON ldp_charges (subject_tag, purpose);
