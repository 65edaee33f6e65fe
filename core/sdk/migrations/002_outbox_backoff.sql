-- 002_outbox_backoff: retry scheduling for the sync outbox (exponential backoff, Retry-After).

-- PLAINTEXT: earliest next upload attempt (Unix ms); sync selects due records without decrypting.
-- Rows from v1 get 0: due at once, which is what v1 did.
ALTER TABLE outbox ADD COLUMN next_attempt_at_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_due ON outbox (quarantined, next_attempt_at_ms);
