-- Idempotency keys of HTTP requests (commands and stream appends): per
-- stream of a tenant and key, the fingerprint of what the key was first
-- used for and, once given, the answer (NULL while the request is under
-- way or when its process died before answering; the log then tells, by
-- the event ids derived from the key). Kept until expires_at; expired rows
-- count as absent and are deleted in bounded batches.
CREATE TABLE herald_idempotency_keys (
    tenant           text        NOT NULL,
    domain           text        NOT NULL,
    stream_id        text        NOT NULL,
    idempotency_key  text        NOT NULL,
    fingerprint      text        NOT NULL,
    answer           jsonb,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant, domain, stream_id, idempotency_key)
);

CREATE INDEX herald_idempotency_keys_expiry ON herald_idempotency_keys (expires_at);
